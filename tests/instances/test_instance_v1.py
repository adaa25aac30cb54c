"""V1 basic activities: GET /koogallery?activity=…&authToken=… (spec §4.4, §3.3–§3.5).

Same instance model and services as V2; V1 answers are signed (Body-Sign) with the key that
verified the call and carry AES-encrypted credentials when the product provisions them.
"""

import json
import time
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from django.conf import settings

from instances.models import (
    ChargingMode,
    Instance,
    InstanceOrder,
    InstanceState,
    InstanceTransition,
    OrderEvent,
    RefreshScene,
)
from koogallery.inbound.journal import Family, InboundCall
from koogallery.protocol import signing
from koogallery.protocol.crypto import aes_decrypt, aes_encrypt
from koogallery.protocol.signing import body_sign_header
from tests.support.kgclient import envelope, fixture_json, reason

pytestmark = pytest.mark.django_db

HUAWEI_V1_INSTANCE = "61e834ba-7b97-4418-b8f7-e5345137278c"
FIRST_KEY = "testAccessKey123"
SECOND_KEY = "TEST_V1_KEY"


def answer(response, key: str = FIRST_KEY) -> dict:
    assert response["Body-Sign"] == body_sign_header(key, response.content)
    return envelope(response)


def send(kg, name: str, *, key: str = FIRST_KEY, **overrides) -> dict:
    params = fixture_json(name, **overrides)
    params = {k: v for k, v in params.items() if v is not None}
    return answer(kg.basic_v1(params, key=key), key)


def code(kg, name: str, **overrides) -> str:
    return send(kg, name, **overrides)["resultCode"]


@pytest.fixture
def instance(kg) -> Instance:
    body = send(kg, "v1_newInstance__huawei")
    assert body["instanceId"] == HUAWEI_V1_INSTANCE
    return Instance.objects.get(instance_id=HUAWEI_V1_INSTANCE)


def reload(instance: Instance) -> Instance:
    return Instance.objects.get(pk=instance.pk)


def domain_rows() -> tuple[int, int, int]:
    return (
        Instance.objects.count(),
        InstanceOrder.objects.count(),
        InstanceTransition.objects.count(),
    )


# --- newInstance ---------------------------------------------------------------------------------


def test_v1_new_instance_huawei_sample(kg):
    body = send(kg, "v1_newInstance__huawei")
    assert body == {
        "resultCode": "000000",
        "resultMsg": "success",
        "instanceId": HUAWEI_V1_INSTANCE,
        "appInfo": {
            "frontEndUrl": f"http://127.0.0.1:8000/sso/login?instance={HUAWEI_V1_INSTANCE}"
        },
    }
    instance = Instance.objects.get()
    assert instance.family == Family.BASIC_V1
    assert instance.is_test is True
    assert instance.state == InstanceState.ACTIVE
    assert (instance.order_id, instance.order_line_id) == ("CS1906666666ABCDE", "")
    assert instance.customer_id == "68cbc86abc2018ab880d92f36422fa0e"
    assert instance.product_id == "00301-666666-0--0"
    assert instance.expire_at == datetime(2020, 7, 27, 15, 31, 56, tzinfo=UTC)
    assert InboundCall.objects.get().family == Family.BASIC_V1


def test_v1_new_instance_all_parameters(kg):
    send(kg, "v1_newInstance__full")
    instance = Instance.objects.get()
    assert instance.customer_name == "huaweitest"
    assert instance.sku_code == "00301-666666-0--1"
    assert instance.charging_mode == ChargingMode.PERIOD
    assert (instance.period_type, instance.period_number) == ("year", 1)
    assert instance.is_trial is False
    # saasExtendParams is base64 with a "+"; the client URL-encoded it correctly here.
    assert instance.extend_params == [{"name": "note", "value": "测试"}]


def test_v1_new_instance_answers_are_signed_with_the_verifying_key(kg):
    body = send(kg, "v1_newInstance__huawei", key=SECOND_KEY)
    assert body["resultCode"] == "000000"


def test_v1_new_instance_idempotent_on_order_id(kg, instance):
    body = send(kg, "v1_newInstance__huawei", businessId="another-business-id")
    assert body["instanceId"] == HUAWEI_V1_INSTANCE
    assert Instance.objects.count() == 1


