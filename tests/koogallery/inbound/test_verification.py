"""Verification of inbound calls, every failure case one by one (spec §2.3, STYLE.md §4).

The same rules hold for the kit family (headers) and the basic family (query string); each case
runs against both. A rejected call writes its journal row and nothing else.
"""

import json
import time
import uuid

import pytest
from django.conf import settings

from koogallery.models import InboundCall, Verification
from koogallery.protocol import signing
from koogallery.protocol.envelope import envelope_bytes
from koogallery.protocol.resultcodes import ResultCode
from tenants.models import Tenant
from tests.support.kgclient import envelope, now_ms

pytestmark = pytest.mark.django_db

TENANT_BODY = {
    "instanceId": "inst-verify",
    "orderId": "CS-VERIFY",
    "tenantId": "tenant-verify",
    "tenantCode": "verify",
    "name": "Verify Ltd",
    "domainName": "https://verify.example.com",
    "flag": 1,
    "testFlag": 0,
    "timeStamp": "20220413093539534",
}


def send(kg, family: str, **kwargs):
    """A tenantSync (kit) or an unknown-instance queryInstance (basic) with the given tweaks."""
    if family == "kit":
        return kg.kit("tenantSync", kwargs.pop("body", TENANT_BODY), **kwargs)
    body = kwargs.pop("body", {"activity": "queryInstance", "instanceId": "nope"})
    if "sign" in kwargs:
        kwargs["signature"] = kwargs.pop("sign")
    return kg.basic(body, **kwargs)


def expected_success(family: str) -> str:
    # queryInstance of an unknown id is verified, then answers "instance does not exist".
    return "000000" if family == "kit" else "000003"


FAMILIES = ["kit", "basic"]


def last_call() -> InboundCall:
    return InboundCall.objects.latest("id")


@pytest.mark.parametrize("family", FAMILIES)
def test_valid_call_is_verified(kg, family):
    body = envelope(send(kg, family))
    assert body["resultCode"] == expected_success(family)
    assert last_call().verification == Verification.VERIFIED


@pytest.mark.parametrize("family", FAMILIES)
def test_missing_signature_is_auth_failure(kg, family):
    body = envelope(send(kg, family, sign=""))
    assert body["resultCode"] == "000001"
    assert last_call().verification == Verification.MISSING


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("missing", ["timestamp", "nonce"])
def test_missing_timestamp_or_nonce_is_invalid_param(kg, family, missing):
    # An empty value is dropped from the request by the client helper.
    kwargs = {missing: "", "sign": "AB" * 32}
    body = envelope(send(kg, family, **kwargs))
    assert body["resultCode"] == "000002"


@pytest.mark.parametrize("family", FAMILIES)
def test_non_integer_timestamp_is_invalid_param(kg, family):
    body = envelope(send(kg, family, timestamp="2023-04-03T00:00:00Z"))
    assert body["resultCode"] == "000002"
    assert last_call().verification == Verification.MALFORMED


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("offset_s", [-61, 61, -3600, 86400])
def test_stale_or_future_timestamp_is_refused(kg, family, offset_s):
    stamp = str(int((time.time() + offset_s) * 1000))
    body = envelope(send(kg, family, timestamp=stamp))
    assert body["resultCode"] == "000002"
    assert last_call().verification == Verification.STALE
    assert not Tenant.objects.exists()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("offset_s", [-50, 50])
def test_timestamp_inside_window_is_accepted(kg, family, offset_s):
    stamp = str(int((time.time() + offset_s) * 1000))
    body = envelope(send(kg, family, timestamp=stamp))
    assert body["resultCode"] == expected_success(family)


@pytest.mark.parametrize("family", FAMILIES)
def test_replayed_nonce_is_refused(kg, family):
    nonce = uuid.uuid4().hex
    assert envelope(send(kg, family, nonce=nonce))["resultCode"] == expected_success(family)
    body = envelope(send(kg, family, nonce=nonce))
    assert body["resultCode"] == "000001"
    assert last_call().verification == Verification.REPLAYED


@pytest.mark.parametrize("family", FAMILIES)
def test_nonce_of_a_forged_call_is_not_burnt(kg, family):
    """Step 5 records the nonce only after the signature matched: a forger cannot block it."""
    nonce = uuid.uuid4().hex
    assert envelope(send(kg, family, nonce=nonce, sign="AB" * 32))["resultCode"] == "000001"
    assert envelope(send(kg, family, nonce=nonce))["resultCode"] == expected_success(family)


