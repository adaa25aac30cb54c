"""Writes for asynchronous licences (spec §2.8): accept, issue, deliver, sweep, operator actions.

The path of one getLicenseAsync:

1. `request_license` (inside the call's transaction) checks the call against the instance and
   persists a `LicenseRequest` with its delivery job: an outbox row in the same statement,
   published by beat's dispatch (koogallery/outbound/jobs.py), or, without a broker, a publish once
   the
   row has committed. A publish failure is logged, never raised: the sweep finds the row anyway.
2. `deliver_license` (from the Celery task) runs `issue_license` (mint one token per request),
   `claim_upload` (take a lease, state `uploading`), the HTTP upload outside any transaction,
   and `record_upload` (delivered / failed / back to issued with the next attempt time).
3. `sweep_due_requests` (Celery beat) re-enqueues requests stuck in a non-final state, so a lost
   broker message or a killed worker delays a licence but never loses it.

Every step locks the request row (`select_for_update`) and checks its state first, so duplicate
task messages, a sweep racing a retry, or two workers are harmless.
"""

import hashlib
import logging
import math
import random
import uuid
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from instances.models import ChargingMode, InstanceState
from koogallery.outbound import jobs
from koogallery.protocol.resultcodes import KooGalleryError, ResultCode

from . import selectors, tokens
from .models import License, LicenseRequest, RequestState

logger = logging.getLogger(__name__)
# The delivery job, queued by name (koogallery/outbound/jobs.py): licensing/tasks.py imports this
# module, never the other way round.
DELIVER_LICENSE = "licensing.tasks.deliver_license"

# Charging modes known to have no period: a licence without expireTime is fine (§2.8).
NON_PERIOD_MODES = (ChargingMode.ONE_TIME, ChargingMode.ON_DEMAND, ChargingMode.ON_DEMAND_PKG)
# A retry message may be delivered a little before its ETA (clock differences between hosts).
DUE_TOLERANCE = timedelta(seconds=2)
GAVE_UP = "GAVE_UP"


def fingerprint_digest(fingerprint: str) -> str:
    return hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()


# --- 1. accepting getLicenseAsync ----------------------------------------------------------------


REQUESTS = LicenseRequest._meta.db_table


def request_license(
    *,
    instance_id: str,
    event_id: str,
    effective_at: datetime,
    expire_at: datetime | None,
    fingerprint: str,
    is_test: bool,
) -> LicenseRequest:
    """The request for (eventId, deviceFingerprint), created after the §2.8 checks if new.

    A repeat returns the stored request unchanged (the caller answers 000000 if delivered, else
    000004); a repeat of a failed request re-arms its delivery (KooGallery's manual restart).
    Raises `KooGalleryError` (000003, 000900–000903) before anything is written, so the
    caller's transaction is left as it was (the pipeline rolls it back anyway).

    A new request is two statements in raw SQL (the ORM's compiling cost more than the
    queries, issue 6), plus one for the quota when the order told it; a repeat is one.
    """
    args = (instance_id, event_id, effective_at, expire_at, fingerprint, is_test)
    # No savepoint inside the call's transaction: a refusal has nothing to undo.
    if connection.in_atomic_block:
        return _request_license(*args)
    with transaction.atomic():  # called alone: the transaction the instance lock needs
        return _request_license(*args)


