"""Outbound calls to KooGallery's open APIs (spec §2.9, §3.7, §5.1, §5.2, §5.4, §6.2).

Every request is APIG-signed with `KOOGALLERY_AK`/`KOOGALLERY_SK` (§3.7), sent with strict TLS and
a `KOOGALLERY_API_TIMEOUT_S` timeout, and recorded as one `OutboundAttempt` row per HTTP attempt
(STYLE.md §6). A connection error, timeout or 5xx on `KOOGALLERY_API_BASE` gets ONE retry on
`KOOGALLERY_API_FALLBACK`, re-signed for that host; after that the caller backs off (Celery).

Transactions: attempt rows must survive a rollback of the caller's work (an operator needs to see
why a delivery is pending), so each row is committed on its own with `transaction.atomic(durable=
True)`. Consequently `call_api` refuses to run inside `transaction.atomic` (RuntimeError before any
network traffic): call it from a Celery task or after `transaction.on_commit`, never from inside a
service's atomic block. (pytest-django's per-test transaction is allowed, as Django allows it for
durable blocks.)

Callers decide what to do with an `OutboundResult`:

    result = query_order(order_id="MOCKPERIODYEARNEW")
    result.raise_for_error()          # TransientOutboundError → Celery autoretry; Business → stop
    details = parse_order(result.data, "MOCKPERIODYEARNEW-000001")
"""

import hashlib
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from urllib3.filepost import encode_multipart_formdata

from koogallery.outbound.attempts import AttemptOutcome, OutboundAttempt, OutboundPurpose
from koogallery.protocol.apig import sign_request
from koogallery.protocol.redaction import REDACTED, SECRET_KEYS, mask_text
from koogallery.protocol.times import compact_time

logger = logging.getLogger("koogallery.outbound")

QUERY_ORDER_PATH = "/api/mkp-openapi-public/global/v1/order/query"
MARKET_EVENT_PATH = "/api/mkp-openapi-public/global/v1/market-event/{event_id}/file"
LICENSE_CODE_PATH = "/api/mkp-openapi-public/global/{api}"
# The licence-code APIs of §5.4; `license_code_call` refuses anything else (no path injection).
LICENSE_CODE_APIS = frozenset(
    {
        "v1/license/activate",
        "v2/license/activate",
        "v1/license/heartbeat",
        "v2/license/heartbeat",
        "v2/license/software-usage-info",
    }
)
LICENSE_CODE_SUCCESS = "92020000"
# §5.2: `characters` is String(1024); longer tokens go as a FILE part with their sha256.
CHARACTERS_MAX = 1024
JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
RESPONSE_BODY_LIMIT = 4096
NOT_CONFIGURED = "KOOGALLERY_AK/SK not configured"

# §2.9, §5.4, §6.2: transient answers, worth retrying later.
RETRYABLE_CODES = frozenset({"MKT.0999", "CBC.0999", "CBC.0250", "APIG.0303", "92020001"})
# §2.9, §5.4, §5.5, §6.2: business answers, never retried, even when they come with a 5xx
# (MKT.0100/CBC.0100 and CBC/MKT.9001–9004 are sent with HTTP 500).
BUSINESS_CODE_RE = re.compile(
    r"^(?:9138\d{4}|9202\d{4}|9500000\d|(?:CBC|MKT)\.01\d\d|(?:CBC|MKT)\.9\d{3}|APIG\.0301)$"
)
AKSK_REJECTED = "APIG.0301"


@dataclass
class OutboundResult:
    ok: bool  # success code (MKT.0000 / CBC.0000 / 92020000 as the API defines) on a 2xx
    retryable: bool  # transient: transport error, timeout, 5xx, MKT.0999/CBC.0999/CBC.0250/…
    status_code: int | None
    result_code: str  # resultCode / error_code as received ('' if none)
    result_msg: str
    data: dict | None  # parsed JSON answer
    attempts: list[OutboundAttempt] = field(default_factory=list)

    def raise_for_error(self) -> "OutboundResult":
        """Return self when ok, else raise TransientOutboundError or BusinessOutboundError."""
        if self.ok:
            return self
        if self.retryable:
            raise TransientOutboundError(self)
        raise BusinessOutboundError(self)


