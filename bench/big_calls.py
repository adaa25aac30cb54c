"""Big calls next to PostgreSQL's own floor (issue 17). Prints figures; asserts nothing about them.

    .venv/bin/python bench/big_calls.py                       # every row, 3 runs
    .venv/bin/python bench/big_calls.py --runs 1 --departments 20000 --users 500 \\
        --events 20000 --neighbours 0                         # a quick smoke run
    .venv/bin/python bench/big_calls.py --only first --profile   # + where the time goes

A scratch PostgreSQL database (PG_URL, --db; dropped at the end unless --keep), migrated; the
service under gunicorn as in production (`-c python:ops.gunicorn config.wsgi:application`, its
threaded workers, JSON logs at INFO into a file, Prometheus multiprocess metrics), Redis
(--redis-url) as its cache. Calls go over loopback HTTP, keep-alive, signed as KooGallery signs
them (kit V2: fresh nonce, current x-timestamp, and a `timeStamp` newer than any before, or the
service skips the call as stale, §2.3). A figure is void unless the call was answered 000000
(usage: 201, every event recorded) and, for kit calls, the journal counts no stale entity.

Rows, each measured --runs times, interleaved (each run measures every row once, so a change in
the machine's load hits them alike); best, median and worst are printed:
- floor: what PostgreSQL alone needs to take the same departments as a linked adjacency list:
  ids and parent ids worked out in Python, one COPY (text blocks) into a table with its primary
  key and natural-key unique index, one transaction (psycopg 3); best of --floor-tries (3),
  as the issue measures it; the ratios below are to the floor of the same run.
- first: allOrgSync of --departments (bench/org_sync.py's tree: 5,000-department divisions,
  depth up to 8, random order) into a fresh tenant whose 20,000 users arrived first; after
  --neighbours tenants of 5,000 departments (default 20) share the tables.
- resync: the identical list again; change: 1,000 renames and a 5,000-node division moved.
- authSync: --users users (bench/auth_sync.py's) in one call, to a fresh tenant.
- usage: --events events through POST /api/usage, --per-request each (default 1,000), from
  --clients concurrent clients (default 4) over --instances on-demand instances; events/s, and
  the CPU each side used per 1,000 events: the clients (threads of this process, bodies built
  before the clock starts), the gunicorn workers, the scratch database's PostgreSQL backends.
  The clients are not what limits the row: about 2 ms of CPU per 1,000 events against some 45
  for the service and PostgreSQL together, which share the machine's CPUs with them.
- oversubscribed: `first` while two busy-loop processes run beside the service.

--profile runs allOrgSync first, its identical re-sync and the change, authSync and one usage
request (those of the rows measured) again in this process (Django's test client through the
whole middleware stack; no socket) under cProfile and prints where the time goes, grouped by
phase, and the functions with most own time. --timeline runs the first load and the change
--runs times again in this process, unprofiled, and prints when each step started and how long
it took on the call's own clock (and the page faults): what overlaps what. The journal's
`duration_ms` ("server" below) ends before the commit; over HTTP, the body is read
(ops/wsgi.py) before it starts.
"""

import argparse
import cProfile
import functools
import importlib
import json
import multiprocessing
import os
import pstats
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

from bench import _harness as harness  # noqa: E402
from bench import auth_sync as auth_bench  # noqa: E402
from bench import org_sync as org_bench  # noqa: E402
from bench.load import CpuAccount  # noqa: E402
from ops.gunicorn import GC_THRESHOLDS, HEAP_RESERVE_MB, reserve_heap  # noqa: E402

METERING_TOKEN = "bench-metering-token-0123456789abcdef"
FLOOR_TABLE = "bench_floor_department"
ROWS = ("floor", "first", "resync", "change", "authSync", "usage", "oversubscribed")
ORG_ROWS = ("first", "resync", "change")
# row -> (what is compared, bound, how it is judged); issue 17's goals.
GOALS = {
    "first": ("ratio", 2.5, "median ratio to the floor"),
    "resync": ("ratio", 1.0, "median ratio to the floor"),
    "change": ("ratio", 1.0, "median ratio to the floor"),
    "authSync": ("seconds", 0.5, "median"),
    "usage": ("rate", 30_000, "median events/s"),
    "oversubscribed": ("seconds", 4.0, "worst"),
}


class Void(Exception):
    """The call was not accepted as a whole: its figure means nothing."""


# --- the building blocks (tests/bench/test_bench_big_calls.py runs them at tiny sizes) ------------
def org_tree(departments: int, seed: int = 5) -> list[dict]:
    return org_bench.build_tree("D", departments, random.Random(seed))


def all_org_sync(tenant_id: str, items: list[dict]) -> harness.Request:
    return harness.kit_request("allOrgSync", org_bench.all_org_sync_body(tenant_id, items))


def auth_sync(tenant_id: str, users: int) -> harness.Request:
    return harness.kit_request(
        "authSync", auth_bench.auth_sync(tenant_id, auth_bench.users(users), 1)
    )


