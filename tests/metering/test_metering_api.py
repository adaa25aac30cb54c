"""POST /api/usage: our product reports usage (issue 8 item 2).

Bearer token from METERING_API_TOKEN; one event or a list; idempotent on eventId; every refusal
named precisely (index, field, code) and nothing recorded when anything is refused.
"""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from instances import services as lifecycle
from instances.models import ChargingMode
from metering import services
from metering.models import CursorName, MeteringCursor, UsageEvent
from tests.support.metering_kit import TOKEN, hour, make_instance

pytestmark = pytest.mark.django_db

URL = "/api/usage"


@pytest.fixture(autouse=True)
def token(settings):
    settings.METERING_API_TOKEN = ["old-token-being-rotated-out", TOKEN]


def post(client, body, token: str | None = TOKEN, content_type="application/json"):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(URL, data=data, content_type=content_type, **headers)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event(instance_id: str, quantity="1.5", at: datetime | None = None, event_id="e-1") -> dict:
    at = at or hour(2) + timedelta(minutes=5)
    return {
        "instanceId": instance_id,
        "quantity": quantity,
        "occurredAt": iso(at),
        "eventId": event_id,
    }


# --- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer wrong-token", f"Token {TOKEN}"],
)
def test_requests_without_the_bearer_token_are_refused(client, header):
    make_instance("od-1")
    headers = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.post(
        URL, data=json.dumps(event("od-1")), content_type="application/json", **headers
    )
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not UsageEvent.objects.exists()


def test_every_configured_token_is_accepted_for_rotation(client):
    make_instance("od-1")
    assert post(client, event("od-1"), token="old-token-being-rotated-out").status_code == 201


def test_no_token_configured_refuses_everything(client, settings):
    settings.METERING_API_TOKEN = []
    make_instance("od-1")
    assert post(client, event("od-1"), token="").status_code == 401
    assert post(client, event("od-1"), token="anything").status_code == 401
    assert not UsageEvent.objects.exists()


def test_a_staff_session_is_not_enough(admin_client):
    make_instance("od-1")
    response = admin_client.post(
        URL, data=json.dumps(event("od-1")), content_type="application/json"
    )
    assert response.status_code == 401


# --- recording ----------------------------------------------------------------------------------


def test_one_event_is_recorded(client):
    instance = make_instance("od-1")
    at = hour(2) + timedelta(minutes=5, seconds=1, microseconds=250000)

    response = post(client, event("od-1", quantity="2.125", at=at))

    assert response.status_code == 201
    assert response.json() == {
        "recorded": 1,
        "duplicates": 0,
        "events": [{"eventId": "e-1", "instanceId": "od-1", "status": "recorded"}],
    }
    stored = UsageEvent.objects.get()
    assert (stored.instance, str(stored.quantity), stored.occurred_at) == (instance, "2.1250", at)
    assert stored.hour_start == hour(2)


def test_a_list_is_recorded_in_one_request(client):
    make_instance("od-1")
    make_instance("od-2")
    body = [
        event("od-1", quantity=1, event_id="a"),
        event("od-2", quantity="0.0001", event_id="b"),
        {**event("od-1", event_id="c"), "quantity": 7.25},  # JSON number
    ]
    response = post(client, body)
    assert response.status_code == 201
    assert response.json()["recorded"] == 3
    assert sorted(UsageEvent.objects.values_list("event_id", "quantity")) == [
        ("a", 1),
        ("b", Decimal("0.0001")),
        ("c", Decimal("7.25")),
    ]


def test_a_repeated_event_is_a_duplicate_not_a_second_usage(client):
    make_instance("od-1")
    assert post(client, event("od-1")).status_code == 201

    again = post(client, [event("od-1"), event("od-1", event_id="e-2")])

    assert again.status_code == 201
    assert again.json()["events"] == [
        {"eventId": "e-1", "instanceId": "od-1", "status": "duplicate"},
        {"eventId": "e-2", "instanceId": "od-1", "status": "recorded"},
    ]
    only_repeats = post(client, event("od-1"))
    assert only_repeats.status_code == 200
    assert only_repeats.json()["duplicates"] == 1
    assert UsageEvent.objects.count() == 2


def test_an_event_id_twice_in_one_list_counts_once(client):
    make_instance("od-1")
    response = post(client, [event("od-1"), event("od-1")])
    assert response.json()["recorded"] == 1 and response.json()["duplicates"] == 1
    assert UsageEvent.objects.count() == 1


