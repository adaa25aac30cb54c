"""Latency of newInstance and queryInstance under concurrent clients, on PostgreSQL.

Starts the service under gunicorn (several workers) against a scratch PostgreSQL database,
then sends signed basic-interface calls (spec §3.2) from N client threads, as KooGallery does,
and prints p50/p99 latency per kind of call. KooGallery gives up after 5 s (§1.3).

    .venv/bin/python bench/lifecycle.py                       # defaults below
    .venv/bin/python bench/lifecycle.py --clients 16 --calls 2000 --workers 4

Needs PostgreSQL (PG_URL, default postgres://postgres@127.0.0.1:5432) and Redis (BENCH_REDIS_URL,
default redis://127.0.0.1:6379/4: the cache). The Query Order jobs newInstance asks for wait in
the outbox (no beat or worker runs). The scratch database is dropped at the end unless --keep
is given.
"""

import argparse
import statistics
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _harness as harness  # noqa: E402


def run_phase(
    name: str,
    client: harness.BasicClient,
    bodies: list[dict],
    clients: int,
    expect: Callable[[dict], bool],
) -> list[dict]:
    latencies, answers, wall = harness.post_all(client, bodies, clients)
    failures = sum(1 for answer in answers if not expect(answer))
    ms = sorted(x * 1000 for x in latencies)
    p99 = harness.percentile(ms, 0.99)
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
    harness.add_scratch_arguments(parser, db="bench_lifecycle", redis_db=4)
    args = parser.parse_args()

    database_url = f"{args.pg_url}/{args.db}"
    env = harness.service_env(database_url, args.redis_url)
    harness.recreate_database(database_url)
    harness.migrate(env)
    port = harness.free_port()
    gunicorn = harness.start_gunicorn(
        "config.wsgi", port, args.workers, "--log-level", "warning", env=env
    )
    try:
        harness.wait_until_up(port)
        client = harness.BasicClient(f"http://127.0.0.1:{port}")
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
        # Anything queued on the broker (with KOOGALLERY_JOB_DISPATCH=on_commit; no worker ran).
        redis.Redis.from_url(args.redis_url).delete("celery")
        if not args.keep:
            harness.drop_database(database_url)


if __name__ == "__main__":
    main()
