"""What the journal (and every other stored copy of a KooGallery body) keeps: an allow-list.

Spec §2.4: of a body the journal keeps the values of the fields the spec names (§4 inbound, §5
outbound; at any depth) and writes `***` for secrets and for the value of every key the spec does
not name; of a query string it keeps `activity`, ids and times only. A deny-list of secret names
missed whatever it did not foresee (`accessToken`, a nested `sk`, a secret in a body that was not
JSON); an allow-list fails closed.

`NAMED_FIELDS` is the list, in this one place; tests/koogallery/inbound/test_journal_redaction.py
checks it against the field tables of the spec. `mask_text` applies it to any text, valid JSON or
not, with a tolerant tokenizer: keys stay, values are kept only under a named key, and JSON text
that Huawei sends inside a string (`userList`, `orgInfoList`, `orgInfo`, `license_code_info`) is
masked the same way. Text that needs no masking comes out exactly as it went in.
"""

import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "***"

# Keys whose values never reach a log line or a stored URL (ops/logs.py keeps a superset). Bodies
# and query strings in the journal go further: an allow-list (below).
SECRET_KEYS = frozenset(
    k.lower()
    for k in (
        "clientSecret",
        "client_secret",
        "password",
        "authToken",
        "signature",
        "access_token",
        "refresh_token",
        "token",
        "characters",
    )
)

# Every field name in the spec's field tables and parameter lists, §4 and §5, as spelt there.
NAMED_FIELDS = frozenset(
    {
        # §4 common, §4.1 kit V2 (and V1, §4.3)
        "instanceId", "orderId", "tenantId", "tenantCode", "name", "domainName", "flag",
        "testFlag", "timeStamp", "appId", "clientId", "clientSecret", "userList",
        "currentSyncTime", "userName", "orgCode", "position", "employeeCode", "employeeType",
        "role", "enable", "mobile", "email", "workPlace", "entryDate", "extension", "orgName",
        "parentCode", "orgInfoList", "orgInfo", "resultCode", "resultMsg",
        # §4.2 basic V2 and their answers
        "activity", "orderLineId", "businessId", "encryptType", "info", "appInfo",
        "frontEndUrl", "adminUrl", "password", "memo", "usageInfo", "relatedInstanceId",
        "usageValue", "statisticalTime", "dashboardUrl", "scene", "productId", "expireTime",
        "status", "productInfo", "effectiveTime", "eventId", "deviceFingerprint",
        # §4.4 V1 basic GET parameters
        "authToken", "customerId", "customerName", "userId", "mobilePhone", "skuCode",
        "trialFlag", "chargingMode", "saasExtendParams", "amount", "diskSize", "bandWidth",
        "periodType", "periodNumber", "orderAmount", "trialToFormal", "instanceStatus",
        # §4.5 licence-code activities
        "license",
        # §5.1 Query Order
        "orderInfo", "orderType", "createTime", "orderLine", "buyerInfo", "extendParams",
        "value", "linearValue", "productName", "currency", "currencyAfterDiscount",
        "customerRealName", "customerType",
        # §5.2 market-event upload
        "event_id", "type", "file_name", "file", "sha256", "characters", "error_code",
        "error_msg",
        # §5.3 OAuth
        "ind", "client_id", "client_secret", "code", "grant_type", "redirect_uri",
        "access_token", "token_type", "expires_in", "scope", "refresh_token", "error",
        "error_description", "id", "organizationName", "organizationCode", "projectName",
        "tenant", "redirect_url",
        # §5.4 licence-code APIs
        "real_effect_time", "data", "license_code_info", "expire_time", "product_id",
        "order_id", "license_list", "license_code", "activate_time", "usage_info",
        "software_usage_Info", "active_num",
        # §5.5 usage push
        "signature", "ts", "nonce", "usage_records", "instance_id", "record_time",
        "begin_time", "end_time", "usage_value", "metering_sn", "relate_pkg_instance",
        "abnormal_usage_data",
    }
)  # fmt: skip

# Named by the spec, but secrets (§2.4: `clientSecret`, `password`, tokens, keys): always `***`.
# Any key whose name contains one of SECRET_PARTS is a secret too, however it is spelt.
SECRET_FIELDS = frozenset(
    name.lower()
    for name in (
        "clientSecret", "client_secret", "password", "authToken", "signature", "access_token",
        "refresh_token", "token_type", "characters", "code", "file",
    )
)  # fmt: skip
SECRET_PARTS = ("secret", "password", "passwd", "token", "sign", "key", "credential")