def test_an_event_id_reused_with_other_content_is_refused(client):
    make_instance("od-1")
    post(client, event("od-1", quantity="1"))

    response = post(client, [event("od-1", event_id="new"), event("od-1", quantity="2")])

    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["index"] == 1 and error["field"] == "eventId"
    assert error["code"] == "event_id_conflict" and "quantity 1.0000" in error["message"]
    assert not UsageEvent.objects.filter(event_id="new").exists()


# --- refusals: precise, and nothing recorded -----------------------------------------------------


def refused(client, body) -> dict:
    response = post(client, body)
    assert response.status_code == 400, response.content
    assert UsageEvent.objects.count() == 0
    return response.json()


@pytest.mark.parametrize(
    "changes, field, code",
    [
        ({"quantity": "0"}, "quantity", "not_positive"),
        ({"quantity": -3}, "quantity", "not_positive"),
        ({"quantity": "1.00001"}, "quantity", "max_decimal_places"),
        ({"quantity": "abc"}, "quantity", "invalid"),
        ({"quantity": True}, "quantity", "invalid"),
        ({"quantity": "1e16"}, "quantity", "max_whole_digits"),
        ({"occurredAt": "yesterday"}, "occurredAt", "invalid"),
        ({"eventId": ""}, "eventId", "blank"),
        ({"eventId": "x" * 129}, "eventId", "max_length"),
        ({"instanceId": "i" * 65}, "instanceId", "max_length"),
    ],
)
def test_malformed_fields_are_named(client, changes, field, code):
    make_instance("od-1")
    body = refused(
        client, [event("od-1", event_id="ok"), {**event("od-1", event_id="bad"), **changes}]
    )
    assert body["code"] == "rejected"
    assert body["message"] == "1 of 2 event(s) refused; nothing was recorded"
    (error,) = body["errors"]
    assert (error["index"], error["field"], error["code"]) == (1, field, code)
    assert error["message"].startswith(f"{field}: ")


def test_missing_fields_are_each_named(client):
    body = refused(client, {"quantity": "1"})
    assert sorted((e["field"], e["code"]) for e in body["errors"]) == [
        ("eventId", "required"),
        ("instanceId", "required"),
        ("occurredAt", "required"),
    ]


def test_unknown_instance(client):
    (error,) = refused(client, event("nope"))["errors"]
    assert (error["field"], error["code"]) == ("instanceId", "unknown_instance")
    assert "'nope'" in error["message"]


def test_released_instance(client):
    instance = make_instance("od-1")
    lifecycle.release_instance(instance_id="od-1", is_test=False, cause="test")
    instance.refresh_from_db()
    (error,) = refused(client, event("od-1", at=datetime.now(UTC)))["errors"]
    assert (error["field"], error["code"]) == ("instanceId", "released_instance")


def test_usage_from_before_the_release_is_still_taken(client):
    make_instance("od-1")
    lifecycle.release_instance(instance_id="od-1", is_test=False, cause="test")
    # The product reports its last minutes a little late: that usage is billable.
    assert (
        post(client, event("od-1", at=datetime.now(UTC) - timedelta(seconds=30))).status_code == 201
    )


def test_frozen_instance(client):
    make_instance("od-1")
    lifecycle.set_instance_status(instance_id="od-1", is_test=False, frozen=True, cause="test")
    (error,) = refused(client, event("od-1", at=datetime.now(UTC)))["errors"]
    assert (error["field"], error["code"]) == ("instanceId", "frozen_instance")


def test_package_and_non_on_demand_instances(client):
    make_instance("pkg-1", mode=ChargingMode.ON_DEMAND_PKG)
    make_instance("per-1", mode=ChargingMode.PERIOD)
    errors = refused(client, [event("pkg-1", event_id="a"), event("per-1", event_id="b")])["errors"]
    assert [(e["index"], e["code"]) for e in errors] == [
        (0, "package_instance"),
        (1, "not_on_demand"),
    ]
    assert "on-demand instance of the billing item" in errors[0]["message"]


def test_instance_whose_order_is_not_fetched_yet_may_report(client):
    # Query Order runs after newInstance answers; usage must not be lost meanwhile.
    make_instance("od-1", mode=ChargingMode.UNKNOWN)
    assert post(client, event("od-1")).status_code == 201


