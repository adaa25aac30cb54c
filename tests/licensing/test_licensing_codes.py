"""Licence codes (授权码): KooGallery's callbacks (spec §4.5) and our activation and query calls
against a fake KooGallery host on loopback (§5.4)."""

from datetime import UTC, datetime

import pytest

from koogallery.outbound.attempts import OutboundAttempt, OutboundPurpose
from licensing import license_codes
from licensing.models import LicenseCode, LicenseCodeRenewal, LicenseCodeStatus
from licensing.tasks import query_license_codes
from tests.support.kgclient import envelope, fixture_json, reason

pytestmark = pytest.mark.django_db

SUCCESS = {"resultCode": "000000", "resultMsg": "success"}


def body_of(name: str, **overrides) -> dict:
    """The fixture with overrides; an override of None removes the field."""
    body = fixture_json(name, **overrides)
    return {k: v for k, v in body.items() if v is not None}


def refresh(kg, **overrides):
    return envelope(kg.basic(body_of("refreshLicenseCode__huawei", **overrides)))


# --- refreshLicenseCode -----------------------------------------------------------------------


def test_refresh_of_an_unseen_code_records_it(kg):
    assert refresh(kg) == SUCCESS
    code = LicenseCode.objects.get()
    assert (code.code, code.is_test, code.status) == ("******", True, "")
    assert not code.activated
    assert code.expire_at == datetime(2023, 5, 23, 20, 19, 32, tzinfo=UTC)
    assert code.product_id == "******"
    renewal = code.renewals.get()
    assert (renewal.order_id, renewal.scene) == ("******", "RENEWAL")


def test_refresh_is_idempotent_per_licence_and_order(kg):
    refresh(kg, orderId="CS1")
    assert refresh(kg, orderId="CS1", expireTime="20990101000000") == SUCCESS
    assert LicenseCode.objects.get().expire_at == datetime(2023, 5, 23, 20, 19, 32, tzinfo=UTC)
    assert LicenseCodeRenewal.objects.count() == 1


def test_each_new_order_sets_the_expiry_renewal_cancel_included(kg):
    refresh(kg, orderId="CS1", expireTime="20240523201932")
    assert LicenseCode.objects.get().expire_at.year == 2024
    refresh(kg, orderId="CS2", expireTime="20230523201932", scene="UNSUBSCRIBE_RENEWAL_PERIOD")
    assert LicenseCode.objects.get().expire_at.year == 2023
    assert LicenseCodeRenewal.objects.count() == 2


def test_a_call_without_test_flag_naming_a_debug_code_is_served_on_it(kg):
    # A code names one code across production and test data, as an instanceId does (§2.7).
    refresh(kg)
    assert refresh(kg, testFlag=None, orderId="CS-RENEW-2", expireTime="20240523201932") == (
        SUCCESS
    )
    code = LicenseCode.objects.get()
    assert code.is_test and code.expire_at.year == 2024
    assert code.renewals.count() == 2


def test_debug_and_production_codes_are_separate(kg):
    refresh(kg, testFlag=None)  # a production code
    assert refresh(kg) == SUCCESS  # a debug call does not touch it: the debug code is recorded
    assert refresh(kg, testFlag=None, orderId="CS-RENEW-2") == SUCCESS
    assert sorted(LicenseCode.objects.values_list("is_test", flat=True)) == [False, True]
    assert LicenseCode.objects.get(is_test=False).renewals.count() == 2
    assert LicenseCode.objects.get(is_test=True).renewals.count() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("expireTime", "2023-05-23 20:19:32"),
        ("expireTime", "202305232019"),
        ("expireTime", "20231323201932"),
        ("scene", "RENEW"),
        ("license", "L" * 65),
        ("orderId", ""),
    ],
)
def test_refresh_with_a_bad_field_is_000002_and_changes_nothing(kg, field, value):
    answer = refresh(kg, **{field: value})
    assert answer["resultCode"] == "000002"
    assert reason(answer).startswith(field)
    assert not LicenseCode.objects.exists()


def test_refresh_accepts_milliseconds(kg):
    assert refresh(kg, expireTime="20230523201932256") == SUCCESS


# --- updateLicenseCodeStatus ------------------------------------------------------------------


def status(kg, value, **overrides):
    body = body_of("updateLicenseCodeStatus__huawei", status=value, **overrides)
    return envelope(kg.basic(body))


def test_freeze_and_unfreeze_are_absolute(kg):
    assert status(kg, "FREEZE") == SUCCESS
    assert LicenseCode.objects.get().frozen
    assert status(kg, "FREEZE") == SUCCESS
    assert LicenseCode.objects.get().frozen
    assert status(kg, "UNFREEZE") == SUCCESS
    assert not LicenseCode.objects.get().frozen
    assert LicenseCode.objects.count() == 1


def test_unknown_status_is_000002(kg):
    answer = status(kg, "SUSPEND")
    assert answer["resultCode"] == "000002" and reason(answer).startswith("status")


# --- releaseLicenseCode -----------------------------------------------------------------------


def release(kg, **overrides):
    return envelope(kg.basic(body_of("releaseLicenseCode__huawei", **overrides)))


