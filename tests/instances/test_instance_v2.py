"""Basic V2 instance activities (spec §2.7, §4.2), driven by Huawei's example bodies.

Each activity: success, repeat (idempotent), unknown instance, bad fields and debug mode
(testFlag "1" vs production). Every answer is checked for the envelope and a valid Body-Sign.
"""

import json
import logging
from datetime import UTC, datetime

import pytest
from django.conf import settings

from instances.models import (
    Instance,
    InstanceOrder,
    InstanceState,
    InstanceTransition,
    OrderEvent,
    RefreshScene,
)
from koogallery.inbound.journal import InboundCall
from koogallery.protocol.signing import body_sign_header
from tenants.models import Tenant, TenantBinding
from tests.support.kgclient import envelope, fixture, fixture_json, reason

pytestmark = pytest.mark.django_db

# The instanceId Huawei's examples use after newInstance (§4.2).
HUAWEI_INSTANCE = "10e758d0-31ad-4c4b-8f1b-81d03469a10e"
HUAWEI_BUSINESS_ID = "87b94795-0603-4e24-8ae5-69420d60e3c8"


def answer(response, key: str | None = None) -> dict:
    """The envelope, after checking Body-Sign is the key's signature of the exact bytes."""
    key = key or settings.KOOGALLERY_BASIC_KEY[0]
    assert response["Body-Sign"] == body_sign_header(key, response.content)
    return envelope(response)


def send(kg, name: str, **overrides) -> dict:
    """Post fixture `name` as KooGallery does: byte for byte unless fields are overridden."""
    body = fixture_json(name, **overrides) if overrides else fixture(name)
    return answer(kg.basic(body))


def code(kg, name: str, **overrides) -> str:
    return send(kg, name, **overrides)["resultCode"]


@pytest.fixture
def instance(kg) -> Instance:
    """The debug instance Huawei's examples name (created by a debug newInstance)."""
    body = send(kg, "newInstance__huawei", businessId=HUAWEI_INSTANCE)
    assert body["instanceId"] == HUAWEI_INSTANCE
    return Instance.objects.get(instance_id=HUAWEI_INSTANCE)


def reload(instance: Instance) -> Instance:
    return Instance.objects.get(pk=instance.pk)


def domain_rows() -> tuple[int, int, int]:
    return (
        Instance.objects.count(),
        InstanceOrder.objects.count(),
        InstanceTransition.objects.count(),
    )


# --- newInstance ---------------------------------------------------------------------------------


def test_new_instance_huawei_example(kg):
    body = send(kg, "newInstance__huawei")
    assert body == {
        "resultCode": "000000",
        "resultMsg": "success",
        "instanceId": HUAWEI_BUSINESS_ID,
    }
    instance = Instance.objects.get()
    assert (instance.order_id, instance.order_line_id) == (
        "CS2211181819B4LVS",
        "CS2211181819B4LVS-000001",
    )
    assert instance.is_test is True
    assert instance.state == InstanceState.ACTIVE
    call = InboundCall.objects.get()
    assert call.endpoint == "newInstance"
    assert call.instance_id == HUAWEI_BUSINESS_ID  # searchable though the body has no instanceId
    trail = list(instance.transitions.values_list("from_state", "to_state", "inbound_call"))
    assert trail == [
        ("", InstanceState.PROVISIONING, call.pk),
        (InstanceState.PROVISIONING, InstanceState.ACTIVE, call.pk),
    ]


def test_new_instance_repeat_answers_the_first_business_id(kg):
    send(kg, "newInstance__huawei")
    for retry_id in ("retry-1", "retry-2"):
        body = send(kg, "newInstance__huawei", businessId=retry_id)
        assert body["resultCode"] == "000000"
        assert body["instanceId"] == HUAWEI_BUSINESS_ID
    assert Instance.objects.count() == 1
    assert InstanceTransition.objects.count() == 2


def test_new_instance_repeat_after_release_answers_the_same_instance(kg):
    send(kg, "newInstance__huawei")
    assert code(kg, "releaseInstance__huawei", instanceId=HUAWEI_BUSINESS_ID) == "000000"
    body = send(kg, "newInstance__huawei", businessId="after-release")
    assert body["instanceId"] == HUAWEI_BUSINESS_ID
    assert Instance.objects.get().state == InstanceState.RELEASED


