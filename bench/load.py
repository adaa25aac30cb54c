"""Throughput and latency of the KooGallery endpoints under concurrent clients, next to a bare
Django view that writes one row (issue 6). Prints figures; asserts nothing about them.

    .venv/bin/python bench/load.py                     # 16 clients, 4 gunicorn workers
    .venv/bin/python bench/load.py --clients 16 --workers 4 --seconds 10 --rounds 3
    .venv/bin/python bench/load.py --clients 4 --procs 2 --workers 2 --seconds 1 --rounds 1 \\
        --warmup 0.5                                   # a quick smoke run

The service runs as in production (`gunicorn -c python:ops.gunicorn config.wsgi:application`:
its threaded workers unless --worker-class/--threads say otherwise, JSON logs at INFO,
Prometheus multiprocess metrics) on a scratch PostgreSQL
database (PG_URL, default postgres://postgres@127.0.0.1:5432; dropped at the end unless --keep)
and Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379/12: the cache). The jobs newInstance
and getLicenseAsync ask for are rows of the outbox (koogallery/outbound/jobs.py), as in
production; no beat
or worker runs, so they stay there and go with the scratch database.
Settings are bench/bench_settings.py: production's plus two routes (bench/bench_urls.py), the
references, which no goal applies to. `POST /bench/bare` parses the JSON body and inserts one row
into a table this script creates. Its throughput under the same load is the "bare" figure; each
endpoint's ratio to it is the price of verification, replay protection, journal and domain writes.
`POST /bench/authSync-unwritten` is authSync with its users and authorisations left unwritten
("authSync, no user rows"): the ceiling of an authSync that validates its 50 users before it
answers, whatever it then does with them.

Calls, each signed as KooGallery signs them (§3.1, §3.2), every one new (fresh nonce and keys):
tenantSync (a new tenant), authSync (50 new users of one of 64 tenants), singleOrgSync (a new
department), newInstance (a new order), queryInstance (one of 64 instances), getLicenseAsync (a
new device on one of 64 instances; answered 000004, persisted, its delivery a job in the outbox).

Clients are --procs processes sharing --clients threads, each with its own connection (kept
alive by threaded workers; sync workers close it after each answer, so a connect is then part of
every call, as for KooGallery).
Phases are interleaved: each round runs every phase for --seconds, so a change in the machine's
load hits all of them alike. The machine's load average is printed before and after: on a
shared machine, rerun when it is quiet.
"""

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import redis  # noqa: E402

from bench import _harness as harness  # noqa: E402

JSON_TYPE = harness.JSON_TYPE
POOL = 64  # tenants and instances the calls are spread over
USERS_PER_AUTH_SYNC = 50
GOAL_RATIO = 0.5
# The reference view's table (bench/bench_urls.py writes it).
CREATE_BARE_TABLE = (
    "CREATE TABLE bench_bare_row (id bigserial PRIMARY KEY, key varchar(64) NOT NULL, "
    "body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
)


# --- requests, built and signed as KooGallery does -----------------------------------------------
Request = harness.Request


kit = harness.kit_request
basic = harness.basic_request


def bare(body: dict) -> Request:
    return "/bench/bare", {"Content-Type": JSON_TYPE}, harness.raw_json(body)


STAMP = "20240601120000000"


def tenant_body(key: str) -> dict:
    return {
        "instanceId": f"inst-{key}",
        "orderId": f"CS{key}",
        "tenantId": f"tenant-{key}",
        "tenantCode": f"code-{key}",
        "name": f"Bench enterprise {key}",
        "domainName": "https://bench.example.com",
        "flag": 1,
        "testFlag": 0,
        "timeStamp": STAMP,
    }


