"""What the scripts under bench/ share, so that each says only what it measures and how:

- scratch PostgreSQL databases (scratch_database: created empty, migrated, dropped at the end
  unless --keep) and Django set up in the bench's own process (setup_django);
- the environment the service runs in, as a child process or in the bench's own;
- the service itself as production runs it (service: gunicorn -c python:ops.gunicorn on a free
  port, its log in a file, up before the bench starts, stopped after it);
- calls signed as KooGallery signs them (kit_request §3.1, basic_request §3.2), sent over one
  keep-alive connection (Connection), through Django's whole stack in-process (InProcess) or
  from a pool of threads (BasicClient, post_all, basic_phase);
- client loops: a client's timed calls back to back (timed_loop), clients as threads
  (in_threads) shared among forked processes (in_processes), their figures merged (merged);
- figures: timed, repeat_ms, percentile, latency_summary, spread (best/median/worst) and the
  machine's load average before and after (load_averages);
- the world calls act on (add_on_demand_instances).

Each script puts the project's root first on sys.path (before bench/, so that `import licensing`
finds the app, not bench/licensing.py), then `from bench import _harness as harness`."""

import http.client
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
from cryptography.fernet import Fernet

from koogallery.protocol.signing import basic_sign, kit_sign

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432"
# The service's secrets in every bench; the benches' clients sign with the same keys.
SECRET_KEY = "bench-only-secret-key"
BASIC_KEY = "benchBasicKey0123456789"
KIT_KEY = "BENCH_KIT_KEY_0123456789"
# Variables a service started by a bench must not inherit from the shell that started the bench.
SERVICE_PREFIXES = ("KOOGALLERY_", "DATABASE_", "REDIS_", "DJANGO_")


# --- scratch databases ----------------------------------------------------------------------------
def pg_url() -> str:
    """The PostgreSQL server the scratch databases live on (PG_URL), without a database name."""
    return os.environ.get("PG_URL", DEFAULT_PG_URL)


def add_scratch_arguments(parser, *, db: str, redis_db: int, keep: bool = True) -> None:
    """--pg-url, --redis-url (BENCH_REDIS_URL; db `redis_db` by default: one no other bench or
    worker uses), --db and, with `keep`, --keep."""
    parser.add_argument("--pg-url", default=pg_url())
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", f"redis://127.0.0.1:6379/{redis_db}"),
    )
    parser.add_argument("--db", default=db, help="scratch database name")
    if keep:
        parser.add_argument("--keep", action="store_true", help="keep the scratch database")


def _server(database_url: str) -> tuple[str, str]:
    """(the URL of the server's `postgres` database, the name of the one `database_url` names)"""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path="/postgres")), parts.path.lstrip("/")


def recreate_database(database_url: str) -> None:
    """Drops the database `database_url` names (closing its connections) and creates it empty."""
    server, name = _server(database_url)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(database_url: str) -> None:
    server, name = _server(database_url)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def scratch_database(
    database_url: str,
    *,
    keep: bool = False,
    env: Mapping[str, str] | None = None,
    empty_at_end: bool = False,
) -> Iterator[str]:
    """The database `database_url` names, dropped and created empty, migrated in a child process
    with `env` if given (else the bench migrates it: setup_django); at the end this process's
    Django connections are closed and the database is dropped (`empty_at_end`: created empty
    again) unless `keep`."""
    recreate_database(database_url)
    if env is not None:
        migrate(env)
    try:
        yield database_url
    finally:
        close_django_connections()
        if empty_at_end and not keep:
            recreate_database(database_url)
        elif not keep:
            drop_database(database_url)


def setup_django(*, migrate: bool = True) -> None:
    """django.setup() in this process (its environment set: configure_environment), then, with
    `migrate`, `manage.py migrate` of the database it names, here."""
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def close_django_connections() -> None:
    """Closes this process's Django connections, if Django was set up here."""
    if "django.apps" not in sys.modules:
        return
    from django.apps import apps

    if apps.ready:
        from django.db import connections

        connections.close_all()