def _request_license(
    instance_id: str,
    event_id: str,
    effective_at: datetime,
    expire_at: datetime | None,
    fingerprint: str,
    is_test: bool,
) -> LicenseRequest:
    digest = fingerprint_digest(fingerprint)
    stored, instance = selectors.stored_request_or_locked_instance(
        instance_id=instance_id, event_id=event_id, digest=digest, is_test=is_test
    )
    if stored is not None:
        return _repeat(stored)  # whichever instanceId: the key is the event and the device
    if instance is None:
        raise KooGalleryError(
            ResultCode.INSTANCE_NOT_FOUND, f"instanceId: no instance {instance_id!r}"
        )
    # The request belongs to the instance's data set: a call without testFlag naming a debug
    # instance (the console's probes, §2.7) asks for a debug licence.
    is_test = instance.is_test
    _check_request(instance, is_test, effective_at, expire_at, fingerprint, digest)
    # The delivery job goes into the outbox with the request's own INSERT where it can.
    in_statement = jobs.queued_by_statement()
    request = _insert_request(
        instance, event_id, fingerprint, digest, is_test, effective_at, expire_at, in_statement
    )
    if request is None:
        # A twin committed the same key while this call waited for the instance's lock; its
        # device is the same, so it passed the same checks: answer with what it stored.
        return _repeat(selectors.stored_request(event_id=event_id, digest=digest, is_test=is_test))
    if not in_statement:
        enqueue_on_commit(request.pk)
    # The call's own line (koogallery.calls) says it at INFO, with the event and the instance.
    logger.debug("licence request %s accepted for event %s", request.pk, event_id)
    return request


_INSERT_REQUEST = (
    f"INSERT INTO {REQUESTS} (event_id, device_fingerprint, fingerprint_sha256, is_test, "  # noqa: S608
    "instance_id, effective_at, expire_at, state, attempt_count, failure_code, "
    "failure_message, last_error, created_at, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, '', '', '', %s, %s) "
    "ON CONFLICT (event_id, fingerprint_sha256, is_test) DO NOTHING RETURNING id"
)


@cache
def _insert_request_queued() -> str:
    """_INSERT_REQUEST that also puts the new request's delivery job in the outbox."""
    # Constant text: the statement above and the outbox's table and columns.
    outbox = jobs.job_cte("inserted")
    return f"WITH inserted AS ({_INSERT_REQUEST}), {outbox} SELECT id FROM inserted"  # noqa: S608


def _insert_request(
    instance, event_id, fingerprint, digest, is_test, effective_at, expire_at, queue=False
) -> LicenseRequest | None:
    """The new request (state received), or None if its key is taken: ON CONFLICT DO NOTHING
    instead of an IntegrityError, which would need a savepoint (two round trips). With `queue`
    (PostgreSQL), the same statement puts its delivery job in the outbox."""
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    params = [
        *(event_id, fingerprint, digest, is_test, instance.pk),
        *(adapt(effective_at), adapt(expire_at), RequestState.RECEIVED.value),
        *(adapt(now), adapt(now)),
    ]
    with connection.cursor() as cursor:
        if queue:
            job = jobs.job_params(DELIVER_LICENSE)
            cursor.execute(_insert_request_queued(), [*params, *job])
        else:
            cursor.execute(_INSERT_REQUEST, params)
        row = cursor.fetchone()
    if row is None:
        return None
    # What the INSERT wrote (the other columns are the model's defaults).
    request = LicenseRequest(
        id=row[0],
        event_id=event_id,
        device_fingerprint=fingerprint,
        fingerprint_sha256=digest,
        is_test=is_test,
        instance_id=instance.pk,
        effective_at=effective_at,
        expire_at=expire_at,
        created_at=now,
        updated_at=now,
    )
    request._state.adding, request._state.db = False, connection.alias
    return request


