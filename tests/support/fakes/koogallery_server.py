"""A fake KooGallery open-API host on loopback, for tests of outbound calls (spec §3.7, §5, §6.2).

It is a real HTTP server (``ThreadingHTTPServer`` on ``127.0.0.1``, port 0, in a background
thread): requests go through the real HTTP client, nothing is patched. Like Huawei's API gateway
it verifies the APIG ``SDK-HMAC-SHA256`` signature of every request (§3.7) with ITS OWN AK/SK —
captured from settings when the fixture starts, so changing ``settings.KOOGALLERY_SK`` afterwards
simulates a merchant with a wrong key — and answers ``401 {"error_code":"APIG.0301",…}`` on a
mismatch (``APIG.0303`` when ``X-Sdk-Date`` is more than 15 minutes off). The signature is
recomputed here independently of ``koogallery.protocol.apig`` so that a bug there shows up.

Fixture (registered for the whole suite by ``pytest_plugins`` in tests/conftest.py)::

    def test_something(db, fake_koogallery):
        # settings.KOOGALLERY_API_BASE     -> fake_koogallery.url           ("primary")
        # settings.KOOGALLERY_API_FALLBACK -> fake_koogallery.fallback.url  ("fallback")
        # settings.KOOGALLERY_API_TIMEOUT_S = 1.0 (so "timeout" costs 1 s, not 10)
        result = query_order(order_id="MOCKPERIODYEARNEW")
        assert fake_koogallery.requests[0].query == {"orderId": "MOCKPERIODYEARNEW"}

Scripting answers: each route has a name and a queue; queued answers are used first (after the
signature check), then the route's default handler::

    fake_koogallery.script("query_order", 503)                                # status only
    fake_koogallery.script("query_order", (500, {"resultCode": "MKT.0999"}))  # status + JSON
    fake_koogallery.script("market_event", "timeout", "close")  # hang past the timeout; drop
    fake_koogallery.script("v1/license/activate", Reply(200, {"error_code": "92020003"}))
    fake_koogallery.script("usage_data", lambda fake, req, match: Reply(200, {...}))
    fake_koogallery.fallback.script("query_order", 502)  # the fallback host has its own queue

Routes (name → path under ``/api/mkp-openapi-public/global/``) and default answers:

- ``query_order`` GET ``v1/order/query``: registered orders (``register_order``), else Huawei's
  captured mock answer (§5.1) shaped for any ``MOCK*`` id (see ``MOCK_ORDERS``), else
  ``400 MKT.0101``. ``orderLineId`` narrows the lines (unknown line → ``400 MKT.0101``).
- ``market_event`` POST ``v1/market-event/{event_id}/file``: checks the ``isvUpdateFileReq``
  part (and for ``FILE`` the ``file`` part and its sha256), stores it in ``uploads[event_id]``
  (every upload also in ``upload_history``), answers ``{"error_code":"CBC.0000",…}``.
- ``v1/license/activate``, ``v2/license/activate``, ``v1/license/heartbeat``,
  ``v2/license/heartbeat``, ``v2/license/software-usage-info`` (§5.4): a small licence-code
  model in ``licences`` (``register_licence``); unknown codes activate fine, a second activation
  answers ``92020003`` as Huawei does; heartbeat of a never-activated code answers ``92020011``.
- ``usage_data`` POST ``v1/isv/usage-data`` (§5.5): verifies the ``signature``/``ts``/``nonce``
  headers with the first basic key (APIG only if an ``Authorization`` header is sent), checks
  each record's fields (``400 MKT.0101`` naming the first bad one), stores the records in
  ``usage_records`` and answers ``MKT.0000``; a record repeating an instance's
  (begin_time, end_time) is a duplicate Huawei ignores: kept in ``usage_duplicates`` only.
  Extend with ``add_route`` or replace its default with ``set_default("usage_data", handler)``.

Every request is recorded (``requests`` per host, ``all_requests`` across both) as a
``RecordedRequest`` with method, path, query, headers, raw body, parsed JSON, multipart parts,
the route name, whether the signature verified and the status answered. Both hosts share one
``Marketplace`` state (orders, uploads, licences, usage), as .com and .cn share Huawei's backend.

Outside pytest::

    with FakeKooGallery(ak="AK", sk="SK") as fake:
        ...  # fake.url
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import ssl
import threading
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import pytest

API_PREFIX = "/api/mkp-openapi-public/global/"
APIG_DATE_TOLERANCE = timedelta(minutes=15)  # §3.7 step 1

# --- answers --------------------------------------------------------------------------------------


@dataclass
class Reply:
    """A canned answer: `status` with `json` (serialised) or raw `body`; optional headers."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[bytes, str]:
        if self.body is not None:
            return self.body, self.headers.get("Content-Type", "text/plain;charset=UTF-8")
        payload = {} if self.json is None else self.json
        return json.dumps(payload, ensure_ascii=False).encode("utf-8"), "application/json"


