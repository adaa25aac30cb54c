"""Hostile input on every endpoint (issue 6): random and adversarial bodies, headers and query
strings must never produce a 5xx; every KooGallery answer is the envelope of spec §2.4 with a
documented result code (never 000005: bad input is not an internal error), and a refused call
writes no domain row (only its journal row, STYLE.md §1).

hypothesis drives the inputs; HOSTILE_EXAMPLES (default 40) sets examples per property. The
examples are the same on every run (CI stays reproducible); HOSTILE_RANDOM=1 explores new ones:

    HOSTILE_RANDOM=1 HOSTILE_EXAMPLES=300 .venv/bin/pytest \
        tests/koogallery/inbound/test_hostile_input.py
"""

import json
import os
import re
import socket
import time
import uuid
from urllib.parse import quote

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.urls import URLResolver, get_resolver
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from koogallery.inbound.journal import InboundCall
from koogallery.protocol import jsonbody, signing
from tenants.models import Tenant
from tests.support.hostile import (
    ACCEPTED_CODES,
    KIT_INTERFACES,
    NASTY_STRINGS,
    ROUTES,
    basic_v1_query,
    checked,
    deep,
    domain_state,
    dumps,
    json_values,
    kit_v1_token,
    latin1_text,
    post_unsigned,
    raw_bodies,
    send_signed,
)
from tests.support.kgclient import envelope, fixture_json, now_ms
from tests.support.procs import Service, database_url, raw_http, service_env
from tests.support.tenant_kit import rsa_keys  # noqa: F401 (session fixture)

pytestmark = pytest.mark.django_db

SHORT_NASTY = [s for s in NASTY_STRINGS if len(s) < 1000]
EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "40"))
hostile = hsettings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,  # no example database in the tree; failures print their reproduction
    derandomize=os.environ.get("HOSTILE_RANDOM") != "1",
)

HUAWEI_INSTANCE = "10e758d0-31ad-4c4b-8f1b-81d03469a10e"
# A body each route accepts: the fixture Huawei's documentation gives (or ours, composed).
KIT_FIXTURES = {
    "tenantSync": "tenantSync__huawei_example",
    "applicationSync": "applicationSync__huawei_shape_example",
    "authSync": "authSync__composed_example",
    "singleOrgSync": "singleOrgSync__huawei",
    "allOrgSync": "allOrgSync__tree",
}
BASIC_FIXTURES = {
    "newInstance": "newInstance__huawei",
    "queryInstance": "queryInstance__huawei",
    "refreshInstance": "refreshInstance__huawei",
    "updateInstanceStatus": "updateInstanceStatus__huawei",
    "releaseInstance": "releaseInstance__huawei",
    "upgradeInstance": "upgradeInstance__huawei",
    "changeInstanceCheck": "changeInstanceCheck__composed",
    "getLicenseAsync": "getLicenseAsync__huawei",
    "orderNotify": "orderNotify__huawei",
    "refreshLicenseCode": "refreshLicenseCode__huawei",
    "updateLicenseCodeStatus": "updateLicenseCodeStatus__huawei",
    "releaseLicenseCode": "releaseLicenseCode__huawei",
}
V1_BASIC_FIXTURES = {
    "newInstance": "v1_newInstance__huawei",
    "queryInstance": "v1_queryInstance__composed",
    "refreshInstance": "v1_refreshInstance__composed",
    "expireInstance": "v1_expireInstance__composed",
    "releaseInstance": "v1_releaseInstance__composed",
    "upgrade": "v1_upgrade__composed",
    "instanceStatus": "v1_instanceStatus__freeze",
}


@pytest.fixture
def world(kg, settings, rsa_keys):  # noqa: F811
    """A debug instance Huawei's examples name, an RSA key for applicationSync, no real
    outbound host (a refused call must not reach one; accepted ones only queue jobs)."""
    settings.KOOGALLERY_RSA_PRIVATE_KEY = rsa_keys[0]
    settings.KOOGALLERY_API_BASE = settings.KOOGALLERY_API_FALLBACK = "http://127.0.0.1:9"
    body = fixture_json("newInstance__huawei", businessId=HUAWEI_INSTANCE)
    assert envelope(kg.basic(body))["resultCode"] == "000000"
    return kg


