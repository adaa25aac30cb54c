"""Building blocks of the hostile-input tests (tests/koogallery/inbound/test_hostile_input.py).

- `domain_state()`: every domain row, so a test can prove a refused call wrote nothing. Domain
  = every model of this project's apps except the records of calls themselves (the inbound
  journal, SSO's login audit): those are written for refused calls on purpose (STYLE.md §1).
- hypothesis strategies for hostile JSON values, raw bodies and header/query values.
- `send_*`: post a body to one endpoint, signed validly (or not) as KooGallery would.
"""

import json
from pathlib import Path
from urllib.parse import quote

from django.apps import apps
from django.conf import settings
from hypothesis import strategies as st

from koogallery.protocol import signing
from koogallery.protocol.resultcodes import ResultCode
from tests.support import ROOT
from tests.support.kgclient import KooGallery, envelope, fixture_json

KIT_INTERFACES = ("tenantSync", "applicationSync", "authSync", "singleOrgSync", "allOrgSync")
# Rows written *about* a call, refused or not (the journal; SSO's audit of refused sign-ins).
CALL_RECORDS = frozenset({"koogallery.InboundCall", "sso.LoginAudit"})
DOCUMENTED_CODES = frozenset(code.value for code in ResultCode)
ACCEPTED_CODES = frozenset({ResultCode.SUCCESS.value, ResultCode.PROCESSING.value})
INTERNAL_ERROR = ResultCode.INTERNAL_ERROR.value


def domain_models() -> list:
    """Models of the apps that live in this repository (new apps are picked up as they land)."""
    models = []
    for config in apps.get_app_configs():
        if not Path(config.path).resolve().is_relative_to(ROOT) or ".venv" in config.path:
            continue
        models += [m for m in config.get_models() if m._meta.label not in CALL_RECORDS]
    return models


def domain_state() -> dict:
    return {m._meta.label: list(m.objects.order_by("pk").values()) for m in domain_models()}


# --- strategies -------------------------------------------------------------------------------
NASTY_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\t\r\n",
    "\u202e\u200b\ufeff",
    "🙂" * 300,
    "x" * 70,  # just over String(64)
    "y" * 100_000,
    "'; DROP TABLE tenants_tenant; --",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "%00%ff",
    "١٢٣٤",  # Arabic-Indic digits: str.isdigit() is True
    "１２３",  # full-width digits
    "1e400",
    "-1",
    "0x10",
    "true",
    "null",
    "[]",
    "{}",
    "[{orgCode:1}]",
    '{"a":',
    "20221124023618256",
    "9" * 40,
]
# Characters a WSGI server can hand us in a header or query value (latin-1 decoded bytes).
latin1_text = st.text(alphabet=st.characters(max_codepoint=255), max_size=80)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(NASTY_STRINGS)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def dumps(value, *, ascii_only: bool) -> bytes:
    """JSON text of `value`; lone surrogates stay `\\udXXX` escapes (valid JSON, not UTF-8)."""
    try:
        return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True).encode("ascii")


# Raw JSON texts json.dumps never produces, each a known way to break a parser.
RAW_OBJECT_OF = (
    lambda inner: b'{"a":' + inner + b"}",
    lambda inner: b"[" + inner + b"]",
)
NASTY_RAW = [
    b"",
    b"null",
    b"0",
    b'"just a string"',
    b"[]",
    b"{}",
    b"{",
    b'{"a":1,}',
    b'{"a":NaN}',
    b'{"a":Infinity}',
    b'{"a":-Infinity}',
    b'{"a":1e400}',
    b'{"a":' + b"9" * 5000 + b"}",  # beyond Python's int-string conversion limit
    b'{"a":"\\ud800"}',  # lone surrogate escape
    b'{"a":"\\udfff\\ud800"}',
    b'{"a":"\\u0000"}',
    b'{"a":"\xff\xfe"}',  # invalid UTF-8
    b'{"a":"\xc0\xaf"}',  # overlong encoding
    b'{"a":"\xed\xa0\x80"}',  # UTF-8 encoded surrogate
    b"\xef\xbb\xbf{}",  # UTF-8 byte-order mark
    b"\xff\xfe{\x00}\x00",  # UTF-16
    b'{"a":1}{"b":2}',
    b'{"a":1} trailing',
    b'{"a":1,"a":2,"a":[1]}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    b"[" * 900 + b"]" * 900,
    b'{"a":' * 900 + b"1" + b"}" * 900,
    b"[" * 100_000,
]


@st.composite
def raw_bodies(draw) -> bytes:
    """Random bodies: arbitrary bytes, JSON of any shape, or a known-nasty text."""
    kind = draw(st.sampled_from(["bytes", "json", "nasty"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return dumps(draw(json_values), ascii_only=draw(st.booleans()))
    return draw(st.sampled_from(NASTY_RAW))


def deep(depth: int, kind: str):
    """A value nested `depth` levels deep (built iteratively: no recursion here)."""
    value: object = "leaf"
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


# --- sending ----------------------------------------------------------------------------------
def kit_v1_token(body: bytes) -> str:
    """What KooGallery would send as `authToken` for `body` (over its fields when an object)."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    params = parsed if isinstance(parsed, dict) else {}
    try:
        return signing.v1_auth_token(settings.KOOGALLERY_KIT_KEY[0], params)
    except UnicodeEncodeError:  # lone surrogates: no token can cover them, sign the rest
        return signing.v1_auth_token(settings.KOOGALLERY_KIT_KEY[0], {})


def send_signed(kg: KooGallery, route: str, body: bytes, **kwargs):
    """POST `body` to `route` ("basic", "v2/<kit>" or "v1/<kit>"), validly signed."""
    if route == "basic":
        return kg.basic(body, **kwargs)
    version, name = route.split("/")
    if version == "v2":
        return kg.kit(name, body, **kwargs)
    return kg.kit_v1(name, body, token=kwargs.get("token") or kit_v1_token(body))


def post_unsigned(kg: KooGallery, route: str, body: bytes, content_type: str | None = None):
    path = "/koogallery" if route == "basic" else f"/koogallery/produceAPI/{route}"
    path = path.replace("produceAPI/v1/", "produceAPI/")
    return kg.client.post(path, data=body, content_type=content_type or kg.content_type)


def basic_v1_query(params: dict[str, str], *, sign: bool) -> str:
    """The query string of a V1 GET, with a valid `authToken` over `params` when `sign`."""
    items = dict(params)
    if sign:
        items["authToken"] = signing.v1_auth_token(settings.KOOGALLERY_BASIC_KEY[0], items)
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in items.items())


ROUTES = ("basic", *(f"v2/{n}" for n in KIT_INTERFACES), *(f"v1/{n}" for n in KIT_INTERFACES))


def checked(response) -> dict:
    """The envelope of a hostile call, after the rules every such answer obeys."""
    assert response.status_code < 500, response.status_code
    body = envelope(response)  # HTTP 200, JSON content type, resultCode then resultMsg
    assert body["resultCode"] in DOCUMENTED_CODES, body
    assert body["resultCode"] != INTERNAL_ERROR, body  # bad input is never "our fault"
    return body


def valid_body(route: str, names: dict[str, str]) -> dict:
    """A body the route accepts (its fixture), for mutation."""
    return fixture_json(names[route])
