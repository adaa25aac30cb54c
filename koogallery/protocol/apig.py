"""Huawei API Gateway `SDK-HMAC-SHA256` request signing for outbound calls (spec §3.7, §2.9).

Follows Huawei's reference signer: the canonical request is built from the URL as it will be
sent (path and query are percent-decoded, then re-encoded per RFC 3986), every header passed is
signed, and the body is hashed unless `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD` is sent.
"""

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
HEADER_DATE = "X-Sdk-Date"
HEADER_CONTENT_SHA256 = "X-Sdk-Content-Sha256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_BODY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _encode(value: str) -> str:
    # RFC 3986: only A-Z a-z 0-9 - _ . ~ stay as they are; quote() emits upper-case %XY (§3.7).
    return quote(value, safe="")


def _find_header(headers: Mapping[str, str], name: str) -> str | None:
    name = name.lower()
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def canonical_uri(path: str) -> str:
    """Each segment decoded and re-encoded; a trailing `/` is added for signing only (§3.7)."""
    uri = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    if not uri.startswith("/"):
        uri = "/" + uri
    return uri if uri.endswith("/") else uri + "/"


def canonical_query_string(query: str) -> str:
    """Parameters sorted by name (repeated names by value), each `name=value` RFC 3986-encoded.

    A parameter without a value still gets its `=` (§3.7). `+` is kept as a literal plus, not a
    space, as in Huawei's signer; send spaces as `%20`.
    """
    params = []
    for pair in query.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        params.append((unquote(name), unquote(value)))
    return "&".join(f"{_encode(name)}={_encode(value)}" for name, value in sorted(params))


def signed_headers(headers: Mapping[str, str]) -> list[str]:
    """Every header passed, lower-cased and sorted (§3.7)."""
    return sorted({name.lower() for name in headers})


def canonical_request(method: str, url: str, headers: Mapping[str, str], body: bytes | str) -> str:
    """The CanonicalRequest of §3.7; `headers` must already hold `Host` and `X-Sdk-Date`."""
    parts = urlsplit(url)
    values = {name.lower(): str(value).strip() for name, value in headers.items()}
    names = signed_headers(headers)
    payload_hash = _find_header(headers, HEADER_CONTENT_SHA256)
    if payload_hash is None:
        payload = body.encode("utf-8") if isinstance(body, str) else body or b""
        payload_hash = hashlib.sha256(payload).hexdigest()
    return "\n".join(
        [
            method.upper(),
            canonical_uri(parts.path),
            canonical_query_string(parts.query),
            "".join(f"{name}:{values[name]}\n" for name in names),
            ";".join(names),
            payload_hash.strip(),
        ]
    )


def string_to_sign(canonical: str, sdk_date: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def signature(sk: str, to_sign: str) -> str:
    return hmac.new(sk.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def format_sdk_date(moment: datetime) -> str:
    """`X-Sdk-Date` in UTC; a naive datetime is taken as UTC already."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(DATE_FORMAT)


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | str,
    ak: str,
    sk: str,
    now: datetime | None = None,
) -> dict[str, str]:
    """The headers to send: `headers` plus `Host` (from the URL) and `X-Sdk-Date` (from `now`,
    default the current time) when absent, and `Authorization` (§3.7).

    All headers passed are signed, so pass the ones the gateway will see unchanged (e.g.
    `Content-Type`, §2.9) and not hop-by-hop ones a proxy may rewrite. Send `url` exactly as
    given, and re-sign every attempt from the original headers (the date and host are signed;
    §2.9); an `Authorization` header passed in is replaced, never signed.
    """
    if not ak or not sk:
        raise ValueError("APIG signing needs both an AK and an SK")
    signed = {name: value for name, value in headers.items() if name.lower() != "authorization"}
    if _find_header(signed, HEADER_DATE) is None:
        signed[HEADER_DATE] = format_sdk_date(now or datetime.now(UTC))
    if _find_header(signed, "Host") is None:
        signed["Host"] = urlsplit(url).netloc.rpartition("@")[2]
    sdk_date = _find_header(signed, HEADER_DATE).strip()
    canonical = canonical_request(method, url, signed, body)
    sig = signature(sk, string_to_sign(canonical, sdk_date))
    signed["Authorization"] = (
        f"{ALGORITHM} Access={ak}, SignedHeaders={';'.join(signed_headers(signed))}, "
        f"Signature={sig}"
    )
    return signed