def refused_without_writes(send) -> dict:
    """Send; check the envelope; if the call was refused, nothing but its journal row changed."""
    before, journal = domain_state(), InboundCall.objects.count()
    answer = checked(send())
    if answer["resultCode"] not in ACCEPTED_CODES:
        assert domain_state() == before, answer
    assert InboundCall.objects.count() == journal + 1
    return answer


# --- no credentials, garbage credentials --------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_unsigned_random_bodies_are_refused(world, route):
    @hostile
    @given(body=raw_bodies(), content_type=st.sampled_from([None, "text/plain", "", "a/b;x"]))
    def prop(body, content_type):
        answer = refused_without_writes(lambda: post_unsigned(world, route, body, content_type))
        assert answer["resultCode"] == "000001", answer

    prop()


@pytest.mark.parametrize("route", ROUTES)
def test_validly_signed_garbage_is_invalid_param(world, route):
    """The signature matches, the body is nonsense: 000002, never a crash or a write."""

    @hostile
    @given(body=raw_bodies())
    def prop(body):
        answer = refused_without_writes(lambda: send_signed(world, route, body))
        assert answer["resultCode"] == "000002", answer

    prop()


@given(
    sign=st.one_of(latin1_text, st.sampled_from(["", " ", "0" * 64, "Z" * 10_000])),
    timestamp=st.one_of(
        latin1_text,
        st.integers().map(str),
        st.sampled_from(["", "-1", "1e12", "١٦٨٠٥٠٨٠٦٦٦١٨", " 1680508066618", "9" * 400]),
    ),
    nonce=st.one_of(latin1_text, st.sampled_from(["", "n" * 100_000])),
    drop=st.sets(st.sampled_from(["x-sign", "x-timestamp", "x-nonce"])),
)
@hostile
def _kit_headers(kg, sign, timestamp, nonce, drop):
    body = fixture_json("tenantSync__huawei_example", tenantId=f"t-{uuid.uuid4().hex}")
    answer = refused_without_writes(
        lambda: kg.kit(
            "tenantSync",
            body,
            sign=sign,
            timestamp=timestamp,
            nonce=nonce,
            headers=dict.fromkeys(drop),  # None: the header is not sent at all
        )
    )
    assert answer["resultCode"] in ("000001", "000002"), answer


def test_hostile_kit_headers(world):
    _kit_headers(world)


@hostile
@given(
    params=st.lists(
        st.tuples(
            st.sampled_from(["signature", "timestamp", "nonce", "activity", "authToken", "x"])
            | st.text(max_size=10),
            st.text(max_size=60) | st.sampled_from(SHORT_NASTY),
        ),
        max_size=8,
    ),
    raw_tail=st.sampled_from(["", "&%ff=%fe", "&signature", "&&&", "&timestamp=%00", "&=x"]),
)
def _basic_query(kg, params, raw_tail):
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params) + raw_tail
    body = json.dumps(fixture_json("queryInstance__huawei")).encode()
    answer = refused_without_writes(
        lambda: kg.client.post(f"/koogallery?{query}", data=body, content_type=kg.content_type)
    )
    assert answer["resultCode"] in ("000001", "000002"), answer


def test_hostile_basic_query_strings(world):
    _basic_query(world)