def test_v1_on_demand_new_instance_keyed_by_order_and_product(kg):
    first = send(kg, "v1_newInstance__huawei", chargingMode="0", businessId="od-1")
    again = send(kg, "v1_newInstance__huawei", chargingMode="0", businessId="od-2")
    other = send(kg, "v1_newInstance__huawei", chargingMode="0", businessId="od-3", productId="p-2")
    assert first["instanceId"] == again["instanceId"] == "od-1"
    assert other["instanceId"] == "od-3"
    assert Instance.objects.get(instance_id="od-3").charging_mode == ChargingMode.ON_DEMAND


def test_v1_new_instance_production_when_test_flag_absent(kg):
    body = send(kg, "v1_newInstance__huawei", testFlag=None)
    assert Instance.objects.get(instance_id=body["instanceId"]).is_test is False


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"customerId": None}, "customerId"),
        ({"chargingMode": "2"}, "chargingMode"),
        ({"expireTime": "2020-07-27"}, "expireTime"),
        ({"periodType": "week"}, "periodType"),
        ({"saasExtendParams": "bm90IGpzb24="}, "saasExtendParams"),  # base64 of "not json"
        ({"testFlag": "yes"}, "testFlag"),
    ],
)
def test_v1_new_instance_bad_fields(kg, overrides, field):
    body = send(kg, "v1_newInstance__huawei", **overrides)
    assert body["resultCode"] == "000002"
    assert reason(body).startswith(field)
    assert domain_rows() == (0, 0, 0)
    assert InboundCall.objects.get().result_code == "000002"


def test_v1_new_instance_missing_customer_fixture(kg):
    assert code(kg, "v1_newInstance__missing_customer") == "000002"


def test_v1_bad_auth_token_writes_only_the_journal(kg):
    params = fixture_json("v1_newInstance__huawei")
    response = kg.basic_v1(params, token="bm90IHRoZSB0b2tlbg==")
    body = answer(response)  # signed with the family's first key
    assert body["resultCode"] == "000001"
    assert domain_rows() == (0, 0, 0)
    assert InboundCall.objects.get().verification == "bad_signature"


def test_v1_unknown_activity(kg):
    # changeInstanceCheck and orderNotify exist in V2 only.
    body = answer(kg.basic_v1({"activity": "changeInstanceCheck", "instanceId": "x"}))
    assert body["resultCode"] == "000002"
    assert "changeInstanceCheck" in body["resultMsg"]


# --- credentials (§3.5, §4.4) --------------------------------------------------------------------


@pytest.mark.parametrize("key", [FIRST_KEY, SECOND_KEY])
def test_v1_new_instance_credentials_decrypt_with_the_verifying_key(kg, settings, key):
    settings.KOOGALLERY_PROVISION_CREDENTIALS = True
    body = send(kg, "v1_newInstance__huawei", key=key)
    assert body["encryptType"] == "1"
    app_info = body["appInfo"]
    user_name = aes_decrypt(app_info["userName"], key, "1")
    password = aes_decrypt(app_info["password"], key, "1")
    assert user_name.startswith("admin-")
    assert len(password) == 16
    assert len(app_info["userName"]) <= 128 and len(app_info["password"]) <= 128
    instance = Instance.objects.get()
    assert password not in instance.admin_password_encrypted  # encrypted at rest
    # The buyer's resource page calls again: same account, freshly encrypted.
    again = send(kg, "v1_newInstance__huawei", key=key, businessId="page-reload")["appInfo"]
    assert again["password"] != app_info["password"]  # new IV
    assert aes_decrypt(again["password"], key, "1") == password
    assert aes_decrypt(again["userName"], key, "1") == user_name
    # The journal keeps no password, not even encrypted.
    for call in InboundCall.objects.all():
        stored = json.loads(call.response_body)
        assert stored["appInfo"]["password"] == "***"


def test_v1_new_instance_without_credentials_by_default(kg):
    body = send(kg, "v1_newInstance__huawei")
    assert "encryptType" not in body
    assert set(body["appInfo"]) == {"frontEndUrl"}


def test_v2_new_instance_never_returns_credentials(kg, settings):
    settings.KOOGALLERY_PROVISION_CREDENTIALS = True
    body = envelope(kg.basic(fixture_json("newInstance__huawei")))
    assert set(body) == {"resultCode", "resultMsg", "instanceId"}