def test_future_times_beyond_the_tolerance(client, settings):
    settings.METERING_FUTURE_TOLERANCE_S = 60
    make_instance("od-1")
    now = datetime.now(UTC)
    assert (
        post(client, event("od-1", at=now + timedelta(seconds=30), event_id="a")).status_code == 201
    )
    (error,) = refused_keep(client, event("od-1", at=now + timedelta(minutes=5), event_id="b"))
    assert (error["field"], error["code"]) == ("occurredAt", "in_future")


def refused_keep(client, body) -> list[dict]:
    response = post(client, body)
    assert response.status_code == 400
    return response.json()["errors"]


def test_before_the_instance_started(client):
    make_instance("od-1", started=hour(3))
    (error,) = refused(client, event("od-1", at=hour(3) - timedelta(seconds=1)))["errors"]
    assert (error["field"], error["code"]) == ("occurredAt", "before_start")


def test_usage_for_a_closed_hour_is_refused(client, fake_koogallery):
    make_instance("od-1")
    services.run_metering()  # closes every hour that ended
    (error,) = refused(client, event("od-1", at=hour(2) + timedelta(minutes=59)))["errors"]
    assert (error["field"], error["code"]) == ("occurredAt", "period_closed")
    assert "no second record" in error["message"]


def test_usage_is_recorded_when_the_cursor_rows_were_lost(client):
    """The migration creates the cursor rows; a flushed database may have lost them: the first
    call makes them again (and a closed hour is still refused after)."""
    make_instance("od-1")
    MeteringCursor.objects.all().delete()
    assert post(client, event("od-1")).status_code == 201
    assert MeteringCursor.objects.filter(name=CursorName.CLOSED).exists()
    MeteringCursor.objects.filter(name=CursorName.CLOSED).update(position=hour(1))
    (error,) = refused_keep(client, event("od-1", event_id="e-2"))
    assert (error["field"], error["code"]) == ("occurredAt", "period_closed")


def test_naive_times_are_utc(client):
    make_instance("od-1")
    at = hour(2) + timedelta(minutes=7)
    body = {**event("od-1"), "occurredAt": at.strftime("%Y-%m-%dT%H:%M:%S")}
    assert post(client, body).status_code == 201
    assert UsageEvent.objects.get().occurred_at == at


def test_offsets_are_converted_to_utc(client):
    make_instance("od-1")
    at = hour(2) + timedelta(minutes=7)
    local = at.astimezone(ZoneInfo("Asia/Shanghai")).isoformat()
    assert post(client, {**event("od-1"), "occurredAt": local}).status_code == 201
    assert UsageEvent.objects.get().hour_start == hour(2)


# --- request shape --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, code",
    [
        ("{not json", "malformed_json"),
        ("[]", "empty"),
        ('"a string"', "invalid_body"),
        ("[1, 2]", "rejected"),
    ],
)
def test_bad_bodies(client, body, code):
    response = post(client, body)
    assert response.status_code == 400
    assert response.json()["code"] == code


def test_too_many_events(client, settings):
    settings.METERING_API_MAX_EVENTS = 3
    make_instance("od-1")
    response = post(client, [event("od-1", event_id=str(n)) for n in range(4)])
    assert response.status_code == 400
    assert response.json() == {
        "code": "too_many_events",
        "message": "at most 3 events per request, got 4",
    }


def test_not_json(client):
    response = post(client, "instanceId=od-1", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_only_post(client):
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 405


def test_the_service_refuses_like_the_api():
    """The product may call the service in-process: same rules, same all-or-nothing."""
    instance = make_instance("od-1")
    good = services.UsageInput("g", "od-1", Decimal("1"), hour(2))
    bad = services.UsageInput("b", "od-1", Decimal("0.00001"), hour(2))
    naive = services.UsageInput("n", "od-1", Decimal("1"), datetime(2030, 1, 1))
    with pytest.raises(services.UsageRejected) as caught:
        services.record_usage(events=[good, bad, naive])
    assert [(p.index, p.code) for p in caught.value.problems] == [
        (1, "max_decimal_places"),
        (2, "naive_time"),
    ]
    assert not instance.usage_events.exists()
    receipt = services.record_usage(events=[good])
    assert (receipt.created, receipt.duplicates) == (1, 0)