def test_release_and_its_repeat_succeed(kg):
    assert release(kg) == SUCCESS
    code = LicenseCode.objects.get(code="*******")
    assert code.status == LicenseCodeStatus.RELEASED and code.released_at
    released_at = code.released_at
    assert release(kg) == SUCCESS
    assert LicenseCode.objects.get(code="*******").released_at == released_at


def test_release_without_order_is_fine(kg):
    assert release(kg, orderId=None, orderLineId=None) == SUCCESS
    body = fixture_json("releaseLicenseCode__huawei", orderId=None, orderLineId=None)
    assert envelope(kg.basic(body)) == SUCCESS  # sent as null


def test_a_released_code_ignores_later_refresh_and_status(kg):
    release(kg, license="PL1")
    assert refresh(kg, license="PL1", orderId="CS9") == SUCCESS
    assert status(kg, "FREEZE", license="PL1") == SUCCESS
    code = LicenseCode.objects.get(code="PL1")
    assert code.status == LicenseCodeStatus.RELEASED
    assert code.expire_at is None and not code.frozen and not code.renewals.exists()


# --- activation and query (§5.4) ----------------------------------------------------------------


def test_activation_stores_what_koogallery_says(fake_koogallery):
    fake_koogallery.register_licence("PL001", expire_time="20300101000000", amount=3)
    code = license_codes.activate_license_code(code="PL001")
    assert code.status == LicenseCodeStatus.ALIVE and code.activated
    assert code.expire_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert (code.product_id, code.order_id, code.amount) == (
        "OFFI846204237451911168",
        "MOCKPERIODYEARNEW",
        3,
    )
    request = fake_koogallery.requests_for("v1/license/activate")[0]
    assert request.json == {"license": "PL001"} and request.verified
    assert OutboundAttempt.objects.filter(
        purpose=OutboundPurpose.LICENSE_CODE, subject="PL001"
    ).exists()


def test_activation_with_a_real_effect_time(fake_koogallery):
    license_codes.activate_license_code(
        code="PL002", real_effect_time=datetime(2026, 1, 2, 15, 35, 55, tzinfo=UTC)
    )
    body = fake_koogallery.requests_for("v1/license/activate")[0].json
    assert body == {"license": "PL002", "real_effect_time": "20260102153555"}


def test_an_already_activated_code_is_queried_not_activated_twice(fake_koogallery):
    fake_koogallery.register_licence("PL003", status="EXPIRED", activate_time="20240101000000")
    code = license_codes.activate_license_code(code="PL003")
    assert code.status == LicenseCodeStatus.EXPIRED
    assert code.activated_at == datetime(2024, 1, 1, tzinfo=UTC)
    assert len(fake_koogallery.requests_for("v1/license/activate")) == 1
    assert len(fake_koogallery.requests_for("v1/license/heartbeat")) == 1


def test_activation_refused_raises_and_leaves_the_code_not_activated(fake_koogallery):
    fake_koogallery.script(
        "v1/license/activate", (200, {"error_code": "92020004", "error_msg": "not claimed"})
    )
    with pytest.raises(license_codes.LicenseCodeError) as info:
        license_codes.activate_license_code(code="PL004")
    assert info.value.code == "92020004" and not info.value.retryable
    assert not LicenseCode.objects.get(code="PL004").activated


def test_activation_keeps_the_expiry_koogallery_set_by_callback(kg, fake_koogallery):
    refresh(kg, license="PL005", testFlag=None, expireTime="20310101000000")
    code = license_codes.activate_license_code(code="PL005")
    assert code.expire_at == datetime(2031, 1, 1, tzinfo=UTC) and code.activated


def test_daily_query_records_changes_of_codes_in_use(kg, fake_koogallery):
    for name in ("PL010", "PL011", "PL012"):
        license_codes.activate_license_code(code=name)
    release(kg, license="PL012", testFlag=None)
    fake_koogallery.licences["PL010"]["status"] = "EXPIRED"

    query_license_codes.apply()

    statuses = dict(LicenseCode.objects.values_list("code", "status"))
    assert statuses == {"PL010": "EXPIRED", "PL011": "ALIVE", "PL012": "RELEASED"}
    queried = [r.json["license"] for r in fake_koogallery.requests_for("v1/license/heartbeat")]
    assert sorted(queried) == ["PL010", "PL011"]  # a released code is not queried
    assert LicenseCode.objects.get(code="PL011").checked_at is not None


def test_the_stored_answer_keeps_only_fields_the_spec_names(fake_koogallery):
    """`last_answer` (shown in the admin) follows the journal's allow-list (spec §2.4)."""
    data = {
        "license_code": "PL020",
        "status": "ALIVE",
        "activate_time": "20240101000000",
        "owner_token": "S3CR3T-in-an-answer",
        "buyer": {"phone": "S3CR3T-phone"},
    }
    fake_koogallery.script(
        "v1/license/heartbeat", (200, {"error_code": "92020000", "error_msg": "ok", "data": data})
    )
    code = license_codes.query_license_code(code="PL020")
    assert code.last_answer["query"] == {
        "license_code": "PL020",
        "status": "ALIVE",
        "activate_time": "20240101000000",
        "owner_token": "***",
        "buyer": "***",
    }
    stored = str(code.last_answer) + "".join(a.response_body for a in OutboundAttempt.objects.all())
    assert "S3CR3T" not in stored