def test_new_instance_debug_and_production_are_separate(kg):
    debug = send(kg, "newInstance__huawei")
    production = send(kg, "newInstance__huawei", businessId="prod-1", testFlag="0")
    assert production["instanceId"] == "prod-1" != debug["instanceId"]
    assert sorted(Instance.objects.values_list("is_test", flat=True)) == [False, True]


def test_new_instance_without_test_flag_is_production(kg):
    body = send(kg, "newInstance__production")
    assert body["resultCode"] == "000000"
    assert Instance.objects.get(instance_id=body["instanceId"]).is_test is False


def test_new_instance_duplicate_keys_last_wins(kg):
    # Huawei's bodies may repeat a key; JSON's rule (and §2.3): the last one counts.
    body = send(kg, "newInstance__duplicate_keys")
    assert body["instanceId"] == HUAWEI_BUSINESS_ID


def test_new_instance_business_id_of_another_order_is_refused(kg):
    send(kg, "newInstance__huawei")
    before = domain_rows()
    body = send(kg, "newInstance__huawei", orderId="CS-OTHER", orderLineId="CS-OTHER-000001")
    assert body["resultCode"] == "000002"
    assert "businessId" in body["resultMsg"]
    assert domain_rows() == before
    assert InboundCall.objects.latest("id").result_code == "000002"


@pytest.mark.parametrize(
    "name, field",
    [
        ("newInstance__missing_business_id", "businessId"),
        ("newInstance__bad_test_flag", "testFlag"),
    ],
)
def test_new_instance_bad_fields_write_only_the_journal(kg, name, field):
    body = send(kg, name)
    assert body["resultCode"] == "000002"
    assert reason(body).startswith(field)
    assert domain_rows() == (0, 0, 0)
    assert InboundCall.objects.get().result_code == "000002"


def test_new_instance_field_too_long(kg):
    body = send(kg, "newInstance__huawei", businessId="x" * 65)
    assert body["resultCode"] == "000002"
    assert reason(body).startswith("businessId")


def test_unknown_activity_is_invalid_param(kg):
    body = answer(kg.basic({"activity": "deleteInstance", "instanceId": "x", "testFlag": "1"}))
    assert body["resultCode"] == "000002"
    assert "deleteInstance" in body["resultMsg"]


# --- queryInstance -------------------------------------------------------------------------------


def test_query_instance_huawei_example(kg, instance):
    body = send(kg, "queryInstance__huawei")
    assert body == {
        "resultCode": "000000",
        "resultMsg": "success",
        "info": [
            {
                "instanceId": HUAWEI_INSTANCE,
                "appInfo": {
                    "frontEndUrl": f"http://127.0.0.1:8000/sso/login?instance={HUAWEI_INSTANCE}"
                },
            }
        ],
    }


def test_query_instance_app_info_from_settings_and_tenant(kg, instance, settings):
    settings.KOOGALLERY_FRONTEND_URL_TEMPLATE = (
        "https://app.example.com/{tenant_code}/login?tenant={tenant_id}&i={instance_id}"
    )
    settings.KOOGALLERY_ADMIN_URL = "https://app.example.com/admin"
    settings.KOOGALLERY_APP_MEMO = "首次登录请修改密码"
    tenant = Tenant.objects.create(tenant_id="t-1", tenant_code="acme co", is_test=True)
    TenantBinding.objects.create(tenant=tenant, instance_id=HUAWEI_INSTANCE)
    response = kg.basic(fixture("queryInstance__huawei"))
    assert b"\\u9996\\u6b21" in response.content  # Chinese as \uXXXX (§4.2.2)
    app_info = answer(response)["info"][0]["appInfo"]
    assert app_info == {
        "frontEndUrl": f"https://app.example.com/acme%20co/login?tenant=t-1&i={HUAWEI_INSTANCE}",
        "adminUrl": "https://app.example.com/admin",
        "memo": "首次登录请修改密码",
    }


def test_query_instance_known_ids_in_request_order(kg, instance):
    send(kg, "newInstance__huawei", orderId="CS-2", orderLineId="CS-2-000001")
    body = send(kg, "queryInstance__several")
    assert [i["instanceId"] for i in body["info"]] == [HUAWEI_INSTANCE, HUAWEI_BUSINESS_ID]


def test_query_instance_unknown(kg):
    assert code(kg, "queryInstance__huawei") == "000003"