@hostile
@given(
    params=st.dictionaries(
        st.sampled_from(["activity", "instanceId", "timeStamp", "testFlag", "orderId"])
        | st.text(min_size=1, max_size=10),
        st.sampled_from(["newInstance", "queryInstance", "upgrade", "instanceStatus"])
        | st.text(max_size=40)
        | st.sampled_from(SHORT_NASTY),
        max_size=6,
    ),
    sign=st.booleans(),
    fresh=st.booleans(),
)
def _basic_v1_get(kg, params, sign, fresh):
    params.setdefault("activity", "queryInstance")
    if fresh:
        params["timeStamp"] = time.strftime("%Y%m%d%H%M%S000", time.gmtime())
    query = basic_v1_query(params, sign=sign)
    answer = refused_without_writes(lambda: kg.client.get(f"/koogallery?{query}"))
    if not sign:
        assert answer["resultCode"] == "000001", answer


def test_hostile_v1_get_query_strings(world):
    _basic_v1_get(world)


def test_v1_get_with_invalid_percent_encoding(world):
    token = signing.v1_auth_token(settings.KOOGALLERY_BASIC_KEY[0], {"activity": "x"})
    for query in (
        "activity=%ff%fe",
        "activity=%",
        "activity=%zz",
        f"activity=x&authToken={token}%",
    ):
        answer = refused_without_writes(lambda q=query: world.client.get(f"/koogallery?{q}"))
        assert answer["resultCode"] in ("000001", "000002"), (query, answer)


# --- valid calls with one field made hostile ---------------------------------------------------

MUTATIONS = st.sampled_from(["delete", "value", "deep", "duplicate_key", "extra_field"])


def mutate(body: dict, field: str, how: str, value) -> bytes:
    """`body` with `field` changed; a JSON text (duplicate keys need raw text)."""
    body = dict(body)
    if how == "delete":
        body.pop(field, None)
    elif how == "value":
        body[field] = value
    elif how == "deep":
        body[field] = deep(2000, "list" if isinstance(value, bool) else "dict")
    elif how == "extra_field":
        body[f"{field}Extra"] = value
    if how == "duplicate_key":
        # Last wins (§2.3): the hostile value comes second and is the one validated.
        head = json.dumps(body, ensure_ascii=False)[:-1]
        tail = dumps({field: value}, ascii_only=True)[1:]
        return head.encode() + b"," + tail
    if how == "deep":
        # json.dumps cannot write 2000 levels; write the nesting by hand.
        text = json.dumps({**body, field: "__DEEP__"}, ensure_ascii=False).encode()
        nested = b'{"k":' * 2000 + b'"leaf"' + b"}" * 2000
        return text.replace(b'"__DEEP__"', nested)
    return dumps(body, ascii_only=False)


@st.composite
def mutated_calls(draw, fixtures: dict[str, str], extra: dict | None = None):
    name = draw(st.sampled_from(sorted(fixtures)))
    body = fixture_json(fixtures[name], **(extra or {}).get(name, {}))
    field = draw(st.sampled_from(sorted(body)) | st.text(max_size=8))
    return name, mutate(body, field, draw(MUTATIONS), draw(json_values))


# getLicenseAsync's example names an instance nobody created: use the debug instance.
BASIC_OVERRIDES = {"getLicenseAsync": {"instanceId": HUAWEI_INSTANCE, "testFlag": "1"}}


@hostile
@given(call=mutated_calls(BASIC_FIXTURES, BASIC_OVERRIDES))
def _basic_mutations(kg, call):
    _, body = call
    refused_without_writes(lambda: kg.basic(body))


def test_basic_v2_activities_with_a_hostile_field(world):
    _basic_mutations(world)


@hostile
@given(call=mutated_calls(KIT_FIXTURES), version=st.sampled_from(["v2", "v1"]))
def _kit_mutations(kg, call, version):
    name, body = call
    refused_without_writes(lambda: send_signed(kg, f"{version}/{name}", body))


def test_kit_interfaces_with_a_hostile_field(world):
    _kit_mutations(world)


