"""getLicenseAsync acceptance (spec §2.8, §4.2.8): checks, codes, persistence, idempotency.

Delivery itself is covered in test_licensing_delivery.py; here the `db` fixture keeps each test
in one transaction, so nothing is enqueued (on_commit never fires).
"""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections
from django.test import Client
from django.utils import timezone

from instances.models import ChargingMode, InstanceState
from koogallery.inbound.journal import InboundCall
from licensing.models import License, LicenseRequest, RequestState
from tests.support import licensing_kit as support
from tests.support.kgclient import KooGallery, envelope, fixture_json, reason
from tests.support.licensing_kit import (
    HUAWEI_INSTANCE_ID,
    answer_code,
    huawei_window_instance,
    license_body,
    make_instance,
)

# Fixtures shared by the licensing tests.
license_settings = support.license_settings

pytestmark = pytest.mark.django_db


def test_huawei_example_is_accepted_and_answered_processing(kg):
    huawei_window_instance()
    body = fixture_json("getLicenseAsync__huawei")
    response = kg.basic(body)
    assert envelope(response) == {"resultCode": "000004", "resultMsg": "request is being processed"}
    request = LicenseRequest.objects.get()
    assert (request.event_id, request.device_fingerprint) == (
        "8****e5694*****c8",
        "8******6034e2*****60e1",
    )
    assert request.instance.instance_id == HUAWEI_INSTANCE_ID
    assert request.effective_at == datetime(2023, 10, 27, 10, 30, 15, tzinfo=UTC)
    assert request.expire_at == datetime(2024, 10, 27, 10, 30, 15, tzinfo=UTC)
    assert request.state == RequestState.RECEIVED and not request.is_test
    journal = InboundCall.objects.get(endpoint="getLicenseAsync")
    assert (journal.result_code, journal.event_id) == ("000004", "8****e5694*****c8")


def test_iso_8601_times_and_debug_flag(kg):
    huawei_window_instance(is_test=True)
    response = kg.basic(fixture_json("getLicenseAsync__iso_times_debug"))
    assert answer_code(response) == "000004"
    request = LicenseRequest.objects.get()
    assert request.is_test
    assert request.effective_at == datetime(2023, 10, 27, 10, 30, 15, tzinfo=UTC)
    assert request.expire_at == datetime(2024, 10, 27, 10, 30, 15, tzinfo=UTC)


def test_repeat_returns_the_same_request_and_creates_nothing(kg):
    instance = make_instance()
    body = license_body(instance)
    assert answer_code(kg.basic(body)) == "000004"
    assert answer_code(kg.basic(body)) == "000004"
    assert LicenseRequest.objects.count() == 1


def test_repeat_of_a_delivered_licence_answers_success(kg):
    instance = make_instance()
    body = license_body(instance)
    kg.basic(body)
    LicenseRequest.objects.update(state=RequestState.DELIVERED, delivered_at=timezone.now())
    assert envelope(kg.basic(body)) == {"resultCode": "000000", "resultMsg": "success"}
    assert LicenseRequest.objects.count() == 1


def test_same_event_other_fingerprint_is_another_request(kg):
    instance = make_instance()
    body = license_body(instance)
    kg.basic(body)
    kg.basic({**body, "deviceFingerprint": "AA:BB:CC:DD:EE:FF|DISK|BOARD|CPU"})
    assert LicenseRequest.objects.filter(event_id=body["eventId"]).count() == 2


def test_debug_and_production_keys_are_separate(kg):
    production = make_instance()
    debug = make_instance(is_test=True)
    body = license_body(production)
    assert answer_code(kg.basic(body)) == "000004"
    debug_body = {**body, "instanceId": debug.instance_id, "testFlag": "1"}
    assert answer_code(kg.basic(debug_body)) == "000004"
    assert sorted(LicenseRequest.objects.values_list("is_test", flat=True)) == [False, True]


# --- 000003 ---------------------------------------------------------------------------------------


def test_unknown_instance_is_000003(kg):
    response = kg.basic(license_body(instanceId="no-such-instance"))
    body = envelope(response)
    assert body["resultCode"] == "000003"
    assert "instanceId" in body["resultMsg"]
    assert not LicenseRequest.objects.exists()


def test_debug_call_naming_a_production_instance_is_000003(kg):
    instance = make_instance()
    assert answer_code(kg.basic(license_body(instance, testFlag="1"))) == "000003"


# --- 000903 ---------------------------------------------------------------------------------------


def test_missing_fingerprint_is_000903(kg):
    huawei_window_instance()
    response = kg.basic(fixture_json("getLicenseAsync__no_fingerprint"))
    body = envelope(response)
    assert body["resultCode"] == "000903"
    assert "deviceFingerprint" in body["resultMsg"]
    assert not LicenseRequest.objects.exists()


