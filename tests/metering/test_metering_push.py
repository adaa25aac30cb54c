"""Usage push (spec §5.5, issue 8 item 3) against the fake KooGallery host on loopback.

The fake verifies the §5.5 signature (`signature`/`ts`/`nonce` with the first basic key),
checks every record's fields, stores what it accepts and ignores duplicate periods as Huawei
does. Tests script its answers: success, 5xx then success, MKT.0102, abnormal_usage_data.
"""

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from instances import services as lifecycle
from instances.models import ChargingMode, Instance
from koogallery.outbound.attempts import OutboundAttempt, OutboundPurpose
from koogallery.outbound.usage_push import UsagePushRecord, usage_body, usage_signature, usage_value
from metering import aggregation, services
from metering.models import BatchOutcome, PushBatch, RecordState, UsageRecord
from tests.support.fakes.koogallery_server import Reply
from tests.support.fakes.koogallery_server import usage_signature as fake_signature
from tests.support.metering_kit import hour, make_instance, record, records_of, usage

pytestmark = pytest.mark.django_db

VECTOR_BODY = (
    b'{"usage_records":[{"begin_time":"20220809T080000Z","end_time":"20220809T090000Z",'
    b'"instance_id":"7f141bf1-aec8-4859-8323-fb3a8ad50721",'
    b'"metering_sn":"a1b2c3d4e5f60718293a4b5c6d7e8f90","record_time":"20220809T091000Z",'
    b'"usage_value":"99"}]}'
)


# --- §5.5 vector and formats (unit) --------------------------------------------------------------


def test_spec_vector_body_and_signature():
    record_ = UsagePushRecord(
        instance_id="7f141bf1-aec8-4859-8323-fb3a8ad50721",
        record_time=datetime(2022, 8, 9, 9, 10, tzinfo=UTC),
        begin_time=datetime(2022, 8, 9, 8, tzinfo=UTC),
        end_time=datetime(2022, 8, 9, 9, tzinfo=UTC),
        usage_value=Decimal("99.0000"),
        metering_sn="a1b2c3d4e5f60718293a4b5c6d7e8f90",
    )
    body = usage_body([record_])
    assert body == VECTOR_BODY
    signature = usage_signature(
        "TEST_ISV_KEY", "1709690865879", "6c63c221-1f6b-4141-8ff4-22f5dfe82b65", body
    )
    assert signature == "dmO2eWXf/Ir8LBHTH44yDwiUfaeyYSSEwCMA1kgzBy0="


@pytest.mark.parametrize(
    "value, text",
    [
        ("99.0000", "99"),
        ("0.5000", "0.5"),
        ("100", "100"),
        ("0.0001", "0.0001"),
        ("123456789012345.1234", "123456789012345.1234"),
    ],
)
def test_usage_value_is_a_plain_decimal_string(value, text):
    assert usage_value(Decimal(value)) == text


def test_a_body_holds_1_to_1000_records():
    with pytest.raises(ValueError):
        usage_body([])


# --- helpers ----------------------------------------------------------------------------------


def pushed(fake) -> list[dict]:
    return [
        r
        for req in fake.all_requests
        if req.route == "usage_data"
        for r in req.json["usage_records"]
    ]


def usage_requests(fake):
    return [r for r in fake.all_requests if r.route == "usage_data"]


@pytest.fixture
def two_hours():
    """Two on-demand instances with usage in two ended hours (3 and 2 hours ago)."""
    a, b = make_instance("od-a"), make_instance("od-b")
    record(
        usage(a, "1.5", hour(3) + timedelta(minutes=1)),
        usage(a, "2.25", hour(3) + timedelta(minutes=59, seconds=59)),
        usage(a, "4", hour(2)),
        usage(b, "0.0001", hour(3) + timedelta(minutes=30)),
    )
    return a, b


# --- success ------------------------------------------------------------------------------------