@hostile
@given(
    name=st.sampled_from(sorted(V1_BASIC_FIXTURES)),
    field=st.sampled_from(["instanceId", "orderId", "customerId", "businessId", "expireTime"])
    | st.text(min_size=1, max_size=8),
    value=st.text(max_size=60) | st.sampled_from(SHORT_NASTY),
)
def _v1_get_mutations(kg, name, field, value):
    params = {k: str(v) for k, v in fixture_json(V1_BASIC_FIXTURES[name]).items()}
    params[field] = value
    params["timeStamp"] = time.strftime("%Y%m%d%H%M%S000", time.gmtime())
    query = basic_v1_query(params, sign=True)
    refused_without_writes(lambda: kg.client.get(f"/koogallery?{query}"))


def test_v1_get_activities_with_a_hostile_parameter(world):
    _v1_get_mutations(world)


# --- specific shapes, every route ---------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("depth", [100, 900, 5000, 200_000])
@pytest.mark.parametrize("where", ["body", "field"])
def test_deep_nesting(world, route, depth, where):
    if where == "body":
        raw = b'{"k":' * depth + b"1" + b"}" * depth
    else:
        # A valid call whose mandatory field holds a deep object.
        name = "newInstance" if route == "basic" else route.split("/")[1]
        fixture = BASIC_FIXTURES[name] if route == "basic" else KIT_FIXTURES[name]
        text = json.dumps(fixture_json(fixture, instanceId="__DEEP__"), ensure_ascii=False)
        raw = text.encode().replace(b'"__DEEP__"', b"[" * depth + b"]" * depth)
    answer = refused_without_writes(lambda: send_signed(world, route, raw))
    assert answer["resultCode"] == "000002", answer


def _deeper_than_64_before_issue_17(value, text: str) -> bool:
    """The nesting check as it was before issue 17 (bracket count, then a loop a container):
    the reference the faster one must agree with."""
    if not isinstance(value, (dict, list)) or text.count("{") + text.count("[") <= 64:
        return False
    level, depth = [value], 1
    while level:
        deeper = []
        for item in level:
            children = item.values() if type(item) is dict else item
            deeper += [c for c in children if type(c) is dict or type(c) is list]
        if deeper and depth >= 64:
            return True
        level, depth = deeper, depth + 1
    return False


_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=3)
_JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=2), inner, max_size=4)
    ),
    max_leaves=20,
)


def _wrapped(value, shape: list[int], sibling):
    """`value` inside len(shape) containers: 0 a list, 1 an object, 2 a list with a sibling."""
    for kind in shape:
        value = [value] if kind == 0 else {"k": value} if kind == 1 else [sibling, value]
    return value


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=_JSON_VALUES,
    shape=st.integers(0, 70).flatmap(lambda n: st.lists(st.integers(0, 2), min_size=n, max_size=n)),
    sibling=_JSON_VALUES,
)
def test_the_nesting_limit_refuses_exactly_what_it_refused_before(value, shape, sibling):
    text = json.dumps(_wrapped(value, shape, sibling))
    try:
        jsonbody.parse_json(text)
        refused = False
    except jsonbody.BodyError as exc:
        assert "nested deeper than 64" in str(exc)
        refused = True
    assert refused == _deeper_than_64_before_issue_17(json.loads(text), text)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "value",
    [
        b'"\\ud800"',
        b'"a\\udc00b"',
        b'"\\u0000"',
        b"1e400",
        b"9" * 5000,
        b'"\xff"',
        b'"\xed\xa0\x80"',
        b"12345",  # a number where the spec says String: mistyped (§2.3 step 6)
        b"1.5",
        b"false",
    ],
)
def test_hostile_scalar_in_a_mandatory_field(world, route, value):
    name = "newInstance" if route == "basic" else route.split("/")[1]
    fixture = BASIC_FIXTURES[name] if route == "basic" else KIT_FIXTURES[name]
    field = "orderId" if route == "basic" else "tenantId"
    text = json.dumps(fixture_json(fixture, **{field: "__X__"}), ensure_ascii=False).encode()
    raw = text.replace(b'"__X__"', value)
    answer = refused_without_writes(lambda: send_signed(world, route, raw))
    assert answer["resultCode"] == "000002", answer