def _check_request(
    instance: selectors.InstanceTerms,
    is_test: bool,
    effective_at: datetime,
    expire_at: datetime | None,
    fingerprint: str,
    digest: str,
) -> None:
    """The checks of §2.8, in its order; the first failure answers.

    A debug instance is never refused for its state or validity period (§2.7): the console
    runs its saved cases in the order 创建实例, 更新实例, 更新实例状态, 释放实例, 异步申请License on
    one debug instance, so the licence is asked for after the instance was frozen and released
    (and after a refreshInstance whose example expiry is long past), then replayed twice a
    day; a refusal there freezes the product. The licence is issued and uploaded as usual,
    marked debug (`test: true`).
    """
    if not fingerprint and settings.LICENSE_REQUIRE_FINGERPRINT:
        raise KooGalleryError(
            ResultCode.LICENSE_FINGERPRINT_REQUIRED,
            "deviceFingerprint: required by this product",
        )
    if expire_at is None and instance.charging_mode not in NON_PERIOD_MODES:
        mode = instance.charging_mode or "not known yet"
        raise KooGalleryError(
            ResultCode.LICENSE_EXPIRY_REQUIRED,
            f"expireTime: required (the order's charging mode is {mode})",
        )
    if not instance.is_test:
        _check_validity(instance, effective_at, expire_at)
    if instance.linear_value is not None:
        used, holds_one = selectors.licensed_devices(
            instance_pk=instance.pk, is_test=is_test, digest=digest
        )
        # A device that already holds a licence of this order may get another one (renewal).
        if not holds_one and used >= instance.linear_value:
            raise KooGalleryError(
                ResultCode.LICENSE_QUOTA_EXHAUSTED,
                f"{used} of {instance.linear_value} licensed devices already used",
            )


def _check_validity(
    instance: selectors.InstanceTerms, effective_at: datetime, expire_at: datetime | None
) -> None:
    """§2.8 000901: a production instance in service, the licence inside the order's period."""
    if instance.state in (InstanceState.FROZEN, InstanceState.RELEASED):
        raise KooGalleryError(
            ResultCode.LICENSE_OUTSIDE_VALIDITY,
            f"instanceId: instance {instance.instance_id} is {instance.state}",
        )
    slack = timedelta(seconds=settings.LICENSE_VALIDITY_SLACK_S)
    if instance.order_created_at and effective_at < instance.order_created_at - slack:
        raise KooGalleryError(
            ResultCode.LICENSE_OUTSIDE_VALIDITY,
            f"effectiveTime: before the order was placed ({_iso(instance.order_created_at)})",
        )
    if instance.expire_at:
        if effective_at >= instance.expire_at:
            raise KooGalleryError(
                ResultCode.LICENSE_OUTSIDE_VALIDITY,
                f"effectiveTime: after the order expires ({_iso(instance.expire_at)})",
            )
        if expire_at is not None and expire_at > instance.expire_at + slack:
            raise KooGalleryError(
                ResultCode.LICENSE_OUTSIDE_VALIDITY,
                f"expireTime: after the order expires ({_iso(instance.expire_at)})",
            )


def _iso(moment: datetime) -> str:
    return tokens.format_time(moment)


def _repeat(request: LicenseRequest) -> LicenseRequest:
    """A repeated getLicenseAsync: nothing new is minted; pending work may be nudged."""
    if request.state == RequestState.FAILED:
        # KooGallery's manual restart (卖家中心 → 重新启动) repeats the call: try again.
        request = rearm_delivery(request_id=request.pk, cause="repeated getLicenseAsync")
    elif request.state in RequestState.pending() and _is_due(request, timezone.now()):
        # No worker touched it for a while (lost message, no beat on the embedded default):
        # KooGallery's own retries every 2 minutes then push it forward too.
        enqueue_on_commit(request.pk)
    return request


def _is_due(request: LicenseRequest, now: datetime) -> bool:
    grace = timedelta(seconds=settings.LICENSE_SWEEP_AFTER_S)
    if request.lease_until and request.lease_until > now:
        return False
    if request.next_attempt_at is not None:
        return request.next_attempt_at <= now - grace
    return request.updated_at <= now - grace


# --- enqueueing ----------------------------------------------------------------------------------


# A short publish retry: a broker that is down must not hold KooGallery's call (5 s).
_PUBLISH = {
    "retry": True,
    "retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
}


def enqueue_on_commit(request_id: int) -> None:
    """Have the request delivered once the current transaction commits (the worker must see the
    row): an outbox row, or a publish after the commit (koogallery/outbound/jobs.py)."""
    jobs.enqueue(DELIVER_LICENSE, request_id, options=_PUBLISH)