def test_query_instance_no_ids(kg):
    body = send(kg, "queryInstance__no_ids")
    assert body["resultCode"] == "000002"
    assert reason(body).startswith("instanceId")


def test_query_instance_at_most_100_ids(kg, instance):
    ids = [HUAWEI_INSTANCE] + [f"id-{n}" for n in range(99)]
    assert code(kg, "queryInstance__huawei", instanceId=",".join(ids)) == "000000"
    assert code(kg, "queryInstance__huawei", instanceId=",".join([*ids, "one-more"])) == "000002"


def test_query_instance_names_a_debug_instance_with_or_without_test_flag(kg, instance):
    # An instanceId names one instance across production and test data (§2.7).
    without_flag = fixture_json("queryInstance__huawei")
    del without_flag["testFlag"]
    for body in (answer(kg.basic(without_flag)), send(kg, "queryInstance__huawei", testFlag="0")):
        assert [item["instanceId"] for item in body["info"]] == [HUAWEI_INSTANCE]


def test_query_instance_debug_call_does_not_see_a_production_instance(kg):
    send(kg, "newInstance__production")
    assert code(kg, "queryInstance__huawei", instanceId=PRODUCTION_INSTANCE) == "000003"


# --- refreshInstance -----------------------------------------------------------------------------


def test_refresh_instance_huawei_example(kg, instance):
    assert code(kg, "refreshInstance__huawei") == "000000"
    instance = reload(instance)
    # 17 digits: yyyyMMddHHmmssSSS, UTC.
    assert instance.expire_at == datetime(2022, 11, 24, 2, 36, 18, 256000, tzinfo=UTC)
    assert instance.product_id == "OFFI461867333479178240"
    order = InstanceOrder.objects.get()
    assert (order.event, order.scene) == (OrderEvent.REFRESH, RefreshScene.RENEWAL)
    last = instance.transitions.last()
    assert (last.cause, last.from_state, last.to_state) == (
        "refreshInstance",
        InstanceState.ACTIVE,
        InstanceState.ACTIVE,
    )
    assert "2022-11-24 02:36:18" in last.detail


def test_refresh_instance_repeat_changes_nothing(kg, instance):
    send(kg, "refreshInstance__huawei")
    before = domain_rows()
    # Even a repeat carrying another expiry is the same call (same natural key, §4.2.3).
    assert code(kg, "refreshInstance__huawei", expireTime="20301124023618") == "000000"
    assert domain_rows() == before
    assert reload(instance).expire_at.year == 2022


def test_refresh_instance_trial_to_formal_and_unsubscribe(kg, instance):
    Instance.objects.filter(pk=instance.pk).update(is_trial=True)
    send(kg, "refreshInstance__trial_to_formal")
    instance = reload(instance)
    assert instance.is_trial is False
    assert instance.expire_at == datetime(2026, 11, 24, 2, 36, 18, tzinfo=UTC)
    send(kg, "refreshInstance__unsubscribe_renewal")
    assert reload(instance).expire_at == datetime(2022, 10, 24, 2, 36, 18, tzinfo=UTC)


@pytest.mark.parametrize(
    "name, field",
    [("refreshInstance__bad_expire_time", "expireTime"), ("refreshInstance__bad_scene", "scene")],
)
def test_refresh_instance_bad_fields(kg, instance, name, field):
    before = domain_rows()
    body = send(kg, name)
    assert body["resultCode"] == "000002"
    assert reason(body).startswith(field)
    assert domain_rows() == before
    assert reload(instance).expire_at is None


@pytest.mark.parametrize("expire", ["2022112402361", "202211240236182", "20221324023618"])
def test_refresh_instance_expire_time_must_be_a_14_or_17_digit_date(kg, instance, expire):
    assert code(kg, "refreshInstance__huawei", expireTime=expire) == "000002"


def test_refresh_instance_unknown(kg):
    assert code(kg, "refreshInstance__huawei") == "000003"
    assert domain_rows() == (0, 0, 0)


def test_refresh_instance_without_test_flag_is_served_on_the_debug_instance(kg, instance):
    # §2.7: the call names the debug instance; what it records is debug data.
    assert code(kg, "refreshInstance__huawei", testFlag="0") == "000000"
    assert reload(instance).expire_at == datetime(2022, 11, 24, 2, 36, 18, 256000, tzinfo=UTC)
    assert InstanceOrder.objects.get().is_test is True
    assert Instance.objects.count() == 1