def test_closed_hours_are_pushed_signed_and_accepted(fake_koogallery, two_hours):
    report = services.run_metering()

    (request,) = usage_requests(fake_koogallery)
    assert request.status == 200 and request.verified is None  # APIG off by default
    key = "testAccessKey123"  # KOOGALLERY_BASIC_KEY's first entry
    assert request.header("signature") == fake_signature(
        key, request.header("ts"), request.header("nonce"), request.body
    )
    assert request.header("Content-Type") == "application/json"
    records = {(r["instance_id"], r["begin_time"]): r for r in pushed(fake_koogallery)}
    fmt = "%Y%m%dT%H%M%SZ"
    assert set(records) == {
        ("od-a", hour(3).strftime(fmt)),
        ("od-a", hour(2).strftime(fmt)),
        ("od-b", hour(3).strftime(fmt)),
    }
    first = records[("od-a", hour(3).strftime(fmt))]
    assert first["end_time"] == hour(2).strftime(fmt)
    assert first["usage_value"] == "3.75"
    assert "relate_pkg_instance" not in first
    stored = {(r.instance.instance_id, r.hour_start): r for r in UsageRecord.objects.all()}
    assert first["metering_sn"] == stored[("od-a", hour(3))].metering_sn
    assert {r.state for r in stored.values()} == {RecordState.ACCEPTED}
    assert all(r.attempts == 1 and r.accepted_at for r in stored.values())
    assert (report.pushed.accepted, report.pushed.batches, report.closed.records) == (3, 1, 3)
    batch = PushBatch.objects.get()
    assert (batch.outcome, batch.record_count, batch.result_code) == (
        BatchOutcome.ACCEPTED,
        3,
        "MKT.0000",
    )
    attempt = OutboundAttempt.objects.get(purpose=OutboundPurpose.USAGE_PUSH)
    assert attempt.subject == batch.subject


def test_running_again_sends_nothing_twice(fake_koogallery, two_hours):
    services.run_metering()
    services.run_metering()
    services.run_metering(ignore_backoff=True)
    assert len(usage_requests(fake_koogallery)) == 1
    assert UsageRecord.objects.count() == 3 and fake_koogallery.usage_duplicates == []


def test_the_running_hour_stays_open_until_it_ends(fake_koogallery):
    a = make_instance("od-a")
    now = datetime.now(UTC)
    record(usage(a, 2, now - timedelta(seconds=5)), now=now)

    services.run_metering(now=now)

    (open_record,) = records_of(a)
    assert (open_record.state, open_record.value, open_record.metering_sn) == (
        RecordState.OPEN,
        2,
        None,
    )
    assert usage_requests(fake_koogallery) == []


def test_begin_and_end_are_clamped_to_start_and_release(fake_koogallery):
    started = hour(3) + timedelta(minutes=20)
    a = make_instance("od-a", started=started)
    record(usage(a, 1, started + timedelta(minutes=1)), usage(a, 1, hour(2) + timedelta(minutes=5)))
    lifecycle.release_instance(instance_id="od-a", is_test=False, cause="test")
    released = Instance.objects.get(pk=a.pk).released_at
    Instance.objects.filter(pk=a.pk).update(released_at=hour(2) + timedelta(minutes=30))

    services.run_metering()

    fmt = "%Y%m%dT%H%M%SZ"
    periods = sorted((r["begin_time"], r["end_time"]) for r in pushed(fake_koogallery))
    assert periods == [
        (started.strftime(fmt), hour(2).strftime(fmt)),
        (hour(2).strftime(fmt), (hour(2) + timedelta(minutes=30)).strftime(fmt)),
    ]
    assert released is not None


def test_frozen_instance_hours_end_at_the_freeze(fake_koogallery):
    a = make_instance("od-a")
    record(usage(a, 1, hour(2) + timedelta(minutes=5)))
    lifecycle.set_instance_status(instance_id="od-a", is_test=False, frozen=True, cause="test")
    Instance.objects.filter(pk=a.pk).update(frozen_at=hour(2) + timedelta(minutes=10))

    services.run_metering()

    (pushed_record,) = pushed(fake_koogallery)
    assert pushed_record["end_time"] == (hour(2) + timedelta(minutes=10)).strftime("%Y%m%dT%H%M%SZ")