def usage_requests(
    instance_ids: list[str], events: int, per_request: int, rng: random.Random
) -> list[harness.Request]:
    """POST /api/usage bodies of `per_request` new events each, spread over the instances and
    the last two hours (none closed yet), with the metering token."""
    now = datetime.now(UTC)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {METERING_TOKEN}"}
    requests = []
    for start in range(0, events, per_request):
        body = [
            {
                "instanceId": rng.choice(instance_ids),
                "quantity": f"{rng.randint(1, 100_000) / 100:.2f}",
                "occurredAt": (now - timedelta(seconds=rng.uniform(5, 7200))).isoformat(),
                "eventId": uuid.uuid4().hex,
            }
            for _ in range(min(per_request, events - start))
        ]
        requests.append(("/api/usage", headers, json.dumps(body).encode()))
    return requests


def add_instances(count: int, prefix: str = "bench-od") -> list[str]:
    """`count` active on-demand instances, started a day ago (Django must be set up)."""
    return harness.add_on_demand_instances(count, prefix=prefix)


def accepted_kit(status: int, data: bytes, *, endpoint: str, tenant_id: str) -> float:
    """Raises Void unless the call was answered 000000 and its journal row counts no stale
    entity; the server's own duration (ms) from the journal."""
    from koogallery.inbound.journal import InboundCall

    answer = json.loads(data) if status == 200 else {"HTTP": status}
    if answer.get("resultCode") != "000000":
        raise Void(f"{endpoint} answered {str(answer)[:300]}")
    row = (
        InboundCall.objects.filter(endpoint=endpoint, tenant_id=tenant_id)
        .order_by("-id")
        .values_list("result_code", "stale_entities", "duration_ms")
        .first()
    )
    if row is None or row[0] != "000000" or row[1]:
        raise Void(f"{endpoint} of {tenant_id}: journal {row} (stale entities skip writes)")
    return row[2]


def accepted_usage(status: int, data: bytes, events: int) -> None:
    answer = json.loads(data)
    if status != 201 or answer.get("recorded") != events:
        raise Void(f"POST /api/usage answered {status} {str(answer)[:300]}")


def floor_seconds(conn: psycopg.Connection, items: list[dict], tenant: int = 1) -> float:
    """The floor: the departments as a linked adjacency list into an empty table with its
    primary key and natural-key unique index: ids and parent ids in Python, one COPY of text
    blocks, one transaction. `conn` is not in autocommit mode; the table is left behind."""
    with conn.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
        cursor.execute(
            f"CREATE TABLE {FLOOR_TABLE} (id bigint PRIMARY KEY, tenant_id bigint NOT NULL, "
            "org_code varchar(64) NOT NULL, org_name varchar(128) NOT NULL, "
            "parent_code varchar(64) NOT NULL, parent_id bigint, UNIQUE (tenant_id, org_code))"
        )
    conn.commit()
    null = "\\N"
    started = time.perf_counter()
    id_of = {item["orgCode"]: n for n, item in enumerate(items, 1)}
    with (
        conn.cursor() as cursor,
        cursor.copy(
            f"COPY {FLOOR_TABLE} (id, tenant_id, org_code, org_name, parent_code, parent_id) "
            "FROM STDIN"
        ) as copy,
    ):
        for start in range(0, len(items), 10_000):
            block = "".join(
                [
                    f"{id_of[i['orgCode']]}\t{tenant}\t{i['orgCode']}\t{i['orgName']}\t"
                    f"{i['parentCode']}\t{id_of.get(i['parentCode'], null)}\n"
                    for i in items[start : start + 10_000]
                ]
            )
            # Text format: a backslash, tab or newline in a value would need escaping.
            if (
                "\r" in block
                or block.count("\\") != block.count("\t\\N\n")
                or block.count("\t") != 5 * block.count("\n")
            ):
                raise ValueError("the floor's values need COPY escaping")
            copy.write(block)
    conn.commit()
    return time.perf_counter() - started


InProcess = harness.InProcess  # Django's whole stack in this process (test client; no socket)
timed = harness.timed_exchange  # (seconds, status, answer)


def post_usage(port: int, requests: list[harness.Request], clients: int) -> float:
    """Every request from `clients` threads, each on its own keep-alive connection: wall
    seconds. Raises Void if any was not accepted whole."""
    pending = list(reversed(requests))
    lock = threading.Lock()
    problems: list[str] = []

    def client() -> None:
        connection = harness.Connection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if not pending:
                    break
                request = pending.pop()
            status, data = connection.exchange(request)
            try:
                accepted_usage(status, data, len(json.loads(request[2])))
            except Void as exc:
                problems.append(str(exc))
        connection.close()

    wall, _ = harness.timed(harness.in_threads, lambda _: client(), clients)
    if problems:
        raise Void(f"{len(problems)} request(s) refused; first: {problems[0]}")
    return wall