@pytest.mark.parametrize("value", ["", None])
def test_empty_or_null_fingerprint_is_000903(kg, value):
    instance = make_instance()
    body = license_body(instance)
    body["deviceFingerprint"] = value
    assert answer_code(kg.basic(body)) == "000903"


def test_fingerprint_optional_when_the_product_does_not_require_one(kg, settings):
    settings.LICENSE_REQUIRE_FINGERPRINT = False
    huawei_window_instance()
    assert answer_code(kg.basic(fixture_json("getLicenseAsync__no_fingerprint"))) == "000004"
    assert LicenseRequest.objects.get().device_fingerprint == ""


# --- 000902 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [ChargingMode.PERIOD, ChargingMode.UNKNOWN])
def test_missing_expiry_on_period_or_unknown_order_is_000902(kg, mode):
    huawei_window_instance(charging_mode=mode)
    body = envelope(kg.basic(fixture_json("getLicenseAsync__no_expire")))
    assert body["resultCode"] == "000902"
    assert "expireTime" in body["resultMsg"]


@pytest.mark.parametrize(
    "mode", [ChargingMode.ONE_TIME, ChargingMode.ON_DEMAND, ChargingMode.ON_DEMAND_PKG]
)
def test_missing_expiry_on_known_non_period_order_is_accepted(kg, mode):
    huawei_window_instance(charging_mode=mode)
    assert answer_code(kg.basic(fixture_json("getLicenseAsync__no_expire"))) == "000004"
    assert LicenseRequest.objects.get().expire_at is None


@pytest.mark.parametrize(
    ("mode", "code"), [(ChargingMode.PERIOD, "000902"), (ChargingMode.ONE_TIME, "000004")]
)
def test_an_empty_expiry_is_no_expiry(kg, mode, code):
    """`expireTime: ""` reads as absent (it answered 000005: "" was compared with a time)."""
    huawei_window_instance(charging_mode=mode)
    body = fixture_json("getLicenseAsync__no_expire", expireTime="")
    assert answer_code(kg.basic(body)) == code
    if code == "000004":
        assert LicenseRequest.objects.get().expire_at is None


def test_fingerprint_is_checked_before_expiry(kg):
    huawei_window_instance()
    body = fixture_json("getLicenseAsync__no_fingerprint")
    del body["expireTime"]
    assert answer_code(kg.basic(body)) == "000903"


# --- 000901 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [InstanceState.FROZEN, InstanceState.RELEASED])
def test_frozen_or_released_instance_is_000901(kg, state):
    instance = make_instance(state=state)
    body = envelope(kg.basic(license_body(instance)))
    assert body["resultCode"] == "000901"
    assert state in body["resultMsg"]


def test_window_starting_before_the_order_is_000901(kg):
    instance = make_instance(order_created_at=timezone.now())
    start = timezone.now() - timedelta(days=3)
    body = license_body(instance, effectiveTime=start.strftime("%Y-%m-%d %H:%M:%S"))
    answer = envelope(kg.basic(body))
    assert answer["resultCode"] == "000901"
    assert "effectiveTime" in answer["resultMsg"]


