"""Where one call's time goes: the requests of bench/load.py, served in-process (same settings,
middleware, logging and metrics as the gunicorn service) on a scratch PostgreSQL database and
Redis, timed per call, with queries counted and, with --profile, a pyinstrument profile.

    .venv/bin/python bench/profile_calls.py                      # every phase, 300 calls each
    .venv/bin/python bench/profile_calls.py --only authSync --profile
    .venv/bin/python bench/profile_calls.py --calls 30            # a quick smoke run

Prints figures; asserts nothing about them. Needs PostgreSQL and Redis (PG_URL,
BENCH_REDIS_URL as for bench/load.py); pyinstrument only with --profile.
"""

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import load  # noqa: E402

from bench import _harness as harness  # noqa: E402


def explain(connection) -> list[str]:
    """Have PostgreSQL explain, with actual times and trigger times, every statement the
    connection runs from now on; the plans are collected into the returned list."""
    plans: list[str] = []

    def collect(diagnostic) -> None:
        # "duration: … plan:", the statement's text (long: left out), then the plan.
        lines = diagnostic.message_primary.splitlines()
        start = next((i for i, line in enumerate(lines) if "(cost=" in line), len(lines))
        query = " ".join(lines[1:start])
        plans.append(f"  {lines[0]} {query[12:90]}…")
        plans.extend(f"    {line}" for line in lines[start:])

    connection.ensure_connection()
    connection.connection.add_notice_handler(collect)
    with connection.cursor() as cursor:
        cursor.execute("LOAD 'auto_explain'")
        for setting in (
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_analyze = on",
            "auto_explain.log_buffers = on",
            "auto_explain.log_triggers = on",
            "auto_explain.log_nested_statements = on",
            "auto_explain.log_level = notice",
            "client_min_messages = notice",
        ):
            cursor.execute(f"SET {setting}")
    return plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per phase")
    parser.add_argument("--only", nargs="*", help="phases to run (substring match)")
    parser.add_argument("--profile", action="store_true", help="print a pyinstrument profile")
    parser.add_argument("--sql", action="store_true", help="print the last call's queries")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print PostgreSQL's plan of the last call's statements, with times and triggers "
        "(auto_explain; needs a superuser)",
    )
    parser.add_argument(
        "--cprofile", action="store_true", help="print cProfile's top functions by own time"
    )
    harness.add_scratch_arguments(parser, db="bench_profile", redis_db=12, keep=False)
    args = parser.parse_args()

    database_url = f"{args.pg_url}/{args.db}"
    os.environ.update(
        load.service_env(database_url, args.redis_url, tempfile.mkdtemp(prefix="bench-prof-"))
    )
    # A log line per call is part of the cost; it goes to a file, as under gunicorn.
    log_path = Path(tempfile.gettempdir()) / f"bench-profile-{os.getpid()}.log"
    load_before = os.getloadavg()
    with harness.scratch_database(database_url), harness.stderr_to(log_path):
        harness.setup_django()
        out = run(args)
    print("\n".join(out))
    print(harness.load_averages(load_before, os.getloadavg()))
    print(f"service log: {log_path}")


def run(args) -> list[str]:
    """Every phase's figures (and profiles, queries, plans as asked), as lines to print."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with connection.cursor() as cursor:
        cursor.execute(load.CREATE_BARE_TABLE)

    # set_up_world speaks through a Connection: give it the in-process one.
    load.Connection = lambda host, port: harness.InProcess()
    run_id = uuid.uuid4().hex[:6]
    world = load.set_up_world(0, run_id)
    sender = harness.InProcess()
    out = []
    for phase, (build, expected) in load.PHASES.items():
        if args.only and not any(o in phase for o in args.only):
            continue
        requests = [build(world, f"{run_id}{phase[:3]}n{n}", n) for n in range(args.calls)]
        for request in requests[: args.calls // 10]:  # warm up
            sender.send(request)
        requests = [build(world, f"{run_id}{phase[:3]}m{n}", n) for n in range(args.calls)]
        profiler = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002)
            profiler.start()
        cprofiler = None
        if args.cprofile:
            import cProfile

            cprofiler = cProfile.Profile()
            cprofiler.enable()
        # The calls share one database connection (CONN_MAX_AGE): its backend's CPU is
        # PostgreSQL's share of them.
        connection.ensure_connection()
        backend = connection.connection.info.backend_pid
        with CaptureQueriesContext(connection) as queries:
            pg_cpu = load._cpu_seconds(backend)
            cpu, wall = time.process_time(), time.perf_counter()
            for request in requests:
                code = sender.send(request).get("resultCode")
                assert code == expected, (phase, code)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            pg_cpu = load._cpu_seconds(backend) - pg_cpu
        if profiler:
            profiler.stop()
        if cprofiler:
            import io
            import pstats

            cprofiler.disable()
            text = io.StringIO()
            pstats.Stats(cprofiler, stream=text).sort_stats(
                os.environ.get("CPROFILE_SORT", "tottime")
            ).print_stats(os.environ.get("CPROFILE_FILTER", ""), 40)
            out.append(text.getvalue())
        line = (
            f"{phase:<22} {wall / args.calls * 1000:8.2f} ms/call wall "
            f"{cpu / args.calls * 1000:8.2f} ms/call CPU "
            f"{pg_cpu / args.calls * 1000:8.2f} ms/call PostgreSQL CPU "
            f"{len(queries) / args.calls:6.1f} queries/call"
        )
        out.append(line)
        if args.sql or args.explain:
            plans = explain(connection) if args.explain else []
            with CaptureQueriesContext(connection) as last:
                sender.send(build(world, f"{run_id}{phase[:3]}last", 1))
            if args.sql:
                out += [f"    {q['sql'][:300]}" for q in last.captured_queries]
            out += plans
        if profiler:
            out.append(profiler.output_text(unicode=True, show_all=False))
    return out


if __name__ == "__main__":
    main()