def auth_sync_body(world: dict, key: str, n: int) -> dict:
    tenant = world["tenants"][n % POOL]
    users = [
        {
            "userName": f"u{key}-{i}",
            "name": f"用户 {i}",
            "orgCode": f"{tenant}-dept-{i % 5}",
            "position": "工程师",
            "role": "admin" if i == 0 else "user",
            "enable": "true",
            "email": f"u{i}@bench.example.com",
            "extension": {"entryDate": "2022-11-9", "employeeType": "1", "workPlace": "南京"},
        }
        for i in range(USERS_PER_AUTH_SYNC)
    ]
    return {
        "instanceId": f"inst-{tenant}",
        "tenantId": tenant,
        "appId": "BENCHAPP",
        "userList": users,
        "currentSyncTime": STAMP,
        "flag": 1,
        "testFlag": 0,
        "timeStamp": STAMP,
    }


def single_org_body(world: dict, key: str, n: int) -> dict:
    tenant = world["tenants"][n % POOL]
    return {
        "instanceId": f"inst-{tenant}",
        "tenantId": tenant,
        "orgCode": f"d-{key}",
        "orgName": f"部门 {key}",
        "parentCode": f"{tenant}-dept-{n % 5}",
        "flag": 1,
        "testFlag": 0,
        "timeStamp": STAMP,
    }


def new_instance_body(key: str) -> dict:
    order = f"CSB{key}"
    return {
        "activity": "newInstance",
        "businessId": str(uuid.uuid4()),
        "orderId": order,
        "orderLineId": f"{order}-000001",
    }


def licence_body(world: dict, key: str, n: int) -> dict:
    return {
        "activity": "getLicenseAsync",
        "instanceId": world["instances"][n % POOL],
        "eventId": f"EV{key}",
        "effectiveTime": world["licence_start"],
        "expireTime": world["licence_end"],
        "deviceFingerprint": f"04:7C:16:5E:E3:5D|{key}|BOARD|BFEBFBFF00090672",
    }


BARE = "bare view (1 row)"
UNWRITTEN = "authSync, no user rows"
REFERENCES = (BARE, UNWRITTEN)  # measured for comparison; no goal applies to them

# name -> (request for call n of client `key`, the result code that counts as success)
PHASES: dict[str, tuple[Callable[[dict, str, int], Request], str]] = {
    BARE: (lambda w, k, n: bare(tenant_body(k)), "000000"),
    "tenantSync": (lambda w, k, n: kit("tenantSync", tenant_body(k)), "000000"),
    f"authSync ({USERS_PER_AUTH_SYNC} users)": (
        lambda w, k, n: kit("authSync", auth_sync_body(w, k, n)),
        "000000",
    ),
    # A reference, as the bare view: the same calls through authSync's pipeline with the
    # users and authorisations left unwritten (bench/bench_urls.py).
    UNWRITTEN: (
        lambda w, k, n: kit("authSync", auth_sync_body(w, k, n), "/bench/authSync-unwritten"),
        "000000",
    ),
    "singleOrgSync": (lambda w, k, n: kit("singleOrgSync", single_org_body(w, k, n)), "000000"),
    "newInstance": (lambda w, k, n: basic(new_instance_body(k)), "000000"),
    "queryInstance": (
        lambda w, k, n: basic(
            {"activity": "queryInstance", "instanceId": w["instances"][n % POOL]}
        ),
        "000000",
    ),
    "getLicenseAsync": (lambda w, k, n: basic(licence_body(w, k, n)), "000004"),
}


# --- the client -----------------------------------------------------------------------------------
Connection = harness.Connection


def client_process(port, phase, world, tag, threads, seconds) -> tuple[list, list, float]:
    """One client process: `threads` clients calling `phase` back to back for `seconds`, each on
    its own connection: (latencies, failures, the process's CPU seconds)."""
    build, expected = PHASES[phase]

    def run(thread: int) -> tuple[list[float], list[str]]:
        connection = Connection("127.0.0.1", port)

        def send(request: Request) -> str:
            try:
                return str(connection.send(request).get("resultCode"))
            except (OSError, http.client.HTTPException, ValueError) as exc:
                return type(exc).__name__

        return harness.timed_loop(
            lambda n: build(world, f"{tag}t{thread}n{n}", n + thread * 7),
            send,
            lambda request, code: None if code == expected else code,
            seconds=seconds,
        )

    cpu_started = time.process_time()
    latencies, failures = harness.merged(harness.in_threads(run, threads))
    return latencies, failures, time.process_time() - cpu_started