def test_records_travel_in_batches_of_at_most_1000(fake_koogallery):
    instances = [make_instance(f"od-{n}") for n in range(3)]
    events = [
        usage(instance, 1, hour(h) + timedelta(minutes=3))
        for instance in instances
        for h in range(2, 336)  # 334 hours × 3 instances = 1002 records
    ]
    services.record_usage(events=events)

    report = services.run_metering()

    sizes = [len(r.json["usage_records"]) for r in usage_requests(fake_koogallery)]
    assert sizes == [1000, 2]
    assert report.pushed.accepted == 1002
    assert len({r["metering_sn"] for r in pushed(fake_koogallery)}) == 1002
    # Oldest hours first: the backlog leaves in the order KooGallery needs it most.
    first_batch = usage_requests(fake_koogallery)[0].json["usage_records"]
    assert min(r["begin_time"] for r in first_batch) == hour(335).strftime("%Y%m%dT%H%M%SZ")


def test_apig_signing_on_top_when_configured(fake_koogallery, settings, two_hours):
    settings.KOOGALLERY_USAGE_APIG = True
    services.run_metering()
    (request,) = usage_requests(fake_koogallery)
    assert request.verified is True and request.status == 200


def test_package_relation_is_sent_when_configured(fake_koogallery, settings):
    settings.KOOGALLERY_USAGE_RELATE_PACKAGE = True
    package = make_instance("pkg-1", mode=ChargingMode.ON_DEMAND_PKG)
    a = make_instance("od-a")
    lifecycle.link_package(instance=a, package=package)
    record(usage(a, 5, hour(2)))

    services.run_metering()

    (pushed_record,) = pushed(fake_koogallery)
    assert pushed_record["relate_pkg_instance"] == "pkg-1"
    assert pushed_record["instance_id"] == "od-a"  # never the package instance (§5.5)


# --- transient failures: retried with backoff, same metering_sn -----------------------------------


def test_5xx_then_success_reuses_the_metering_sn(fake_koogallery, two_hours, settings):
    settings.METERING_RETRY_BASE_S = 60
    fake_koogallery.script("usage_data", 503)
    fake_koogallery.fallback.script("usage_data", (500, {"error_code": "MKT.0999"}))
    now = datetime.now(UTC)

    first = services.run_metering(now=now)

    assert first.pushed.retried == 3 and first.pushed.stopped.startswith("MKT.0999")
    records = UsageRecord.objects.all()
    assert {r.state for r in records} == {RecordState.PENDING}
    assert all(r.attempts == 1 and r.next_attempt_at > now for r in records)
    assert PushBatch.objects.get().outcome == BatchOutcome.RETRY
    # Not before its backoff …
    services.run_metering(now=now + timedelta(seconds=1))
    assert len(usage_requests(fake_koogallery)) == 2
    # … then again, and accepted.
    services.run_metering(now=now + timedelta(minutes=2))
    requests = usage_requests(fake_koogallery)
    assert [r.status for r in requests] == [503, 500, 200]
    sns = [sorted(x["metering_sn"] for x in r.json["usage_records"]) for r in requests]
    assert sns[0] == sns[1] == sns[2]
    assert {r.state for r in UsageRecord.objects.all()} == {RecordState.ACCEPTED}
    assert {r.attempts for r in UsageRecord.objects.all()} == {2}


def test_primary_5xx_is_retried_on_the_fallback_at_once(fake_koogallery, two_hours):
    fake_koogallery.script("usage_data", 502)
    services.run_metering()
    assert [(r.server, r.status) for r in usage_requests(fake_koogallery)] == [
        ("primary", 502),
        ("fallback", 200),
    ]
    assert {r.state for r in UsageRecord.objects.all()} == {RecordState.ACCEPTED}


def test_transport_errors_are_retried(fake_koogallery, two_hours):
    fake_koogallery.script("usage_data", "close")
    fake_koogallery.fallback.script("usage_data", "close")
    report = services.run_metering()
    assert report.pushed.retried == 3
    assert {r.state for r in UsageRecord.objects.all()} == {RecordState.PENDING}
    services.run_metering(ignore_backoff=True)
    assert {r.state for r in UsageRecord.objects.all()} == {RecordState.ACCEPTED}


def test_a_claim_abandoned_by_a_dead_worker_is_sent_again_after_its_lease(fake_koogallery):
    a = make_instance("od-a")
    record(usage(a, 1, hour(2)))
    aggregation.close_hours(now=datetime.now(UTC))
    # A worker claimed it, then died before recording an answer.
    UsageRecord.objects.update(
        state=RecordState.PUSHED, lease_until=datetime.now(UTC) + timedelta(minutes=1)
    )
    services.run_metering()
    assert usage_requests(fake_koogallery) == []
    services.run_metering(now=datetime.now(UTC) + timedelta(minutes=2))
    (sent,) = pushed(fake_koogallery)
    assert sent["metering_sn"] == UsageRecord.objects.get().metering_sn
    assert UsageRecord.objects.get().state == RecordState.ACCEPTED