# --- encrypted buyer contact, "+" restored (§3.3, §4.4) ------------------------------------------


def raw_v1_get(kg, params: dict, key: str = FIRST_KEY):
    """A GET as Huawei sends it: base64 values with a raw "+", which decoding turns into " "."""
    params = {**params, "timeStamp": time.strftime("%Y%m%d%H%M%S000", time.gmtime())}
    token = signing.v1_auth_token(key, params)
    query = "&".join(
        f"{k}={quote(v, safe='+/=')}" for k, v in {**params, "authToken": token}.items()
    )
    return kg.client.get(f"/koogallery?{query}")


def encrypted_with_plus(plaintext: str, key: str) -> str:
    for n in range(500):
        iv = f"abcdefgh{n:08d}"
        value = aes_encrypt(plaintext, key, "1", iv=iv)
        if "+" in value:
            return value
    raise AssertionError("no ciphertext with '+' found")


def test_v1_new_instance_decrypts_mobile_and_email(kg):
    mobile = encrypted_with_plus("18688888888", FIRST_KEY)
    email = aes_encrypt("buyer@example.com", FIRST_KEY, "1")
    params = {**fixture_json("v1_newInstance__huawei"), "mobilePhone": mobile, "email": email}
    body = answer(raw_v1_get(kg, params))
    assert body["resultCode"] == "000000", body
    instance = Instance.objects.get()
    assert instance.buyer_mobile_masked == "186****8888"
    assert instance.buyer_email == "buyer@example.com"
    # The plain phone number is stored nowhere.
    call = InboundCall.objects.get()
    assert "18688888888" not in call.query_string + call.request_body + call.response_body


def test_v1_undecryptable_mobile_is_invalid_param(kg):
    bad = aes_encrypt("18688888888", "some other key", "1")
    body = send(kg, "v1_newInstance__huawei", mobilePhone=bad)
    assert body["resultCode"] == "000002"
    assert reason(body).startswith("mobilePhone")
    assert Instance.objects.count() == 0


def test_v1_saas_extend_params_plus_restored(kg):
    params = fixture_json("v1_newInstance__full")
    assert "+" in params["saasExtendParams"]
    body = answer(raw_v1_get(kg, params))
    assert body["resultCode"] == "000000", body
    assert Instance.objects.get().extend_params == [{"name": "note", "value": "测试"}]


# --- refreshInstance -----------------------------------------------------------------------------


def test_v1_refresh_instance(kg, instance):
    assert code(kg, "v1_refreshInstance__composed") == "000000"
    assert reload(instance).expire_at == datetime(2021, 7, 27, 15, 31, 56, tzinfo=UTC)
    order = InstanceOrder.objects.get()
    assert (order.event, order.scene, order.order_line_id) == (
        OrderEvent.REFRESH,
        RefreshScene.RENEWAL,
        "",
    )
    assert order.params == {"periodType": "year", "periodNumber": "1", "orderAmount": "1200.0000"}
    before = domain_rows()
    assert code(kg, "v1_refreshInstance__composed") == "000000"
    assert domain_rows() == before


def test_v1_refresh_scenes(kg, instance):
    Instance.objects.filter(pk=instance.pk).update(is_trial=True)
    send(kg, "v1_refreshInstance__trial_to_formal")
    assert reload(instance).is_trial is False
    send(kg, "v1_refreshInstance__unsubscribe")
    assert reload(instance).expire_at == datetime(2020, 7, 27, 15, 31, 56, tzinfo=UTC)
    scenes = list(InstanceOrder.objects.order_by("id").values_list("scene", flat=True))
    assert scenes == [RefreshScene.TRIAL_TO_FORMAL, RefreshScene.UNSUBSCRIBE_RENEWAL_PERIOD]


def test_v1_refresh_bad_expire_time(kg, instance):
    body = send(kg, "v1_refreshInstance__bad_expire_time")
    assert body["resultCode"] == "000002"
    assert reason(body).startswith("expireTime")
    assert InstanceOrder.objects.count() == 0


def test_v1_refresh_unknown(kg):
    assert code(kg, "v1_refreshInstance__composed") == "000003"


# --- expireInstance, instanceStatus, releaseInstance ---------------------------------------------