TIMEOUT = "timeout"  # hang longer than the client's timeout, then answer nothing
CLOSE = "close"  # drop the connection without an answer

Handler = Callable[["FakeKooGallery", "RecordedRequest", re.Match], "Reply | str"]


def error(status: int, code: str, msg: str, key: str = "error_code") -> Reply:
    """An error answer; `key` is "error_code" (CBC/gateway/licence) or "resultCode" (MKT)."""
    msg_key = "error_msg" if key == "error_code" else "resultMsg"
    return Reply(status, {key: code, msg_key: msg})


def _default_reply_for_status(status: int) -> Reply:
    if status >= 500:
        return error(status, "MKT.0999", "System internal error")
    if status == 200:
        return Reply(200, {"resultCode": "MKT.0000", "resultMsg": "Success"})
    return error(status, "CBC.0199", "Request parameter error")


# --- recorded requests ----------------------------------------------------------------------------


@dataclass
class Part:
    """One multipart/form-data part as received."""

    name: str
    filename: str | None
    content_type: str
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class RecordedRequest:
    server: str
    method: str
    path: str
    raw_query: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    route: str = ""
    json: Any = None
    parts: list[Part] = field(default_factory=list)
    verified: bool | None = None  # None: route does not check APIG (e.g. usage_data w/o AuthZ)
    verify_error: str = ""
    status: int | None = None  # answered status; None for "timeout"/"close"
    behaviour: str = ""  # "timeout" / "close" when scripted so

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == name), default)

    def part(self, name: str) -> Part | None:
        return next((p for p in self.parts if p.name == name), None)


@dataclass
class Upload:
    event_id: str
    type: str
    characters: str | None = None
    file_name: str | None = None
    content: bytes | None = None
    sha256: str | None = None

    @property
    def token(self) -> str:
        """The uploaded licence token, whichever way it came."""
        if self.type == "CHARACTERS":
            return self.characters or ""
        return (self.content or b"").decode("utf-8")


# --- the shared backend state ---------------------------------------------------------------------


MOCK_PRODUCT_ID = "OFFI846204237451911168"
MOCK_SKU = "0a4d1578-5295-46a7-92d4-7c803dccc51d"
# Huawei's captured answer for MOCKPERIODYEARNEW, verbatim (§5.1); the others are shaped from it.
CAPTURED_MOCK_ANSWER = {
    "resultCode": "MKT.0000",
    "resultMsg": "Success",
    "orderInfo": {
        "orderId": "MOCKPERIODYEARNEW",
        "orderType": "NEW",
        "createTime": "20241121090846",
        "orderLine": [
            {
                "orderLineId": "MOCKPERIODYEARNEW-000001",
                "chargingMode": "PERIOD",
                "periodType": "year",
                "periodNumber": 1,
                "expireTime": "20251121235959",
                "productInfo": [
                    {
                        "productId": MOCK_PRODUCT_ID,
                        "skuCode": MOCK_SKU,
                        "linearValue": 50,
                        "productName": "MOCK测试商品,测试规格,基础版,包周期",
                    }
                ],
                "extendParams": [
                    {"name": "emailDomainName", "value": "test.xxxx.com"},
                    {"name": "ip", "value": "127.0.0.1"},
                ],
                "currency": "100",
                "currencyAfterDiscount": "100",
            }
        ],
        "buyerInfo": {
            "mobilePhone": "18688888888",
            "email": None,
            "customerId": "459bbbec25d24749b2eb83be37b602a8",
            "customerName": "mock_user_01",
            "customerRealName": "测试用户1",
            "customerType": 0,
            "userId": None,
            "userName": None,
        },
        "extendParams": [],
    },
}