def _own_cpu() -> float:
    """CPU seconds this process (and its children) used so far: the usage clients' share."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _spin() -> None:
    while True:
        pass


@contextmanager
def busy_loops(count: int = 2):
    """`count` CPU-bound processes for as long as the block runs."""
    context = multiprocessing.get_context("fork")
    loops = [context.Process(target=_spin, daemon=True) for _ in range(count)]
    for loop in loops:
        loop.start()
    time.sleep(1)  # scheduled and spinning before anything is measured
    try:
        yield
    finally:
        for loop in loops:
            loop.terminate()
        for loop in loops:
            loop.join()


# --- profiles ------------------------------------------------------------------------------------
# (depth, label, functions as "path suffix:name"); rows of depth 0 do not overlap, so what they
# leave of the total is the rest of the stack (middleware, Django's handler, the test client).
KIT_FRAME = [
    (0, "body read (request.body)", ["django/http/request.py:body"]),
    (0, "body digest + journal copy", ["journal.py:body_digest", "journal.py:redacted_text"]),
    (0, "JSON parsing (jsonbody.parse_json)", ["koogallery/protocol/jsonbody.py:parse_json"]),
    (0, "verification (canonical JSON, HMAC)", ["koogallery/protocol/signing.py:verify_v2"]),
    (0, "validation (inbound.validate)", ["koogallery/inbound/endpoint.py:validate"]),
]
KIT_TAIL = [
    (0, "journal row (INSERT)", ["koogallery/inbound/journal.py:write"]),
    (0, "commit", ["django/db/backends/base/base.py:commit"]),
    (0, "answer, log line, metrics", ["inbound/endpoint.py:respond", "ops/calls.py:call_finished"]),
]
PROFILES = {
    "allOrgSync": [
        *KIT_FRAME,
        (1, "list items (validate_org_items)", ["orgsync/serializers.py:validate_org_items"]),
        (0, "service (orgsync.services.all_org_sync)", ["orgsync/services.py:all_org_sync"]),
        (1, "last wins, parent links", ["snapshot.py:last_wins", "snapshot.py:links"]),
        (1, "cycle check, first load (_first)", ["orgsync/services.py:_first"]),
        (1, "tenant row lock (ensure_tenant)", ["tenants/services.py:ensure_tenant"]),
        (1, "last wins + digest; meanwhile stored rows read", ["writers.py:load_items_while"]),
        (1, "stored rows split into lines", ["orgsync/writers.py:_lines"]),
        (1, "first load: cycle check, ids + waiting users read", ["writers.py:read_ahead"]),
        (1, "re-sync diff + cycle check (_resync_plan)", ["orgsync/services.py:_resync_plan"]),
        (2, "new or edited items (snapshot.fresh)", ["orgsync/snapshot.py:fresh"]),
        (2, "cycle check from them", ["orgsync/snapshot.py:has_cycle_through"]),
        (2, "their rows and parents' (load_codes)", ["orgsync/writers.py:load_codes"]),
        (2, "relinked children, plan", ["snapshot.py:relinked", "snapshot.py:plan_changes"]),
        (1, "writes (writers.apply)", ["orgsync/writers.py:apply"]),
        (1, "first load written (write_first_load)", ["orgsync/writers.py:write_first_load"]),
        (2, "ids from the sequence", ["orgsync/writers.py:_allocate_ids"]),
        (2, "COPY of the new rows", ["orgsync/writers.py:_copy_new_rows"]),
        (2, "waiting users linked (after the COPY)", ["orgsync/writers.py:_link"]),
        (1, "tenant marked synced", ["orgsync/services.py:_mark_synced"]),
        *KIT_TAIL,
    ],
    "authSync": [
        *KIT_FRAME,
        (1, "fast path (fastvalidate)", ["koogallery/inbound/fastvalidate.py:validated_data"]),
        (0, "service (tenants.services.auth_sync)", ["tenants/services.py:auth_sync"]),
        (1, "last wins", ["tenants/services.py:_last_wins"]),
        (1, "tenant held (FOR KEY SHARE)", ["tenants/services.py:_hold_tenant"]),
        (1, "users and authorisations written", ["tenants/services.py:_authorize_postgresql"]),
        *KIT_TAIL,
    ],
    "usage": [
        (0, "authentication (bearer token)", ["metering/views.py:authenticate"]),
        (0, "view (UsageView.post)", ["metering/views.py:post"]),
        (1, "body read + JSON parsing (DRF)", ["rest_framework/request.py:_parse"]),
        (1, "UsageEventSerializer per event", ["rest_framework/serializers.py:is_valid"]),
        (1, "  its construction", ["rest_framework/serializers.py:__init__"]),
        (1, "service (metering.services.record_usage)", ["metering/services.py:record_usage"]),
        (2, "shared lock on the closed cursor", ["metering/locks.py:shared_position"]),
        (2, "PostgreSQL: read, checks, INSERT", ["metering/services.py:_insert_checked"]),
        (2, "checks per event (_check)", ["metering/services.py:_check"]),
        (2, "INSERT (bulk_create)", ["django/db/models/query.py:bulk_create"]),
        (2, "commit", ["django/db/backends/base/base.py:commit"]),
        (0, "rendering the answer (DRF JSONRenderer)", ["rest_framework/renderers.py:render"]),
        (0, "log line, metrics (ops middleware)", ["ops/calls.py:call_finished"]),
    ],
}
ACROSS = [
    ("waiting on PostgreSQL (psycopg round trips, COPY)", ["psycopg/connection.py:wait"]),
    ("json.loads / json.dumps (stdlib)", ["json/__init__.py:loads", "json/__init__.py:dumps"]),
]


def _cumulative(stats: pstats.Stats, matchers: list[str]) -> tuple[float, int]:
    seconds, calls = 0.0, 0
    for (filename, _, name), (_, ncalls, _, cumtime, _) in stats.stats.items():
        for matcher in matchers:
            suffix, _, wanted = matcher.rpartition(":")
            if name == wanted and filename.endswith(suffix):
                seconds += cumtime
                calls += ncalls
    return seconds, calls


def profile_report(name: str, profiler: cProfile.Profile, total: float, plain: float) -> str:
    stats = pstats.Stats(profiler)
    lines = [
        f"{name}: {plain * 1000:.0f} ms in-process without the profiler, "
        f"{total * 1000:.0f} ms under cProfile (Python-heavy phases are inflated most)"
    ]
    accounted = 0.0
    for depth, label, matchers in PROFILES[name.split()[0]]:
        seconds, calls = _cumulative(stats, matchers)
        if not calls:
            continue
        if depth == 0:
            accounted += seconds
        lines.append(
            f"  {'  ' * depth}{label:<{46 - 2 * depth}} {seconds * 1000:8.0f} ms "
            f"{seconds / total:6.1%}  ({calls} calls)"
        )
    rest = total - accounted
    label = "the rest (middleware, handler, client)"
    lines.append(f"  {label:<46} {rest * 1000:8.0f} ms {rest / total:6.1%}")
    for label, matchers in ACROSS:
        seconds, _ = _cumulative(stats, matchers)
        lines.append(
            f"  across phases: {label:<31} {seconds * 1000:8.0f} ms {seconds / total:6.1%}"
        )
    lines.append("  functions with most own time (ms own / ms cumulative / calls):")
    ranked = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:14]
    for (filename, line, function), (_, ncalls, tottime, cumtime, _) in ranked:
        where = f"{'/'.join(Path(filename).parts[-2:])}:{line}" if line else filename
        lines.append(
            f"    {tottime * 1000:7.0f} {cumtime * 1000:7.0f} {ncalls:8d}  {function} ({where})"
        )
    return "\n".join(lines)


def profile_calls(
    args, items: list[dict], instance_ids: list[str], log_path: Path, wanted: set[str]
) -> None:
    """allOrgSync first, authSync and one usage request (those of the `wanted` rows), each once
    unprofiled (a fresh tenant, new events) and once under cProfile; the service's log lines go
    to `log_path`."""
    sender = InProcess()
    rng = random.Random(17)

    def org_call(n: int):
        tenant = f"profile-org-{n}"
        org_bench.add_waiting_users(tenant, items)
        return all_org_sync(tenant, items), lambda s, d: accepted_kit(
            s, d, endpoint="allOrgSync", tenant_id=tenant
        )

    def resync_call(n: int):  # the tenants the first loads above wrote
        tenant = f"profile-org-{n}"
        return all_org_sync(tenant, items), lambda s, d: accepted_kit(
            s, d, endpoint="allOrgSync", tenant_id=tenant
        )

    changed = org_bench.renamed_and_moved(items, random.Random(18))[0]

    def change_call(n: int):  # the same tenants, re-synced with renames and a move
        tenant = f"profile-org-{n}"
        return all_org_sync(tenant, changed), lambda s, d: accepted_kit(
            s, d, endpoint="allOrgSync", tenant_id=tenant
        )

    def auth_call(n: int):
        tenant = f"profile-auth-{n}"
        return auth_sync(tenant, args.users), lambda s, d: accepted_kit(
            s, d, endpoint="authSync", tenant_id=tenant
        )

    def usage_call(n: int):
        request = usage_requests(instance_ids, args.per_request, args.per_request, rng)[0]
        return request, lambda s, d: accepted_usage(s, d, args.per_request)

    calls = {
        "allOrgSync": org_call,
        "allOrgSync identical re-sync": resync_call,
        "allOrgSync change": change_call,
        "authSync": auth_call,
        "usage": usage_call,
    }
    if not wanted & {"floor", *ORG_ROWS, "oversubscribed"}:  # (the re-syncs need the first)
        calls = {name: make for name, make in calls.items() if not name.startswith("allOrg")}
    if "authSync" not in wanted:
        del calls["authSync"]
    if "usage" not in wanted:
        del calls["usage"]
    print(
        f"\nprofiles (in this process, {args.departments} departments, {args.users} users, "
        f"{args.per_request} events per request):",
        flush=True,
    )
    with harness.stderr_to(log_path, append=True):
        # This process's first calls import and connect: warm up with small ones.
        warm_up(sender, items, instance_ids)
        for name, make in calls.items():
            print(profile_one(args, sender, name, make), flush=True)


def warm_up(sender, items: list[dict], instance_ids: list[str]) -> None:
    """A small call of each kind: the first ones of a process import and connect."""
    tenant = f"warm-{uuid.uuid4().hex[:8]}"
    for request, endpoint in (
        (all_org_sync(tenant, items[:100]), "allOrgSync"),
        (auth_sync(tenant, 10), "authSync"),
    ):
        accepted_kit(*timed(sender, request)[1:], endpoint=endpoint, tenant_id=tenant)
    requests = usage_requests(instance_ids, 10, 10, random.Random())
    accepted_usage(*timed(sender, requests[0])[1:], 10)


def profile_one(args, sender, name: str, make) -> str:
    """The call once plainly and once under cProfile (each its own tenant or events)."""
    plain = total = 0.0
    profiler = cProfile.Profile()
    for n, profiled in ((0, False), (1, True)):
        request, check = make(n)
        harness_wait_quiet(args)
        if profiled:
            profiler.enable()
        seconds, status, data = timed(sender, request)
        if profiled:
            profiler.disable()
        check(status, data)
        plain, total = (plain, seconds) if profiled else (seconds, total)
    return profile_report(name, profiler, total, plain)


# --- timeline: where the wall time of a call goes, unprofiled ------------------------------------
# module:function; each call of one is a span (start, duration) on the call's own clock.
TIMELINE = [
    "koogallery.inbound.journal:body_digest",
    "koogallery.protocol.jsonbody:parse_json",
    "koogallery.inbound.journal:redacted_text",
    "koogallery.protocol.signing:verify_v2",
    "orgsync.serializers:validate_org_items",
    "orgsync.services:all_org_sync",
    "orgsync.writers:load_items_while",
    "orgsync.snapshot:last_wins",
    "orgsync.snapshot:as_lines",
    "orgsync.snapshot:digest",
    "orgsync.writers:_lines",
    "orgsync.writers:read_ahead",
    "orgsync.services:_first",
    "orgsync.snapshot:has_cycle_through",
    "orgsync.services:_resync_plan",
    "orgsync.snapshot:fresh",
    "orgsync.writers:load_codes",
    "orgsync.writers:apply",
    "orgsync.writers:write_first_load",
    "orgsync.writers:_copy_new_rows",
    "orgsync.writers:_link_params",
    "orgsync.writers:_link",
    "orgsync.services:_mark_synced",
]


@contextmanager
def spans(functions: list[str]):
    """Each function of `functions` wrapped to note (name, start, end) of every call into the
    list yielded, where its module and every project module that imported it name it."""
    noted: list[tuple[str, float, float]] = []
    undo = []
    for spec in functions:
        module_name, name = spec.split(":")
        original = getattr(importlib.import_module(module_name), name)

        @functools.wraps(original)
        def wrapper(*args, _original=original, _name=name, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                noted.append((_name, started, time.perf_counter()))

        for module in list(sys.modules.values()):
            where = getattr(module, "__name__", "") or ""
            if where.split(".")[0] in ("koogallery", "orgsync", "tenants") and (
                getattr(module, name, None) is original
            ):
                setattr(module, name, wrapper)
                undo.append((module, name, original))
    try:
        yield noted
    finally:
        for module, name, original in undo:
            setattr(module, name, original)


def timeline_calls(args, items: list[dict], log_path: Path) -> None:
    """The first load and the change, each `args.runs` times in this process (fresh tenants),
    with the wall-clock span of every TIMELINE function that ran, and the page faults."""
    import gc

    sender = InProcess()
    changed = org_bench.renamed_and_moved(items, random.Random(18))[0]
    print(
        f"\ntimeline (in this process, unprofiled; gunicorn's GC thresholds and heap reserve; "
        f"{args.departments} departments): start and duration of each step, ms",
        flush=True,
    )
    with harness.stderr_to(log_path, append=True):
        warm = f"timeline-warm-{uuid.uuid4().hex[:6]}"  # imports and connections
        _, status, data = timed(sender, all_org_sync(warm, items[:100]))
        accepted_kit(status, data, endpoint="allOrgSync", tenant_id=warm)
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        reserve = reserve_heap(HEAP_RESERVE_MB)  # noqa: F841 (kept while the calls run)
        for name in ("first", "change"):
            for n in range(args.runs):
                tenant = f"timeline-{name}-{n}-{uuid.uuid4().hex[:6]}"
                org_bench.add_waiting_users(tenant, items)
                request = all_org_sync(tenant, items)
                if name == "change":
                    seconds, status, data = timed(sender, request)
                    accepted_kit(status, data, endpoint="allOrgSync", tenant_id=tenant)
                    request = all_org_sync(tenant, changed)
                harness_wait_quiet(args)
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                with spans(TIMELINE) as noted:
                    started = time.perf_counter()
                    seconds, status, data = timed(sender, request)
                accepted_kit(status, data, endpoint="allOrgSync", tenant_id=tenant)
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
                print(f"allOrgSync {name}, call {n + 1}: {seconds * 1000:.0f} ms, {faults} faults")
                for step, start, end in sorted(noted, key=lambda span: span[1]):
                    print(
                        f"  {step:<22} {(start - started) * 1000:7.1f} {(end - start) * 1000:7.1f}"
                    )


# --- the run -------------------------------------------------------------------------------------
_quiet_conn: list[psycopg.Connection] = []


def harness_wait_quiet(args, timeout: float = 60) -> None:
    """Until no other backend of the scratch database is active (the service's ANALYZE after a
    big write, autovacuum): each measured call starts from the same quiet state."""
    if not _quiet_conn:
        _quiet_conn.append(psycopg.connect(args.database_url, autocommit=True))
    conn = _quiet_conn[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (busy,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
            "AND pid <> pg_backend_pid()",
            [args.db],
        ).fetchone()
        if not busy:
            break
        time.sleep(0.2)
    time.sleep(0.3)


class Figures:
    def __init__(self):
        self.values: dict[str, list[float]] = {}
        self.ratios: dict[str, list[float]] = {}
        self.loads: dict[str, list[float]] = {}
        self.notes: dict[str, str] = {}
        # (CPU of the call: its gunicorn worker and PostgreSQL backend) / (CPU of the floor)
        self.cpu_ratios: dict[str, list[float]] = {}
        self.void: dict[str, list[str]] = {}

    def add(self, row: str, value: float, floor: float | None = None) -> None:
        self.values.setdefault(row, []).append(value)
        self.loads.setdefault(row, []).append(os.getloadavg()[0])
        if floor and GOALS.get(row, ("",))[0] == "ratio":
            self.ratios.setdefault(row, []).append(value / floor)

    def voided(self, row: str, why: str) -> None:
        self.void.setdefault(row, []).append(why)
        print(f"  VOID {row}: {why}", flush=True)


def measure(args, service, figures: Figures, wanted: set[str]) -> tuple[list, list]:
    from orgsync.models import Department
    from tenants.models import TenantUser

    rng = random.Random(17)
    port = service.port
    http = harness.Connection("127.0.0.1", port, timeout=120)
    items = org_tree(args.departments)
    changed, moved, target = org_bench.renamed_and_moved(items, random.Random(18))
    size = len(harness.raw_json(items)) / 1e6
    waiting = min(20_000, len(items) // 5)
    neighbours = args.neighbours if wanted & {*ORG_ROWS, "oversubscribed"} else 0
    figures.notes["first"] = (
        f"{len(items):,} departments, {size:.1f} MB of JSON, {waiting:,} users waiting, "
        f"{neighbours} neighbour tenants of {org_bench.DIVISION:,}"
    )
    if neighbours:
        started = time.perf_counter()
        for t in range(args.neighbours):
            tree = org_bench.build_tree(f"N{t:02d}-", org_bench.DIVISION, rng)
            _, status, data = timed(http, all_org_sync(f"neighbour-{t:02d}", tree))
            accepted_kit(status, data, endpoint="allOrgSync", tenant_id=f"neighbour-{t:02d}")
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE orgsync_department")
            conn.execute("VACUUM ANALYZE tenants_tenantuser")
        print(
            f"set-up: {args.neighbours} neighbour tenants x {org_bench.DIVISION} departments in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
    instance_ids = add_instances(args.instances) if "usage" in wanted or args.profile else []
    floor_conn = psycopg.connect(args.database_url)
    # Every worker's first calls import and allocate: warm them all up, from 8 connections.
    warm_ids = instance_ids or add_instances(1, prefix="warm-od")
    harness.in_threads(
        lambda _: warm_up(harness.Connection("127.0.0.1", port, timeout=120), items, warm_ids),
        2 * args.workers,
    )

    cpu = CpuAccount(service.pid, args.database_url, args.db)

    def cpu_note(used: dict[str, float]) -> str:
        return "; CPU ms " + ", ".join(f"{k} {v * 1000:.0f}" for k, v in used.items())

    def kit_row(row: str, tenant: str, endpoint: str, request, floor, verify=None) -> None:
        harness_wait_quiet(args)
        http.connect()  # a new connection, as KooGallery's; connecting is not timed
        cpu.sample()
        seconds, status, data = timed(http, request)
        used = cpu.sample()
        try:
            server_ms = accepted_kit(status, data, endpoint=endpoint, tenant_id=tenant)
            if verify:
                verify()
        except Void as exc:
            figures.voided(row, str(exc))
            return
        figures.add(row, seconds, floor)
        ratio = f"  {seconds / floor:4.2f} x floor" if floor and row in ORG_ROWS else ""
        if floor and row in ORG_ROWS and floor_cpu:
            figures.cpu_ratios.setdefault(row, []).append(sum(used.values()) / floor_cpu[-1])
            ratio += f" (CPU {figures.cpu_ratios[row][-1]:4.2f} x)"
        print(
            f"  {row:<15} {seconds * 1000:8.0f} ms (server {server_ms:.0f} ms){ratio}  "
            f"load {os.getloadavg()[0]:.2f}{cpu_note(used)}",
            flush=True,
        )

    def check_count(tenant: str, expected: int):
        def verify() -> None:
            found = Department.objects.filter(tenant__tenant_id=tenant).count()
            if found != expected:
                raise Void(f"{tenant} has {found} departments, not {expected}")

        return verify

    def check_move(tenant: str):
        def verify() -> None:
            code = Department.objects.get(tenant__tenant_id=tenant, org_code=moved).parent_code
            if code != target:
                raise Void(f"{moved} of {tenant} is under {code!r}, not {target!r}")

        return verify

    floor_cpu: list[float] = []  # CPU seconds of each floor: its Python and its backend
    try:
        for run in range(args.runs):
            print(f"run {run + 1} of {args.runs}:", flush=True)
            floor = None
            if wanted & {"floor", *ORG_ROWS}:
                tries = []  # (seconds, CPU used)
                for _ in range(args.floor_tries):
                    harness_wait_quiet(args)
                    cpu.sample()
                    client_cpu = _own_cpu()
                    seconds = floor_seconds(floor_conn, items)
                    used = {"client": _own_cpu() - client_cpu, "postgres": cpu.sample()["postgres"]}
                    tries.append((seconds, used))
                floor, used = min(tries, key=lambda t: t[0])
                floor_cpu.append(sum(used.values()))
                figures.add("floor", floor)
                print(
                    f"  {'floor':<15} {floor * 1000:8.0f} ms  (best of "
                    + " / ".join(f"{t * 1000:.0f}" for t, _ in tries)
                    + f")  load {os.getloadavg()[0]:.2f}{cpu_note(used)}"
                )
            if wanted & set(ORG_ROWS):
                tenant = f"big-{run}"
                org_bench.add_waiting_users(tenant, items)
                request = all_org_sync(tenant, items)
                check = check_count(tenant, len(items))
                kit_row("first", tenant, "allOrgSync", request, floor, check)
                linked = TenantUser.objects.filter(
                    tenant__tenant_id=tenant, department__isnull=False
                ).count()
                if linked != min(20_000, len(items) // 5):
                    figures.voided("first", f"{linked} waiting users linked")
                if wanted & {"resync", "change"}:
                    request = all_org_sync(tenant, items)
                    kit_row("resync", tenant, "allOrgSync", request, floor)
                if "change" in wanted:
                    request = all_org_sync(tenant, changed)
                    kit_row("change", tenant, "allOrgSync", request, floor, check_move(tenant))
            if "authSync" in wanted:
                tenant = f"auth-{run}"
                request = auth_sync(tenant, args.users)

                def users_stored(tenant=tenant) -> None:
                    found = TenantUser.objects.filter(tenant__tenant_id=tenant).count()
                    if found != args.users:
                        raise Void(f"{found} users stored, not {args.users}")

                kit_row("authSync", tenant, "authSync", request, None, users_stored)
            if "usage" in wanted:
                requests = usage_requests(instance_ids, args.events, args.per_request, rng)
                harness_wait_quiet(args)
                cpu.sample()
                client_cpu = _own_cpu()
                try:
                    wall = post_usage(port, requests, args.clients)
                except Void as exc:
                    figures.voided("usage", str(exc))
                else:
                    used = {"client": _own_cpu() - client_cpu, **cpu.sample()}
                    figures.add("usage", args.events / wall)
                    print(
                        f"  {'usage':<15} {args.events / wall:8.0f} events/s ({args.events:,} "
                        f"in {wall:.1f} s)  load {os.getloadavg()[0]:.2f}; CPU ms per 1,000 "
                        "events: "
                        + ", ".join(f"{k} {v / args.events * 1e6:.1f}" for k, v in used.items()),
                        flush=True,
                    )
            if "oversubscribed" in wanted:
                tenant = f"busy-{run}"
                org_bench.add_waiting_users(tenant, items)
                request = all_org_sync(tenant, items)
                harness_wait_quiet(args)
                with busy_loops(2):
                    kit_row(
                        "oversubscribed",
                        tenant,
                        "allOrgSync",
                        request,
                        None,
                        check_count(tenant, len(items)),
                    )
    finally:
        http.close()
        floor_conn.close()
    return items, instance_ids


def report(args, figures: Figures, load_before, load_after) -> None:
    print(
        f"\nbest / median / worst of {args.runs} run(s); "
        + harness.load_averages(load_before, load_after)
    )
    print(
        f"{'row':<15} {'best':>9} {'median':>9} {'worst':>9}  {'x floor (best/median)':>21}  "
        f"{'goal':<32} {'verdict':<8} load 1-min"
    )
    for row in ROWS:
        values = figures.values.get(row, [])
        void = figures.void.get(row, [])
        if not values and not void:
            continue
        if not values:
            print(f"{row:<15} void: {void[0]}")
            continue
        rate = row == "usage"
        ordered = sorted(values, reverse=rate)
        unit = (lambda v: f"{v:9.0f}") if rate else (lambda v: f"{v * 1000:7.0f}ms")
        median = statistics.median(values)
        ratios = figures.ratios.get(row, [])
        ratio_text = f"{min(ratios):9.2f} / {statistics.median(ratios):4.2f}" if ratios else ""
        goal_text, verdict = "", ""
        if row in GOALS:
            kind, bound, judged = GOALS[row]
            if kind == "ratio":
                judged_value, goal_text = (
                    statistics.median(ratios) if ratios else None,
                    f"<= {bound} x floor ({judged})",
                )
                met = judged_value is not None and judged_value <= bound
            elif kind == "rate":
                goal_text, met = f">= {bound:,} events/s ({judged})", median >= bound
            elif judged == "worst":
                goal_text, met = f"<= {bound} s ({judged})", max(values) <= bound
            else:
                goal_text, met = f"<= {bound} s ({judged})", median <= bound
            verdict = "met" if met else "missed"
            if void:
                verdict += f" ({len(void)} void)"
        loads = figures.loads.get(row, [])
        print(
            f"{row:<15} {unit(ordered[0])} {unit(median)} {unit(ordered[-1])}  "
            f"{ratio_text:>21}  {goal_text:<32} {verdict:<8} "
            f"{min(loads):.2f}-{max(loads):.2f}"
        )
    for row, note in figures.notes.items():
        print(f"  {row}: {note}")
    for row, ratios in figures.cpu_ratios.items():
        print(
            f"  {row}: CPU (gunicorn worker + PostgreSQL backend) x the floor's (its Python + "
            f"backend): best {min(ratios):.2f}, median {statistics.median(ratios):.2f} "
            "(steadier than wall time on a shared machine; not the goal)"
        )
    if "usage" in figures.values:
        print(
            f"  usage: {args.events:,} events a run in requests of {args.per_request}, "
            f"{args.clients} concurrent clients, {args.instances} instances"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--floor-tries", type=int, default=3, help="the floor: best of these")
    parser.add_argument("--only", nargs="*", help=f"rows to measure (substring of {ROWS})")
    parser.add_argument("--departments", type=int, default=100_000)
    parser.add_argument("--neighbours", type=int, default=20, help="tenants of 5,000 departments")
    parser.add_argument("--users", type=int, default=5000, help="users in the authSync call")
    parser.add_argument("--events", type=int, default=200_000, help="usage events a run")
    parser.add_argument("--per-request", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4, help="concurrent usage clients")
    parser.add_argument("--instances", type=int, default=1000)
    harness.add_service_arguments(parser)
    parser.add_argument("--profile", action="store_true", help="profile the calls in-process")
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="the wall-clock steps of the first load and the change, in-process, unprofiled",
    )
    harness.add_scratch_arguments(parser, db="bench_big_calls", redis_db=12)
    args = parser.parse_args()
    wanted = {row for row in ROWS if not args.only or any(o in row for o in args.only)}
    args.database_url = f"{args.pg_url}/{args.db}"

    settings = {
        "log_level": "INFO",
        "encryption_keys": Fernet.generate_key().decode(),
        "LOG_FORMAT": "json",
        "METERING_API_TOKEN": METERING_TOKEN,
        "SECURE_REDIRECT_EXEMPT": r"^api/usage$",
    }
    env = harness.service_env(
        args.database_url,
        args.redis_url,
        scrub=("LOG_", "METERING_", "SECURE_"),
        PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix="bench-big-metrics-"),
        **settings,
    )
    harness.configure_environment(
        args.database_url,
        unset=(*harness.SERVICE_PREFIXES, "LOG_", "METERING_", "SECURE_", "PROMETHEUS_"),
        REDIS_URL=args.redis_url,
        PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix="bench-big-metrics-"),
        **settings,
    )
    harness.setup_django(migrate=False)
    with (
        harness.scratch_database(args.database_url, keep=args.keep, env=env),
        harness.service(args, env, "big-calls") as service,
        ExitStack() as cleanup,
    ):
        cleanup.callback(lambda: [conn.close() for conn in _quiet_conn])
        log_path, figures = service.log_path, Figures()
        with psycopg.connect(args.database_url) as conn:
            version = conn.info.server_version
        print(
            f"{harness.describe_service(args)}; PostgreSQL {version} "
            f"({args.db}); {os.cpu_count()} CPUs; service log {log_path}",
            flush=True,
        )
        load_before = os.getloadavg()
        items, instance_ids = measure(args, service, figures, wanted)
        load_after = os.getloadavg()
        report(args, figures, load_before, load_after)
        if args.timeline:
            timeline_calls(args, items, log_path)
        if args.profile:
            if not instance_ids:
                instance_ids = add_instances(args.instances, prefix="profile-od")
            profile_calls(args, items, instance_ids, log_path, wanted)
            print(f"load average after the profiles: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
