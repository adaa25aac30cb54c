"""Usage push (按需使用量推送, spec §5.5): the body, its signature, the call and its answer.

The protocol half of metering; what to push and when is the metering app's business. The body
is serialised once, keys sorted at every level with compact separators, and exactly those bytes
are signed and sent (§5.5 project decision: raw and "sorted naturally" are then the same):

    signature = base64(HMAC_SHA256(KOOGALLERY_BASIC_KEY[0], "ts={ts}&nonce={nonce}&body={body}"))

with headers `signature`, `ts` (Unix ms) and `nonce` (a UUID). APIG AK/SK signing is added on
top only when `KOOGALLERY_USAGE_APIG` is true (Huawei's pages disagree; default off).
"""

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings

from koogallery.outbound.attempts import OutboundPurpose
from koogallery.outbound.client import OutboundResult, call_api

USAGE_DATA_PATH = "/api/mkp-openapi-public/global/v1/isv/usage-data"
MAX_RECORDS = 1000  # `usage_records` ≤ 1000 (§5.5)
TIME_FORMAT = "%Y%m%dT%H%M%SZ"  # yyyyMMdd'T'HHmmss'Z', UTC
VALUE_MAX_LENGTH = 20  # usage_value String(20)
NO_KEY = "KOOGALLERY_BASIC_KEY not configured: the usage push is signed with its first key"


@dataclass(frozen=True)
class UsagePushRecord:
    """One UsagePushData of §5.5."""

    instance_id: str  # the on-demand instance, never a package instance
    record_time: datetime
    begin_time: datetime
    end_time: datetime
    usage_value: Decimal
    metering_sn: str
    relate_pkg_instance: str = ""

    def as_json(self) -> dict[str, str]:
        item = {
            "instance_id": self.instance_id,
            "record_time": usage_time(self.record_time),
            "begin_time": usage_time(self.begin_time),
            "end_time": usage_time(self.end_time),
            "usage_value": usage_value(self.usage_value),
            "metering_sn": self.metering_sn,
        }
        if self.relate_pkg_instance:
            item["relate_pkg_instance"] = self.relate_pkg_instance
        return item


@dataclass
class UsagePushResult:
    """The call's result and the records KooGallery listed as rejected (`abnormal_usage_data`).

    `abnormal` maps metering_sn → reason; `unmatched` counts listed entries naming no record of
    the batch (then nobody can tell which records were refused).
    """

    result: OutboundResult
    abnormal: dict[str, str] = field(default_factory=dict)
    unmatched: int = 0

    @property
    def ok(self) -> bool:
        return self.result.ok


def usage_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def usage_value(value: Decimal) -> str:
    """A decimal string, at most 4 decimals, no exponent, no trailing zeros: "99", "0.5"."""
    text = format(value.quantize(Decimal("0.0001")).normalize(), "f")
    if len(text) > VALUE_MAX_LENGTH:
        raise ValueError(f"usage_value {text} longer than {VALUE_MAX_LENGTH} characters")
    return text


def usage_body(records: Sequence[UsagePushRecord]) -> bytes:
    """The exact bytes signed and sent: keys sorted at every level, compact, UTF-8."""
    if not 1 <= len(records) <= MAX_RECORDS:
        raise ValueError(f"a usage push carries 1 to {MAX_RECORDS} records, got {len(records)}")
    payload = {"usage_records": [record.as_json() for record in records]}
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def usage_signature(key: str, ts: str, nonce: str, body: bytes) -> str:
    """base64(HMAC_SHA256(key, "ts={ts}&nonce={nonce}&body={body}")) (§5.5)."""
    message = f"ts={ts}&nonce={nonce}&body=".encode() + body
    digest = hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def push_usage(*, records: Sequence[UsagePushRecord], subject: str) -> UsagePushResult:
    """POST the records to the usage-data API (§5.5); one `OutboundAttempt` row per attempt.

    Must run outside `transaction.atomic` (see koogallery.outbound.client). Never raises for HTTP or
    business failures: classify with `result.ok` / `result.retryable` / `result.result_code`.
    """
    body = usage_body(records)
    keys = list(settings.KOOGALLERY_BASIC_KEY)
    if not keys:
        return UsagePushResult(OutboundResult(False, False, None, "", NO_KEY, None))
    ts = str(int(time.time() * 1000))
    nonce = str(uuid.uuid4())
    result = call_api(
        purpose=OutboundPurpose.USAGE_PUSH,
        subject=subject,
        method="POST",
        path=USAGE_DATA_PATH,
        raw_body=body,
        headers={
            "Content-Type": "application/json",
            "signature": usage_signature(keys[0], ts, nonce, body),
            "ts": ts,
            "nonce": nonce,
        },
        apig=settings.KOOGALLERY_USAGE_APIG,
    )
    abnormal, unmatched = _abnormal_records(result.data, records)
    return UsagePushResult(result, abnormal, unmatched)


def _abnormal_records(
    data: dict | None, records: Sequence[UsagePushRecord]
) -> tuple[dict[str, str], int]:
    """`abnormal_usage_data` (§5.5, shape undocumented): entries naming a metering_sn, or an
    instance and begin_time, or bare metering_sn strings; at the top or under `data`."""
    if not isinstance(data, dict):
        return {}, 0
    listed: Any = data.get("abnormal_usage_data")
    if listed is None and isinstance(data.get("data"), dict):
        listed = data["data"].get("abnormal_usage_data")
    if not isinstance(listed, list):
        return {}, 0
    by_sn = {r.metering_sn for r in records}
    by_period = {(r.instance_id, usage_time(r.begin_time)): r.metering_sn for r in records}
    abnormal: dict[str, str] = {}
    unmatched = 0
    for entry in listed:
        sn, reason = _abnormal_entry(entry)
        if sn not in by_sn and isinstance(entry, dict):
            sn = by_period.get((str(entry.get("instance_id")), str(entry.get("begin_time"))), "")
        if sn in by_sn:
            abnormal[sn] = reason or "listed in abnormal_usage_data"
        else:
            unmatched += 1
    return abnormal, unmatched


def _abnormal_entry(entry: Any) -> tuple[str, str]:
    if isinstance(entry, str):
        return entry, ""
    if not isinstance(entry, dict):
        return "", ""
    sn = str(entry.get("metering_sn") or entry.get("meteringSn") or "")
    code = entry.get("error_code") or entry.get("errorCode") or entry.get("code") or ""
    message = (
        entry.get("error_msg")
        or entry.get("errorMsg")
        or entry.get("reason")
        or entry.get("message")
        or ""
    )
    reason = " ".join(str(x) for x in (code, message) if x)
    return sn, reason[:1000]