# Mock order id → (orderType, chargingMode, periodType, periodNumber, expireTime, linearValue).
# Only MOCKPERIODYEARNEW is captured; the other shapes are our plausible guesses (§5.1 names them).
MOCK_ORDERS: dict[str, tuple[str, str, str | None, int | None, str | None, int]] = {
    "MOCKPERIODYEARNEW": ("NEW", "PERIOD", "year", 1, "20251121235959", 50),
    "MOCKONETIMENEW": ("NEW", "ONE_TIME", None, None, None, 1),
    "MOCKONDEMAND": ("NEW", "ON_DEMAND", None, None, None, 1),
    "MOCKONDEMANDPKG": ("NEW", "ON_DEMAND_PKG", "year", 1, "20251121235959", 1000),
    "MOCKPERIODDAYTRIAL": ("TRIAL", "PERIOD", "day", 7, "20241128235959", 5),
    "MOCKMONTYTRIALTOFORMAL": ("TRIAL_TO_FORMAL", "PERIOD", "month", 1, "20241221235959", 50),
    "MOCKMONTYUNSUBSCRIBE": ("UNSUBSCRIBE", "PERIOD", "month", 1, "20241221235959", 50),
    "MOCKMONTYRENEW": ("RENEW", "PERIOD", "month", 1, "20250121235959", 50),
    "MOCKMONTYCHANGE": ("CHANGE", "PERIOD", "month", 1, "20241221235959", 100),
}


def mock_order_answer(order_id: str) -> dict:
    """Huawei's captured answer (§5.1) reshaped for `order_id` (any `MOCK*` id; unknown MOCK ids
    look like MOCKPERIODYEARNEW). Line id `<order_id>-000001`."""
    order_type, mode, period_type, period_number, expire, linear = MOCK_ORDERS.get(
        order_id, MOCK_ORDERS["MOCKPERIODYEARNEW"]
    )
    answer = copy.deepcopy(CAPTURED_MOCK_ANSWER)
    info = answer["orderInfo"]
    info["orderId"] = order_id
    info["orderType"] = order_type
    line = info["orderLine"][0]
    line["orderLineId"] = f"{order_id}-000001"
    line["chargingMode"] = mode
    for key, value in (("periodType", period_type), ("periodNumber", period_number)):
        if value is None:
            line.pop(key)
        else:
            line[key] = value
    if expire is None:
        line.pop("expireTime")
    else:
        line["expireTime"] = expire
    line["productInfo"][0]["linearValue"] = linear
    return answer


