"""Usage ingest over HTTP (issue 17): POST /api/usage with --per-request events per request,
from concurrent clients, against gunicorn as production runs it. Prints figures; asserts nothing
about them.

    .venv/bin/python bench/usage_ingest.py
    .venv/bin/python bench/usage_ingest.py --clients 4 --procs 2 --workers 4 --seconds 10 --rounds 3
    .venv/bin/python bench/usage_ingest.py --seconds 1 --rounds 1 --warmup 0.5 --instances 50 \\
        --duplicates --floor                           # a quick smoke run

The service runs as `gunicorn -c python:ops.gunicorn config.wsgi:application` (its threaded
workers unless --worker-class/--threads say otherwise; --workers of them) on a scratch PostgreSQL
database (PG_URL, default postgres://postgres@127.0.0.1:5432; dropped at the end unless --keep),
migrated, with --instances on-demand instances started two days ago. Every event is new (a fresh
eventId), spread over the instances and the last hours; every answer is checked (201, all
recorded). With --duplicates, each round also posts the same requests again (all duplicates:
200), the figure of a reporter retrying. With --floor, --clients processes then run the
service's own INSERT … ON CONFLICT statement straight from psycopg with prepared arrays, one
per transaction: what PostgreSQL alone makes of the same rows, the ceiling of the endpoint.
CPU per 1,000 events is counted for the gunicorn workers and the database's backends.

Clients are --procs processes sharing --clients threads, each with its own kept-alive
connection. The machine's load average is printed before and after: on a shared machine, rerun
when it is quiet.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench import _harness as harness  # noqa: E402
from bench.load import CpuAccount  # noqa: E402

TOKEN = "bench-metering-token-0123456789abcdef"


def create_instances(database_url: str, count: int, started: datetime) -> None:
    """`count` active on-demand instances `bench-00000`…, started at `started` (through the ORM
    in this process; the clients, forked later, do not use Django)."""
    harness.configure_environment(database_url, unset=("KOOGALLERY_", "METERING_", "REDIS_"))
    harness.setup_django(migrate=False)
    from django.db import connection

    harness.add_on_demand_instances(count, started=started)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE instances_instance")
    harness.close_django_connections()


class Bodies:
    """Request bodies of `size` new events each, built cheaply (the client shares the
    machine's CPUs with the service): instances, quantities and times drawn once, rotated per
    request; every event id unique to (tag, request, position)."""

    def __init__(self, tag: str, size: int, instances: int, start: datetime, rng):
        self.tag, self.size = tag, size
        span = 7200  # the two hours before the current one: past, and not closed
        self.parts = []
        for _ in range(997):
            instance = f"bench-{rng.randrange(instances):05d}"
            quantity = f"{rng.randint(1, 100_000) / 100:.2f}"
            at = start + timedelta(seconds=rng.uniform(0, span))
            self.parts.append(
                f'{{"instanceId":"{instance}","quantity":"{quantity}",'
                f'"occurredAt":"{at:%Y-%m-%dT%H:%M:%S.%fZ}","eventId":"'
            )

    def body(self, n: int) -> bytes:
        parts, tag = self.parts, self.tag
        shift = n % len(parts)
        return (
            "["
            + ",".join(
                f'{parts[(shift + i) % len(parts)]}{tag}-{n}-{i}"}}' for i in range(self.size)
            )
            + "]"
        ).encode()


def client_process(port, tag, threads, seconds, args, start, bodies_in=None) -> tuple:
    """`threads` clients posting new batches back to back for `seconds` (or, with `bodies_in`,
    posting those bodies again): (latencies, failures, the bodies each thread sent)."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    want = (200, "duplicates") if bodies_in is not None else (201, "recorded")

    def run(thread: int) -> tuple[list[float], list[str], list[list[bytes]]]:
        mark = f"{tag}t{thread}"
        bodies_of = Bodies(mark, args.per_request, args.instances, start, random.Random(mark))
        replay = bodies_in[thread] if bodies_in is not None else None
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        sent: list[bytes] = []

        def prepare(n: int) -> bytes:
            sent.append(replay[n] if replay is not None else bodies_of.body(n))
            return sent[-1]

        def send(raw: bytes) -> tuple[int, bytes]:
            conn.request("POST", "/api/usage", body=raw, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()

        def check(raw: bytes, answer: tuple[int, bytes]) -> str | None:
            status, data = answer
            if status != want[0] or json.loads(data)[want[1]] != args.per_request:
                return f"{status} {data[:200]!r}"
            return None

        if replay is None:
            latencies, failures = harness.timed_loop(prepare, send, check, seconds=seconds)
        else:
            latencies, failures = harness.timed_loop(prepare, send, check, count=len(replay))
        conn.close()
        return latencies, failures, [sent]

    latencies, failures, sent_bodies = harness.merged(harness.in_threads(run, threads))
    return latencies, failures, sent_bodies if bodies_in is None else None


def floor_process(database_url, statement, tag, seconds, size, instance_pks, start, results, done):
    """PostgreSQL's floor: the service's INSERT, straight from psycopg, one call per
    transaction (and its foreign key checks at commit), `size` new events each."""
    rng = random.Random(tag)
    pks = [rng.choice(instance_pks) for _ in range(size)]
    quantities = [Decimal(rng.randint(1, 100_000)) / 100 for _ in range(size)]
    moments = [(start + timedelta(seconds=rng.uniform(0, 7200))).isoformat() for _ in range(size)]
    calls = 0
    with psycopg.connect(database_url) as conn:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            ids = [f"{tag}-{calls}-{i}" for i in range(size)]
            with conn.transaction():
                inserted = conn.execute(
                    statement, [datetime.now(UTC), ids, pks, quantities, moments]
                ).fetchall()
            assert len(inserted) == size
            calls += 1
        results.put(calls)
        done.wait(30)  # the backend lives on until its CPU time is read


def run_floor(args, database_url, statement, start, cpu) -> tuple[float, int, dict]:
    """--clients processes running the floor for --seconds: (events/s, events, CPU seconds)."""
    with psycopg.connect(database_url) as conn:
        pks = [pk for (pk,) in conn.execute("SELECT id FROM instances_instance").fetchall()]
    context = multiprocessing.get_context("fork")
    results, done = context.Queue(), context.Event()
    cpu.sample()
    started = time.perf_counter()
    processes = [
        context.Process(
            target=floor_process,
            args=(database_url, statement, f"floor{uuid.uuid4().hex[:6]}c{i}", args.seconds,
                  args.per_request, pks, start, results, done),
        )
        for i in range(args.clients)
    ]  # fmt: skip
    for process in processes:
        process.start()
    calls = sum(results.get() for _ in processes)
    wall = time.perf_counter() - started
    used = cpu.sample()
    done.set()
    for process in processes:
        process.join()
    return calls * args.per_request / wall, calls * args.per_request, used


def run_round(args, port, tag, start, seconds, replays=None):
    """--clients clients in --procs processes: (latencies, failures, wall seconds, the bodies
    each process's threads sent)."""
    returned, wall = harness.in_processes(
        lambda i, share: client_process(
            port, f"{tag}p{i}", share, seconds, args, start, replays[i] if replays else None
        ),
        args.clients,
        args.procs,
    )
    latencies, failures = harness.merged([(mine, bad) for mine, bad, _ in returned])
    return latencies, failures, wall, [sent for _, _, sent in returned]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    harness.add_client_arguments(parser, clients=4, procs=2, seconds=10, rounds=3, warmup=3)
    harness.add_service_arguments(parser)
    parser.add_argument("--per-request", type=int, default=1000, help="events per request")
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--duplicates", action="store_true", help="also post every batch again")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run the service's INSERT straight from psycopg (PostgreSQL's floor)",
    )
    harness.add_scratch_arguments(parser, db="bench_usage", redis_db=12)
    args = parser.parse_args()

    database_url = f"{args.pg_url}/{args.db}"
    metrics_dir = tempfile.mkdtemp(prefix="bench-usage-metrics-")
    env = harness.service_env(
        database_url,
        args.redis_url,
        scrub=("LOG_", "METERING_"),
        log_level="INFO",
        LOG_FORMAT="json",
        PROMETHEUS_MULTIPROC_DIR=metrics_dir,
        METERING_API_TOKEN=TOKEN,
        METERING_API_MAX_EVENTS=str(max(1000, args.per_request)),
        SECURE_SSL_REDIRECT="false",
    )
    now = datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    with harness.scratch_database(database_url, keep=args.keep, env=env):
        create_instances(database_url, args.instances, now - timedelta(days=2))
        with harness.service(args, env, "usage") as service:
            load_before = os.getloadavg()
            figures = measure(args, service, database_url, start)
            load_after = os.getloadavg()
        with psycopg.connect(database_url) as conn:
            stored = conn.execute("SELECT count(*) FROM metering_usageevent").fetchone()[0]
    report(args, figures, stored, service.log_path, load_before, load_after)


def measure(args, service: harness.Service, database_url: str, start: datetime) -> dict:
    """A warm-up, then --rounds rounds of new events (and, as asked, their duplicates; the
    floor after them): rates, latencies, failures, CPU seconds by group, floors."""
    port = service.port
    rates, dup_rates, all_latencies, failures = [], [], [], []
    cpu_used: dict[str, float] = {}
    recorded = 0
    run_id = uuid.uuid4().hex[:6]
    run_round(args, port, f"{run_id}w", start, args.warmup)
    cpu = CpuAccount(service.pid, database_url, args.db)
    for round_ in range(args.rounds):
        cpu.sample()
        latencies, bad, wall, bodies = run_round(
            args, port, f"{run_id}r{round_}", start, args.seconds
        )
        events = len(latencies) * args.per_request
        for group, seconds in cpu.sample().items():
            cpu_used[group] = cpu_used.get(group, 0.0) + seconds
        recorded += events
        rates.append(events / wall)
        all_latencies += latencies
        failures += bad
        print(
            f"[{round_ + 1}] {events:,} new events in {wall:.1f} s = "
            f"{events / wall:,.0f} events/s",
            flush=True,
        )
        if args.duplicates:
            latencies, bad, wall, _ = run_round(args, port, "", start, 0, replays=bodies)
            events = len(latencies) * args.per_request
            dup_rates.append(events / wall)
            failures += bad
            print(
                f"[{round_ + 1}] {events:,} duplicates in {wall:.1f} s = "
                f"{events / wall:,.0f} events/s",
                flush=True,
            )
    floors = []
    if args.floor:
        from metering.services import _INSERT_NEW

        for _ in range(args.rounds):
            rate, events, used = run_floor(args, database_url, _INSERT_NEW, start, cpu)
            floors.append((rate, used.get("postgres", 0.0) / events * 1e6))
            print(f"PostgreSQL floor: {rate:,.0f} events/s", flush=True)
    return {
        "rates": rates,
        "dup_rates": dup_rates,
        "latencies": all_latencies,
        "failures": failures,
        "cpu_used": cpu_used,
        "recorded": recorded,
        "floors": floors,
    }


def report(args, figures: dict, stored: int, log_path, load_before, load_after) -> None:
    rates, dup_rates, floors = figures["rates"], figures["dup_rates"], figures["floors"]
    failures, cpu_used, recorded = figures["failures"], figures["cpu_used"], figures["recorded"]
    all_latencies = figures["latencies"]
    print(
        f"{harness.describe_service(args)}; {args.clients} "
        f"concurrent clients in {args.procs} processes; {args.per_request} events per request, "
        f"{args.instances} instances; PostgreSQL {args.db}; {args.rounds} rounds x "
        f"{args.seconds:g} s; {os.cpu_count()} CPUs; {stored:,} events stored"
    )
    print(harness.load_averages(load_before, load_after))
    ms = sorted(x * 1000 for x in all_latencies)
    print(
        f"new events: median {statistics.median(rates):,.0f} events/s (min {min(rates):,.0f}, "
        f"max {max(rates):,.0f}); per request p50 {statistics.median(ms):.0f} ms, "
        f"p99 {harness.percentile(ms, 0.99):.0f} ms; CPU ms per 1,000 new events: "
        + ", ".join(f"{group} {used / recorded * 1e6:.1f}" for group, used in cpu_used.items())
    )
    if floors:
        print(
            f"PostgreSQL floor (the same INSERT straight from psycopg, {args.clients} "
            f"connections): median {statistics.median(r for r, _ in floors):,.0f} events/s; "
            f"PostgreSQL CPU ms per 1,000: {statistics.median(c for _, c in floors):.1f}"
        )
    if dup_rates:
        print(f"duplicates: median {statistics.median(dup_rates):,.0f} events/s")
    print(f"failures: {len(failures)} {failures[:2]}; service log: {log_path}")


if __name__ == "__main__":
    main()