# --- updateInstanceStatus ------------------------------------------------------------------------


def test_freeze_and_unfreeze(kg, instance):
    assert code(kg, "updateInstanceStatus__huawei") == "000000"
    instance = reload(instance)
    assert instance.state == InstanceState.FROZEN
    assert instance.frozen_at is not None
    # Absolute: a repeated FREEZE changes nothing.
    before = domain_rows()
    assert code(kg, "updateInstanceStatus__huawei") == "000000"
    assert domain_rows() == before
    assert code(kg, "updateInstanceStatus__unfreeze") == "000000"
    instance = reload(instance)
    assert instance.state == InstanceState.ACTIVE
    assert instance.frozen_at is None
    assert [(t.from_state, t.to_state) for t in instance.transitions.all()][-2:] == [
        (InstanceState.ACTIVE, InstanceState.FROZEN),
        (InstanceState.FROZEN, InstanceState.ACTIVE),
    ]


def test_update_status_bad_status(kg, instance):
    body = send(kg, "updateInstanceStatus__bad_status")
    assert body["resultCode"] == "000002"
    assert reason(body).startswith("status")
    assert reload(instance).state == InstanceState.ACTIVE


def test_update_status_unknown(kg):
    assert code(kg, "updateInstanceStatus__huawei") == "000003"


# --- releaseInstance -----------------------------------------------------------------------------


def test_release_instance(kg, instance):
    assert code(kg, "releaseInstance__huawei") == "000000"
    instance = reload(instance)
    assert instance.state == InstanceState.RELEASED
    assert instance.released_at is not None
    assert "CS2211181819B4LVS" in instance.transitions.last().detail
    before = domain_rows()
    assert code(kg, "releaseInstance__huawei") == "000000"
    assert code(kg, "releaseInstance__without_order") == "000000"
    assert domain_rows() == before


def test_release_frozen_instance(kg, instance):
    send(kg, "updateInstanceStatus__huawei")
    assert code(kg, "releaseInstance__without_order") == "000000"
    assert reload(instance).state == InstanceState.RELEASED


def test_release_unknown(kg):
    assert code(kg, "releaseInstance__huawei") == "000003"


def test_release_missing_instance_id(kg, instance):
    body = send(kg, "releaseInstance__missing_instance_id")
    assert body["resultCode"] == "000002"
    assert reason(body).startswith("instanceId")
    assert reload(instance).state == InstanceState.ACTIVE


# --- upgradeInstance -----------------------------------------------------------------------------


def test_upgrade_instance(kg, instance):
    assert code(kg, "upgradeInstance__huawei") == "000000"
    order = InstanceOrder.objects.get()
    assert (order.event, order.instance, order.order_id) == (
        OrderEvent.UPGRADE,
        instance,
        "CS2211181819B4LVS",
    )
    assert instance.transitions.last().cause == "upgradeInstance"
    before = domain_rows()
    assert code(kg, "upgradeInstance__huawei") == "000000"
    assert domain_rows() == before


def test_upgrade_unknown(kg):
    assert code(kg, "upgradeInstance__huawei") == "000003"


def test_upgrade_missing_order_line(kg, instance):
    body = send(kg, "upgradeInstance__missing_order_line")
    assert body["resultCode"] == "000002"
    assert reason(body).startswith("orderLineId")
    assert InstanceOrder.objects.count() == 0


# --- changeInstanceCheck -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["changeInstanceCheck__composed", "changeInstanceCheck__string_product_info"]
)
def test_change_instance_check(kg, instance, name):
    before = domain_rows()
    assert code(kg, name) == "000000"
    assert domain_rows() == before


def test_change_instance_check_as_huawei_illustrates_it(kg, instance):
    """Huawei's page shows the upgrade body (no productInfo) for this activity."""
    body = {
        "activity": "changeInstanceCheck",
        "instanceId": instance.instance_id,
        "orderId": "CS2211181819B4LVS",
        "orderLineId": "CS2211181819B4LVS-000001",
        "testFlag": "1" if instance.is_test else "0",
    }
    assert envelope(kg.basic(body))["resultCode"] == "000000"


def test_change_instance_check_bad_product_info(kg, instance):
    body = send(kg, "changeInstanceCheck__bad_product_info")
    assert body["resultCode"] == "000002"
    assert reason(body).startswith("productInfo")


def test_change_instance_check_unknown(kg):
    assert code(kg, "changeInstanceCheck__composed") == "000003"


