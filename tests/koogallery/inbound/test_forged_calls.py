"""The review's forgeries and replays, through the real endpoints (spec §2.3, "Unambiguous signed
text"): each keeps a captured call's signature valid over a different request, and each is now
refused before any key is tried and writes nothing but its journal row.
"""

import json
import uuid
from urllib.parse import urlencode

import pytest
from django.conf import settings

from instances.models import Instance, InstanceState
from koogallery.inbound.journal import InboundCall, Verification
from koogallery.protocol import signing
from tenants.models import Authorization, Tenant, TenantUser
from tests.support.kgclient import envelope, fixture_json, now_ms, v1_time_stamp
from tests.support.tenant_kit import domain_state

pytestmark = pytest.mark.django_db

KIT_KEY = settings.KOOGALLERY_KIT_KEY[0]
BASIC_KEY = settings.KOOGALLERY_BASIC_KEY[0]


def last_call() -> InboundCall:
    return InboundCall.objects.latest("id")


# --- 1. V1 authSync: the signed userList moved into a made-up key ------------------------------
def captured_auth_sync() -> dict:
    """A V1 authSync as Huawei sends it; the e-mail is ciphertext, so the string holds `=`."""
    users = [
        {
            "userName": "zhangsan01",
            "name": "张三",
            "orgCode": "123456789",
            "role": "user",
            "enable": "true",
            "email": "abcdefgh12345678pK8PDvOFeqZGyl4zomrQoQ==",
        }
    ]
    body = fixture_json("authSync__v1_string_user_list")
    body["userList"] = json.dumps(users, ensure_ascii=False)
    return body


def resplit_user_list(body: dict) -> dict:
    """The attack: `userList=<first part>` as a made-up key holding the rest of the signed
    string, and an unsigned array `userList` (the join skips arrays) with an admin."""
    first, _, rest = body["userList"].partition("=")
    forged = {k: v for k, v in body.items() if k != "userList"}
    forged[f"userList={first}"] = rest
    forged["userList"] = [
        {"userName": "mallory", "name": "M", "orgCode": "1", "role": "admin", "enable": "true"}
    ]
    return forged


@pytest.mark.parametrize("first_delivered", [False, True])
def test_v1_auth_sync_with_the_signed_string_moved_into_a_made_up_key_is_refused(
    kg, first_delivered
):
    captured = captured_auth_sync()
    token = signing.v1_auth_token(KIT_KEY, captured)
    forged = resplit_user_list(captured)
    # The forgery is real: the same signed text, so the same valid token.
    assert signing.v1_joined(forged) == signing.v1_joined(captured)
    assert signing.verify_v1([KIT_KEY], token, forged) == KIT_KEY
    if first_delivered:
        assert envelope(kg.kit_v1("authSync", captured, token=token))["resultCode"] == "000000"
    before = domain_state()

    answer = envelope(kg.kit_v1("authSync", forged, token=token))

    assert answer["resultCode"] == "000002", answer
    assert "userList=" in answer["resultMsg"]
    assert domain_state() == before
    assert not TenantUser.objects.filter(user_name="mallory").exists()
    assert last_call().verification == Verification.MALFORMED


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"userList": [{"userName": "a"}]}, "userList: must be a string"),
        ({"extra": {"a": 1}}, "extra: must be a string"),
        ({"bad name": "x"}, "is not a name"),
        ({"authToken": "x"}, "authToken: goes in the authToken header"),
        ({"tenantId": "t&instanceId=evil"}, "tenantId: must not hold '&<name>='"),
    ],
)
def test_v1_kit_parameters_that_would_blur_the_join_are_refused(kg, change, why):
    body = {**captured_auth_sync(), **change}
    before = domain_state()
    answer = envelope(kg.kit_v1("authSync", body))
    assert answer["resultCode"] == "000002"
    assert why in answer["resultMsg"], answer
    assert domain_state() == before


def test_v1_kit_repeated_key_is_refused(kg):
    """Duplicate keys: JSON says last wins, the join sees one; V1 refuses them (§2.3)."""
    body = captured_auth_sync()
    raw = json.dumps(body, ensure_ascii=False)
    raw = raw[:-1] + ', "userList": "[]"}'
    token = signing.v1_auth_token(KIT_KEY, json.loads(raw))
    response = kg.client.post(
        "/koogallery/produceAPI/authSync",
        data=raw.encode(),
        content_type="application/json",
        headers={"authToken": token},
    )
    answer = envelope(response)
    assert answer["resultCode"] == "000002"
    assert "userList: parameter repeated" in answer["resultMsg"]
    assert not TenantUser.objects.exists()


def test_huawei_v1_blank_and_null_values_are_read_as_absent(kg):
    """Huawei's debug calls send `"instanceId": ""`; the join skips it, so the service reads it
    as absent, and a mandatory field that may be blank reads an absent value as blank."""
    body = {**captured_auth_sync(), "instanceId": "", "position": None}
    assert envelope(kg.kit_v1("authSync", body))["resultCode"] == "000000"
    without = {k: v for k, v in body.items() if k not in ("instanceId", "position")}
    without["flag"] = 0  # another call; its token differs (not a replay)
    assert envelope(kg.kit_v1("authSync", without))["resultCode"] == "000000"
    assert Authorization.objects.get().instance_id == ""


# --- 1b. V1 GET: one parameter folded into another ----------------------------------------------
def get(kg, params: dict[str, str], token: str):
    query = urlencode([*params.items(), ("authToken", token)])
    return kg.client.get(f"/koogallery?{query}")