class Marketplace:
    """What both fake hosts know: orders, uploads, licence codes, usage records, all requests."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.orders: dict[str, dict] = {}
        self.uploads: dict[str, Upload] = {}
        self.upload_history: list[Upload] = []
        self.licences: dict[str, dict] = {}
        self.software_usage: list[dict] = []
        self.usage_records: list[dict] = []
        # §5.5: a second record for the same instance and (begin_time, end_time) is a duplicate;
        # only the first counts. Accepted periods → metering_sn; refused twins listed here.
        self.usage_periods: dict[tuple[str, str, str], str] = {}
        self.usage_duplicates: list[dict] = []
        self.requests: list[RecordedRequest] = []


# --- signature checks -----------------------------------------------------------------------------


def _rfc3986(value: str) -> str:
    return quote(value, safe="~")


def apig_canonical_request(
    method: str, path: str, raw_query: str, headers: dict[str, str], names: list[str], body: bytes
) -> str:
    """§3.7 step 2, written from the spec (independently of koogallery.protocol.apig)."""
    # Decoded first, then split, as Huawei's signers do (an encoded "/" becomes a separator).
    uri = "/".join(_rfc3986(segment) for segment in unquote(path).split("/"))
    if not uri.endswith("/"):
        uri += "/"
    pairs = []
    for item in raw_query.split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append((_rfc3986(unquote(name)), _rfc3986(unquote(value))))
    query = "&".join(f"{n}={v}" for n, v in sorted(pairs))
    lower = {k.lower(): v for k, v in headers.items()}
    header_lines = "".join(f"{n}:{lower.get(n, '').strip()}\n" for n in names)
    content_sha = lower.get("x-sdk-content-sha256", "").strip()
    body_hash = (
        content_sha if content_sha == "UNSIGNED-PAYLOAD" else hashlib.sha256(body).hexdigest()
    )
    return "\n".join([method, uri, query, header_lines, ";".join(names), body_hash])


AUTH_RE = re.compile(
    r"^SDK-HMAC-SHA256\s+Access=(?P<ak>[^,\s]+),\s*SignedHeaders=(?P<names>[^,\s]+),"
    r"\s*Signature=(?P<sig>[0-9a-fA-F]+)$"
)


def verify_apig(request: RecordedRequest, ak: str, sk: str, own_host: str) -> tuple[str, str]:
    """('', '') when the request is signed like the gateway expects, else (code, message)."""
    auth = request.header("Authorization") or ""
    match = AUTH_RE.match(auth.strip())
    if not match:
        return "APIG.0301", "Incorrect IAM authentication information: Authorization malformed"
    names = match["names"].split(";")
    if "host" not in names or "x-sdk-date" not in names or names != sorted(set(names)):
        return "APIG.0301", "Incorrect IAM authentication information: SignedHeaders invalid"
    if match["ak"] != ak:
        return "APIG.0301", "Incorrect IAM authentication information: AK not found"
    if (request.header("Host") or "") != own_host:
        # The gateway reached under this name verifies against it: a request signed for the
        # other host (not re-signed on fallback) fails here.
        return "APIG.0301", "Incorrect IAM authentication information: verify aksk signature fail"
    sdk_date = (request.header("X-Sdk-Date") or "").strip()
    try:
        signed_at = datetime.strptime(sdk_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "APIG.0301", "Incorrect IAM authentication information: x-sdk-date invalid"
    canonical = apig_canonical_request(
        request.method, request.path, request.raw_query, request.headers, names, request.body
    )
    to_sign = (
        f"SDK-HMAC-SHA256\n{sdk_date}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"
    )
    expected = hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match["sig"].lower()):
        return (
            "APIG.0301",
            "Incorrect IAM authentication information: verify aksk signature fail, "
            f"canonicalRequest: {canonical!r}",
        )
    if abs(datetime.now(UTC) - signed_at) > APIG_DATE_TOLERANCE:
        return "APIG.0303", "Incorrect app authentication information: signature expired"
    return "", ""


def usage_signature(key: str, ts: str, nonce: str, body: bytes) -> str:
    """§5.5: base64(HMAC_SHA256(key, "ts={ts}&nonce={nonce}&body={body}"))."""
    message = f"ts={ts}&nonce={nonce}&body=".encode() + body
    return base64.b64encode(hmac.new(key.encode(), message, hashlib.sha256).digest()).decode()


# --- multipart ------------------------------------------------------------------------------------


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    """multipart/form-data parts, byte-exact (no line-ending or charset rewriting)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type or "")
    if not content_type.lower().startswith("multipart/form-data") or not match:
        return []
    delimiter = b"--" + match.group(1).encode("latin-1")
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n").removesuffix(b"\r\n")
        head, _, data = chunk.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        parts.append(
            Part(
                name=name.group(1) if name else "",
                filename=filename.group(1) if filename else None,
                content_type=headers.get("content-type", ""),
                data=data,
            )
        )
    return parts


# --- default route handlers -----------------------------------------------------------------------


def handle_query_order(fake: FakeKooGallery, request: RecordedRequest, match: re.Match) -> Reply:
    order_id = request.query.get("orderId", "")
    line_id = request.query.get("orderLineId")
    if not order_id:
        return error(400, "MKT.0101", "Invalid parameter: orderId", key="resultCode")
    with fake.market.lock:
        answer = copy.deepcopy(fake.market.orders.get(order_id))
    if answer is None and order_id.startswith("MOCK"):
        answer = mock_order_answer(order_id)
    if answer is None:
        return error(
            400, "MKT.0101", f"Invalid parameter: order {order_id} not found", "resultCode"
        )
    if line_id:
        info = answer.get("orderInfo") or {}
        lines = [x for x in info.get("orderLine") or [] if x.get("orderLineId") == line_id]
        if not lines:
            return error(400, "MKT.0101", f"Invalid parameter: orderLineId {line_id}", "resultCode")
        info["orderLine"] = lines
    return Reply(200, answer)


def handle_market_event(fake: FakeKooGallery, request: RecordedRequest, match: re.Match) -> Reply:
    """§5.2: part `isvUpdateFileReq` (JSON) + part `file` for FILE with a matching sha256."""
    event_id = unquote(match["event_id"])
    meta_part = request.part("isvUpdateFileReq")
    if meta_part is None:
        return error(400, "CBC.0101", "Invalid parameter: isvUpdateFileReq missing")
    try:
        meta = meta_part.json()
    except ValueError:
        return error(400, "CBC.0101", "Invalid parameter: isvUpdateFileReq is not JSON")
    kind = meta.get("type")
    if kind == "CHARACTERS":
        characters = meta.get("characters")
        if not isinstance(characters, str) or not characters or len(characters) > 1024:
            return error(400, "CBC.0101", "Invalid parameter: characters")
        upload = Upload(event_id, kind, characters=characters)
    elif kind == "FILE":
        file_part = request.part("file")
        if file_part is None or not meta.get("file_name") or not meta.get("sha256"):
            return error(400, "CBC.0101", "Invalid parameter: file, file_name and sha256 required")
        if hashlib.sha256(file_part.data).hexdigest() != meta["sha256"]:
            return error(400, "CBC.0101", "Invalid parameter: sha256 does not match the file")
        upload = Upload(
            event_id,
            kind,
            file_name=meta["file_name"],
            content=file_part.data,
            sha256=meta["sha256"],
        )
    else:
        return error(400, "CBC.0101", "Invalid parameter: type")
    with fake.market.lock:
        fake.market.uploads[event_id] = upload
        fake.market.upload_history.append(upload)
    return Reply(200, {"error_code": "CBC.0000", "error_msg": "success"})