@pytest.mark.parametrize("family", FAMILIES)
def test_tampered_body_is_refused(kg, family, settings):
    if family == "kit":
        raw = json.dumps(TENANT_BODY).encode()
        ts, nonce = now_ms(), uuid.uuid4().hex
        sign = signing.kit_sign(settings.KOOGALLERY_KIT_KEY[0], nonce, ts, raw)
        tampered = raw.replace(b"Verify Ltd", b"Evil Ltd")
        response = kg.kit("tenantSync", tampered, sign=sign, nonce=nonce, timestamp=ts)
    else:
        raw = b'{"activity":"queryInstance","instanceId":"nope"}'
        ts, nonce = now_ms(), uuid.uuid4().hex
        sign = signing.basic_sign(settings.KOOGALLERY_BASIC_KEY[0], nonce, ts, raw)
        tampered = raw.replace(b"nope", b"nop2")
        response = kg.basic(tampered, signature=sign, nonce=nonce, timestamp=ts)
    assert envelope(response)["resultCode"] == "000001"
    assert last_call().verification == Verification.BAD_SIGNATURE
    assert not Tenant.objects.exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_wrong_key_is_refused(kg, family):
    body = envelope(send(kg, family, key="NOT_A_CONFIGURED_KEY"))
    assert body["resultCode"] == "000001"
    assert not Tenant.objects.exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_rotated_key_is_accepted_and_signs_the_answer(kg, family, settings):
    keys = settings.KOOGALLERY_KIT_KEY if family == "kit" else settings.KOOGALLERY_BASIC_KEY
    response = send(kg, family, key=keys[1])
    assert envelope(response)["resultCode"] == expected_success(family)
    assert last_call().key_index == 1
    # Body-Sign uses the key that verified the request (§2.4).
    expected = signing.body_sign_header(keys[1], response.content)
    assert response["Body-Sign"] == expected


@pytest.mark.parametrize("family", FAMILIES)
def test_lower_and_upper_case_signatures_both_verify(kg, family, settings):
    raw = json.dumps(TENANT_BODY if family == "kit" else {"activity": "queryInstance"}).encode()
    ts, nonce = now_ms(), uuid.uuid4().hex
    if family == "kit":
        sign = signing.kit_sign(settings.KOOGALLERY_KIT_KEY[0], nonce, ts, raw).lower()
        response = kg.kit("tenantSync", raw, sign=sign, nonce=nonce, timestamp=ts)
    else:
        sign = signing.basic_sign(settings.KOOGALLERY_BASIC_KEY[0], nonce, ts, raw).lower()
        response = kg.basic(raw, signature=sign, nonce=nonce, timestamp=ts)
    assert envelope(response)["resultCode"] != "000001"


@pytest.mark.parametrize("family", FAMILIES)
def test_signature_over_canonical_form_is_accepted(kg, family, settings):
    """KooGallery may sign the sorted compact JSON instead of the bytes it sends (§2.3)."""
    body = TENANT_BODY if family == "kit" else {"instanceId": "nope", "activity": "queryInstance"}
    raw = json.dumps(body, indent=2).encode()
    canonical = signing.canonical_json(body)
    ts, nonce = now_ms(), uuid.uuid4().hex
    if family == "kit":
        sign = signing.kit_sign(settings.KOOGALLERY_KIT_KEY[0], nonce, ts, canonical)
        response = kg.kit("tenantSync", raw, sign=sign, nonce=nonce, timestamp=ts)
    else:
        sign = signing.basic_sign(settings.KOOGALLERY_BASIC_KEY[0], nonce, ts, canonical)
        response = kg.basic(raw, signature=sign, nonce=nonce, timestamp=ts)
    assert envelope(response)["resultCode"] == expected_success(family)


@pytest.mark.parametrize("family", FAMILIES)
def test_no_key_configured_refuses_everything(kg, family, settings):
    settings.KOOGALLERY_KIT_KEY = []
    settings.KOOGALLERY_BASIC_KEY = []
    response = send(kg, family, key="anything")
    assert envelope(response)["resultCode"] == "000001"
    assert "Body-Sign" not in response
    assert last_call().verification == Verification.NO_KEY


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"not json", None),
        (b"[1, 2]", None),
        (b"\xff\xfe{}", None),
        (b'{"a": NaN}', None),
        (b"[" * 5000 + b"]" * 5000, None),
        (json.dumps(TENANT_BODY).encode(), "text/plain"),
    ],
    ids=["not-json", "array", "bad-utf8", "nan", "deep-nesting", "wrong-content-type"],
)
def test_malformed_bodies_answer_invalid_param_after_verification(kg, family, raw, content_type):
    response = send(kg, family, body=raw, content_type=content_type)
    assert envelope(response)["resultCode"] == "000002"
    assert last_call().verification == Verification.VERIFIED
    assert not Tenant.objects.exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_utf8_charset_spelling_is_accepted(kg, family):
    response = send(kg, family, content_type="application/json; charset=utf-8")
    assert envelope(response)["resultCode"] == expected_success(family)