class OutboundError(Exception):
    """A failed outbound call; `.result` is the OutboundResult with every attempt."""

    def __init__(self, result: OutboundResult):
        self.result = result
        code = result.result_code or (f"HTTP {result.status_code}" if result.status_code else "")
        super().__init__(f"{code or 'no answer'}: {result.result_msg}".strip())


class TransientOutboundError(OutboundError):
    """Worth retrying later with backoff (Celery `autoretry_for`)."""


class BusinessOutboundError(OutboundError):
    """KooGallery refused the call for a reason a retry will not fix (§2.9)."""


@dataclass
class OrderDetails:
    """The fields of a Query Order answer (§5.1) we use; anything missing is None or ''."""

    order_id: str = ""
    order_line_id: str = ""
    order_type: str = ""
    created_at: datetime | None = None
    charging_mode: str = ""
    period_type: str = ""
    period_number: int | None = None
    expire_at: datetime | None = None
    product_id: str = ""
    sku_code: str = ""
    product_name: str = ""
    linear_value: int | None = None
    customer_id: str = ""
    customer_name: str = ""
    line: dict = field(default_factory=dict)


# --- the generic call ---------------------------------------------------------------------------


def call_api(
    *,
    purpose: OutboundPurpose,
    subject: str,
    method: str,
    path: str,
    params: dict | None = None,
    json_body: Any = None,
    multipart: list[tuple[str, tuple[str | None, bytes, str]]] | None = None,
    success_codes: tuple[str, ...] = ("MKT.0000", "CBC.0000"),
    headers: Mapping[str, str] | None = None,
    raw_body: bytes | None = None,
    apig: bool = True,
) -> OutboundResult:
    """One APIG-signed call on `path` (relative to KOOGALLERY_API_BASE), with the §2.9 fallback.

    `params` become the query string (RFC 3986, spaces as %20, §3.7); the body is at most one
    of `json_body` (sent as compact UTF-8 JSON), `multipart` parts `(name, (filename|None, data,
    content_type))` or `raw_body` (bytes sent as they are, Content-Type JSON unless `headers`
    says otherwise). The exact bytes sent are the bytes signed. Never raises for HTTP or
    business failures: inspect the result or call `result.raise_for_error()`.

    For the usage push (§5.5): `headers` adds headers (e.g. `signature`, `ts`, `nonce`; they are
    APIG-signed too when `apig`), and `apig=False` sends without AK/SK signing.
    """
    if sum(x is not None for x in (json_body, multipart, raw_body)) > 1:
        raise ValueError("call_api takes one of json_body, multipart, raw_body")
    _require_autocommit()
    method = method.upper()
    subject = str(subject)[:128]
    target = path + (("?" + urlencode(params, quote_via=quote)) if params else "")
    extra = dict(headers or {})
    if any(name.lower() in ("authorization", "host", "x-sdk-date") for name in extra):
        raise ValueError("Authorization, Host and X-Sdk-Date are set by call_api")

    ak, sk = settings.KOOGALLERY_AK, settings.KOOGALLERY_SK
    if apig and (not ak or not sk):
        logger.error("outbound %s %s: %s, nothing sent", purpose, subject, NOT_CONFIGURED)
        attempt = _record(
            purpose=purpose,
            subject=subject,
            method=method,
            url=_join(settings.KOOGALLERY_API_BASE, target),
            started_at=timezone.now(),
            duration_ms=0,
            outcome=AttemptOutcome.FATAL,
            error=NOT_CONFIGURED,
        )
        return OutboundResult(False, False, None, "", NOT_CONFIGURED, None, [attempt])

    if multipart is not None:
        body, content_type = encode_multipart_formdata(multipart)
    elif json_body is not None:
        body = json.dumps(json_body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        content_type = JSON_CONTENT_TYPE
    elif raw_body is not None:
        body, content_type = raw_body, JSON_CONTENT_TYPE
    else:
        body, content_type = b"", JSON_CONTENT_TYPE  # §5.1 sends Content-Type on GET too

    bases = [settings.KOOGALLERY_API_BASE]
    fallback = getattr(settings, "KOOGALLERY_API_FALLBACK", "")
    if fallback and fallback.rstrip("/") != settings.KOOGALLERY_API_BASE.rstrip("/"):
        bases.append(fallback)

    attempts: list[OutboundAttempt] = []
    result: OutboundResult | None = None
    for index, base in enumerate(bases):
        result, failover = _attempt(
            purpose=purpose,
            subject=subject,
            method=method,
            url=_join(base, target),
            body=body,
            headers=_with_content_type(extra, content_type),
            ak=ak if apig else "",
            sk=sk if apig else "",
            success_codes=success_codes,
        )
        attempts.extend(result.attempts)
        # Only a connection error, timeout or 5xx moves on to the fallback host (§2.9).
        if not failover or index == len(bases) - 1:
            break
    assert result is not None
    result.attempts = attempts
    return result


def _attempt(
    *,
    purpose: str,
    subject: str,
    method: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    ak: str,
    sk: str,
    success_codes: tuple[str, ...],
) -> tuple[OutboundResult, bool]:
    """One HTTP attempt: its result (one attempt row) and whether the fallback host may help.

    Signed with `ak`/`sk` when both are given (§3.7); `headers` is the caller's original set.
    """
    # Fresh headers every attempt: sign_request adds Host (from this URL) and X-Sdk-Date only
    # when absent, and both are signed (§2.9 "re-signed").
    if ak and sk:
        headers = sign_request(method, url, dict(headers), body, ak, sk)
    started_at = timezone.now()
    clock = time.monotonic()
    status: int | None = None
    data: dict | None = None
    raw = b""
    error = ""
    misconfigured = False
    try:
        response = requests.request(
            method,
            url,
            data=body or None,
            headers=headers,
            timeout=settings.KOOGALLERY_API_TIMEOUT_S,
            verify=settings.KOOGALLERY_CA_BUNDLE or True,
            allow_redirects=False,  # a redirect would drop the signature: report it instead
        )
        status, raw = response.status_code, response.content
    except requests.Timeout as exc:
        error = f"timeout after {settings.KOOGALLERY_API_TIMEOUT_S} s: {type(exc).__name__}"
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
        requests.exceptions.InvalidHeader,
    ) as exc:
        # A setting or caller mistake, not a network problem: retrying cannot help.
        error, misconfigured = f"{type(exc).__name__}: {_scrub(str(exc))}", True
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {_scrub(str(exc))}"
    duration_ms = (time.monotonic() - clock) * 1000

    code = msg = ""
    if status is not None:
        data = _parse_json(raw)
        if data is not None:
            code = str(data.get("resultCode") or data.get("error_code") or "")
            msg = str(data.get("resultMsg") or data.get("error_msg") or "")
        ok, retryable = classify(status, code, success_codes)
        failover = status >= 500 and retryable
        if not ok and not code and not error:
            error = f"HTTP {status} without a result code"
    else:
        ok, retryable, failover = False, not misconfigured, not misconfigured

    if ok:
        outcome = AttemptOutcome.SUCCESS
    else:
        outcome = AttemptOutcome.RETRY if retryable else AttemptOutcome.FATAL
    attempt = _record(
        purpose=purpose,
        subject=subject,
        method=method,
        url=url,
        started_at=started_at,
        duration_ms=duration_ms,
        outcome=outcome,
        status_code=status,
        result_code=code,
        result_msg=msg,
        response_body=_stored_body(raw) if status is not None else "",
        error=error,
    )
    if code == AKSK_REJECTED:
        # > 5 in a row lock the AK/SK for 5 minutes (§2.9): somebody must look now.
        logger.error(
            "ALERT AK/SK rejected by KooGallery (%s) on %s %s for %s %s; more than 5 in a row "
            "lock the AK/SK for 5 minutes: check KOOGALLERY_AK/KOOGALLERY_SK",
            code,
            method,
            _safe_url(url),
            purpose,
            subject,
        )
    return OutboundResult(ok, retryable, status, code, msg or error, data, [attempt]), failover