# --- calls on a released instance (§2.7) ---------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "refreshInstance__huawei",
        "updateInstanceStatus__huawei",
        "upgradeInstance__huawei",
        "changeInstanceCheck__composed",
    ],
)
def test_calls_on_released_instance_succeed_without_change(kg, instance, name, caplog):
    send(kg, "releaseInstance__huawei")
    before = domain_rows()
    with caplog.at_level(logging.WARNING, logger="koogallery"):
        assert code(kg, name) == "000000"
    assert domain_rows() == before
    instance = reload(instance)
    assert instance.state == InstanceState.RELEASED
    assert instance.expire_at is None
    assert any("released instance" in r.getMessage() for r in caplog.records)


# --- orderNotify ---------------------------------------------------------------------------------


def test_order_notify_about_an_instance_order(kg):
    send(kg, "newInstance__huawei")
    assert code(kg, "orderNotify__huawei") == "000000"
    notice = InstanceOrder.objects.get()
    assert notice.event == OrderEvent.NOTIFY
    assert notice.instance.instance_id == HUAWEI_BUSINESS_ID
    assert code(kg, "orderNotify__huawei") == "000000"
    assert InstanceOrder.objects.count() == 1


def test_order_notify_about_an_unknown_order_is_recorded(kg):
    # orderNotify names no instance: an order we have not seen is remembered, not refused.
    assert code(kg, "orderNotify__without_line") == "000000"
    notice = InstanceOrder.objects.get()
    assert (notice.instance, notice.order_id, notice.order_line_id) == (None, "MOCKMONTYRENEW", "")


def test_order_notify_missing_order_id(kg):
    body = send(kg, "orderNotify__missing_order")
    assert body["resultCode"] == "000002"
    assert reason(body).startswith("orderId")
    assert InstanceOrder.objects.count() == 0


# --- the journal ---------------------------------------------------------------------------------


def test_every_call_has_one_journal_row_linked_from_the_trail(kg, instance):
    send(kg, "updateInstanceStatus__huawei")
    freeze = InboundCall.objects.latest("id")
    assert freeze.endpoint == "updateInstanceStatus"
    assert freeze.result_code == "000000"
    assert instance.transitions.last().inbound_call == freeze
    assert json.loads(freeze.request_body)["status"] == "FREEZE"
    assert InboundCall.objects.count() == 2


# --- debug mode, activity by activity (§2.5) -----------------------------------------------------

PRODUCTION_INSTANCE = "5b0f3c8e-2f7e-4c1e-9d55-3c2a1f0e9b11"
ACTIVITY_FIXTURES = [
    "queryInstance__huawei",
    "refreshInstance__huawei",
    "updateInstanceStatus__huawei",
    "upgradeInstance__huawei",
    "changeInstanceCheck__composed",
    "releaseInstance__huawei",
]


@pytest.mark.parametrize("name", ACTIVITY_FIXTURES)
def test_production_calls_serve_production_instances_only(kg, name):
    send(kg, "newInstance__production")
    production = {"instanceId": PRODUCTION_INSTANCE}
    # The same body as a debug call does not see the production instance...
    assert code(kg, name, **production) == "000003"
    # ...and without testFlag (a real call) it does.
    body = json.loads(fixture(name))
    body.pop("testFlag")
    body.update(production)
    assert answer(kg.basic(body))["resultCode"] == "000000"
    assert InboundCall.objects.latest("id").test_flag is None


@pytest.mark.parametrize("flag", ["true", "", 2, "01"])
@pytest.mark.parametrize("name", [*ACTIVITY_FIXTURES, "newInstance__huawei", "orderNotify__huawei"])
def test_bad_test_flag_is_invalid_param(kg, instance, name, flag):
    """§2.5: basic testFlag "1" is debug, absent or "0" production, anything else 000002."""
    before = domain_rows()
    body = send(kg, name, testFlag=flag)
    assert body["resultCode"] == "000002"
    assert reason(body).startswith('testFlag: must be "1" (debug) or "0"')
    assert domain_rows() == before


def test_order_notify_sent_with_charset_utf_8(kg):
    # Huawei sends orderNotify as `application/json; charset=utf-8` (§4.2.9).
    response = kg.basic(
        fixture("orderNotify__huawei"), content_type="application/json; charset=utf-8"
    )
    assert answer(response)["resultCode"] == "000000"