def _licence_json(request: RecordedRequest) -> tuple[dict | None, Reply | None]:
    content_type = (request.header("Content-Type") or "").lower()
    if not content_type.startswith("application/json"):
        return None, error(415, "95000003", "content type not JSON")
    if not isinstance(request.json, dict):
        return None, error(400, "95000004", "body not readable")
    return request.json, None


def _ok(data: Any = None) -> Reply:
    body = {"error_code": "92020000", "error_msg": "success"}
    if data is not None:
        body["data"] = data
    return Reply(200, body)


def _activate(fake: FakeKooGallery, code: str) -> dict | None:
    """Activate `code` (None when it is already active: 92020003)."""
    with fake.market.lock:
        licence = fake.market.licences.get(code)
        if licence is not None and licence.get("activate_time"):
            return None
        licence = licence or fake.new_licence(code)
        licence["status"] = "ALIVE"
        licence["activate_time"] = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        fake.market.licences[code] = licence
        return dict(licence)


def handle_license_activate_v1(fake, request, match) -> Reply:
    body, failure = _licence_json(request)
    if failure:
        return failure
    code = body.get("license")
    if not isinstance(code, str) or not code or len(code) > 64:
        return error(200, "92020002", "invalid param: license")
    licence = _activate(fake, code)
    if licence is None:
        return error(200, "92020003", "illegal state: the licence code is already activated")
    info = {k: licence[k] for k in ("status", "expire_time", "product_id", "amount", "order_id")}
    return _ok({"license_code_info": json.dumps(info, separators=(",", ":"))})


def handle_license_activate_v2(fake, request, match) -> Reply:
    body, failure = _licence_json(request)
    if failure:
        return failure
    codes = body.get("license_list")
    if not isinstance(codes, list) or not codes or len(codes) > 100:
        return error(200, "92020002", "invalid param: license_list")
    with fake.market.lock:
        if any(fake.market.licences.get(c, {}).get("activate_time") for c in codes):
            return error(200, "92020020", "a batch holds an invalid code")
        for code in codes:
            _activate(fake, code)
    return _ok()


def _heartbeat_one(fake: FakeKooGallery, code: str) -> dict | None:
    with fake.market.lock:
        licence = fake.market.licences.get(code)
        if licence is None or not licence.get("activate_time"):
            return None
        return {
            "license_code": code,
            "status": licence["status"],
            "activate_time": licence["activate_time"],
            "expire_time": licence["expire_time"],
        }


def handle_license_heartbeat_v1(fake, request, match) -> Reply:
    body, failure = _licence_json(request)
    if failure:
        return failure
    code = body.get("license")
    if not isinstance(code, str) or not code:
        return error(200, "92020002", "invalid param: license")
    data = _heartbeat_one(fake, code)
    if data is None:
        return error(200, "92020011", "the licence code is not activated")
    return _ok(data)


def handle_license_heartbeat_v2(fake, request, match) -> Reply:
    body, failure = _licence_json(request)
    if failure:
        return failure
    codes = body.get("license")
    if isinstance(codes, str):
        codes = [codes]
    if not isinstance(codes, list) or not codes or len(codes) > 100:
        return error(200, "92020002", "invalid param: license")
    rows = [_heartbeat_one(fake, code) for code in codes]
    if any(row is None for row in rows):
        return error(200, "92020011", "the licence code is not activated")
    return _ok(rows)


