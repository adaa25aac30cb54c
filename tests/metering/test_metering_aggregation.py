"""Hourly aggregation (spec §5.5: one record per instance and UTC hour), as a property.

Random usage events across instances and hours, reported in random order and interleaved with
runs of the job at advancing times, aggregate to exactly one record per (instance, hour) whose
value is the sum of its accepted events; events for an hour the job already closed are refused
(period_closed), repeats count once, and running the job again never produces a second record
or a second push for a period. Runs on SQLite and, in the PostgreSQL pass, on PostgreSQL.
"""

from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from instances.models import Instance
from koogallery.outbound.attempts import OutboundAttempt
from metering import aggregation, services
from metering.models import (
    CursorName,
    MeteringCursor,
    PushBatch,
    RecordState,
    UsageEvent,
    UsageRecord,
)
from tests.support.metering_kit import hour, make_instance, records_of, usage

pytestmark = pytest.mark.django_db

INSTANCES = 3
HOURS = 6

quantities = st.decimals(
    min_value=Decimal("0.0001"), max_value=Decimal("1000"), places=4, allow_nan=False
)
an_event = st.tuples(
    st.integers(0, INSTANCES - 1),  # instance
    st.integers(0, HOURS - 1),  # hour after the start of the timeline
    st.integers(0, 3599),  # second in that hour
    quantities,
)
step = st.one_of(
    st.tuples(st.just("events"), st.lists(an_event, min_size=1, max_size=8)),
    st.tuples(st.just("repeat"), st.integers(0, 10_000)),  # re-send an earlier event
    st.tuples(st.just("run"), st.integers(0, 2)),  # advance the clock by n hours, run the job
)


def reset(fake) -> None:
    """Each example starts empty (hypothesis reuses the test's database transaction)."""
    UsageRecord.objects.all().delete()
    UsageEvent.objects.all().delete()
    PushBatch.objects.all().delete()
    OutboundAttempt.objects.all().delete()
    MeteringCursor.objects.update(position=None)
    Instance.objects.all().delete()
    with fake.market.lock:
        fake.market.usage_records.clear()
        fake.market.usage_periods.clear()
        fake.market.usage_duplicates.clear()
        fake.market.requests.clear()
        fake.requests.clear()


@hsettings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_random_usage_aggregates_to_one_record_per_instance_and_hour(fake_koogallery, steps):
    reset(fake_koogallery)
    start = hour(48)
    instances = [
        make_instance(f"p-{n}", started=start - timedelta(hours=1)) for n in range(INSTANCES)
    ]
    ingest_now = start + timedelta(hours=HOURS + 2)  # every event is in the past
    clock = start + timedelta(minutes=2)
    closed_until = None  # the model of the `closed` cursor
    sent: list[services.UsageInput] = []
    accepted: list[services.UsageInput] = []

    for kind, arg in steps:
        if kind == "run":
            clock += timedelta(hours=arg)
            services.run_metering(now=clock)
            closed_until = aggregation.hour_floor(clock - timedelta(seconds=60))
            continue
        if kind == "repeat":
            if not sent:
                continue
            batch = [sent[arg % len(sent)]]
        else:
            batch = [
                usage(instances[i], q, start + timedelta(hours=h, seconds=s)) for i, h, s, q in arg
            ]
        for item in batch:  # one by one: a refused event must not hide the others
            is_repeat = any(item.event_id == e.event_id for e in sent)
            expect_closed = (
                not is_repeat and closed_until is not None and item.occurred_at < closed_until
            )
            try:
                receipt = services.record_usage(events=[item], now=ingest_now)
            except services.UsageRejected as refused:
                assert expect_closed, refused.problems
                assert [p.code for p in refused.problems] == ["period_closed"]
                continue
            assert not expect_closed
            assert receipt.created == (0 if is_repeat else 1)
            if not is_repeat:
                sent.append(item)
                accepted.append(item)

    final = start + timedelta(hours=HOURS + 1, minutes=5)
    services.run_metering(now=final)

    expected_value: dict[tuple[str, object], Decimal] = defaultdict(Decimal)
    expected_count: Counter = Counter()
    for item in accepted:
        key = (item.instance_id, aggregation.hour_floor(item.occurred_at))
        expected_value[key] += item.quantity
        expected_count[key] += 1
    records = list(UsageRecord.objects.select_related("instance"))
    got = {(r.instance.instance_id, r.hour_start): r for r in records}
    assert len(got) == len(records)  # one record per (instance, hour)
    assert {k: r.value for k, r in got.items()} == dict(expected_value)
    assert {k: r.event_count for k, r in got.items()} == dict(expected_count)
    assert {r.state for r in records} <= {RecordState.ACCEPTED}
    assert len({r.metering_sn for r in records}) == len(records)

    # KooGallery got each period exactly once, with the record's value and sn.
    pushed = Counter((p["instance_id"], p["begin_time"]) for p in fake_koogallery.usage_records)
    assert all(n == 1 for n in pushed.values())
    assert fake_koogallery.usage_duplicates == []
    assert sorted(p["metering_sn"] for p in fake_koogallery.usage_records) == sorted(
        r.metering_sn for r in records
    )

    # Running again, even much later, changes nothing and sends nothing.
    requests = len(fake_koogallery.all_requests)
    services.run_metering(now=final + timedelta(hours=1))
    services.run_metering(now=final + timedelta(hours=1), ignore_backoff=True)
    assert len(fake_koogallery.all_requests) == requests
    assert UsageRecord.objects.count() == len(records)


