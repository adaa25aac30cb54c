"""Writes for licence codes (授权码): KooGallery's callbacks (§4.5) and our outbound calls (§5.4).

Callbacks are idempotent: refreshLicenseCode per (licence, orderId), updateLicenseCodeStatus is
absolute, releaseLicenseCode repeated is success. A code KooGallery mentions before we have seen
it is recorded from the call (§4.5), so a later activation finds its state. Calls about a released
code answer success and change nothing (a warning is logged), like instances (§2.7).

Outbound (`activate_license_code`, `query_license_code`) must run outside a transaction (the
attempt rows of `koogallery.outbound.client` commit on their own): from an admin action, a view
after
sign-in, or the daily Celery job.
"""

import json
import logging
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from koogallery.outbound import client as outbound
from koogallery.protocol.redaction import redact
from koogallery.protocol.times import compact_time

from .models import (
    LicenseCode,
    LicenseCodeRenewal,
    LicenseCodeScene,
    LicenseCodeStatus,
    LicenseCodeStatusChange,
)

logger = logging.getLogger(__name__)

ALREADY_ACTIVATED = "92020003"  # §5.4: illegal state, do not activate twice
NOT_ACTIVATED = "92020011"
NOT_FOUND = "92020005"


def _locked_code(code: str, is_test: bool) -> LicenseCode:
    """The code's row, locked; created (not activated) when KooGallery mentions it first."""
    row = LicenseCode.objects.select_for_update().filter(code=code, is_test=is_test).first()
    if row is not None:
        return row
    try:
        with transaction.atomic():
            return LicenseCode.objects.create(code=code, is_test=is_test)
    except IntegrityError:  # a concurrent call created it
        return LicenseCode.objects.select_for_update().get(code=code, is_test=is_test)


def _code_for_call(code: str, is_test: bool) -> LicenseCode:
    """The code a KooGallery callback names, locked (§4.5).

    A code names one code across production and test data, as an instanceId does (§2.7): a
    call without testFlag is served on the production code, or, when only a debug one exists,
    on that one (the console's saved debug cases and their replays); a debug call on the debug
    code only. A code mentioned first is recorded in the call's data set.
    """
    if not is_test:
        named = LicenseCode.objects.select_for_update().filter(code=code).order_by("is_test")
        row = named.first()  # production first
        if row is not None:
            return row
    return _locked_code(code, is_test)


def _released(row: LicenseCode, activity: str) -> bool:
    if row.status == LicenseCodeStatus.RELEASED:
        logger.warning("%s on released licence code %s: nothing changed", activity, row.pk)
        return True
    return False


# --- KooGallery's callbacks (§4.5) ----------------------------------------------------------------


def refresh_license_code(
    *,
    code: str,
    scene: LicenseCodeScene,
    order_id: str,
    order_line_id: str,
    product_id: str,
    expire_at: datetime,
    is_test: bool,
) -> LicenseCode:
    with transaction.atomic():
        row = _code_for_call(code, is_test)
        if _released(row, "refreshLicenseCode"):
            return row
        renewal, created = LicenseCodeRenewal.objects.get_or_create(
            license_code=row,
            order_id=order_id,
            defaults={
                "order_line_id": order_line_id,
                "scene": scene,
                "product_id": product_id,
                "expire_at": expire_at,
            },
        )
        if not created:
            if renewal.expire_at != expire_at:
                logger.warning(
                    "refreshLicenseCode repeated for order %s with another expireTime (%s, "
                    "first was %s): first kept",
                    order_id,
                    expire_at,
                    renewal.expire_at,
                )
            return row
        row.expire_at = expire_at
        if product_id:
            row.product_id = product_id
        row.save()
    return row


def set_license_code_status(
    *, code: str, change: LicenseCodeStatusChange, is_test: bool
) -> LicenseCode:
    with transaction.atomic():
        row = _code_for_call(code, is_test)
        if _released(row, "updateLicenseCodeStatus"):
            return row
        frozen = change == LicenseCodeStatusChange.FREEZE
        if row.frozen != frozen:
            row.frozen = frozen
            row.save(update_fields=["frozen", "updated_at"])
    return row


def release_license_code(
    *, code: str, order_id: str, order_line_id: str, is_test: bool
) -> LicenseCode:
    with transaction.atomic():
        row = _code_for_call(code, is_test)
        if row.status == LicenseCodeStatus.RELEASED:
            return row  # repeat → 000000 (§4.5)
        row.status = LicenseCodeStatus.RELEASED
        row.released_at = timezone.now()
        if order_id:
            row.last_answer = {**row.last_answer, "release_order_id": order_id}
            if order_line_id:
                row.last_answer["release_order_line_id"] = order_line_id
        row.save()
    logger.info("licence code %s released", row.pk)
    return row


# --- our calls to KooGallery (§5.4) ---------------------------------------------------------------


class LicenseCodeError(Exception):
    """KooGallery refused or could not answer; `.code` / `.message` as received."""

    def __init__(self, code: str, message: str, *, retryable: bool):
        self.code, self.message, self.retryable = code, message, retryable
        super().__init__(f"{code or 'no answer'}: {message}")