def handle_software_usage(fake, request, match) -> Reply:
    body, failure = _licence_json(request)
    if failure:
        return failure
    usage = body.get("usage_info")
    if not isinstance(usage, list) or not usage or len(usage) > 100:
        return error(200, "92020002", "invalid param: usage_info")
    for item in usage:
        entries = item.get("software_usage_Info") if isinstance(item, dict) else None
        if not item.get("license") or not isinstance(entries, list) or not entries:
            return error(200, "92020002", "invalid param: usage_info")
        if any(
            not isinstance(e, dict) or len({"id", "active_num"} & e.keys()) != 1 for e in entries
        ):
            return error(200, "92020002", "invalid param: software_usage_Info")
    with fake.market.lock:
        fake.market.software_usage.extend(usage)
    return _ok()


def handle_usage_data(fake: FakeKooGallery, request: RecordedRequest, match: re.Match) -> Reply:
    """§5.5, minimal: signature headers, record count, store. Extend as the usage push grows."""
    ts, nonce, signature = (request.header(h) for h in ("ts", "nonce", "signature"))
    if not (ts and nonce and signature) or not fake.usage_key:
        return error(400, "MKT.0102", "body signature invalid")
    expected = usage_signature(fake.usage_key, ts, nonce, request.body)
    if not hmac.compare_digest(expected, signature):
        return error(400, "MKT.0102", "body signature invalid")
    records = request.json.get("usage_records") if isinstance(request.json, dict) else None
    if not isinstance(records, list) or not records:
        return error(400, "MKT.0101", "invalid parameter: usage_records")
    if len(records) > 1000:
        return error(500, "MKT.9003", "Usage records extends size limit.")
    for index, record in enumerate(records):
        problem = usage_record_problem(record)
        if problem:
            return error(400, "MKT.0101", f"invalid parameter: usage_records[{index}].{problem}")
    with fake.market.lock:
        for record in records:
            period = (record["instance_id"], record["begin_time"], record["end_time"])
            if period in fake.market.usage_periods:
                fake.market.usage_duplicates.append(record)
                continue
            fake.market.usage_periods[period] = record["metering_sn"]
            fake.market.usage_records.append(record)
    return Reply(200, {"error_code": "MKT.0000", "error_msg": "success"})


USAGE_TIME_RE = re.compile(r"^\d{8}T\d{6}Z$")
USAGE_VALUE_RE = re.compile(r"^\d{1,15}(\.\d{1,4})?$")


def usage_record_problem(record: Any) -> str:
    """The first §5.5 rule a UsagePushData breaks ('' if none), as Huawei would check it."""
    if not isinstance(record, dict):
        return "not an object"
    for name, limit in (("instance_id", 64), ("metering_sn", 64), ("relate_pkg_instance", 64)):
        value = record.get(name)
        if name == "relate_pkg_instance" and value is None:
            continue
        if not isinstance(value, str) or not value or len(value) > limit:
            return name
    times = {}
    for name in ("record_time", "begin_time", "end_time"):
        value = record.get(name)
        if not isinstance(value, str) or not USAGE_TIME_RE.match(value):
            return name
        try:
            times[name] = datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return name
    value = record.get("usage_value")
    if not isinstance(value, str) or not USAGE_VALUE_RE.match(value) or float(value) <= 0:
        return "usage_value"
    if times["begin_time"] > times["end_time"]:
        return "begin_time"
    if times["end_time"] > datetime.now(UTC) + timedelta(minutes=5):
        return "end_time"
    return ""


@dataclass
class Route:
    name: str
    method: str
    pattern: re.Pattern
    handler: Handler
    verify: str = "apig"  # "apig": always; "optional": APIG only when Authorization is sent; ""


DEFAULT_ROUTES = [
    ("query_order", "GET", r"v1/order/query", handle_query_order, "apig"),
    (
        "market_event",
        "POST",
        r"v1/market-event/(?P<event_id>[^/]+)/file",
        handle_market_event,
        "apig",
    ),
    ("v1/license/activate", "POST", r"v1/license/activate", handle_license_activate_v1, "apig"),
    ("v2/license/activate", "POST", r"v2/license/activate", handle_license_activate_v2, "apig"),
    ("v1/license/heartbeat", "POST", r"v1/license/heartbeat", handle_license_heartbeat_v1, "apig"),
    ("v2/license/heartbeat", "POST", r"v2/license/heartbeat", handle_license_heartbeat_v2, "apig"),
    (
        "v2/license/software-usage-info",
        "POST",
        r"v2/license/software-usage-info",
        handle_software_usage,
        "apig",
    ),
    ("usage_data", "POST", r"v1/isv/usage-data", handle_usage_data, "optional"),
]


# --- the server -----------------------------------------------------------------------------------


