"""Metering (issue 8): record 1,000,000 usage events across 1,000 on-demand instances, close
them into hourly records, and push the records to the fake KooGallery host. Prints figures;
asserts nothing about them.

    .venv/bin/python bench/metering.py
    .venv/bin/python bench/metering.py --events 200000 --instances 200 --hours 48 --repeat 3
    .venv/bin/python bench/metering.py --events 20000 --instances 50 --repeat 2   # a smoke run

Set-up: a scratch PostgreSQL database (PG_URL, default postgres://postgres@127.0.0.1:5432;
dropped at the end unless --keep), migrated; the fake KooGallery open-API host of the tests on
loopback (it verifies the §5.5 signature and checks every record, as the real one would).

Phase 1 (record): the events go through `metering.services.record_usage` in calls of
--per-call events (what POST /api/usage does after validation): shared lock on the `closed`
cursor, duplicate and instance look-ups, checks, one multi-row INSERT.
Phase 2 (aggregate): `aggregation.close_hours` closes every hour at once: one GROUP BY over the
events, one record per (instance, hour) with its metering_sn, upserted in chunks.
Phase 3 (push): `push.push_due_records` sends the records in batches of 1000 (sign, POST, record
the answer per batch). Then a second run of the job, which finds nothing to do.
"""

import argparse
import logging
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _harness as harness  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=24, help="events spread over this many hours")
    parser.add_argument("--per-call", type=int, default=1000, help="events per record_usage call")
    parser.add_argument("--repeat", type=int, default=1, help="repeat phases 2–3 on fresh data")
    parser.add_argument("--db", default="bench_metering", help="scratch database name")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()

    database_url = f"{harness.pg_url()}/{args.db}"
    harness.configure_environment(
        database_url,
        unset=("KOOGALLERY_", "METERING_", "REDIS_"),
        SECURE_SSL_REDIRECT="false",
        LOG_FORMAT="plain",
    )
    with harness.scratch_database(database_url, keep=args.keep):
        harness.setup_django()
        run(args)


def run(args) -> None:
    from django.conf import settings
    from django.db import connection

    from instances.models import Instance
    from metering import aggregation, push, services
    from metering.models import MeteringCursor, PushBatch, UsageEvent, UsageRecord
    from tests.support.fakes import FakeKooGallery

    # The hours pushed here are hours old: the "first sent after minute 10" warning is expected.
    logging.getLogger("metering.push").setLevel(logging.ERROR)
    print(
        f"PostgreSQL {connection.cursor().connection.info.server_version}, "
        f"{args.events:,} events, {args.instances:,} instances, {args.hours} hours"
    )
    fake = FakeKooGallery(ak="", sk="", usage_key=harness.BASIC_KEY).start()
    settings.KOOGALLERY_API_BASE = fake.url
    settings.KOOGALLERY_API_FALLBACK = ""
    rng = random.Random(8)
    figures: dict[str, list[float]] = {}
    load_before = os.getloadavg()

    def note(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    try:
        for round_ in range(args.repeat):
            UsageRecord.objects.all().delete()
            UsageEvent.objects.all().delete()
            PushBatch.objects.all().delete()
            MeteringCursor.objects.update(position=None)
            Instance.objects.all().delete()
            fake.market.usage_records.clear()
            fake.market.usage_periods.clear()

            now = datetime.now(UTC)
            last_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
            first_hour = last_hour - timedelta(hours=args.hours - 1)
            ids = harness.add_on_demand_instances(
                args.instances, started=first_hour - timedelta(hours=1)
            )
            with connection.cursor() as cursor:
                # Bulk-created just now; in production autovacuum has long analysed this table.
                cursor.execute("ANALYZE instances_instance")
            span = args.hours * 3600

            # Phase 1: record.
            started = time.perf_counter()
            calls = []
            sent = 0
            while sent < args.events:
                size = min(args.per_call, args.events - sent)
                batch = [
                    services.UsageInput(
                        event_id=uuid.uuid4().hex,
                        instance_id=rng.choice(ids),
                        quantity=Decimal(rng.randint(1, 100_000)) / 100,
                        occurred_at=first_hour + timedelta(seconds=rng.uniform(0, span)),
                    )
                    for _ in range(size)
                ]
                calls.append(harness.timed(services.record_usage, events=batch, now=now)[0])
                sent += size
            record_s = time.perf_counter() - started
            note("record_s", record_s)
            print(
                f"[{round_ + 1}] record: {sent:,} events in {record_s:.1f} s = "
                f"{sent / record_s:,.0f} events/s; per call of {args.per_call}: "
                + harness.latency_summary(calls)
            )

            # Phase 2: aggregate (close every hour, as the job does at minute 1).
            close_at = last_hour + timedelta(hours=1, minutes=1)
            aggregate_s, closed = harness.timed(aggregation.close_hours, now=close_at)
            note("aggregate_s", aggregate_s)
            print(
                f"[{round_ + 1}] aggregate: {closed.records:,} hourly records from {sent:,} "
                f"events in {aggregate_s:.2f} s ({sent / aggregate_s:,.0f} events/s)"
            )

            # Phase 3: push.
            push_s, pushed = harness.timed(push.push_due_records, now=close_at)
            note("push_s", push_s)
            print(
                f"[{round_ + 1}] push: {pushed.accepted:,} records in {pushed.batches} batches "
                f"in {push_s:.2f} s ({pushed.accepted / push_s:,.0f} records/s, "
                f"{push_s / max(pushed.batches, 1) * 1000:.0f} ms per batch of ≤1000); "
                f"fake host stored {len(fake.usage_records):,}"
            )

            idle_s, again = harness.timed(
                services.run_metering, now=close_at + timedelta(minutes=1)
            )
            note("idle_s", idle_s)
            print(
                f"[{round_ + 1}] next run: {again.closed.records} closed, "
                f"{again.pushed.batches} batches, in {idle_s * 1000:.0f} ms"
            )
    finally:
        fake.stop()

    if args.repeat > 1:
        print("best / median / worst:")
        for name, values in figures.items():
            print(f"  {name:<12} {harness.spread_text(values, '.2f', ' / ')}")
    print(harness.load_averages(load_before, os.getloadavg()))


if __name__ == "__main__":
    main()