# --- the service's environment --------------------------------------------------------------------
def service_variables(
    database_url: str,
    *,
    settings: str = "config.settings",
    log_level: str = "WARNING",
    encryption_keys: str | None = None,
    **more: str,
) -> dict[str, str]:
    """What every bench tells the service: its settings module, the scratch database, the secrets
    (a fresh Fernet key unless `encryption_keys`), the log level; `more` adds variables."""
    return {
        "DJANGO_SETTINGS_MODULE": settings,
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET_KEY,
        "FIELD_ENCRYPTION_KEYS": encryption_keys or Fernet.generate_key().decode(),
        "KOOGALLERY_BASIC_KEY": BASIC_KEY,
        "KOOGALLERY_KIT_KEY": KIT_KEY,
        "LOG_LEVEL": log_level,
        **more,
    }


def service_env(
    database_url: str, redis_url: str, *, scrub: tuple[str, ...] = (), **variables: str
) -> dict[str, str]:
    """The environment of a service the bench starts as a child process: this process's, less the
    variables whose names start with SERVICE_PREFIXES or `scrub`, plus service_variables (with
    `variables`) and REDIS_URL."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(SERVICE_PREFIXES + scrub)
    }
    env.update(service_variables(database_url, REDIS_URL=redis_url, **variables))
    return env


def configure_environment(
    database_url: str, *, unset: tuple[str, ...] = (), **variables: str
) -> None:
    """For a bench that runs the service in its own process: removes the variables whose names
    start with `unset`, then sets service_variables (with `variables`). django.setup() is the
    caller's."""
    for key in [key for key in os.environ if key.startswith(unset)]:
        del os.environ[key]
    os.environ.update(service_variables(database_url, **variables))


def migrate(env: Mapping[str, str]) -> None:
    """`manage.py migrate` in a child process with the service's environment."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True
    )


# --- the service ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(
    app: str, port: int, workers: int, *options: str, config: str | None = None, **popen
) -> subprocess.Popen:
    """`gunicorn [-c config] app --bind 127.0.0.1:port --workers N options…` from the venv this
    bench runs in, in the project's root; `popen` goes to Popen (env, stdout, …)."""
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        *(["-c", config] if config else []),
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        *options,
    ]
    return subprocess.Popen(command, cwd=ROOT, **popen)