# --- refusals: stop and alert ---------------------------------------------------------------------


def test_mkt_0102_fails_the_batch_stops_and_alerts(fake_koogallery, two_hours, settings, caplog):
    settings.METERING_BATCH_SIZE = 2
    fake_koogallery.script(
        "usage_data", (400, {"error_code": "MKT.0102", "error_msg": "body signature invalid"})
    )

    with caplog.at_level(logging.ERROR):
        report = services.run_metering()

    assert len(usage_requests(fake_koogallery)) == 1  # the run stopped after the refusal
    assert report.pushed.stopped.startswith("MKT.0102")
    states = sorted(r.state for r in UsageRecord.objects.all())
    assert states == [RecordState.FAILED, RecordState.FAILED, RecordState.PENDING]
    failed = UsageRecord.objects.filter(state=RecordState.FAILED)
    assert all(r.last_result_code == "MKT.0102" for r in failed)
    assert all("body signature invalid" in r.last_error for r in failed)
    alerts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ALERT")]
    assert len(alerts) == 1 and "MKT.0102" in alerts[0] and "stopped" in alerts[0]
    # Failed records are not retried by the schedule …
    services.run_metering(ignore_backoff=True)
    assert UsageRecord.objects.filter(state=RecordState.FAILED).count() == 2
    # … until an operator re-pushes them (same metering_sn).
    sns = set(failed.values_list("metering_sn", flat=True))
    assert services.repush_records(record_ids=list(failed.values_list("pk", flat=True))) == 2
    services.run_metering()
    assert {r.state for r in UsageRecord.objects.all()} == {RecordState.ACCEPTED}
    assert sns <= {r["metering_sn"] for r in fake_koogallery.usage_records}


def test_mkt_9001_stops_other_refusals_do_not(fake_koogallery, two_hours, settings, caplog):
    settings.METERING_BATCH_SIZE = 1
    fake_koogallery.script(
        "usage_data",
        (500, {"error_code": "MKT.9002", "error_msg": "Invalid usage entities."}),
        (500, {"error_code": "MKT.9001", "error_msg": "Instance ID not found."}),
    )
    report = services.run_metering()
    assert len(usage_requests(fake_koogallery)) == 2
    assert report.pushed.failed == 2 and report.pushed.stopped.startswith("MKT.9001")
    assert UsageRecord.objects.filter(state=RecordState.PENDING).count() == 1


def test_abnormal_usage_data_fails_only_the_listed_records(fake_koogallery, two_hours, caplog):
    def partly(fake, request, match):
        records = request.json["usage_records"]
        refused = records[1]
        fake.market.usage_records.extend(r for r in records if r is not refused)
        return Reply(
            200,
            {
                "error_code": "MKT.0000",
                "error_msg": "success",
                "abnormal_usage_data": [
                    {**refused, "error_code": "MKT.9002", "error_msg": "Invalid usage entities."}
                ],
            },
        )

    fake_koogallery.script("usage_data", partly)
    with caplog.at_level(logging.ERROR):
        report = services.run_metering()

    refused_sn = usage_requests(fake_koogallery)[0].json["usage_records"][1]["metering_sn"]
    refused = UsageRecord.objects.get(metering_sn=refused_sn)
    assert refused.state == RecordState.FAILED
    assert refused.last_error == "abnormal_usage_data: MKT.9002 Invalid usage entities."
    assert UsageRecord.objects.filter(state=RecordState.ACCEPTED).count() == 2
    assert PushBatch.objects.get().outcome == BatchOutcome.PARTIAL
    assert (report.pushed.accepted, report.pushed.failed) == (2, 1)
    assert any("1 record(s) failed" in r.getMessage() for r in caplog.records)


