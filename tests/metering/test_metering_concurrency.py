"""Concurrency on PostgreSQL (issue 8): real parallel threads, each with its own connection,
released together by a barrier, against the fake KooGallery host.

- two runs of the job at once (two beat runs, or `koogallery_push_usage` during a scheduled
  run) send each record once;
- events racing the closing of their hour are either in that hour's record or refused
  (period_closed), never lost and never counted after the record closed;
- twins of one eventId reported at once are stored once.
"""

import random
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.core.management import call_command

from metering import aggregation, services
from metering.models import PushTrigger, RecordState, UsageEvent, UsageRecord
from tests.support.fakes.koogallery_server import handle_usage_data
from tests.support.metering_kit import hour, make_instance, usage
from tests.support.procs import in_parallel


@pytest.fixture
def committed(postgres_only, transactional_db):
    """Rows are committed, so every thread's connection sees them."""




def slow_usage_data(fake, request, match):
    time.sleep(0.01)  # keep each push open long enough for the other run to interleave
    return handle_usage_data(fake, request, match)


@pytest.mark.parametrize("second", ["beat", "command"])
def test_two_runs_at_once_send_each_record_once(committed, fake_koogallery, settings, second):
    settings.METERING_BATCH_SIZE = 20
    fake_koogallery.set_default("usage_data", slow_usage_data)
    instances = [make_instance(f"c-{n}") for n in range(12)]
    services.record_usage(
        events=[
            usage(instance, n + 1, hour(h) + timedelta(minutes=n))
            for n, instance in enumerate(instances)
            for h in range(2, 27)
        ]
    )  # 12 × 25 = 300 records, 15 batches

    def manual():
        call_command("koogallery_push_usage")
        return "command"

    def beat():
        return services.run_metering(trigger=PushTrigger.BEAT)

    in_parallel(beat, beat if second == "beat" else manual)

    sent = Counter(
        r["metering_sn"]
        for req in fake_koogallery.all_requests
        if req.route == "usage_data"
        for r in req.json["usage_records"]
    )
    assert len(sent) == 300 and set(sent.values()) == {1}
    assert fake_koogallery.usage_duplicates == []
    records = UsageRecord.objects.all()
    assert records.count() == 300
    assert set(records.values_list("state", flat=True)) == {RecordState.ACCEPTED}
    assert set(records.values_list("attempts", flat=True)) == {1}
    assert set(sent) == set(records.values_list("metering_sn", flat=True))


def test_events_racing_the_close_are_counted_once_or_refused(committed):
    instance = make_instance("race-1")
    target = hour(1)  # the hour being closed
    ingest_now = hour(0) + timedelta(seconds=30)
    stop = threading.Event()
    outcomes: list[Counter] = []

    def ingester(seed: int):
        rng, tally = random.Random(seed), Counter()
        n = 0
        while not stop.is_set() or n < 20:
            n += 1
            item = usage(
                instance, rng.randint(1, 9), target + timedelta(seconds=rng.randint(0, 3599))
            )
            try:
                services.record_usage(events=[item], now=ingest_now)
                tally["accepted"] += item.quantity
                tally["accepted_n"] += 1
            except services.UsageRejected as exc:
                assert [p.code for p in exc.problems] == ["period_closed"]
                tally["refused_n"] += 1
            if n > 400:
                break
        outcomes.append(tally)

    def closer():
        time.sleep(0.15)
        report = aggregation.close_hours(now=hour(0) + timedelta(minutes=2))
        stop.set()
        return report

    in_parallel(*(lambda s=s: ingester(s) for s in range(4)), closer)

    total = sum((t["accepted"] for t in outcomes), 0)
    accepted_n = sum(t["accepted_n"] for t in outcomes)
    refused_n = sum(t["refused_n"] for t in outcomes)
    record = UsageRecord.objects.get(instance=instance, hour_start=target)
    assert record.state == RecordState.PENDING
    assert (record.value, record.event_count) == (total, accepted_n)
    assert UsageEvent.objects.filter(instance=instance).count() == accepted_n
    assert accepted_n > 0 and refused_n > 0  # the race really happened on both sides


def test_twins_of_one_event_id_are_stored_once(committed):
    instance = make_instance("twin-1")
    events = [
        usage(instance, 1, hour(2) + timedelta(seconds=n), event_id=f"t-{n}") for n in range(50)
    ]

    receipts = in_parallel(*(lambda: services.record_usage(events=events) for _ in range(8)))

    assert UsageEvent.objects.filter(instance=instance).count() == 50
    assert sum(r.created for r in receipts) == 50
    assert all(r.created + r.duplicates == 50 for r in receipts)
