"""Licences (issue 4): getLicenseAsync latency under concurrent clients, and how many licences one
Celery worker issues and uploads per second. Prints figures; asserts nothing about them.

    .venv/bin/python bench/licensing.py
    .venv/bin/python bench/licensing.py --clients 16 --calls 2000 --workers 4 --concurrency 1

Set-up: a scratch PostgreSQL database (PG_URL, default postgres://postgres@127.0.0.1:5432;
dropped at the end unless --keep), Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379/14: use a
db no other worker listens to; its `celery` queue is emptied before and after), the service under
gunicorn, and the fake KooGallery open-API host of the tests on loopback (APIG-verifying, as
Huawei's gateway does).

Phase 1: N new getLicenseAsync calls (one device each) from --clients threads, signed as
KooGallery signs them (§3.2); latency is client-side, loopback HTTP included. No worker runs, so
the answer is the accept path alone: checks, one row, journal, commit, enqueue to Redis.
Phase 2: the same N calls repeated (KooGallery retries every 2 minutes until delivered).
Phase 3: one worker (`celery -A config worker --pool=solo`, or prefork with --concurrency > 1)
drains the queue: sign an Ed25519 licence, upload it (APIG-signed multipart), record the attempt
and the state. Throughput = licences delivered / (last delivered_at − first delivered_at).
Phase 4: the same N calls once delivered (answered 000000 from the stored state).
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import redis
import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from koogallery.signing import basic_sign  # noqa: E402
from licensing import tokens  # noqa: E402
from tests.fakes import FakeKooGallery  # noqa: E402

KEY = "benchBasicKey0123456789"
AK, SK = "BENCHAKBENCHAKBENCH1", "BENCHSKbenchSKbenchSKbenchSKbenchSK00001"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def recreate_database(pg_url: str, name: str) -> None:
    with psycopg.connect(f"{pg_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(pg_url: str, name: str) -> None:
    with psycopg.connect(f"{pg_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def service_env(database_url: str, redis_url: str, fake: FakeKooGallery) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KOOGALLERY_", "DATABASE_", "REDIS_", "DJANGO_", "LICENSE_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": "bench-only-secret-key",
            "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "KOOGALLERY_BASIC_KEY": KEY,
            "KOOGALLERY_KIT_KEY": KEY,
            "KOOGALLERY_AK": AK,
            "KOOGALLERY_SK": SK,
            "KOOGALLERY_API_BASE": fake.url,
            "KOOGALLERY_API_FALLBACK": fake.fallback.url,
            "LICENSE_SIGNING_KEY": tokens.private_key_pem(tokens.generate_private_key()),
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


def wait_until_up(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/koogallery", timeout=5)
            return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.2)
    raise SystemExit(f"service did not start on {url}")


class Client:
    """Posts signed basic V2 bodies; one HTTP session per client thread."""

    local = threading.local()

    def __init__(self, url: str):
        self.url = url

    def post(self, body: dict) -> tuple[float, dict]:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
        raw = json.dumps(body, separators=(",", ":")).encode()
        nonce, timestamp = uuid.uuid4().hex.upper(), str(int(time.time() * 1000))
        query = urlencode(
            {
                "signature": basic_sign(KEY, nonce, timestamp, raw).upper(),
                "timestamp": timestamp,
                "nonce": nonce,
            }
        )
        started = time.perf_counter()
        response = session.post(
            f"{self.url}/koogallery?{query}",
            data=raw,
            headers={"Content-Type": "application/json;charset=utf8"},
            timeout=30,
        )
        return time.perf_counter() - started, response.json()


def percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, round(q * (len(sorted_ms) - 1)))]


def run_phase(name: str, client: Client, bodies: list[dict], clients: int, expect: str) -> None:
    latencies: list[float] = []
    unexpected: dict[str, int] = {}
    lock = threading.Lock()

    def one(body: dict) -> None:
        elapsed, answer = client.post(body)
        with lock:
            latencies.append(elapsed)
            code = answer.get("resultCode", "?")
            if code != expect:
                unexpected[code] = unexpected.get(code, 0) + 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, bodies))
    wall = time.perf_counter() - started
    ms = sorted(x * 1000 for x in latencies)
    print(
        f"{name:<40} n={len(ms):>5}  p50={statistics.median(ms):6.1f} ms  "
        f"p90={percentile(ms, 0.90):6.1f} ms  p99={percentile(ms, 0.99):6.1f} ms  "
        f"max={ms[-1]:6.1f} ms  {len(ms) / wall:6.1f} calls/s"
        + (f"  unexpected={unexpected}" if unexpected else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--calls", type=int, default=2000, help="getLicenseAsync calls per phase")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--concurrency", type=int, default=1, help="Celery worker processes")
    parser.add_argument(
        "--pg-url", default=os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    )
    parser.add_argument("--db", default="bench_licensing", help="scratch database name")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()

    database_url = f"{args.pg_url}/{args.db}"
    recreate_database(args.pg_url, args.db)
    queue = redis.Redis.from_url(args.redis_url)
    queue.delete("celery")
    fake = FakeKooGallery(ak=AK, sk=SK, hang_s=1).start()
    fake.fallback = fake.twin("fallback").start()
    env = service_env(database_url, args.redis_url, fake)
    os.environ.update(env)

    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from koogallery.instances import ChargingMode, Instance, InstanceState
    from licensing.models import LicenseRequest, RequestState

    call_command("migrate", verbosity=0)
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

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    gunicorn = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    worker = None
    try:
        wait_until_up(url)
        client = Client(url)
        print(
            f"gunicorn {args.workers} workers, {args.clients} concurrent clients, PostgreSQL "
            f"{args.db}, Redis {args.redis_url}, fake KooGallery {fake.url}"
        )
        warm = [body(n, "W") for n in range(50)]
        run_phase("warm-up (not counted)", client, warm, args.clients, "000004")
        bodies = [body(n, "E") for n in range(args.calls)]
        run_phase("getLicenseAsync (new, answered 000004)", client, bodies, args.clients, "000004")
        run_phase("getLicenseAsync (repeat, pending)", client, bodies, args.clients, "000004")

        pending = LicenseRequest.objects.exclude(state=RequestState.DELIVERED).count()
        pool = ["--pool=solo"] if args.concurrency == 1 else ["--pool=prefork"]
        started = time.perf_counter()
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                *pool,
                f"--concurrency={args.concurrency}",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=WARNING",
            ],
            cwd=ROOT,
            env=env,
        )
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
        run_phase("getLicenseAsync (repeat, delivered)", client, bodies, args.clients, "000000")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        gunicorn.terminate()
        gunicorn.wait(timeout=30)
        fake.fallback.stop()
        fake.stop()
        queue.delete("celery")
        from django.db import connections

        connections.close_all()
        if not args.keep:
            drop_database(args.pg_url, args.db)


if __name__ == "__main__":
    main()