@pytest.mark.parametrize(
    "path, key_setting, allowed",
    [
        ("/koogallery", "KOOGALLERY_BASIC_KEY", "GET, POST"),
        ("/koogallery/produceAPI/v2/tenantSync", "KOOGALLERY_KIT_KEY", "POST"),
        ("/koogallery/produceAPI/authSync", "KOOGALLERY_KIT_KEY", "POST"),
    ],
)
@pytest.mark.parametrize("method", ["put", "delete", "patch", "options", "head"])
def test_other_methods_get_405(client, path, key_setting, allowed, method):
    """§2.1/§2.4: a method the endpoint does not serve (OPTIONS and HEAD too) gets 405 listing
    what it serves, and Body-Sign like every answer (the family's first key)."""
    response = client.generic(method.upper(), path)
    assert response.status_code == 405
    assert response["Allow"] == allowed
    key = getattr(settings, key_setting)[0]
    # HEAD answers no body: the signature is that of the body GET would have had.
    content = response.content or envelope_bytes(
        ResultCode.INVALID_PARAM, f"method {method.upper()} not allowed; served: {allowed}"
    )
    assert response["Body-Sign"] == signing.body_sign_header(key, content)


KIT_NAMES = ("tenantSync", "applicationSync", "authSync", "singleOrgSync", "allOrgSync")
EVERY_ENDPOINT = [
    ("/koogallery", "KOOGALLERY_BASIC_KEY", "GET, POST"),
    ("/koogallery/", "KOOGALLERY_BASIC_KEY", "GET, POST"),
    *((f"/koogallery/produceAPI/v2/{name}", "KOOGALLERY_KIT_KEY", "POST") for name in KIT_NAMES),
    *((f"/koogallery/produceAPI/{name}", "KOOGALLERY_KIT_KEY", "POST") for name in KIT_NAMES),
]


def answer_405(response, key_setting: str, allowed: str) -> dict:
    """A 405 is answered like every call (§2.4): the JSON envelope, signed (§3.4)."""
    assert response.status_code == 405
    assert response["Allow"] == allowed
    assert response["Content-Type"] == "application/json;charset=UTF-8"
    key = getattr(settings, key_setting)[0]
    assert response["Body-Sign"] == signing.body_sign_header(key, response.content)
    body = json.loads(response.content)
    assert list(body) == ["resultCode", "resultMsg"]
    return body


@pytest.mark.parametrize("path, key_setting, allowed", EVERY_ENDPOINT)
@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_405_is_the_protocol_envelope_naming_the_methods_served(
    client, path, key_setting, allowed, method
):
    body = answer_405(client.generic(method, path, b"{}", "application/json"), key_setting, allowed)
    assert body == {
        "resultCode": "000002",
        "resultMsg": f"invalid request parameter: method {method} not allowed; served: {allowed}",
    }
    assert not InboundCall.objects.exists()  # refused before it is a call


@pytest.mark.parametrize("name", KIT_NAMES)
def test_get_on_a_kit_route_is_the_405_envelope(client, name):
    for path in (f"/koogallery/produceAPI/v2/{name}", f"/koogallery/produceAPI/{name}"):
        body = answer_405(client.get(f"{path}?activity=x"), "KOOGALLERY_KIT_KEY", "POST")
        assert body["resultMsg"].endswith("method GET not allowed; served: POST")


def test_get_without_activity_is_405(client):
    body = answer_405(client.get("/koogallery"), "KOOGALLERY_BASIC_KEY", "GET, POST")
    assert body == {
        "resultCode": "000002",
        "resultMsg": "invalid request parameter: GET without activity is not served; "
        "served: GET, POST",
    }


def test_a_head_405_carries_the_headers_of_its_envelope(client):
    response = client.head("/koogallery/produceAPI/v2/tenantSync")
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert response["Content-Type"] == "application/json;charset=UTF-8"
    envelope_sent = envelope_bytes(
        ResultCode.INVALID_PARAM, "method HEAD not allowed; served: POST"
    )
    key = settings.KOOGALLERY_KIT_KEY[0]
    assert response["Body-Sign"] == signing.body_sign_header(key, envelope_sent)


def test_trailing_slash_is_the_same_view(kg):
    response = kg.basic({"activity": "queryInstance", "instanceId": "nope"}, path="/koogallery/")
    assert envelope(response)["resultCode"] == "000003"


def test_every_answer_is_signed_with_body_sign(kg, settings):
    response = send(kg, "kit", sign="AB" * 32)
    assert response["Body-Sign"] == signing.body_sign_header(
        settings.KOOGALLERY_KIT_KEY[0], response.content
    )