def test_v1_expire_instance_freezes(kg, instance):
    assert code(kg, "v1_expireInstance__composed") == "000000"
    assert reload(instance).state == InstanceState.FROZEN
    before = domain_rows()
    assert code(kg, "v1_expireInstance__composed") == "000000"
    assert domain_rows() == before
    assert "expired" in reload(instance).transitions.last().detail


def test_v1_expire_unknown_and_bad(kg):
    assert code(kg, "v1_expireInstance__composed") == "000003"
    assert code(kg, "v1_expireInstance__composed", orderId=None) == "000002"


def test_v1_instance_status(kg, instance):
    assert code(kg, "v1_instanceStatus__freeze") == "000000"
    assert reload(instance).state == InstanceState.FROZEN
    assert code(kg, "v1_instanceStatus__normal") == "000000"
    assert reload(instance).state == InstanceState.ACTIVE


def test_v1_instance_status_bad_and_unknown(kg):
    assert code(kg, "v1_instanceStatus__freeze") == "000003"
    body = send(kg, "v1_instanceStatus__bad_status")
    assert body["resultCode"] == "000002"
    assert reason(body).startswith("instanceStatus")


def test_v1_release_instance(kg, instance):
    assert code(kg, "v1_releaseInstance__composed") == "000000"
    assert reload(instance).state == InstanceState.RELEASED
    assert code(kg, "v1_releaseInstance__composed") == "000000"
    # Later calls on the released instance succeed and change nothing (§2.7).
    assert code(kg, "v1_instanceStatus__normal") == "000000"
    assert reload(instance).state == InstanceState.RELEASED


def test_v1_release_unknown_and_bad(kg):
    assert code(kg, "v1_releaseInstance__composed") == "000003"
    assert code(kg, "v1_releaseInstance__composed", orderAmount="abc") == "000002"


# --- upgrade -------------------------------------------------------------------------------------


def test_v1_upgrade(kg, instance):
    assert code(kg, "v1_upgrade__composed") == "000000"
    instance = reload(instance)
    assert (instance.product_id, instance.sku_code) == ("00301-666666-0--9", "00301-666666-0--2")
    order = InstanceOrder.objects.get()
    assert (order.event, order.order_id, order.params) == (
        OrderEvent.UPGRADE,
        "CS2008151000UPGRD",
        {"amount": 100},
    )
    # Idempotent per orderId, even if the repeat names another SKU.
    before = domain_rows()
    assert code(kg, "v1_upgrade__composed", skuCode="other") == "000000"
    assert domain_rows() == before
    assert reload(instance).sku_code == "00301-666666-0--2"


def test_v1_upgrade_bad_and_unknown(kg):
    assert code(kg, "v1_upgrade__composed") == "000003"
    body = send(kg, "v1_upgrade__missing_sku")
    assert body["resultCode"] == "000002"
    assert reason(body).startswith("skuCode")


# --- queryInstance -------------------------------------------------------------------------------


def test_v1_query_instance(kg, instance):
    body = send(kg, "v1_queryInstance__composed")
    assert body["info"] == [
        {
            "instanceId": HUAWEI_V1_INSTANCE,
            "appInfo": {
                "frontEndUrl": f"http://127.0.0.1:8000/sso/login?instance={HUAWEI_V1_INSTANCE}"
            },
        }
    ]


def test_v1_query_unknown_and_debug_scoped(kg, instance):
    assert code(kg, "v1_queryInstance__composed", instanceId="nope") == "000003"
    # An instanceId names one instance across production and test data (§2.7).
    assert code(kg, "v1_queryInstance__composed", testFlag="0") == "000000"
    assert code(kg, "v1_queryInstance__composed", instanceId=",") == "000002"


def test_settings_keys_are_the_spec_keys():
    assert settings.KOOGALLERY_BASIC_KEY == [FIRST_KEY, SECOND_KEY]


# --- debug mode, activity by activity (§2.5) -----------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "v1_queryInstance__composed",
        "v1_refreshInstance__composed",
        "v1_expireInstance__composed",
        "v1_instanceStatus__freeze",
        "v1_upgrade__composed",
        "v1_releaseInstance__composed",
    ],
)
def test_v1_debug_and_production_instances_are_apart(kg, name):
    send(kg, "v1_newInstance__huawei", testFlag=None)  # a production instance
    assert code(kg, name) == "000003"  # the debug call does not see it
    assert code(kg, name, testFlag=None) == "000000"
    assert code(kg, name, testFlag="2") == "000002"