def test_abnormal_entries_on_an_error_answer_retry_the_others(fake_koogallery, two_hours):
    def refuse_one(fake, request, match):
        sn = request.json["usage_records"][0]["metering_sn"]
        return Reply(500, {"error_code": "MKT.9002", "abnormal_usage_data": [sn]})

    fake_koogallery.script("usage_data", refuse_one)
    services.run_metering()
    # The refused record fails; the others were not taken and go again at once.
    first, second = usage_requests(fake_koogallery)
    refused_sn = first.json["usage_records"][0]["metering_sn"]
    assert UsageRecord.objects.get(metering_sn=refused_sn).state == RecordState.FAILED
    assert sorted(r["metering_sn"] for r in second.json["usage_records"]) == sorted(
        r["metering_sn"] for r in first.json["usage_records"][1:]
    )
    assert UsageRecord.objects.filter(state=RecordState.ACCEPTED).count() == 2


def test_abnormal_entries_naming_no_record_fail_the_batch(fake_koogallery, two_hours):
    fake_koogallery.script(
        "usage_data",
        (200, {"error_code": "MKT.0000", "abnormal_usage_data": [{"metering_sn": "unknown"}]}),
    )
    services.run_metering()
    assert {r.state for r in UsageRecord.objects.all()} == {RecordState.FAILED}
    assert "seller console" in UsageRecord.objects.first().last_error


# --- dropped ------------------------------------------------------------------------------------


def test_records_older_than_21_days_are_dropped_with_an_alert(fake_koogallery, caplog):
    a = make_instance("od-a", started=hour(24 * 30))
    record(usage(a, 3, hour(24 * 21 + 2)), usage(a, 4, hour(24 * 21 - 2)))
    with caplog.at_level(logging.ERROR):
        report = services.run_metering()
    old, recent = records_of(a)
    assert old.state == RecordState.DROPPED and "21 days" in old.last_error
    assert recent.state == RecordState.ACCEPTED
    assert report.pushed.dropped == 1
    assert [r["usage_value"] for r in pushed(fake_koogallery)] == ["4"]
    assert any("older than 21 days dropped" in r.getMessage() for r in caplog.records)


def test_usage_of_an_instance_whose_order_is_unknown_waits_then_follows_the_order(
    fake_koogallery, caplog
):
    a = make_instance("od-a", mode=ChargingMode.UNKNOWN)
    record(usage(a, 3, hour(3)))
    services.run_metering()
    assert usage_requests(fake_koogallery) == [] and records_of(a)[0].state == RecordState.PENDING
    # Query Order says it is billed per period: usage is not billable.
    Instance.objects.filter(pk=a.pk).update(charging_mode=ChargingMode.PERIOD)
    with caplog.at_level(logging.ERROR):
        services.run_metering()
    assert records_of(a)[0].state == RecordState.DROPPED
    assert any("not billed on demand" in r.getMessage() for r in caplog.records)


# --- the management command ----------------------------------------------------------------------


def test_command_runs_the_same_service(fake_koogallery, two_hours, capsys):
    call_command("koogallery_push_usage")
    assert "3 accepted" in capsys.readouterr().out
    assert {r.state for r in UsageRecord.objects.all()} == {RecordState.ACCEPTED}


def test_command_now_skips_the_backoff_and_reports_failures(fake_koogallery, two_hours):
    fake_koogallery.script("usage_data", 503)
    fake_koogallery.fallback.script("usage_data", 503)
    with pytest.raises(CommandError, match="incomplete"):
        call_command("koogallery_push_usage")
    call_command("koogallery_push_usage")  # still backing off: nothing sent
    assert len(usage_requests(fake_koogallery)) == 2
    call_command("koogallery_push_usage", "--now")
    assert {r.state for r in UsageRecord.objects.all()} == {RecordState.ACCEPTED}


# --- the schedule ---------------------------------------------------------------------------------


def test_beat_runs_the_job_every_minute(fake_koogallery, two_hours):
    from celery.schedules import crontab
    from django.conf import settings

    from config.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["metering-close-and-push"]
    assert entry["schedule"] == crontab(minute="*")
    app.loader.import_default_modules()
    assert "3 accepted" in app.tasks[entry["task"]].apply().get()
    assert {r.state for r in UsageRecord.objects.all()} == {RecordState.ACCEPTED}
    # The other apps' beat entries are still there.
    assert "licensing-sweep" in settings.CELERY_BEAT_SCHEDULE
