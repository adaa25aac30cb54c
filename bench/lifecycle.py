"""Latency of newInstance and queryInstance under concurrent clients, on PostgreSQL.

Starts the service under gunicorn (several workers) against a scratch PostgreSQL database,
then sends signed basic-interface calls (spec §3.2) from N client threads, as KooGallery does,
and prints p50/p99 latency per kind of call. KooGallery gives up after 5 s (§1.3).

    .venv/bin/python bench/lifecycle.py                       # defaults below
    .venv/bin/python bench/lifecycle.py --clients 16 --calls 2000 --workers 4

Needs PostgreSQL (PG_URL, default postgres://postgres@127.0.0.1:5432) and Redis (REDIS_URL,
default redis://127.0.0.1:6379/4: nonces and the Query Order jobs newInstance queues; no
worker runs, the queue is emptied afterwards). The scratch database is dropped at the end
unless --keep is given.
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import redis
import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from koogallery.signing import basic_sign  # noqa: E402

KEY = "benchBasicKey0123456789"


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


def service_env(database_url: str, redis_url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KOOGALLERY_", "DATABASE_", "REDIS_", "DJANGO_"))
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
    """One KooGallery client thread's session: signs and posts a basic V2 body."""

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
        elapsed = time.perf_counter() - started
        return elapsed, response.json()


def run_phase(
    name: str, client: Client, bodies: list[dict], clients: int, expect: Callable[[dict], bool]
) -> list[dict]:
    latencies: list[float] = []
    answers: list[dict] = []
    failures = 0
    lock = threading.Lock()

    def one(body: dict) -> None:
        nonlocal failures
        elapsed, answer = client.post(body)
        with lock:
            latencies.append(elapsed)
            answers.append(answer)
            if not expect(answer):
                failures += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, bodies))
    wall = time.perf_counter() - started
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(
        f"{name:<34} n={len(ms):>5}  p50={statistics.median(ms):7.1f} ms  p99={p99:7.1f} ms  "
        f"max={ms[-1]:7.1f} ms  {len(ms) / wall:7.1f} calls/s  failures={failures}"
    )
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--calls", type=int, default=2000, help="calls per phase")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument(
        "--pg-url", default=os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
    )
    parser.add_argument("--db", default="bench_lifecycle", help="scratch database name")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()

    database_url = f"{args.pg_url}/{args.db}"
    env = service_env(database_url, args.redis_url)
    recreate_database(args.pg_url, args.db)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True
    )
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
    try:
        wait_until_up(url)
        client = Client(url)
        print(
            f"gunicorn {args.workers} workers, {args.clients} concurrent clients, PostgreSQL "
            f"{args.db}, Redis {args.redis_url}"
        )
        run_id = uuid.uuid4().hex[:8]

        def new_body(n: int, business: str) -> dict:
            order = f"CSBENCH{run_id}{n:06d}"
            return {
                "activity": "newInstance",
                "businessId": business,
                "orderId": order,
                "orderLineId": f"{order}-000001",
            }

        ok = lambda a: a.get("resultCode") == "000000"  # noqa: E731
        warm = [new_body(n, f"warm-{run_id}-{n}") for n in range(10_000_000, 10_000_050)]
        run_phase("warm-up (not counted)", client, warm, args.clients, ok)

        bodies = [new_body(n, f"{run_id}-{n:06d}") for n in range(args.calls)]
        answers = run_phase("newInstance (new orders)", client, bodies, args.clients, ok)
        ids = [a["instanceId"] for a in answers if "instanceId" in a]

        repeats = [new_body(n, f"{run_id}-retry-{n:06d}") for n in range(args.calls)]
        run_phase("newInstance (repeats)", client, repeats, args.clients, ok)

        single = [
            {"activity": "queryInstance", "instanceId": ids[n % len(ids)]}
            for n in range(args.calls)
        ]
        run_phase("queryInstance (1 id)", client, single, args.clients, ok)

        batch = [
            {
                "activity": "queryInstance",
                "instanceId": ",".join(ids[(n * 100 + i) % len(ids)] for i in range(100)),
            }
            for n in range(max(1, args.calls // 10))
        ]
        run_phase("queryInstance (100 ids)", client, batch, args.clients, ok)
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=30)
        # The Query Order jobs newInstance queued (no worker ran them).
        redis.Redis.from_url(args.redis_url).delete("celery")
        if not args.keep:
            drop_database(args.pg_url, args.db)


if __name__ == "__main__":
    main()