def test_window_starting_after_the_order_expires_is_000901(kg):
    instance = make_instance(expire_at=timezone.now() + timedelta(days=1))
    start = timezone.now() + timedelta(days=2)
    body = license_body(
        instance,
        effectiveTime=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        expireTime=(start + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    assert answer_code(kg.basic(body)) == "000901"


def test_window_ending_after_the_order_expires_is_000901(kg):
    instance = make_instance(expire_at=timezone.now() + timedelta(days=10))
    end = timezone.now() + timedelta(days=11)
    answer = envelope(kg.basic(license_body(instance, expireTime=end.isoformat())))
    assert answer["resultCode"] == "000901"
    assert "expireTime" in answer["resultMsg"]


def test_window_ending_exactly_at_the_order_expiry_is_accepted(kg):
    expiry = (timezone.now() + timedelta(days=10)).replace(microsecond=0)
    instance = make_instance(expire_at=expiry)
    body = license_body(instance, expireTime=expiry.strftime("%Y-%m-%d %H:%M:%S Z"))
    assert answer_code(kg.basic(body)) == "000004"


# --- 000900 ---------------------------------------------------------------------------------------


def test_quota_from_the_order_exhausted_is_000900(kg):
    instance = make_instance(linear_value=2)
    for device in ("DEV-1", "DEV-2"):
        assert answer_code(kg.basic(license_body(instance, deviceFingerprint=device))) == "000004"
    answer = envelope(kg.basic(license_body(instance, deviceFingerprint="DEV-3")))
    assert answer["resultCode"] == "000900"
    assert "2 of 2" in answer["resultMsg"]
    assert LicenseRequest.objects.count() == 2


def test_a_licensed_device_may_ask_again_under_a_new_event(kg):
    instance = make_instance(linear_value=1)
    assert answer_code(kg.basic(license_body(instance, deviceFingerprint="DEV-1"))) == "000004"
    assert answer_code(kg.basic(license_body(instance, deviceFingerprint="DEV-1"))) == "000004"
    assert answer_code(kg.basic(license_body(instance, deviceFingerprint="DEV-2"))) == "000900"


@pytest.mark.parametrize("state", [RequestState.FAILED, RequestState.REVOKED])
def test_failed_or_revoked_licences_do_not_use_the_quota(kg, state):
    instance = make_instance(linear_value=1)
    kg.basic(license_body(instance, deviceFingerprint="DEV-1"))
    LicenseRequest.objects.update(state=state)
    assert answer_code(kg.basic(license_body(instance, deviceFingerprint="DEV-2"))) == "000004"


def test_unknown_quota_is_not_enforced(kg):
    instance = make_instance(linear_value=None)
    for n in range(3):
        assert answer_code(kg.basic(license_body(instance, deviceFingerprint=f"D{n}"))) == "000004"


def test_quota_is_checked_after_validity(kg):
    instance = make_instance(linear_value=0, state=InstanceState.FROZEN)
    assert answer_code(kg.basic(license_body(instance))) == "000901"


# --- 000002 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("effectiveTime", "27/10/2023 10:30:15"),
        ("effectiveTime", "20231027103015"),
        ("effectiveTime", "2023-10-27 10:30:15 +08"),
        ("effectiveTime", "2023-13-27 10:30:15"),
        ("effectiveTime", ""),
        ("expireTime", "tomorrow"),
        ("eventId", "E" * 65),
        ("deviceFingerprint", "F" * 1025),
        ("instanceId", "I" * 65),
    ],
)
def test_malformed_fields_are_000002_naming_the_field(kg, field, value):
    instance = make_instance()
    answer = envelope(kg.basic(license_body(instance, **{field: value})))
    assert answer["resultCode"] == "000002"
    assert reason(answer).startswith(field)
    assert not LicenseRequest.objects.exists()


@pytest.mark.parametrize("field", ["eventId", "instanceId", "effectiveTime"])
def test_missing_mandatory_field_is_000002(kg, field):
    instance = make_instance()
    body = license_body(instance)
    del body[field]
    answer = envelope(kg.basic(body))
    assert answer["resultCode"] == "000002"
    assert reason(answer).startswith(field)


def test_expiry_not_after_start_is_000002(kg):
    instance = make_instance()
    now = timezone.now().strftime("%Y-%m-%d %H:%M:%S")
    answer = envelope(kg.basic(license_body(instance, effectiveTime=now, expireTime=now)))
    assert answer["resultCode"] == "000002"
    assert (
        answer["resultMsg"] == "invalid request parameter: expireTime: must be after effectiveTime"
    )


def test_an_offset_time_is_converted_to_utc(kg):
    instance = make_instance(expire_at=None, charging_mode=ChargingMode.ONE_TIME)
    start = (timezone.now() + timedelta(hours=1)).replace(microsecond=0)
    local = start.astimezone(timezone.get_fixed_timezone(480))  # UTC+8
    kg.basic(license_body(instance, effectiveTime=local.isoformat(), expireTime=None))
    assert LicenseRequest.objects.get().effective_at == start


def test_a_rejected_call_changes_nothing(kg):
    instance = make_instance(linear_value=1)
    kg.basic(license_body(instance, deviceFingerprint="DEV-1"))
    before = list(LicenseRequest.objects.values_list("pk", "state", "updated_at"))
    kg.basic(license_body(instance, deviceFingerprint="DEV-2"))
    assert list(LicenseRequest.objects.values_list("pk", "state", "updated_at")) == before
    assert not License.objects.exists()
    rejected = InboundCall.objects.get(result_code="000900")
    assert rejected.endpoint == "getLicenseAsync"


def test_devices_racing_for_the_last_seat_get_one_licence(
    postgres_only, transactional_db, fake_koogallery
):
    instance = make_instance(linear_value=1)
    barrier = threading.Barrier(10)
    codes: list[str] = []

    def call(n: int) -> None:
        try:
            client = KooGallery(Client())
            barrier.wait(timeout=30)
            codes.append(
                answer_code(client.basic(license_body(instance, deviceFingerprint=f"D{n}")))
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=call, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(codes) == ["000004"] + ["000900"] * 9
    assert LicenseRequest.objects.count() == 1