def classify(status: int, code: str, success_codes: tuple[str, ...]) -> tuple[bool, bool]:
    """(ok, retryable) for an HTTP answer (§2.9, §5.4, §6.2).

    Success needs a success code on a 2xx. Listed transient codes are retryable whatever the
    status; listed business codes never are, even on a 5xx. Anything else: a 5xx is transient,
    and so is a 429 (gateway throttling; the spec is silent, only a later try can help); other
    statuses (4xx, a 2xx without a success code, a redirect) are not.
    """
    if code in success_codes and 200 <= status < 300:
        return True, False
    if code in RETRYABLE_CODES:
        return False, True
    if BUSINESS_CODE_RE.match(code):
        return False, False
    return False, status >= 500 or status == 429


# --- the open APIs ------------------------------------------------------------------------------


def query_order(*, order_id: str, order_line_id: str | None = None) -> OutboundResult:
    """Query Order (§5.1); `data` is the whole answer, `orderInfo` included."""
    params = {"orderId": order_id}
    if order_line_id:
        params["orderLineId"] = order_line_id
    return call_api(
        purpose=OutboundPurpose.QUERY_ORDER,
        subject=order_id,
        method="GET",
        path=QUERY_ORDER_PATH,
        params=params,
    )


def upload_license(*, event_id: str, token: str, file_name: str | None = None) -> OutboundResult:
    """Market-event upload of a licence token for getLicenseAsync's `eventId` (§5.2, §2.8).

    Up to 1024 characters the token goes as `CHARACTERS`, longer as a `FILE` part
    (`license-<eventId>.lic` unless `file_name` is given) with its lower-case hex sha256.
    """
    if len(token) <= CHARACTERS_MAX:
        request = {"type": "CHARACTERS", "characters": token}
        parts: list[tuple[str, tuple[str | None, bytes, str]]] = []
    else:
        content = token.encode("utf-8")
        name = file_name or f"license-{event_id}.lic"
        request = {"type": "FILE", "file_name": name, "sha256": hashlib.sha256(content).hexdigest()}
        parts = [("file", (name, content, "application/octet-stream"))]
    parts.append(
        (
            "isvUpdateFileReq",
            (None, json.dumps(request, separators=(",", ":")).encode("utf-8"), "application/json"),
        )
    )
    return call_api(
        purpose=OutboundPurpose.LICENSE_UPLOAD,
        subject=event_id,
        method="POST",
        path=MARKET_EVENT_PATH.format(event_id=quote(event_id, safe="")),
        multipart=parts,
    )