def _compact_time(value: Any) -> datetime | None:
    return compact_time(str(value or ""), millis=False)


def _error(result: outbound.OutboundResult) -> LicenseCodeError:
    return LicenseCodeError(result.result_code, result.result_msg, retryable=result.retryable)


def register_license_code(*, code: str, is_test: bool = False, tenant=None) -> LicenseCode:
    """Record a code a buyer handed over (not activated yet); idempotent."""
    code = code.strip()
    if not code or len(code) > 64:
        raise ValueError("a licence code has 1 to 64 characters")
    with transaction.atomic():
        row = _locked_code(code, is_test)
        if tenant is not None and row.tenant_id is None:
            row.tenant = tenant
            row.save(update_fields=["tenant", "updated_at"])
    return row


def activate_license_code(
    *,
    code: str,
    is_test: bool = False,
    tenant=None,
    real_effect_time: datetime | None = None,
) -> LicenseCode:
    """Activate a code the buyer handed over (v1/license/activate) and store what it says.

    An already activated code (92020003) is not activated again: its state is queried instead.
    Other refusals raise `LicenseCodeError` (the row, if new, stays "not activated").
    """
    row = register_license_code(code=code, is_test=is_test, tenant=tenant)
    code = row.code
    body: dict[str, Any] = {"license": code}
    if real_effect_time is not None:
        body["real_effect_time"] = real_effect_time.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    result = outbound.license_code_call(api="v1/license/activate", body=body)
    if not result.ok and result.result_code == ALREADY_ACTIVATED:
        logger.info("licence code %s was already activated: querying it", row.pk)
        return query_license_code(code=code, is_test=is_test, mark_activated=True)
    if not result.ok:
        raise _error(result)
    info = ((result.data or {}).get("data") or {}).get("license_code_info") or {}
    if isinstance(info, str):  # §5.4: a JSON *string*
        try:
            info = json.loads(info)
        except ValueError:
            info = {}
    info = info if isinstance(info, dict) else {}
    with transaction.atomic():
        row = LicenseCode.objects.select_for_update().get(pk=row.pk)
        row.activated_at = row.activated_at or timezone.now()
        if row.status != LicenseCodeStatus.RELEASED:
            row.status = _status(info.get("status")) or LicenseCodeStatus.ALIVE
        # The activation's expiry is an estimate; a renewal callback or the query is authoritative.
        if row.expire_at is None:
            row.expire_at = _compact_time(info.get("expire_time"))
        row.product_id = row.product_id or str(info.get("product_id") or "")[:64]
        row.order_id = str(info.get("order_id") or row.order_id)[:64]
        amount = info.get("amount")
        if isinstance(amount, int) and amount >= 0:
            row.amount = amount
        # Shown in the admin: KooGallery's answer by the journal's allow-list (spec §2.4).
        row.last_answer = {"activate": redact(info)}
        row.save()
    return row


def _status(value: Any) -> str | None:
    text = str(value or "").upper()
    return text if text in LicenseCodeStatus.values and text else None


def query_license_code(
    *, code: str, is_test: bool = False, mark_activated: bool = False
) -> LicenseCode:
    """Query a code's state (v1/license/heartbeat, §5.4) and record it."""
    result = outbound.license_code_call(api="v1/license/heartbeat", body={"license": code})
    if not result.ok and result.result_code not in (NOT_ACTIVATED, NOT_FOUND):
        raise _error(result)
    data = (result.data or {}).get("data") if result.ok else None
    data = data if isinstance(data, dict) else {}
    now = timezone.now()
    with transaction.atomic():
        row = _locked_code(code, is_test)
        row.checked_at = now
        if result.ok:
            status = _status(data.get("status"))
            if status and row.status != LicenseCodeStatus.RELEASED:
                if status != row.status:
                    logger.info("licence code %s: %s → %s", row.pk, row.status or "-", status)
                row.status = status
            activated = _compact_time(data.get("activate_time"))
            if activated or mark_activated:
                row.activated_at = row.activated_at or activated or now
            expires = _compact_time(data.get("expire_time"))
            if expires:
                row.expire_at = expires
            row.last_answer = {**row.last_answer, "query": redact(data)}
        else:
            row.last_answer = {
                **row.last_answer,
                "query": {"error_code": result.result_code, "error_msg": result.result_msg},
            }
        row.save()
    return row


def query_codes_in_use() -> dict:
    """The daily job (§5.4 project decision): query every activated, unreleased code."""
    from .selectors import license_codes_in_use

    counts = {"queried": 0, "failed": 0}
    for row in license_codes_in_use().only("code", "is_test").iterator():
        try:
            query_license_code(code=row.code, is_test=row.is_test)
            counts["queried"] += 1
        except LicenseCodeError as exc:
            counts["failed"] += 1
            logger.warning("daily query of licence code %s failed: %s", row.pk, exc)
    return counts