def test_rejected_call_leaves_only_its_journal_row(kg):
    before = InboundCall.objects.count()
    body = dict(TENANT_BODY, flag=7)
    response = send(kg, "kit", body=body)
    assert envelope(response)["resultCode"] == "000002"
    assert "flag" in envelope(response)["resultMsg"]
    assert InboundCall.objects.count() == before + 1
    assert not Tenant.objects.exists()


def test_exception_answers_000005_and_rolls_back(kg, monkeypatch):
    from tenants import views

    def boom(*args, **kwargs):
        raise RuntimeError("database on fire")

    view_class = views.TenantSyncView
    monkeypatch.setattr(view_class, "perform", boom)
    response = send(kg, "kit")
    assert envelope(response)["resultCode"] == "000005"
    call = last_call()
    assert call.result_code == "000005"
    assert "database on fire" in call.error
    assert not Tenant.objects.exists()


# --- V1 authToken (§2.3 last paragraph, §3.3, §4.4) ---------------------------------------------
V1_TENANT = dict(TENANT_BODY)


def test_v1_kit_valid_token(kg):
    response = kg.kit_v1("tenantSync", V1_TENANT)
    assert envelope(response)["resultCode"] == "000000"
    assert response["Body-Sign"]


def test_v1_kit_quoted_token_as_huawei_prints_it(kg, settings):
    token = signing.v1_auth_token(settings.KOOGALLERY_KIT_KEY[0], V1_TENANT)
    response = kg.kit_v1("tenantSync", V1_TENANT, token=f'"{token}\u201d')
    assert envelope(response)["resultCode"] == "000000"


def test_v1_kit_missing_token(kg):
    response = kg.kit_v1("tenantSync", V1_TENANT, token="")
    assert envelope(response)["resultCode"] == "000001"
    assert not Tenant.objects.exists()


def test_v1_kit_wrong_token(kg):
    response = kg.kit_v1("tenantSync", V1_TENANT, key="WRONG")
    assert envelope(response)["resultCode"] == "000001"
    assert not Tenant.objects.exists()


def test_v1_kit_non_object_body(kg):
    response = kg.client.post(
        "/koogallery/produceAPI/tenantSync",
        data=b"[]",
        content_type="application/json",
        headers={"authToken": "x"},
    )
    assert envelope(response)["resultCode"] == "000002"


def test_v1_response_body_sign_matches_sent_bytes(kg, settings):
    response = kg.kit_v1("tenantSync", V1_TENANT)
    assert response["Body-Sign"] == signing.body_sign_header(
        settings.KOOGALLERY_KIT_KEY[0], response.content
    )


def test_v1_basic_get_without_token(kg):
    response = kg.basic_v1({"activity": "queryInstance", "instanceId": "nope"}, token="")
    assert envelope(response)["resultCode"] == "000001"


def test_v1_basic_get_stale_timestamp(kg):
    old = time.strftime("%Y%m%d%H%M%S000", time.gmtime(time.time() - 2 * 86400))
    params = {"activity": "queryInstance", "instanceId": "nope", "timeStamp": old}
    response = kg.basic_v1(params)
    assert envelope(response)["resultCode"] == "000002"


def test_v1_basic_get_plus_restored_in_token(kg, settings):
    """A `+` in authToken arrives as a space after URL decoding (§4.4): it still verifies."""
    from urllib.parse import quote

    params = {"activity": "queryInstance", "instanceId": "nope"}
    params["timeStamp"] = time.strftime("%Y%m%d%H%M%S000", time.gmtime())
    for attempt in range(200):
        params["instanceId"] = f"nope{attempt}"
        token = signing.v1_auth_token(settings.KOOGALLERY_BASIC_KEY[0], params)
        if "+" in token:
            break
    query = "&".join(f"{k}={quote(v)}" for k, v in params.items())
    # Send the `+` unescaped, as a naive client does: decoding turns it into a space.
    response = kg.client.get(f"/koogallery?{query}&authToken={token}")
    assert envelope(response)["resultCode"] == "000003"


def test_nul_in_a_v1_parameter_never_breaks_the_call(kg):
    """The journal row is saved early by lifecycle handlers: a NUL (which PostgreSQL text cannot
    hold) in any parameter must not turn a valid V1 newInstance into 000005."""
    params = {
        "activity": "newInstance",
        "businessId": "b-nul",
        "customerId": "c-nul",
        "orderId": "CS-NUL",
        "instanceId": "a\x00b",
        "testFlag": "1",
    }
    assert envelope(kg.basic_v1(params))["resultCode"] == "000000"
    assert "\x00" not in last_call().instance_id
