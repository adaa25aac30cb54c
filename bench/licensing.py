"""Licences (issue 4): getLicenseAsync latency under concurrent clients, and how many licences one
Celery worker issues and uploads per second. Prints figures; asserts nothing about them.

    .venv/bin/python bench/licensing.py
    .venv/bin/python bench/licensing.py --clients 16 --calls 2000 --workers 4 --concurrency 1
    .venv/bin/python bench/licensing.py --clients 4 --calls 100 --workers 2   # a quick smoke run

Set-up: a scratch PostgreSQL database (PG_URL, default postgres://postgres@127.0.0.1:5432;
dropped at the end unless --keep), Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379/14: use a
db no other worker listens to; its `celery` queue is emptied before and after), the service under
gunicorn as in production (bench/_harness.py: --workers, --worker-class, --threads; its log in
a file), and the fake KooGallery open-API host of the tests on loopback (APIG-verifying, as
Huawei's gateway does).

Phase 1: N new getLicenseAsync calls (one device each) from --clients threads, signed as
KooGallery signs them (§3.2); latency is client-side, loopback HTTP included. No worker runs, so
the answer is the accept path alone: checks, one row, its job in the outbox, journal, commit.
Phase 2: the same N calls repeated (KooGallery retries every 2 minutes until delivered).
Phase 3: the outbox is published to Redis (what beat's dispatch does every second), then one
worker (`celery -A config worker --pool=solo`, or prefork with --concurrency > 1) drains the
queue: sign an Ed25519 licence, upload it (APIG-signed multipart), record the attempt and the
state. Throughput = licences delivered / (last delivered_at − first delivered_at).
Phase 4: the same N calls once delivered (answered 000000 from the stored state).
"""

import argparse
import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _harness as harness  # noqa: E402
from licensing import tokens  # noqa: E402
from tests.support.fakes import FakeKooGallery  # noqa: E402

AK, SK = "BENCHAKBENCHAKBENCH1", "BENCHSKbenchSKbenchSKbenchSKbenchSK00001"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--calls", type=int, default=2000, help="getLicenseAsync calls per phase")
    harness.add_service_arguments(parser)
    parser.add_argument("--concurrency", type=int, default=1, help="Celery worker processes")
    harness.add_scratch_arguments(parser, db="bench_licensing", redis_db=14)
    args = parser.parse_args()

    database_url = f"{args.pg_url}/{args.db}"
    queue = redis.Redis.from_url(args.redis_url)
    queue.delete("celery")
    fake = FakeKooGallery(ak=AK, sk=SK, hang_s=1).start()
    fake.fallback = fake.twin("fallback").start()
    env = harness.service_env(
        database_url,
        args.redis_url,
        scrub=("LICENSE_",),
        KOOGALLERY_AK=AK,
        KOOGALLERY_SK=SK,
        KOOGALLERY_API_BASE=fake.url,
        KOOGALLERY_API_FALLBACK=fake.fallback.url,
        LICENSE_SIGNING_KEY=tokens.private_key_pem(tokens.generate_private_key()),
    )
    os.environ.update(env)
    try:
        with harness.scratch_database(database_url, keep=args.keep):
            harness.setup_django()
            run(args, env, fake)
    finally:
        fake.fallback.stop()
        fake.stop()
        queue.delete("celery")


def run(args, env: dict[str, str], fake: FakeKooGallery) -> None:
    from django.utils import timezone

    from instances.models import ChargingMode, Instance, InstanceState
    from koogallery.outbound.jobs import dispatch_queued_jobs
    from licensing.models import LicenseRequest, RequestState

    now = timezone.now()
    run_id = uuid.uuid4().hex[:8]
    instances = [
        Instance.objects.create(
            instance_id=f"bench-{run_id}-{n}",
            order_id=f"CSBENCH{run_id}{n:03d}",
            order_line_id=f"CSBENCH{run_id}{n:03d}-000001",
            state=InstanceState.ACTIVE,
            charging_mode=ChargingMode.PERIOD,
            order_created_at=now - timedelta(days=1),
            expire_at=now + timedelta(days=365),
            linear_value=None,
            product_id="OFFI846204237451911168",
            sku_code="0a4d1578-5295-46a7-92d4-7c803dccc51d",
            customer_id="459bbbec25d24749b2eb83be37b602a8",
        )
        for n in range(args.clients)
    ]
    start = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S z")
    end = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S z")

    def body(n: int, prefix: str) -> dict:
        return {
            "activity": "getLicenseAsync",
            "instanceId": instances[n % len(instances)].instance_id,
            "eventId": f"{prefix}{run_id}{n:07d}",
            "effectiveTime": start,
            "expireTime": end,
            "deviceFingerprint": f"04:7C:16:5E:{n % 256:02X}:{n // 256 % 256:02X}|DISK{n}|B|CPU",
        }

    with harness.service(args, env, "licensing") as service:
        client = harness.BasicClient(service.url)
        load_before = os.getloadavg()
        print(
            f"{harness.describe_service(args)}; {args.clients} concurrent clients, PostgreSQL "
            f"{args.db}, Redis {args.redis_url}, fake KooGallery {fake.url}"
        )
        phase = partial(harness.basic_phase, client=client, clients=args.clients)
        warm = [body(n, "W") for n in range(50)]
        phase("warm-up (not counted)", bodies=warm, expect="000004")
        bodies = [body(n, "E") for n in range(args.calls)]
        phase("getLicenseAsync (new, answered 000004)", bodies=bodies, expect="000004")
        phase("getLicenseAsync (repeat, pending)", bodies=bodies, expect="000004")

        pending = LicenseRequest.objects.exclude(state=RequestState.DELIVERED).count()
        published, count = harness.timed(dispatch_queued_jobs)
        print(f"outbox published: {count} jobs in {published:.2f} s ({count / published:.0f}/s)")
        started = time.perf_counter()
        with celery_worker(env, args.concurrency):
            delivered = 0
            while delivered < pending:
                time.sleep(0.2)
                delivered = LicenseRequest.objects.filter(state=RequestState.DELIVERED).count()
                if time.perf_counter() - started > 600:
                    print(f"gave up waiting: {delivered}/{pending} delivered")
                    break
            wall = time.perf_counter() - started
            stamps = LicenseRequest.objects.filter(state=RequestState.DELIVERED).values_list(
                "delivered_at", flat=True
            )
            first, last = min(stamps), max(stamps)
            span = (last - first).total_seconds()
            rate = (len(stamps) - 1) / span if span > 0 else float("nan")
            failed = LicenseRequest.objects.filter(state=RequestState.FAILED).count()
            print(
                f"{'one worker (' + str(args.concurrency) + ' process): issue + upload':<40} "
                f"n={len(stamps):>5}  {rate:6.1f} licences/s (first → last delivery, {span:.1f} s; "
                f"{wall:.1f} s with worker start-up)  uploads received={len(fake.upload_history)}  "
                f"failed={failed}"
            )
            phase("getLicenseAsync (repeat, delivered)", bodies=bodies, expect="000000")
        print(harness.load_averages(load_before, os.getloadavg()))
        print(f"service log: {service.log_path}")


@contextmanager
def celery_worker(env: dict[str, str], concurrency: int):
    """One Celery worker (solo pool, or prefork with `concurrency` > 1) for as long as the
    block runs."""
    pool = ["--pool=solo"] if concurrency == 1 else ["--pool=prefork"]
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            *pool,
            f"--concurrency={concurrency}",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=WARNING",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        yield worker
    finally:
        harness.stop(worker)


if __name__ == "__main__":
    main()