def add_client_arguments(
    parser, *, clients: int, procs: int, seconds: float, rounds: int, warmup: float
) -> None:
    """--clients (threads) in --procs client processes (in_processes), --seconds a round (of a
    phase), --rounds, --warmup seconds not counted; the defaults are the bench's."""
    parser.add_argument("--clients", type=int, default=clients, help="concurrent clients")
    parser.add_argument("--procs", type=int, default=procs, help="client processes")
    parser.add_argument("--seconds", type=float, default=seconds, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--warmup", type=float, default=warmup, help="seconds, not counted")


def add_service_arguments(parser, *, workers: int = 4) -> None:
    """--workers (default `workers`), --worker-class, --threads: the production server
    (ops/gunicorn.py, threaded workers) unless told otherwise."""
    parser.add_argument(
        "--workers",
        type=int,
        default=workers,
        help="gunicorn workers (production: WEB_CONCURRENCY, 4)",
    )
    parser.add_argument(
        "--worker-class", help="gunicorn worker class (default: ops/gunicorn.py's, threaded)"
    )
    parser.add_argument(
        "--threads", type=int, help="gunicorn threads per worker (default: ops/gunicorn.py's)"
    )


def start_service(
    args, port: int, env: Mapping[str, str], log, *options: str
) -> subprocess.Popen:
    """The service as in production (`gunicorn -c python:ops.gunicorn config.wsgi:application`)
    on `port`, with add_service_arguments' options and then gunicorn's `options`, its output to
    `log`."""
    return start_gunicorn(
        "config.wsgi:application",
        port,
        args.workers,
        *(["--worker-class", args.worker_class] if args.worker_class else []),
        *(["--threads", str(args.threads)] if args.threads else []),
        *options,
        config="python:ops.gunicorn",
        env=env,
        stdout=log,
        stderr=log,
    )


@dataclass
class Service:
    """A service started by `service()`: its gunicorn master, port and log file."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def service(args, env: Mapping[str, str], name: str, *options: str) -> Iterator[Service]:
    """The service as in production (start_service, with gunicorn's `options` added) on a free
    port, its output to bench-`name`-<pid>.log in the temporary directory, up (GET /healthz)
    before the block runs; stopped (killed after 30 s) and its log closed after it."""
    port = free_port()
    log_path = Path(tempfile.gettempdir()) / f"bench-{name}-{os.getpid()}.log"
    with log_path.open("w") as log:
        process = start_service(args, port, env, log, *options)
        try:
            wait_until_up(port)
            yield Service(process, port, log_path)
        finally:
            stop(process)


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """Terminates the process and waits for it; kills it if it has not ended in `timeout` s."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def describe_service(args) -> str:
    """How the service ran, for the bench's first line."""
    threads = f" x {args.threads} threads" if args.threads else ""
    return (
        f"gunicorn -c python:ops.gunicorn: {args.workers} {args.worker_class or 'default'} "
        f"workers{threads}"
    )


def wait_until_up(port: int, timeout: float = 60) -> None:
    """Until the service on `port` answers GET /healthz with 200 (a worker serves)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"service did not start on port {port}")


def wait_until_listening(port: int) -> bool:
    """Until something accepts connections on `port` (100 tries, 0.1 s apart): whether it does."""
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.1)
    return False


# --- kit calls, signed as KooGallery signs them (§3.1) ----------------------------------------
Request = tuple[str, dict[str, str], bytes]  # path, headers, body
JSON_TYPE = "application/json;charset=utf8"
_last_kit_ms = [0]
_KIT_EPOCH = datetime(1970, 1, 1)


def kit_time() -> str:
    """A kit `timeStamp` (UTC+8 `yyyyMMddHHmmssSSS`, §4.1) later than every one this process
    handed out before: a call older than the one that last wrote an entity writes nothing
    (§2.3), so each call of a bench must carry a newer time, as KooGallery's calls do."""
    millis = _last_kit_ms[0] = max(_last_kit_ms[0] + 1, time.time_ns() // 1_000_000)
    moment = _KIT_EPOCH + timedelta(milliseconds=millis, hours=8)
    return moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}"


def raw_json(body) -> bytes:
    """A body as KooGallery sends it: compact UTF-8 JSON."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def kit_request(name: str, body, path: str = "") -> Request:
    """A kit V2 call: fresh nonce, current Unix-ms `x-timestamp`, `x-sign` over the raw body."""
    raw = body if isinstance(body, bytes) else raw_json(body)
    nonce, stamp = uuid.uuid4().hex.upper(), str(time.time_ns() // 1_000_000)
    headers = {
        "Content-Type": JSON_TYPE,
        "x-sign": kit_sign(KIT_KEY, nonce, stamp, raw).upper(),
        "x-timestamp": stamp,
        "x-nonce": nonce,
    }
    return path or f"/koogallery/produceAPI/v2/{name}", headers, raw


def basic_request(body) -> Request:
    """A basic V2 call (§3.2): fresh nonce, current Unix-ms timestamp, the signature over the raw
    body in the query."""
    raw = body if isinstance(body, bytes) else raw_json(body)
    nonce, stamp = uuid.uuid4().hex.upper(), str(time.time_ns() // 1_000_000)
    query = urlencode(
        {
            "signature": basic_sign(BASIC_KEY, nonce, stamp, raw).upper(),
            "timestamp": stamp,
            "nonce": nonce,
        }
    )
    return f"/koogallery?{query}", {"Content-Type": JSON_TYPE}, raw


class Sender:
    """What sends a Request: exchange() gives (HTTP status, the answer's bytes)."""

    def exchange(self, request: Request) -> tuple[int, bytes]:
        raise NotImplementedError

    def send(self, request: Request) -> dict:
        """The parsed answer of a call answered 200; {"resultCode": "HTTP <status>"} else."""
        status, data = self.exchange(request)
        if status != 200:
            return {"resultCode": f"HTTP {status}"}
        return json.loads(data)


class Connection(Sender):
    """One keep-alive HTTP/1.1 connection to the service on loopback."""

    def __init__(self, host: str, port: int, timeout: float = 30):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def exchange(self, request: Request) -> tuple[int, bytes]:
        """POST the request: (HTTP status, the answer's bytes), read to the end."""
        path, headers, raw = request
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request("POST", path, body=raw, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise
        if response.will_close:
            self.conn.close()
            self.conn = None
        return response.status, data

    def connect(self) -> None:
        """A new connection, made now (so that connecting is not part of the next call):
        the service closes a connection idle for longer than its keep-alive."""
        self.close()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self.conn.connect()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# --- the same calls in this process (Django's test client: the whole stack, no socket) --------
class InProcess(Sender):
    """Sends requests through Django's whole stack in this process, as Connection does over
    loopback (Django must be set up)."""

    def __init__(self):
        from django.test import Client

        self.client = Client()

    def exchange(self, request: Request) -> tuple[int, bytes]:
        path, headers, raw = request
        headers = dict(headers)
        response = self.client.generic(
            "POST", path, raw, content_type=headers.pop("Content-Type"), headers=headers
        )
        return response.status_code, response.content


# --- a KooGallery client for the basic interface (requests, a session per thread) ----------------
class BasicClient:
    """Signs and posts basic V2 bodies as KooGallery does (§3.2); one HTTP session per client
    thread."""

    local = threading.local()

    def __init__(self, url: str):
        import requests  # not imported by the benches that do not use this client

        self.url = url
        self.new_session = requests.Session

    def post(self, body: dict) -> tuple[float, dict]:
        """(seconds from sending to the parsed answer, the answer)"""
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = self.new_session()
        path, headers, raw = basic_request(body)
        started = time.perf_counter()
        response = session.post(f"{self.url}{path}", data=raw, headers=headers, timeout=30)
        return time.perf_counter() - started, response.json()


def post_all(
    client: BasicClient, bodies: list[dict], clients: int
) -> tuple[list[float], list[dict], float]:
    """Posts `bodies` from `clients` threads: (each call's seconds and answer, in the order the
    calls ended; wall seconds for all)."""
    latencies: list[float] = []
    answers: list[dict] = []
    lock = threading.Lock()

    def one(body: dict) -> None:
        elapsed, answer = client.post(body)
        with lock:
            latencies.append(elapsed)
            answers.append(answer)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, bodies))
    return latencies, answers, time.perf_counter() - started


def basic_phase(
    name: str,
    client: BasicClient,
    bodies: list[dict],
    clients: int,
    expect: str | Callable[[dict], bool],
) -> list[dict]:
    """post_all, then a line: calls, p50/p90/p99/max latency, calls/s, and the answers that
    were not expected (`expect`: a result code, or a test of the answer). The answers."""
    latencies, answers, wall = post_all(client, bodies, clients)
    unexpected: dict[str, int] = {}
    for answer in answers:
        code = answer.get("resultCode", "?")
        if not (expect(answer) if callable(expect) else code == expect):
            unexpected[code] = unexpected.get(code, 0) + 1
    print(
        f"{name:<40} {latency_summary(latencies, wall)}"
        + (f"  unexpected={unexpected}" if unexpected else ""),
        flush=True,
    )
    return answers


# --- timing ---------------------------------------------------------------------------------------
def timed(call: Callable[..., Any], *args, **kwargs) -> tuple[float, Any]:
    """(seconds `call(*args, **kwargs)` took, what it returned)"""
    started = time.perf_counter()
    result = call(*args, **kwargs)
    return time.perf_counter() - started, result


def timed_exchange(sender, request: Request) -> tuple[float, int, bytes]:
    """(seconds from the first byte sent to the answer read, status, answer) of a Connection's
    or an InProcess' exchange."""
    seconds, (status, data) = timed(sender.exchange, request)
    return seconds, status, data


def repeat_ms(call: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    """`call()` `repeat` times: (milliseconds of each, what the last returned)."""
    timings, result = [], None
    for _ in range(repeat):
        seconds, result = timed(call)
        timings.append(seconds * 1000)
    return timings, result


def timed_loop(
    prepare: Callable[[int], Any],
    send: Callable[[Any], Any],
    check: Callable[[Any, Any], str | None],
    *,
    seconds: float | None = None,
    count: int | None = None,
) -> tuple[list[float], list[str]]:
    """One client's calls back to back, for `seconds` or `count` calls: call n's request is
    `prepare(n)` (not timed), its answer `send(request)` (timed), `check(request, answer)` says
    what was wrong with it (None: nothing). (each call's seconds, what was wrong)"""
    latencies: list[float] = []
    failures: list[str] = []
    deadline = time.perf_counter() + (seconds or 0)
    n = 0
    while n < count if count is not None else time.perf_counter() < deadline:
        request = prepare(n)
        n += 1
        started = time.perf_counter()
        answer = send(request)
        latencies.append(time.perf_counter() - started)
        failure = check(request, answer)
        if failure is not None:
            failures.append(failure)
    return latencies, failures


def in_threads(target: Callable[[int], Any], count: int) -> list:
    """target(0) … target(count - 1), each in its own thread, all at once: what each returned,
    in that order (an exception in a thread leaves None)."""
    results: list = [None] * count

    def run(index: int) -> None:
        results[index] = target(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def in_processes(target: Callable[[int, int], Any], clients: int, procs: int) -> tuple[list, float]:
    """`clients` client threads shared among up to `procs` forked processes: process i runs
    target(i, its share of the threads) and what it returns comes back (picklable). (what each
    process returned, in the order they ended; wall seconds from the first start to the last
    end)"""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    shares = [clients // procs + (i < clients % procs) for i in range(procs)]

    def run(index: int, share: int) -> None:
        results.put(target(index, share))

    started = time.perf_counter()
    processes = [
        context.Process(target=run, args=(i, share)) for i, share in enumerate(shares) if share
    ]
    for process in processes:
        process.start()
    returned = [results.get() for _ in processes]
    for process in processes:
        process.join()
    return returned, time.perf_counter() - started


def merged(results: Sequence[Sequence]) -> list:
    """What several clients returned, field by field: lists concatenated, numbers added."""
    fields = []
    for values in zip(*results, strict=True):
        if isinstance(values[0], list):
            fields.append([item for value in values for item in value])
        else:
            fields.append(sum(values))
    return fields


# --- figures --------------------------------------------------------------------------------------
def percentile(sorted_ms: list[float], q: float) -> float:
    """The value at rank q·(n−1), rounded, of a sorted list."""
    return sorted_ms[min(len(sorted_ms) - 1, round(q * (len(sorted_ms) - 1)))]


def latency_summary(latencies: Sequence[float], wall: float | None = None) -> str:
    """`n=… p50=… p90=… p99=… max=…` in ms of latencies in seconds, and calls/s over `wall`."""
    ms = sorted(x * 1000 for x in latencies)
    if not ms:
        return "n=    0"
    text = (
        f"n={len(ms):>5}  p50={statistics.median(ms):7.1f} ms  p90={percentile(ms, 0.90):7.1f} ms"
        f"  p99={percentile(ms, 0.99):7.1f} ms  max={ms[-1]:7.1f} ms"
    )
    return text + (f"  {len(ms) / wall:7.1f} calls/s" if wall else "")


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(best, median, worst): the least, the median and the greatest of the values."""
    return min(values), statistics.median(values), max(values)


def spread_text(values: Sequence[float], form: str = "7.1f", sep: str = " ") -> str:
    """spread's three values, each formatted as `form`, joined by `sep`."""
    return sep.join(f"{value:{form}}" for value in spread(values))


def load_averages(before: Sequence[float], after: Sequence[float] | None = None) -> str:
    """The machine's load average (1/5/15 min) before and after a run (os.getloadavg()): on a
    shared machine, a figure taken under load says less."""
    text = "load average (1/5/15 min) before: " + " ".join(f"{x:.2f}" for x in before)
    if after is not None:
        text += "   after: " + " ".join(f"{x:.2f}" for x in after)
    return text


@contextmanager
def stderr_to(path: Path, *, append: bool = False) -> Iterator[None]:
    """This process's file descriptor 2 (the service's log lines, when it runs here) into
    `path` for as long as the block runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    target = os.open(path, flags)
    os.dup2(target, 2)
    os.close(target)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


# --- the world the calls act on -------------------------------------------------------------------
def add_on_demand_instances(
    count: int, *, prefix: str = "bench", started: datetime | None = None
) -> list[str]:
    """`count` active on-demand instances `<prefix>-00000`…, created `started` (a day ago by
    default), through the ORM of this process (Django must be set up): their ids."""
    from instances.models import ChargingMode, Instance, InstanceState

    ids = [f"{prefix}-{n:05d}" for n in range(count)]
    Instance.objects.bulk_create(
        Instance(
            instance_id=instance_id,
            order_id=f"CS{instance_id}",
            order_line_id=f"CS{instance_id}-000001",
            charging_mode=ChargingMode.ON_DEMAND,
            state=InstanceState.ACTIVE,
            product_id=f"P-{prefix}",
        )
        for instance_id in ids
    )
    Instance.objects.filter(instance_id__in=ids).update(
        created_at=started or datetime.now(UTC) - timedelta(days=1)
    )
    return ids