class FakeKooGallery:
    """One fake API host. Use as a context manager, or `start()` / `stop()`."""

    def __init__(
        self,
        *,
        ak: str,
        sk: str,
        name: str = "primary",
        usage_key: str = "",
        market: Marketplace | None = None,
        hang_s: float | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.ak, self.sk, self.name, self.usage_key = ak, sk, name, usage_key
        self.market = market or Marketplace()
        # How long "timeout" hangs; None: the client's KOOGALLERY_API_TIMEOUT_S + 1 s.
        self.hang_s = hang_s
        # (certfile, keyfile): serve HTTPS, e.g. to test strict TLS and KOOGALLERY_CA_BUNDLE.
        self.tls = tls
        self.routes: list[Route] = [
            Route(n, m, re.compile(re.escape(API_PREFIX) + p + "$"), h, v)
            for n, m, p, h, v in DEFAULT_ROUTES
        ]
        self.queues: dict[str, deque] = defaultdict(deque)
        self.requests: list[RecordedRequest] = []
        self.fallback: FakeKooGallery | None = None
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --
    def start(self) -> FakeKooGallery:
        server = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True
        server.block_on_close = False
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            # Handshake lazily in the handler thread, so a client refusing the certificate
            # cannot stall the accept loop.
            server.socket = context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases handlers hanging in "timeout"
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> FakeKooGallery:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def twin(self, name: str) -> FakeKooGallery:
        """Another host on its own port sharing this one's credentials and Marketplace."""
        return FakeKooGallery(
            ak=self.ak,
            sk=self.sk,
            name=name,
            usage_key=self.usage_key,
            market=self.market,
            hang_s=self.hang_s,
            tls=self.tls,
        )

    @property
    def host(self) -> str:
        """`127.0.0.1:<port>`, the Host header a correctly signed request carries."""
        assert self._server is not None, "not started"
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    # -- scripting --
    def script(self, route: str, *answers: Any) -> FakeKooGallery:
        """Queue answers for `route` (used before its default handler), in order.

        An answer is a status (int), `(status, json)`, a `Reply`, "timeout", "close", or a
        handler `(fake, request, match) -> Reply | "timeout" | "close"`.
        """
        self._route(route)
        self.queues[route].extend(answers)
        return self

    def add_route(
        self, name: str, method: str, pattern: str, handler: Handler, verify: str = "apig"
    ) -> None:
        """A new route; `pattern` is a regex for the path after /api/mkp-openapi-public/global/."""
        self.routes.append(
            Route(
                name,
                method.upper(),
                re.compile(re.escape(API_PREFIX) + pattern + "$"),
                handler,
                verify,
            )
        )

    def set_default(self, route: str, handler: Handler) -> None:
        self._route(route).handler = handler

    def _route(self, name: str) -> Route:
        for route in self.routes:
            if route.name == name:
                return route
        raise KeyError(f"no route {name!r}; routes: {[r.name for r in self.routes]}")

    # -- state helpers --
    def register_order(self, order_id: str, answer: dict | None = None, **line: Any) -> dict:
        """Make Query Order answer `answer` for `order_id`; without one, the MOCKPERIODYEARNEW
        shape with that id, its first order line updated with `line` (e.g. chargingMode=…)."""
        if answer is None:
            answer = mock_order_answer("MOCKPERIODYEARNEW")
            answer["orderInfo"]["orderId"] = order_id
            first = answer["orderInfo"]["orderLine"][0]
            first["orderLineId"] = f"{order_id}-000001"
            first.update(line)
        with self.market.lock:
            self.market.orders[order_id] = answer
        return answer

    def new_licence(self, code: str, **fields: Any) -> dict:
        licence = {
            "license_code": code,
            "status": "ALIVE",
            "expire_time": (datetime.now(UTC) + timedelta(days=365)).strftime("%Y%m%d%H%M%S"),
            "product_id": MOCK_PRODUCT_ID,
            "order_id": "MOCKPERIODYEARNEW",
            "amount": 1,
            "activate_time": None,
        }
        licence.update(fields)
        return licence

    def register_licence(self, code: str, **fields: Any) -> dict:
        """A licence code the fake knows, e.g. `register_licence("PL1", status="EXPIRED",
        activate_time="20240101000000")` (no activate_time: not yet activated)."""
        licence = self.new_licence(code, **fields)
        with self.market.lock:
            self.market.licences[code] = licence
        return licence

    @property
    def uploads(self) -> dict[str, Upload]:
        return self.market.uploads

    @property
    def upload_history(self) -> list[Upload]:
        return self.market.upload_history

    @property
    def orders(self) -> dict[str, dict]:
        return self.market.orders

    @property
    def licences(self) -> dict[str, dict]:
        return self.market.licences

    @property
    def usage_records(self) -> list[dict]:
        return self.market.usage_records

    @property
    def usage_duplicates(self) -> list[dict]:
        return self.market.usage_duplicates

    @property
    def all_requests(self) -> list[RecordedRequest]:
        """Requests to every host sharing this Marketplace, in arrival order."""
        return self.market.requests

    def requests_for(self, route: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.route == route]

    # -- serving --
    def _answer(self, request: RecordedRequest) -> Reply | str:
        for route in self.routes:
            match = route.pattern.match(request.path)
            if match is None:
                continue
            if route.method != request.method:
                return error(405, "95000002", "method not supported")
            request.route = route.name
            if route.verify == "apig" or (
                route.verify == "optional" and request.header("Authorization")
            ):
                code, msg = verify_apig(request, self.ak, self.sk, self.host)
                request.verified, request.verify_error = not code, msg
                if code:
                    return Reply(
                        401, {"error_code": code, "error_msg": msg, "request_id": uuid.uuid4().hex}
                    )
            with self.market.lock:
                queued = self.queues[route.name].popleft() if self.queues[route.name] else None
            if queued is None:
                return route.handler(self, request, match)
            return self._scripted(queued, request, match)
        return error(404, "APIG.0101", "The API does not exist or has not been published")

    def _scripted(self, queued: Any, request: RecordedRequest, match: re.Match) -> Reply | str:
        if isinstance(queued, Reply) or queued in (TIMEOUT, CLOSE):
            return queued
        if isinstance(queued, int):
            return _default_reply_for_status(queued)
        if isinstance(queued, tuple):
            status, payload = queued
            return Reply(status, payload)
        if callable(queued):
            return queued(self, request, match)
        raise TypeError(f"cannot script {queued!r}")

    def hang_seconds(self) -> float:
        if self.hang_s is not None:
            return self.hang_s
        from django.conf import settings

        return float(settings.KOOGALLERY_API_TIMEOUT_S) + 1.0


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # e.g. a TLS handshake the client aborted: the test sees it on the client side


def _make_handler(fake: FakeKooGallery) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeKooGallery/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            request = RecordedRequest(
                server=fake.name,
                method=self.command,
                path=parts.path,
                raw_query=parts.query,
                query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                headers=dict(self.headers.items()),
                body=body,
            )
            content_type = self.headers.get("Content-Type") or ""
            if body and "json" in content_type.lower():
                try:
                    request.json = json.loads(body)
                except ValueError:
                    request.json = None
            request.parts = parse_multipart(content_type, body)
            with fake.market.lock:
                fake.requests.append(request)
                fake.market.requests.append(request)
            try:
                answer = fake._answer(request)
            except Exception as exc:  # a bug in a handler: say so rather than hang the client
                answer = Reply(599, {"error_code": "FAKE.BUG", "error_msg": repr(exc)})
            if answer == TIMEOUT:
                request.behaviour = TIMEOUT
                fake._stopping.wait(fake.hang_seconds())
                self.close_connection = True
                return
            if answer == CLOSE:
                request.behaviour = CLOSE
                self.close_connection = True
                return
            payload, default_type = answer.encode()
            request.status = answer.status
            self.send_response(answer.status)
            headers = {"Content-Type": default_type, **answer.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    return Handler


# --- pytest fixture -------------------------------------------------------------------------------


@pytest.fixture
def fake_koogallery(settings):
    """A primary and a fallback fake host, wired into settings (see the module docstring).

    Captures the AK/SK (and the first basic key for usage push) from settings first, so a test
    that then changes `settings.KOOGALLERY_SK` plays a merchant with the wrong key.
    """
    basic_keys = settings.KOOGALLERY_BASIC_KEY
    primary = FakeKooGallery(
        ak=settings.KOOGALLERY_AK,
        sk=settings.KOOGALLERY_SK,
        name="primary",
        usage_key=basic_keys[0] if basic_keys else "",
    )
    fallback = primary.twin("fallback")
    with primary, fallback:
        primary.fallback = fallback
        settings.KOOGALLERY_API_BASE = primary.url
        settings.KOOGALLERY_API_FALLBACK = fallback.url
        settings.KOOGALLERY_API_TIMEOUT_S = 1.0
        yield primary