def license_code_call(*, api: str, body: dict) -> OutboundResult:
    """A licence-code API of §5.4 (`api` e.g. "v1/license/activate"); success is 92020000."""
    if api not in LICENSE_CODE_APIS:
        raise ValueError(f"unknown licence-code API {api!r}; known: {sorted(LICENSE_CODE_APIS)}")
    subject = body.get("license")
    if subject is None:
        codes = (
            body.get("license_list")
            or body.get("license")
            or [
                item.get("license")
                for item in body.get("usage_info") or []
                if isinstance(item, dict)
            ]
        )
        subject = ",".join(str(c) for c in codes if c) if isinstance(codes, list) else codes
    return call_api(
        purpose=OutboundPurpose.LICENSE_CODE,
        subject=str(subject or api),
        method="POST",
        path=LICENSE_CODE_PATH.format(api=api),
        json_body=body,
        success_codes=(LICENSE_CODE_SUCCESS,),
    )


# --- parsing Query Order --------------------------------------------------------------------------


def parse_order(data: dict, order_line_id: str | None) -> OrderDetails:
    """The order line `order_line_id` (or the first line) of a Query Order answer, tolerantly.

    Huawei's tables disagree (§5.1, §7): any field may be absent, null or of another type; what
    cannot be read is None or ''. Times `yyyyMMddHHmmss` are UTC (§2.7).
    """
    info = _dict((data or {}).get("orderInfo"))
    lines = [line for line in _list(info.get("orderLine")) if isinstance(line, dict)]
    line = next(
        (x for x in lines if order_line_id and _str(x.get("orderLineId")) == order_line_id),
        lines[0] if lines and not order_line_id else None,
    )
    line = line or {}
    products = [p for p in _list(line.get("productInfo")) if isinstance(p, dict)]
    product = products[0] if products else {}
    buyer = _dict(info.get("buyerInfo"))
    return OrderDetails(
        order_id=_str(info.get("orderId")),
        order_line_id=_str(line.get("orderLineId")),
        order_type=_str(info.get("orderType")),
        created_at=parse_time(info.get("createTime")),
        charging_mode=_str(line.get("chargingMode")),
        period_type=_str(line.get("periodType")),
        period_number=_int(line.get("periodNumber")),
        expire_at=parse_time(line.get("expireTime")),
        product_id=_str(product.get("productId")),
        sku_code=_str(product.get("skuCode")),
        product_name=_str(product.get("productName")),
        linear_value=_int(product.get("linearValue")),
        customer_id=_str(buyer.get("customerId")),
        customer_name=_str(buyer.get("customerName")),
        line=line,
    )


