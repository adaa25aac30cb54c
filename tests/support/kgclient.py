"""Sends calls exactly as KooGallery does: signed, with its headers and quirks (STYLE.md §5).

Tests use `sign_*` from `koogallery.protocol.signing` — the same functions the server verifies with
— so
a change to the algorithm shows up against the spec's vectors in test_signing.py, not here.
"""

import json
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.test import Client

from koogallery.protocol import signing
from koogallery.protocol.resultcodes import ResultCode

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "koogallery"


def fixture(name: str) -> str:
    """The raw text of `tests/fixtures/koogallery/<name>.json` (kept byte for byte)."""
    return (FIXTURES / f"{name}.json").read_text(encoding="utf-8")


def fixture_json(name: str, **overrides: Any) -> dict:
    body = json.loads(fixture(name))
    body.update(overrides)
    return body


def now_ms() -> str:
    return str(int(time.time() * 1000))


_last_v1_ms = 0


def v1_time_stamp() -> str:
    """A V1 GET `timeStamp` (UTC `yyyyMMddHHmmssSSS`): each call its own, as KooGallery stamps
    them, so two calls are never taken for one sent twice (a V1 replay, spec §2.3)."""
    global _last_v1_ms
    _last_v1_ms = max(int(time.time() * 1000), _last_v1_ms + 1)
    seconds, millis = divmod(_last_v1_ms, 1000)
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(seconds)) + f"{millis:03d}"


# Milliseconds since the epoch of the last kit time handed out; see `kit_timestamp`.
_last_kit_time = [0]
KIT_EPOCH = datetime(1970, 1, 1)


def kit_timestamp() -> str:
    """A kit `timeStamp` (UTC+8 `yyyyMMddHHmmssSSS`, §4.1) later than every one handed out
    before in this process: KooGallery's calls carry their time, and a call older than the
    last one to write an entity is skipped (§2.3), so tests that expect each call to apply
    send increasing times, as KooGallery does."""
    millis = _last_kit_time[0] = max(_last_kit_time[0] + 1, int(time.time() * 1000))
    moment = KIT_EPOCH + timedelta(milliseconds=millis, hours=8)
    return moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}"


def to_bytes(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


class KooGallery:
    """A test client speaking for KooGallery. Every call returns the Django test response."""

    content_type = "application/json;charset=utf8"

    def __init__(self, client: Client | None = None):
        self.client = client or Client()

    # --- kit V2 (§3.1) ------------------------------------------------------------------------
    def kit(
        self,
        name: str,
        body: Any,
        *,
        key: str | None = None,
        nonce: str | None = None,
        timestamp: str | None = None,
        sign: str | None = None,
        headers: dict | None = None,
        content_type: str | None = None,
        path: str | None = None,
    ):
        raw = to_bytes(body)
        key = key or settings.KOOGALLERY_KIT_KEY[0]
        nonce = uuid.uuid4().hex.upper() if nonce is None else nonce
        timestamp = now_ms() if timestamp is None else timestamp
        if sign is None:
            sign = signing.kit_sign(key, nonce, timestamp, raw).upper()
        hdrs = {"x-sign": sign, "x-timestamp": timestamp, "x-nonce": nonce}
        hdrs.update(headers or {})
        hdrs = {k: v for k, v in hdrs.items() if v is not None}
        return self.client.post(
            path or f"/koogallery/produceAPI/v2/{name}",
            data=raw,
            content_type=content_type or self.content_type,
            headers=hdrs,
        )

    # --- kit V1 (§3.3) ------------------------------------------------------------------------
    def kit_v1(self, name: str, body: Any, *, key: str | None = None, token: str | None = None):
        raw = to_bytes(body)
        key = key or settings.KOOGALLERY_KIT_KEY[0]
        if token is None:
            token = signing.v1_auth_token(key, json.loads(raw))
        headers = {"authToken": token} if token else {}
        return self.client.post(
            f"/koogallery/produceAPI/{name}",
            data=raw,
            content_type=self.content_type,
            headers=headers,
        )

    # --- basic V2 (§3.2) ----------------------------------------------------------------------
    def basic(
        self,
        body: Any,
        *,
        key: str | None = None,
        nonce: str | None = None,
        timestamp: str | None = None,
        signature: str | None = None,
        content_type: str | None = None,
        path: str = "/koogallery",
    ):
        raw = to_bytes(body)
        key = key or settings.KOOGALLERY_BASIC_KEY[0]
        nonce = uuid.uuid4().hex.upper() if nonce is None else nonce
        timestamp = now_ms() if timestamp is None else timestamp
        if signature is None:
            signature = signing.basic_sign(key, nonce, timestamp, raw).upper()
        query = {"signature": signature, "timestamp": timestamp, "nonce": nonce}
        query = {k: v for k, v in query.items() if v}
        return self.client.post(
            f"{path}?{urlencode(query)}", data=raw, content_type=content_type or self.content_type
        )

    # --- basic V1 GET (§4.4) ------------------------------------------------------------------
    def basic_v1(self, params: dict, *, key: str | None = None, token: str | None = None):
        params = {k: str(v) for k, v in params.items()}
        params.setdefault("timeStamp", v1_time_stamp())
        key = key or settings.KOOGALLERY_BASIC_KEY[0]
        if token is None:
            token = signing.v1_auth_token(key, params)
        query = dict(params)
        if token:
            query["authToken"] = token
        return self.client.get(f"/koogallery?{urlencode(query)}")


def envelope(response) -> dict:
    """The JSON envelope, after checking the rules every answer obeys (spec §2.4): `resultMsg`
    is the code's meaning (§6.1), then, after ": ", what exactly was wrong."""
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"] == "application/json;charset=UTF-8"
    body = json.loads(response.content)
    assert list(body)[:2] == ["resultCode", "resultMsg"], body
    label = ResultCode(body["resultCode"]).label
    assert body["resultMsg"] == label or body["resultMsg"].startswith(f"{label}: "), body
    return body


def reason(body: dict) -> str:
    """What a refusal's `resultMsg` says after the code's meaning ("" when nothing more)."""
    return body["resultMsg"].partition(": ")[2]