# Contact fields (§4.1.3 User, §4.4, §5.1 BuyerInfo, §5.3 userinfo): kept when they read as a
# phone number or an e-mail address; a ciphertext (V1 sends them AES-encrypted, §3.5) is masked.
CONTACT_FIELDS = frozenset({"mobile", "mobilePhone", "email"})
_PLAIN_CONTACT = re.compile(r"[+\d][\d\s()+-]{2,31}|[^\s@]{1,64}@[^\s@]{1,255}")

# Named fields whose value may be JSON text inside a string (§2.6, §4.3, §5.4).
STRING_ENCODED = frozenset({"userList", "orgInfoList", "orgInfo", "license_code_info"})

# A query string keeps `activity`, ids and times only (§2.4).
_QUERY_KEPT = re.compile(
    r"activity|timeStamp|timestamp|ts|[a-z][A-Za-z]*(Id|Time)|[a-z_]+_(id|time)"
)

KEEP, MASK, CONTACT, ENCODED = "keep", "mask", "contact", "encoded"
ROOT = "root"  # the body itself and lists in it: members judged by their keys, bare values masked


def is_secret(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_FIELDS or any(part in lowered for part in SECRET_PARTS)


@functools.lru_cache(maxsize=4096)
def classify(name: str) -> str:
    if is_secret(name) or name not in NAMED_FIELDS:
        return MASK
    if name in CONTACT_FIELDS:
        return CONTACT
    if name in STRING_ENCODED:
        return ENCODED
    return KEEP


def is_kept_in_query(name: str) -> bool:
    return bool(_QUERY_KEPT.fullmatch(name)) and not is_secret(name)


# --- the tokenizer --------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      |(?P<str>"(?:[^"\\]|\\.)*(?:"|\Z))
      |(?P<punct>[{}\[\]:,])
      |(?P<atom>[^\s{}\[\]:,"]+)""",
    re.VERBOSE | re.DOTALL,
)
_QUOTED_MASK = json.dumps(REDACTED)
_KEPT_ATOMS = frozenset({"null", '""'})


def _tokens(text: str) -> list[tuple[str, str]]:
    return [(m.lastgroup or "atom", m.group()) for m in _TOKEN.finditer(text)]


def _key_name(token: str) -> str:
    if token.startswith('"'):
        try:
            return json.loads(token)
        except ValueError:
            return token.strip('"')
    return token


def mask_text(text: str) -> str:
    """`text` with every value the allow-list does not keep replaced by "***"; tolerant of
    anything (truncated JSON, Huawei's bare keys, not JSON at all: then every value is masked)."""
    if unchanged_by_mask(text):
        return text  # most calls: JSON whose every key is named (C-speed check, no tokenizer)
    return _masked_tokens(text)


# A JSON string (closed), and a bracket: what `kept_prefix` needs to close a cut text.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_CLOSER = {"{": "}", "[": "]"}


def kept_prefix(text: str) -> str | None:
    """For JSON cut short (a journal body over its limit): its prefix up to the last closing
    bracket, if that prefix, closed with the brackets it leaves open, is JSON that `mask_text`
    keeps as it is; None otherwise. The tokenizer would keep such a prefix as it is too: the
    tokens are the same up to that bracket, and none of the keys they hold needs a mask.
    Nothing is looked at twice in Python: ~1 ms for 64 KB of a big kit call, where the
    tokenizer takes ~14 (issue 17). A bracket inside a string can only make the closed text
    invalid, which answers None (then the tokenizer masks the text, as ever)."""
    end = max(text.rfind("}"), text.rfind("]")) + 1
    if not end:
        return None
    head = text[:end]
    open_: list[str] = []
    for bracket in _BRACKET.findall(_STRING.sub("", head)):
        if bracket in _CLOSER:
            open_.append(_CLOSER[bracket])
        elif not open_ or open_.pop() != bracket:
            return None
    return head if unchanged_by_mask(head + "".join(reversed(open_))) else None


class _Masked(Exception):
    pass


def _judged_pairs(pairs: list[tuple[str, Any]]) -> dict:
    seen: set[str] = set()
    for key, value in pairs:
        if key in seen:  # a duplicate key: only the tokenizer sees both values
            raise _Masked
        seen.add(key)
        if value is None or value == "":
            continue  # kept under any key, as the tokenizer keeps them
        state = classify(key)
        if state == MASK:
            raise _Masked
        if state == CONTACT:
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise _Masked
            if not _PLAIN_CONTACT.fullmatch(str(value)):
                raise _Masked
        elif state == ENCODED:
            if isinstance(value, str):
                if not unchanged_by_mask(value):
                    raise _Masked
            elif isinstance(value, list):
                if any(not isinstance(item, dict) and item is not None for item in value):
                    raise _Masked
            elif not isinstance(value, dict):
                raise _Masked  # a number or a boolean, which the tokenizer masks there
    return dict(pairs)


def unchanged_by_mask(text: str) -> bool:
    """Whether `mask_text` keeps `text` as it is: JSON in which every key is named (and no
    value of a contact or JSON-text field needs a mask). Conservative: False when unsure."""
    try:
        return not _has_bare_value(json.loads(text, object_pairs_hook=_judged_pairs))
    except (_Masked, ValueError, RecursionError):
        return False


def _has_bare_value(value: Any) -> bool:
    """A value no key names: the body itself, or an item of a list in it, that is a scalar."""
    if isinstance(value, dict):
        return False
    if isinstance(value, list):
        return any(_has_bare_value(item) for item in value)
    return value is not None and value != ""


def _masked_tokens(text: str) -> str:
    tokens = _tokens(text)
    out: list[str] = []
    # One frame per open container: [kind, state of its scalars (arrays), expecting a key,
    # state of the current key (objects)]
    stack: list[list] = []
    i, n = 0, len(tokens)
    while i < n:
        kind, token = tokens[i]
        i += 1
        if kind == "ws":
            out.append(token)
            continue
        frame = stack[-1] if stack else None
        if kind == "punct":
            if token in "{[":
                state = _value_state(frame) if frame else ROOT
                if frame and frame[0] == "obj":
                    frame[3] = MASK  # the key's value is this container: what follows is not
                if state == MASK:
                    i = _skip_container(tokens, i)
                    out.append(_QUOTED_MASK)
                else:
                    out.append(token)
                    stack.append(["obj" if token == "{" else "arr", state, token == "{", MASK])
            elif token in "}]":
                out.append(token)
                if stack:
                    stack.pop()
            elif token == ",":
                out.append(token)
                if frame and frame[0] == "obj":
                    frame[2] = True
            else:  # ":"
                out.append(token)
                if frame and frame[0] == "obj":
                    frame[2] = False
            continue
        # a string or an atom: an object's key when a ":" follows
        if frame and frame[0] == "obj" and frame[2] and _next_is_colon(tokens, i):
            frame[3] = classify(_key_name(token))
            out.append(token)
            continue
        out.append(_scalar(token, kind, _value_state(frame)))
        if frame and frame[0] == "obj":
            frame[3] = MASK  # the key has its value: anything more before a "," is not named
    return "".join(out)


def _value_state(frame: list | None) -> str:
    if frame is None:
        return MASK  # a bare value: no key names it
    if frame[0] == "obj":
        return frame[3]
    return frame[1]


def _scalar(token: str, kind: str, state: str) -> str:
    if state == ROOT:
        return token if token in _KEPT_ATOMS else _QUOTED_MASK
    if state == KEEP or token in _KEPT_ATOMS:
        return token
    if state == CONTACT:
        value = _key_name(token)
        return token if _PLAIN_CONTACT.fullmatch(value) else _QUOTED_MASK
    if state == ENCODED and kind == "str":
        closed = len(token) > 1 and token.endswith('"') and not token.endswith('\\"')
        inner = _key_name(token) if closed else _partial_string(token)
        if inner is None:
            return _QUOTED_MASK
        masked = mask_text(inner)
        if masked == inner and closed:
            return token
        encoded = json.dumps(masked, ensure_ascii=False)
        return encoded if closed else encoded[:-1]  # still open: the text was cut there
    return _QUOTED_MASK


def _partial_string(token: str) -> str | None:
    """The text of a string literal cut short (a truncated body), or None."""
    body = token[1:]
    for end in range(len(body), max(len(body) - 6, -1), -1):  # drop a cut escape
        try:
            return json.loads('"' + body[:end] + '"')
        except ValueError:
            continue
    return None


def _next_is_colon(tokens: list[tuple[str, str]], i: int) -> bool:
    while i < len(tokens) and tokens[i][0] == "ws":
        i += 1
    return i < len(tokens) and tokens[i][1] == ":"


def _skip_container(tokens: list[tuple[str, str]], i: int) -> int:
    """The index past the container whose opening bracket is just before `i` (or the end)."""
    depth = 1
    while i < len(tokens) and depth:
        kind, token = tokens[i]
        if kind == "punct":
            if token in "{[":
                depth += 1
            elif token in "}]":
                depth -= 1
        i += 1
    return i


# --- values and query strings ---------------------------------------------------------------
def redact(value: Any) -> Any:
    """A parsed body with the allow-list applied (a copy; the same rule as `mask_text`)."""
    return json.loads(mask_text(json.dumps(value, ensure_ascii=False)))


def redact_query(params: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    pairs = params.items() if isinstance(params, Mapping) else params
    return [(k, v if is_kept_in_query(k) or v in ("", None) else REDACTED) for k, v in pairs]