def enqueue_delivery(request_id: int) -> bool:
    """Send the delivery task now; False (logged) when the broker is unreachable.

    Never raises: the request row is already committed, and the sweep re-enqueues it.
    """
    try:
        jobs.publish(DELIVER_LICENSE, request_id, _PUBLISH)
    except Exception:
        logger.exception(
            "could not enqueue delivery of licence request %s; the sweep will pick it up",
            request_id,
        )
        return False
    return True


# --- 2. issuing and delivering --------------------------------------------------------------------


def retry_delay(attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: exponential, capped, with "equal jitter" (half
    fixed, half random) so that many failed uploads do not all come back at once."""
    base, cap = settings.LICENSE_RETRY_BASE_S, settings.LICENSE_RETRY_MAX_S
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not a secret


def retries_to_cover(window_s: float) -> int:
    """How many retries guarantee `window_s` seconds of trying even with the shortest jitter."""
    base, cap = settings.LICENSE_RETRY_BASE_S, settings.LICENSE_RETRY_MAX_S
    total, attempt = 0.0, 0
    while total < window_s:
        attempt += 1
        shortest = min(cap, base * 2 ** min(attempt - 1, 64)) / 2
        if shortest >= cap / 2:  # capped from here on: the rest is a division
            return attempt + max(0, math.ceil((window_s - total - shortest) / shortest))
        total += shortest
    return max(attempt, 1)


def issue_license(*, request_id: int) -> LicenseRequest:
    """Mint the request's licence if it has none (state received → issued).

    A missing or broken `LICENSE_SIGNING_KEY` leaves the request received, with the error and a
    next attempt time: fixing the key and waiting for the sweep is enough.
    """
    with transaction.atomic():
        request = (
            LicenseRequest.objects.select_for_update().select_related("instance").get(pk=request_id)
        )
        if request.state != RequestState.RECEIVED:
            return request
        if request.live_license is None:
            try:
                private_key = _signing_key()
            except tokens.SigningKeyError as exc:
                logger.error("cannot issue licence request %s: %s", request.pk, exc)
                request.last_error = f"issuance: {exc}"
                request.next_attempt_at = timezone.now() + timedelta(
                    seconds=retry_delay(request.attempt_count + 1)
                )
                request.save(update_fields=["last_error", "next_attempt_at", "updated_at"])
                return request
            _mint(request, private_key)
        request.state = RequestState.ISSUED
        request.next_attempt_at = None
        request.save(update_fields=["state", "next_attempt_at", "updated_at"])
    return request


_KEY_CACHE: dict[str, tokens.Ed25519PrivateKey] = {}


def _signing_key() -> tokens.Ed25519PrivateKey:
    value = settings.LICENSE_SIGNING_KEY
    if value not in _KEY_CACHE:
        _KEY_CACHE.clear()
        _KEY_CACHE[value] = tokens.load_private_key(value)
    return _KEY_CACHE[value]


def license_payload(request: LicenseRequest, license_id: uuid.UUID, issued_at: datetime) -> dict:
    """The claims of §2.8 (plus customer, product and SKU when the order told us them)."""
    instance = request.instance
    payload = {
        "v": tokens.TOKEN_VERSION,
        "lid": str(license_id),
        "iid": instance.instance_id,
        "eid": request.event_id,
        "fp": request.device_fingerprint,
        "nbf": tokens.format_time(request.effective_at),
        "iat": tokens.format_time(issued_at),
    }
    if request.expire_at is not None:
        payload["exp"] = tokens.format_time(request.expire_at)
    if request.is_test:
        payload["test"] = True
    for claim, value in (
        ("cid", instance.customer_id),
        ("pid", instance.product_id),
        ("sku", instance.sku_code),
    ):
        if value:
            payload[claim] = value
    return payload


def _mint(request: LicenseRequest, private_key: tokens.Ed25519PrivateKey) -> License:
    license_id = uuid.uuid4()
    issued_at = timezone.now().replace(microsecond=0)
    payload = license_payload(request, license_id, issued_at)
    return License.objects.create(
        id=license_id,
        request=request,
        token=tokens.sign(payload, private_key),
        payload=payload,
        key_id=tokens.key_id(private_key.public_key()),
        issued_at=issued_at,
    )


def claim_upload(*, request_id: int) -> tuple[LicenseRequest, License] | None:
    """Take the upload lease (issued → uploading); None when there is nothing to do now.

    Nothing to do: already final, another worker holds a live lease, or a retry is scheduled
    for later (a duplicate message must not shorten the backoff).
    """
    now = timezone.now()
    with transaction.atomic():
        request = LicenseRequest.objects.select_for_update().get(pk=request_id)
        if request.state not in (RequestState.ISSUED, RequestState.UPLOADING):
            return None
        if (
            request.state == RequestState.UPLOADING
            and request.lease_until
            and (request.lease_until > now)
        ):
            return None
        if request.next_attempt_at and request.next_attempt_at > now + DUE_TOLERANCE:
            return None
        license = request.live_license
        if license is None:  # revoked meanwhile by hand: issue again first
            request.state = RequestState.RECEIVED
            request.save(update_fields=["state", "updated_at"])
            return None
        request.state = RequestState.UPLOADING
        request.lease_until = now + timedelta(seconds=settings.LICENSE_UPLOAD_LEASE_S)
        request.next_attempt_at = None
        request.attempt_count += 1
        request.save(
            update_fields=["state", "lease_until", "next_attempt_at", "attempt_count", "updated_at"]
        )
    return request, license


def record_upload(
    *, request_id: int, license_id: uuid.UUID, ok: bool, retryable: bool, code: str, message: str
) -> LicenseRequest:
    """Apply one upload outcome: delivered, failed (business error), or issued with a retry."""
    now = timezone.now()
    with transaction.atomic():
        request = LicenseRequest.objects.select_for_update().get(pk=request_id)
        live = request.live_license
        if live is None or live.id != license_id or request.state in RequestState.final():
            # Revoked, re-issued or already settled while we were uploading: that wins.
            logger.info("licence request %s: stale upload outcome ignored", request.pk)
            return request
        request.lease_until = None
        if ok:
            request.state = RequestState.DELIVERED
            request.delivered_at = now
            request.failure_code = request.failure_message = request.last_error = ""
        elif not retryable:
            request.state = RequestState.FAILED
            request.failure_code = code[:32]
            request.failure_message = message[:1024]
            logger.error(
                "licence upload for event %s refused: %s %s", request.event_id, code, message
            )
        elif now - request.created_at > timedelta(seconds=settings.LICENSE_GIVE_UP_S):
            request.state = RequestState.FAILED
            request.failure_code = GAVE_UP
            request.failure_message = (
                f"transient failures for {settings.LICENSE_GIVE_UP_S} s over "
                f"{request.attempt_count} attempts; last: {code} {message}"
            )[:1024]
            logger.error("licence upload for event %s given up", request.event_id)
        else:
            request.state = RequestState.ISSUED
            request.last_error = f"{code} {message}".strip()
            request.next_attempt_at = now + timedelta(seconds=retry_delay(request.attempt_count))
        request.save()
    return request


def deliver_license(*, request_id: int) -> LicenseRequest:
    """Issue if needed, then upload once if due. Safe to run any number of times."""
    from koogallery.outbound import client as outbound

    request = issue_license(request_id=request_id)
    if request.state == RequestState.RECEIVED:
        return request  # issuance failed; next_attempt_at says when to try again
    claimed = claim_upload(request_id=request_id)
    if claimed is None:
        return LicenseRequest.objects.get(pk=request_id)
    request, license = claimed
    try:
        result = outbound.upload_license(
            event_id=request.event_id,
            token=license.token,
            file_name=f"license-{request.event_id}.lic",
        )
    except Exception as exc:
        # A bug or misconfiguration, not KooGallery's answer: keep the request and retry later.
        logger.exception("licence upload for event %s crashed", request.event_id)
        return record_upload(
            request_id=request_id,
            license_id=license.id,
            ok=False,
            retryable=True,
            code=type(exc).__name__,
            message=str(exc)[:500],
        )
    return record_upload(
        request_id=request_id,
        license_id=license.id,
        ok=result.ok,
        retryable=result.retryable,
        code=result.result_code or (f"HTTP {result.status_code}" if result.status_code else ""),
        message=result.result_msg,
    )


# --- 3. the sweep ---------------------------------------------------------------------------------


def sweep_due_requests(*, now: datetime | None = None) -> list[int]:
    """Re-enqueue requests stuck in a non-final state; returns their ids.

    Stuck = no live lease and past due by `LICENSE_SWEEP_AFTER_S`: never enqueued (broker down),
    message lost, worker killed mid-upload (lease expired), or a retry that never came. The
    request's `next_attempt_at` is set to now, so the next sweep waits another grace period
    instead of piling duplicate messages onto a busy queue.
    """
    from .selectors import due_request_ids

    now = now or timezone.now()
    ids = due_request_ids(now=now, limit=settings.LICENSE_SWEEP_BATCH)
    if not ids:
        return []
    with transaction.atomic():
        LicenseRequest.objects.filter(pk__in=ids, state__in=RequestState.pending()).update(
            next_attempt_at=now
        )
    sent = [pk for pk in ids if enqueue_delivery(pk)]
    logger.info("licence sweep: %d stuck request(s) re-enqueued", len(sent))
    return ids


# --- operator actions (admin) ---------------------------------------------------------------------


def rearm_delivery(*, request_id: int, cause: str) -> LicenseRequest:
    """Make a failed or stuck request deliverable now (failed → issued/received)."""
    with transaction.atomic():
        request = LicenseRequest.objects.select_for_update().get(pk=request_id)
        if request.state in (RequestState.DELIVERED, RequestState.REVOKED):
            return request
        if request.state == RequestState.FAILED:
            logger.info(
                "licence request %s re-armed (%s) after %s %s",
                request.pk,
                cause,
                request.failure_code,
                request.failure_message,
            )
            request.state = RequestState.ISSUED if request.live_license else RequestState.RECEIVED
            request.failure_code = request.failure_message = ""
        elif (
            request.state == RequestState.UPLOADING
            and request.lease_until
            and (request.lease_until > timezone.now())
        ):
            return request  # an upload is running right now
        elif request.state == RequestState.UPLOADING:
            request.state = RequestState.ISSUED
        request.next_attempt_at = None
        request.lease_until = None
        request.save()
    enqueue_on_commit(request.pk)
    return request


def revoke_license(*, request_id: int, reason: str) -> LicenseRequest:
    """Deliberately revoke the request's licence (any state → revoked); the row is kept."""
    with transaction.atomic():
        request = LicenseRequest.objects.select_for_update().get(pk=request_id)
        live = request.live_license
        if live is not None:
            live.revoked_at = timezone.now()
            live.revoke_reason = reason[:255]
            live.save(update_fields=["revoked_at", "revoke_reason"])
        request.state = RequestState.REVOKED
        request.lease_until = request.next_attempt_at = None
        request.save()
    logger.warning("licence request %s revoked: %s", request.pk, reason)
    return request


def reissue_license(*, request_id: int) -> LicenseRequest:
    """After a revoke: mint a new licence (new lid) and deliver it (revoked → received)."""
    with transaction.atomic():
        request = LicenseRequest.objects.select_for_update().get(pk=request_id)
        if request.state != RequestState.REVOKED:
            raise ValueError("only a revoked licence request can be re-issued; revoke it first")
        request.state = RequestState.RECEIVED
        request.failure_code = request.failure_message = request.last_error = ""
        request.delivered_at = request.next_attempt_at = request.lease_until = None
        request.save()
    enqueue_on_commit(request.pk)
    return request