def parse_time(value: Any) -> datetime | None:
    """`yyyyMMddHHmmss` (or 17 digits with milliseconds) as an aware UTC datetime, else None."""
    return compact_time(_str(value))


def _str(value: Any) -> str:
    return "" if value is None or isinstance(value, (dict, list)) else str(value).strip()


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        try:
            number = float(str(value).strip())
        except ValueError:
            return None
        return int(number) if number.is_integer() else None


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


# --- helpers --------------------------------------------------------------------------------------


def _require_autocommit() -> None:
    """Refuse to run inside transaction.atomic: attempt rows must outlive a rollback (§2.9)."""
    try:
        with transaction.atomic(durable=True):
            pass
    except RuntimeError as exc:
        raise RuntimeError(
            "koogallery.outbound.client calls must not run inside transaction.atomic: the "
            "attempt rows must survive a rollback. Call from a task or transaction.on_commit."
        ) from exc


def _record(**fields: Any) -> OutboundAttempt:
    fields["url"] = _safe_url(fields["url"])[:1024]
    fields["result_msg"] = str(fields.get("result_msg", ""))[:1024]
    fields["result_code"] = str(fields.get("result_code", ""))[:32]
    with transaction.atomic(durable=True):
        attempt = OutboundAttempt.objects.create(**fields)
    logger.info(
        "outbound %s %s %s %s -> %s %s %s in %.0f ms%s",
        attempt.purpose,
        attempt.subject,
        attempt.method,
        attempt.url,
        attempt.status_code if attempt.status_code is not None else "-",
        attempt.result_code or "-",
        attempt.outcome,
        attempt.duration_ms,
        f" ({attempt.error})" if attempt.error else "",
    )
    return attempt


def _with_content_type(headers: dict[str, str], content_type: str) -> dict[str, str]:
    if any(name.lower() == "content-type" for name in headers):
        return dict(headers)
    return {"Content-Type": content_type, **headers}


def _join(base: str, target: str) -> str:
    return base.rstrip("/") + target


def _safe_url(url: str) -> str:
    """The URL without credentials or secret query values (§2.9: never log secrets)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, REDACTED if k.lower() in SECRET_KEYS else v) for k, v in pairs], quote_via=quote
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _scrub(text: str) -> str:
    """Exception texts may quote the URL; keep credentials out."""
    return re.sub(r"//[^/@\s]*@", "//", text)[:1000]


def _parse_json(raw: bytes) -> dict | None:
    try:
        parsed = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _stored_body(raw: bytes) -> str:
    """The answer as stored: its text with every value the spec's allow-list does not keep
    masked (the journal's rule, spec §2.4: koogallery/protocol/redaction.py), JSON or not; ≤ 4
    KiB."""
    room = RESPONSE_BODY_LIMIT - 40
    text = raw[: 4 * RESPONSE_BODY_LIMIT].decode("utf-8", "replace")
    cut = len(text) > room
    masked = mask_text(text[:room] if cut else text)
    if len(masked) > room:
        masked, cut = masked[:room], True
    return masked + f"… [truncated, {len(raw)} bytes]" if cut else masked