def test_v1_get_with_a_parameter_folded_into_another_is_refused(kg):
    """newInstance for customer `c` named `n`: folding `&customerName=n` into customerId keeps
    the token and would create the instance for customer `c&customerName=n`."""
    params = {
        k: str(v)
        for k, v in fixture_json("v1_newInstance__full").items()
        if k not in ("saasExtendParams",)
    }
    params["timeStamp"] = v1_time_stamp()
    token = signing.v1_auth_token(BASIC_KEY, params)
    folded = dict(params)
    folded["customerId"] = f"{params['customerId']}&customerName={folded.pop('customerName')}"
    assert signing.v1_joined(folded) == signing.v1_joined(params)

    answer = envelope(get(kg, folded, token))

    assert answer["resultCode"] == "000002", answer
    assert "customerId: must not hold" in answer["resultMsg"]
    assert not Instance.objects.exists()
    # The genuine call still goes through.
    assert envelope(get(kg, params, token))["resultCode"] == "000000"


def test_v1_get_repeated_parameter_is_refused(kg):
    params = {k: str(v) for k, v in fixture_json("v1_newInstance__huawei").items()}
    params["timeStamp"] = v1_time_stamp()
    token = signing.v1_auth_token(BASIC_KEY, params)
    query = urlencode([*params.items(), ("orderId", "CS-OTHER"), ("authToken", token)])
    answer = envelope(kg.client.get(f"/koogallery?{query}"))
    assert answer["resultCode"] == "000002"
    assert "orderId: parameter repeated" in answer["resultMsg"]
    assert not Instance.objects.exists()


# --- 2. V2: the nonce's last character moved to the front of the timestamp ----------------------
TENANT = {
    "instanceId": "inst-shift",
    "orderId": "CS-SHIFT",
    "tenantId": "tenant-shift",
    "tenantCode": "shift",
    "name": "Shift Ltd",
    "domainName": "https://shift.example.com",
    "flag": 1,
    "testFlag": 0,
    "timeStamp": "20220413093539534",
}


def test_kit_v2_replay_with_the_nonce_boundary_moved_is_refused(kg):
    nonce, ts = uuid.uuid4().hex.upper()[:-1] + "0", now_ms()
    raw = json.dumps(TENANT).encode()
    sign = signing.kit_sign(KIT_KEY, nonce, ts, raw).upper()
    assert sign == signing.kit_sign(KIT_KEY, nonce[:-1], "0" + ts, raw).upper()
    assert envelope(kg.kit("tenantSync", raw, nonce=nonce, timestamp=ts, sign=sign))[
        "resultCode"
    ] == "000000"
    removed = {**TENANT, "flag": 0, "timeStamp": "20220413093539999"}
    assert envelope(kg.kit("tenantSync", removed))["resultCode"] == "000000"
    state = domain_state()

    replay = kg.kit("tenantSync", raw, nonce=nonce[:-1], timestamp="0" + ts, sign=sign)

    answer = envelope(replay)
    assert answer["resultCode"] == "000002", answer
    assert "timestamp must be Unix milliseconds" in answer["resultMsg"]
    assert domain_state() == state
    assert Tenant.objects.get().removed_at is not None
    assert last_call().verification == Verification.MALFORMED


def test_basic_v2_replay_with_the_nonce_boundary_moved_is_refused(kg):
    instance = envelope(kg.basic(fixture_json("newInstance__huawei")))["instanceId"]
    freeze = fixture_json("updateInstanceStatus__huawei", instanceId=instance)
    nonce, ts = uuid.uuid4().hex.upper()[:-1] + "0", now_ms()
    raw = json.dumps(freeze).encode()
    sign = signing.basic_sign(BASIC_KEY, nonce, ts, raw).upper()
    assert sign == signing.basic_sign(BASIC_KEY, nonce[:-1], "0" + ts, raw).upper()
    assert envelope(kg.basic(raw, nonce=nonce, timestamp=ts, signature=sign))[
        "resultCode"
    ] == "000000"
    unfreeze = fixture_json("updateInstanceStatus__unfreeze", instanceId=instance)
    assert envelope(kg.basic(unfreeze))["resultCode"] == "000000"
    state = domain_state()

    answer = envelope(kg.basic(raw, nonce=nonce[:-1], timestamp="0" + ts, signature=sign))

    assert answer["resultCode"] == "000002", answer
    assert domain_state() == state
    assert Instance.objects.get().state == InstanceState.ACTIVE


@pytest.mark.parametrize(
    "shape",
    ["0" + "1" * 12, " {now}", "+{now}", "1" * 14],
    ids=["leading zero", "leading space", "plus sign", "14 digits"],
)
def test_non_canonical_timestamps_are_refused(kg, shape):
    timestamp = shape.format(now=now_ms())  # stamped when the test runs (same ids in each worker)
    answer = envelope(kg.kit("tenantSync", TENANT, timestamp=timestamp))
    assert answer["resultCode"] == "000002"
    assert last_call().verification == Verification.MALFORMED
    assert not Tenant.objects.exists()


def test_v1_single_org_sync_reads_parent_code_absent_or_blank_alike(kg):
    """V1 signs neither `"parentCode": ""` nor a missing parentCode: both read as "" (top
    level, as Huawei sends it), where V2 reads a missing one as "keep the parent"."""
    from tests.support.org_kit import single, tree

    for code, parent in (("100", ""), ("110", "100")):
        assert single(kg, code, parent=parent, version="v1")["resultCode"] == "000000"
    assert single(kg, "110", "研发部", None, flag=2, version="v1")["resultCode"] == "000000"
    assert tree()["110"] == ("研发部", "", None)
    # V2 tells them apart: no parentCode on a modify keeps the parent.
    assert single(kg, "110", "平台部", "100", flag=2)["resultCode"] == "000000"
    assert single(kg, "110", "研发部", None, flag=2)["resultCode"] == "000000"
    assert tree()["110"] == ("研发部", "100", "100")