# --- examples ---------------------------------------------------------------------------------


def test_the_running_hour_is_open_and_follows_its_events(fake_koogallery):
    a = make_instance("od-a")
    now = hour(0) + timedelta(minutes=30)
    services.record_usage(events=[usage(a, 1, hour(0) + timedelta(minutes=1))], now=now)
    aggregation.close_hours(now=now)
    services.record_usage(events=[usage(a, "2.5", hour(0) + timedelta(minutes=20))], now=now)
    aggregation.close_hours(now=now)

    (record,) = records_of(a)
    assert (record.state, record.value, record.event_count) == (RecordState.OPEN, Decimal("3.5"), 2)
    assert record.metering_sn is None and record.begin_at == hour(0)
    assert record.end_at == hour(0) + timedelta(hours=1)


def test_an_hour_closes_only_after_the_close_delay(settings):
    settings.METERING_CLOSE_DELAY_S = 120
    a = make_instance("od-a")
    services.record_usage(events=[usage(a, 1, hour(1) + timedelta(minutes=59))])
    aggregation.close_hours(now=hour(0) + timedelta(seconds=90))
    assert records_of(a)[0].state == RecordState.OPEN
    # A late event of that hour is still welcome …
    services.record_usage(
        events=[usage(a, 1, hour(1) + timedelta(minutes=59, seconds=59))],
        now=hour(0) + timedelta(seconds=100),
    )
    aggregation.close_hours(now=hour(0) + timedelta(seconds=121))
    (record,) = records_of(a)
    assert (record.state, record.value) == (RecordState.PENDING, 2)
    assert len(record.metering_sn) == 32 and record.record_time == hour(0) + timedelta(seconds=121)


def test_closing_twice_keeps_the_first_metering_sn():
    a = make_instance("od-a")
    services.record_usage(events=[usage(a, 1, hour(3))])
    aggregation.close_hours(now=hour(0))
    first = records_of(a)[0].metering_sn
    aggregation.close_hours(now=hour(0) + timedelta(minutes=30))
    MeteringCursor.objects.filter(name=CursorName.AGGREGATED).update(position=None)
    # Even with the cursor moved back by hand, a closed record is never rewritten.
    aggregation.close_hours(now=hour(0) + timedelta(minutes=40))
    assert [r.metering_sn for r in records_of(a)] == [first]
