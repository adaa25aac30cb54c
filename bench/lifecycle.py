"""Latency of newInstance and queryInstance under concurrent clients, on PostgreSQL.

Starts the service under gunicorn as in production (bench/_harness.py: --workers,
--worker-class, --threads; its log in a file) against a scratch PostgreSQL database,
then sends signed basic-interface calls (spec §3.2) from N client threads, as KooGallery does,
and prints p50/p90/p99 latency per kind of call. KooGallery gives up after 5 s (§1.3).

    .venv/bin/python bench/lifecycle.py                       # defaults below
    .venv/bin/python bench/lifecycle.py --clients 16 --calls 2000 --workers 4
    .venv/bin/python bench/lifecycle.py --clients 4 --calls 100 --workers 2   # a quick smoke run

Needs PostgreSQL (PG_URL, default postgres://postgres@127.0.0.1:5432) and Redis (BENCH_REDIS_URL,
default redis://127.0.0.1:6379/4: the cache). The Query Order jobs newInstance asks for wait in
the outbox (no beat or worker runs). The scratch database is dropped at the end unless --keep
is given.
"""

import argparse
import os
import sys
import uuid
from functools import partial
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _harness as harness  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--calls", type=int, default=2000, help="calls per phase")
    harness.add_service_arguments(parser)
    harness.add_scratch_arguments(parser, db="bench_lifecycle", redis_db=4)
    args = parser.parse_args()

    database_url = f"{args.pg_url}/{args.db}"
    env = harness.service_env(database_url, args.redis_url)
    try:
        with (
            harness.scratch_database(database_url, keep=args.keep, env=env),
            harness.service(args, env, "lifecycle") as service,
        ):
            run(args, harness.BasicClient(service.url))
            print(f"service log: {service.log_path}")
    finally:
        # Anything queued on the broker (with KOOGALLERY_JOB_DISPATCH=on_commit; no worker ran).
        redis.Redis.from_url(args.redis_url).delete("celery")


def run(args, client: harness.BasicClient) -> None:
    load_before = os.getloadavg()
    print(
        f"{harness.describe_service(args)}; {args.clients} concurrent clients, PostgreSQL "
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

    phase = partial(harness.basic_phase, client=client, clients=args.clients, expect="000000")
    warm = [new_body(n, f"warm-{run_id}-{n}") for n in range(10_000_000, 10_000_050)]
    phase("warm-up (not counted)", bodies=warm)

    bodies = [new_body(n, f"{run_id}-{n:06d}") for n in range(args.calls)]
    answers = phase("newInstance (new orders)", bodies=bodies)
    ids = [a["instanceId"] for a in answers if "instanceId" in a]

    repeats = [new_body(n, f"{run_id}-retry-{n:06d}") for n in range(args.calls)]
    phase("newInstance (repeats)", bodies=repeats)

    single = [
        {"activity": "queryInstance", "instanceId": ids[n % len(ids)]} for n in range(args.calls)
    ]
    phase("queryInstance (1 id)", bodies=single)

    batch = [
        {
            "activity": "queryInstance",
            "instanceId": ",".join(ids[(n * 100 + i) % len(ids)] for i in range(100)),
        }
        for n in range(max(1, args.calls // 10))
    ]
    phase("queryInstance (100 ids)", bodies=batch)
    print(harness.load_averages(load_before, os.getloadavg()))


if __name__ == "__main__":
    main()