@pytest.mark.parametrize("method", ["put", "patch", "delete", "head"])
@pytest.mark.parametrize("path", ["/koogallery", "/koogallery/produceAPI/v2/tenantSync"])
def test_other_methods_are_405(world, method, path):
    before = domain_state()
    response = world.client.generic(method.upper(), path, b"{}", "application/json")
    assert response.status_code == 405
    assert "POST" in response["Allow"]
    assert domain_state() == before


def test_get_on_a_kit_route_is_405(world):
    response = world.client.get("/koogallery/produceAPI/v2/tenantSync?activity=x")
    assert response.status_code == 405


# --- request size -----------------------------------------------------------------------------


def realistic_all_org_sync(departments: int = 100_000) -> bytes:
    """A large tenant's allOrgSync as Huawei sends it (§4.1.5): `orgInfoList` a *string* of
    JSON (quotes escaped once more), Huawei's spacing, 32-character codes (a UUID's hex: longer
    than Huawei's 8–9 digit examples), 12-character Chinese names in UTF-8, a tree 8 deep."""
    items = []
    for n in range(departments):
        code = uuid.UUID(int=n + 1).hex
        parent = uuid.UUID(int=(n // 8) + 1).hex if n else ""
        name = f"研发中心产品市场部{n % 1000:03d}"
        items.append(f'{{"orgCode":"{code}", "orgName":"{name}", "parentCode":"{parent}" }}')
    body = {
        "instanceId": "a" * 36,
        "tenantId": "b" * 40,
        "orgInfoList": "[" + ",".join(items) + "]",
        "testFlag": 0,
        "timeStamp": "20220420114117642",
    }
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def test_size_limit_fits_a_100k_department_all_org_sync():
    size = len(realistic_all_org_sync())
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    # Room for longer names or codes, and no more than twice what the largest call needs.
    assert 1.4 * size <= limit <= 2 * size, (size, limit)


@pytest.mark.parametrize("route", ROUTES)
def test_body_over_the_limit_is_invalid_param(world, route, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    body = json.dumps({"tenantId": "t", "padding": "x" * 5000}).encode()
    answer = refused_without_writes(lambda: send_signed(world, route, body))
    assert answer["resultCode"] == "000002", answer
    assert "4096" in answer["resultMsg"]
    row = InboundCall.objects.latest("id")
    assert row.request_size == len(body) and row.result_code == "000002"


@pytest.fixture(scope="module")
def _live_service(django_db_setup):
    """gunicorn on the test database, started once for this module's tests (a start costs a
    Django import in two processes); each test still gets its own emptied database."""
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        pytest.skip(
            "a live server shares the test database only in the PostgreSQL + Redis pass "
            "(SQLite's test database is in memory)"
        )
    # After django_db_setup, the connection's NAME is the test database's (test_<name>[_gwN]).
    url = database_url(connection.settings_dict)
    service = Service(service_env(url, settings.REDIS_URL), workers=1).start()
    yield service
    service.stop()


@pytest.fixture
def live_service(transactional_db, _live_service):
    """The service under gunicorn on the test database: what the HTTP server does with a
    request matters here, not only Django."""
    return _live_service


def test_body_over_the_limit_gets_the_envelope_over_http(live_service):
    """The client is still sending when the answer is ready: the rest is read and dropped, so
    it receives 000002 rather than a reset connection."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    raw = json.dumps({"tenantId": "t", "padding": "x" * (limit + 100_000)}).encode()
    nonce, stamp = uuid.uuid4().hex, now_ms()
    sign = signing.kit_sign(settings.KOOGALLERY_KIT_KEY[0], nonce, stamp, raw)
    headers = {"x-sign": sign, "x-timestamp": stamp, "x-nonce": nonce}
    status, answer, _ = live_service.post_json("/koogallery/produceAPI/v2/allOrgSync", raw, headers)
    assert status == 200 and answer["resultCode"] == "000002", answer
    assert str(limit) in answer["resultMsg"]
    assert InboundCall.objects.filter(request_size=len(raw), result_code="000002").exists()


def chunked_request(path: str, raw: bytes, headers: dict[str, str], size: int = 4096) -> bytes:
    """An HTTP/1.1 POST whose body is sent in chunks, without a Content-Length."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
    head += "Content-Type: application/json;charset=utf8\r\nConnection: close\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    parts = [raw[i : i + size] for i in range(0, len(raw), size)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts)
    return head.encode() + chunks + b"0\r\n\r\n"


def answer_of(response: bytes) -> tuple[int, dict | bytes]:
    """Status and JSON body of a raw HTTP/1.1 answer (chunked or not)."""
    head, _, body = response.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        data = b""
        while True:
            size, _, body = body.partition(b"\r\n")
            if not int(size, 16):
                break
            data, body = data + body[: int(size, 16)], body[int(size, 16) + 2 :]
        body = data
    status = int(head.split()[1])
    return status, json.loads(body) if status == 200 else body


def kit_headers(raw: bytes) -> dict[str, str]:
    nonce, stamp = uuid.uuid4().hex, now_ms()
    sign = signing.kit_sign(settings.KOOGALLERY_KIT_KEY[0], nonce, stamp, raw)
    return {"x-sign": sign, "x-timestamp": stamp, "x-nonce": nonce}


def test_a_chunked_body_is_the_same_call(live_service):
    """An HTTP client that streams its body (Transfer-Encoding: chunked, no Content-Length, as
    Java clients may for a large allOrgSync) is served as if it had sent the length."""
    tenant_id = f"chunked-{uuid.uuid4().hex[:8]}"
    raw = json.dumps(fixture_json("tenantSync__huawei_example", tenantId=tenant_id)).encode()
    path = "/koogallery/produceAPI/v2/tenantSync"
    request = chunked_request(path, raw, kit_headers(raw), size=50)
    status, answer = answer_of(raw_http(live_service.port, request))
    assert status == 200 and answer["resultCode"] == "000000", answer
    assert Tenant.objects.filter(tenant_id=tenant_id).exists()
    assert InboundCall.objects.filter(tenant_id=tenant_id, request_size=len(raw)).exists()


def test_a_client_expecting_100_continue_is_told_to_send_its_body(live_service):
    """Java and curl clients may send `Expect: 100-continue` before a large body and wait for
    the go-ahead: they get it, and the call is served."""
    tenant_id = f"expect-{uuid.uuid4().hex[:8]}"
    raw = json.dumps(fixture_json("tenantSync__huawei_example", tenantId=tenant_id)).encode()
    head = "POST /koogallery/produceAPI/v2/tenantSync HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += "Content-Type: application/json;charset=utf8\r\nConnection: close\r\n"
    head += f"Content-Length: {len(raw)}\r\nExpect: 100-continue\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in kit_headers(raw).items())
    with socket.create_connection(("127.0.0.1", live_service.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n")
        interim = sock.recv(1024)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
        sock.sendall(raw)
        response = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n") :]
        while chunk := sock.recv(65536):
            response += chunk
    status, answer = answer_of(response)
    assert status == 200 and answer["resultCode"] == "000000", answer
    assert Tenant.objects.filter(tenant_id=tenant_id).exists()


def test_a_chunked_body_over_the_limit_gets_the_envelope(live_service):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    raw = json.dumps({"tenantId": "t", "padding": "x" * (limit + 100_000)}).encode()
    path = "/koogallery/produceAPI/v2/allOrgSync"
    request = chunked_request(path, raw, kit_headers(raw), size=1 << 20)
    status, answer = answer_of(raw_http(live_service.port, request, timeout=60))
    assert status == 200 and answer["resultCode"] == "000002", answer
    assert str(limit) in answer["resultMsg"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /koogallery HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
        b"POST /koogallery HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}",
        b"POST /koogallery HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"POST /koogallery HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{}",
        b"POST /koogallery HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"POST /koogallery?" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /koogallery HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n",
        b"POST /koogallery HTTP/1.1\r\nHost: x\r\nx-sign: \xff\xfe\r\n\r\n{}",
        b"BREW /koogallery HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00\x01\x02garbage\r\n\r\n",
        b"GET /koogallery?activity=%ff%00 HTTP/1.0\r\n\r\n",
    ],
    ids=[
        "length-not-a-number",
        "negative-length",
        "huge-length",
        "short-body",
        "chunked",
        "long-request-line",
        "long-header",
        "latin1-header",
        "unknown-method",
        "not-http",
        "bad-percent-encoding",
    ],
)
def test_malformed_http_never_gets_a_5xx(live_service, request_bytes):
    before = domain_state()
    answer = raw_http(live_service.port, request_bytes)
    status_line = answer.split(b"\r\n", 1)[0]
    # Either the HTTP server refuses it (4xx) or the endpoint answers (200 + envelope); a
    # closed connection without an answer is acceptable for what is not HTTP at all.
    if status_line:
        status = int(status_line.split()[1])
        assert status < 500, answer[:300]
    assert domain_state() == before


def test_body_at_the_limit_is_read_and_validated(world):
    """Just under the real limit the body is read and checked like any other."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = fixture_json("allOrgSync__tree", orgInfoList="__X__")
    text = json.dumps(body).encode()
    padding = limit - (len(text) - len(b'"__X__"')) - 2
    raw = text.replace(b'"__X__"', b'"' + b" " * padding + b'"')
    assert len(raw) == limit
    answer = refused_without_writes(lambda: send_signed(world, "v2/allOrgSync", raw))
    assert answer["resultCode"] == "000002" and "orgInfoList" in answer["resultMsg"], answer


# --- the other HTTP surfaces: SSO, staff API, probes ---------------------------------------------


def routes(*prefixes: str) -> list[str]:
    """Every URL route under `prefixes`, path parameters as `{t}`: endpoints added later (the
    staff and tenant APIs grow) are covered without editing this list."""
    found: list[str] = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            else:
                found.append("/" + re.sub(r"<[^>]+>", "{t}", route))

    walk(get_resolver().url_patterns, "")
    # The OpenAPI schema views render the whole schema (seconds each): probed once elsewhere.
    return sorted(r for r in found if r.startswith(prefixes) and "/schema" not in r)


SSO_PATHS = routes("/sso/")
API_PATHS = [*routes("/api/", "/staff/"), "/healthz", "/readyz"]
text_chars = st.characters(exclude_categories=["Cs"])  # what a URL's UTF-8 can carry
query_params = st.lists(
    st.tuples(
        st.sampled_from(
            ["code", "tenant", "state", "next", "appId", "instance", "q", "page", "depth", "test"]
        )
        | st.text(alphabet=text_chars, max_size=8),
        st.text(alphabet=text_chars, max_size=40)
        | st.sampled_from(SHORT_NASTY)
        | st.integers().map(str),
    ),
    max_size=6,
)


def _get_never_fails(client, path: str, params) -> None:
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
    before = domain_state()
    response = client.get(f"{path}?{query}")
    assert response.status_code < 500, (path, query, response.status_code)
    assert domain_state() == before


@hostile
@given(path=st.sampled_from(SSO_PATHS), params=query_params)
def _sso(client, path, params):
    _get_never_fails(client, path, params)


def test_sso_pages_with_hostile_query_strings(world):
    _sso(world.client)


@hostile
@given(
    path=st.sampled_from(API_PATHS),
    # A path segment as sent on the wire (percent-encoded), including bytes no text encodes to.
    segment=st.text(alphabet=text_chars, min_size=1, max_size=30).map(lambda t: quote(t, safe=""))
    | st.sampled_from(["%00", "%ED%A0%80", "%FF%FE", "..", "%2F", "%25", "x" * 300]),
    params=query_params,
)
def _staff_api(client, path, segment, params):
    _get_never_fails(client, path.format(t=segment), params)


@pytest.mark.parametrize("staff", [False, True], ids=["anonymous", "staff"])
def test_staff_api_with_hostile_paths_and_query_strings(world, staff):
    if staff:
        user = get_user_model().objects.create_user("ops", is_staff=True, is_superuser=True)
        world.client.force_login(user)
    _staff_api(world.client)


@pytest.mark.parametrize("path", SSO_PATHS)
def test_sso_pages_refuse_hostile_posts(world, path):
    before = domain_state()
    response = world.client.post(path, data=b"\xff" * 1000, content_type="application/json")
    assert response.status_code < 500
    assert domain_state() == before


def test_hostile_kit_content_types(world):
    body = json.dumps(fixture_json("tenantSync__huawei_example")).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        answer = refused_without_writes(
            lambda ct=content_type: world.kit("tenantSync", body, content_type=ct)
        )
        assert answer["resultCode"] == "000002", answer


@pytest.mark.parametrize("route", ROUTES)
def test_valid_signature_of_another_body(world, route):
    """A signature captured from one call, replayed over another body, in its time window."""
    nonce, stamp = uuid.uuid4().hex, now_ms()
    if route.startswith("v1/"):
        token = kit_v1_token(b'{"other":1}')
        send = lambda: send_signed(world, route, b'{"tenantId":"x"}', token=token)  # noqa: E731
    elif route == "basic":
        sign = signing.basic_sign(settings.KOOGALLERY_BASIC_KEY[0], nonce, stamp, b"{}")
        send = lambda: world.basic(  # noqa: E731
            b'{"activity":"x"}', signature=sign, nonce=nonce, timestamp=stamp
        )
    else:
        sign = signing.kit_sign(settings.KOOGALLERY_KIT_KEY[0], nonce, stamp, b"{}")
        send = lambda: world.kit(  # noqa: E731
            route.split("/")[1], b'{"a":1}', sign=sign, nonce=nonce, timestamp=stamp
        )
    answer = refused_without_writes(send)
    assert answer["resultCode"] == "000001", answer


assert set(KIT_FIXTURES) == set(KIT_INTERFACES)


# --- POST /api/usage (our product's metering API) ------------------------------------------------

USAGE_TOKEN = "hostile-test-metering-token"


def _usage_event() -> dict:
    return {
        "instanceId": HUAWEI_INSTANCE,
        "quantity": "1.5",
        "occurredAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "eventId": uuid.uuid4().hex,
    }


def _post_usage(client, body: bytes, token: str | None = USAGE_TOKEN, content_type=None):
    before = domain_state()
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = client.post(
        "/api/usage", data=body, content_type=content_type or "application/json", headers=headers
    )
    assert response.status_code < 500, (body[:200], response.status_code)
    answer = json.loads(response.content)
    if response.status_code >= 400:
        assert answer["code"] and answer["message"], answer
        assert domain_state() == before, answer
    return response.status_code, answer


@hostile
@given(body=raw_bodies(), token=st.sampled_from([USAGE_TOKEN, None, "", "x" * 5000, "é"]))
def _usage_garbage(client, body, token):
    status, _ = _post_usage(client, body, token)
    if token != USAGE_TOKEN:
        assert status == 401


@hostile
@given(
    field=st.sampled_from(["instanceId", "quantity", "occurredAt", "eventId"])
    | st.text(max_size=8),
    how=MUTATIONS,
    value=json_values,
    as_list=st.booleans(),
)
def _usage_mutations(client, field, how, value, as_list):
    raw = mutate(_usage_event(), field, how, value)
    if as_list:
        raw = b"[" + raw + b"]"
    _post_usage(client, raw)


def test_usage_api_with_hostile_bodies_and_tokens(world, settings):
    settings.METERING_API_TOKEN = [USAGE_TOKEN]
    _usage_garbage(world.client)
    _usage_mutations(world.client)