def run_phase(args, port: int, phase: str, world: dict, tag: str, seconds: float, cpu=None):
    """All clients on one phase for `seconds`: (latencies, failures, wall seconds, CPU seconds
    by process group)."""
    if cpu:
        cpu.sample()  # what happened before this phase is not the phase's
    returned, wall = harness.in_processes(
        lambda i, share: client_process(port, phase, world, f"{tag}p{i}", share, seconds),
        args.clients,
        args.procs,
    )
    latencies, failures, client_cpu = harness.merged(returned)
    used = {}
    if cpu:
        used = cpu.sample()
        used["clients"] = client_cpu
    return latencies, failures, wall, used


# --- where the CPU goes --------------------------------------------------------------------------
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


class CpuAccount:
    """CPU seconds used by the service's gunicorn workers and by the PostgreSQL backends of the
    scratch database, read from /proc. Backends come and go (CONN_MAX_AGE): each is counted
    from its last sample, a new one from its start; what one uses after its last sample before
    it exits is missed."""

    def __init__(self, gunicorn_pid: int, database_url: str, db: str):
        self.gunicorn_pid, self.database_url, self.db = gunicorn_pid, database_url, db
        self.seen: dict[tuple[str, int], float] = {}

    def _children(self, pid: int) -> list[int]:
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def sample(self) -> dict[str, float]:
        """CPU seconds used by each group since the previous sample."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            backends = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [self.db],
            ).fetchall()
        groups = {
            "service": self._children(self.gunicorn_pid),
            "postgres": [pid for (pid,) in backends],
        }
        used = {}
        for group, pids in groups.items():
            used[group] = 0.0
            for pid in pids:
                now = _cpu_seconds(pid)
                used[group] += now - self.seen.get((group, pid), 0.0)
                self.seen[(group, pid)] = now
        return used


# --- the service ----------------------------------------------------------------------------------
def service_env(database_url: str, redis_url: str, metrics_dir: str) -> dict[str, str]:
    return harness.service_env(
        database_url,
        redis_url,
        scrub=("LOG_",),
        settings="bench.bench_settings",
        # As docs/env.production.example and docker-compose.yml run it.
        log_level="INFO",
        LOG_FORMAT="json",
        PROMETHEUS_MULTIPROC_DIR=metrics_dir,
        # The reference route is served over plain HTTP like /koogallery (a proxy does TLS).
        SECURE_REDIRECT_EXEMPT=r"^bench/",
    )


def set_up_world(port: int, run_id: str) -> dict:
    """64 tenants (tenantSync) and 64 instances (newInstance) the calls are spread over."""
    connection = Connection("127.0.0.1", port)
    tenants, instances = [], []
    for n in range(POOL):
        key = f"{run_id}w{n}"
        assert connection.send(kit("tenantSync", tenant_body(key)))["resultCode"] == "000000"
        tenants.append(f"tenant-{key}")
        answer = connection.send(basic(new_instance_body(key)))
        assert answer["resultCode"] == "000000", answer
        instances.append(answer["instanceId"])
    now = datetime.now(UTC)
    return {
        "tenants": tenants,
        "instances": instances,
        "licence_start": now.strftime("%Y-%m-%d %H:%M:%S z"),
        "licence_end": (now + timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S z"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # --seconds and --warmup are per phase.
    harness.add_client_arguments(parser, clients=16, procs=4, seconds=8, rounds=3, warmup=2)
    harness.add_service_arguments(parser)
    parser.add_argument("--only", nargs="*", help="phases to run (substring match)")
    harness.add_scratch_arguments(parser, db="bench_load", redis_db=12)
    args = parser.parse_args()
    phases = [p for p in PHASES if not args.only or p == BARE or any(o in p for o in args.only)]

    database_url = f"{args.pg_url}/{args.db}"
    metrics_dir = tempfile.mkdtemp(prefix="bench-load-metrics-")
    env = service_env(database_url, args.redis_url, metrics_dir)
    try:
        with (
            harness.scratch_database(database_url, keep=args.keep, env=env),
            harness.service(args, env, "load") as service,
        ):
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(CREATE_BARE_TABLE)
            load_before = os.getloadavg()
            figures = measure(args, phases, service, database_url)
            load_after = os.getloadavg()
    finally:
        # Anything queued on the broker (with KOOGALLERY_JOB_DISPATCH=on_commit; no worker ran).
        redis.Redis.from_url(args.redis_url).delete("celery")
    report(args, phases, figures, service.log_path, load_before, load_after)


def measure(args, phases: list[str], service: harness.Service, database_url: str) -> dict:
    """The world set up, every phase warmed up, then --rounds rounds of every phase in turn:
    phase -> latencies, failures, wall seconds and CPU seconds by process group."""
    run_id = uuid.uuid4().hex[:6]
    world = set_up_world(service.port, run_id)
    for phase in phases:
        run_phase(args, service.port, phase, world, f"{run_id}w{phase[:3]}", args.warmup)
    cpu = CpuAccount(service.pid, database_url, args.db)
    figures: dict[str, dict] = {
        phase: {"latencies": [], "failures": [], "wall": 0.0, "cpu": {}} for phase in phases
    }
    for round_ in range(args.rounds):
        for index, phase in enumerate(phases):
            latencies, failures, wall, used = run_phase(
                args, service.port, phase, world, f"{run_id}r{round_}x{index}", args.seconds, cpu
            )
            figure = figures[phase]
            figure["latencies"] += latencies
            figure["failures"] += failures
            figure["wall"] += wall
            for group, seconds in used.items():
                figure["cpu"][group] = figure["cpu"].get(group, 0.0) + seconds
    return figures


def report(args, phases, figures, log_path, load_before, load_after) -> None:
    print(
        f"{harness.describe_service(args)}; {args.clients} concurrent "
        f"clients in {args.procs} processes; PostgreSQL {args.db}, Redis {args.redis_url}; "
        f"{args.rounds} rounds x {args.seconds:g} s per phase; {os.cpu_count()} CPUs"
    )
    print(harness.load_averages(load_before, load_after))
    print(f"service log: {log_path}")
    bare_rate = None
    header = f"{'endpoint':<22} {'calls':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
    header += f"{'max ms':>8} {'vs bare':>8}  {'CPU ms/call: service':>20} {'postgres':>8} "
    print(header + f"{'clients':>8}  {'goal':<18} failures")
    for phase in phases:
        figure = figures[phase]
        ms = sorted(x * 1000 for x in figure["latencies"])
        rate = len(ms) / figure["wall"]
        if bare_rate is None:
            bare_rate = rate
        per_call = {group: used / len(ms) * 1000 for group, used in figure["cpu"].items()}
        failures = figure["failures"]
        shown = sorted(set(failures))[:3]
        p99 = harness.percentile(ms, 0.99)
        # Issue 6's goal: at least half the bare view's throughput, p99 under 100 ms.
        goal = ",".join(
            [*(["rate"] if rate < GOAL_RATIO * bare_rate else []), *(["p99"] if p99 >= 100 else [])]
        )
        verdict = "reference" if phase in REFERENCES else f"missed: {goal}" if goal else "met"
        print(
            f"{phase:<22} {len(ms):>7} {rate:>8.1f} {statistics.median(ms):>8.1f} "
            f"{p99:>8.1f} {ms[-1]:>8.1f} {rate / bare_rate:>7.0%}  "
            f"{per_call.get('service', 0):>20.2f} {per_call.get('postgres', 0):>8.2f} "
            f"{per_call.get('clients', 0):>8.2f}  {verdict:<18} "
            f"{len(failures)}{' ' + ','.join(shown) if shown else ''}"
        )


if __name__ == "__main__":
    main()
