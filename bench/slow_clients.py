"""Slow clients against the production server: /healthz and signed calls while bodies dribble.

    .venv/bin/python bench/slow_clients.py                 # 6 body dribblers, 6 header dribblers
    .venv/bin/python bench/slow_clients.py --dribblers 12 --seconds 20
    .venv/bin/python bench/slow_clients.py --dribblers 2 --seconds 3 --hold 10   # a quick smoke run

The service runs as in production (`gunicorn -c python:ops.gunicorn config.wsgi:application`,
its default workers) on a scratch PostgreSQL database. The bench first measures the reference:
GET /healthz and a signed kit tenantSync, one after the other, on the quiet service. Then it
connects the dribblers — each declares a 100 kB body (or sends its headers) and sends one byte a
second — and measures the same two calls again while they are connected. Last, it reports how
long the server let each dribbler hold its connection and what it answered it.

Issue 14's goal: with 6 dribblers connected, /healthz and signed calls answer within 1 s, and a
body that does not arrive within a bounded time is cut.
"""

import argparse
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _harness as harness

GOAL_S = 1.0
DECLARED = 100_000


def _kit_request(body: dict, *, content_length: int | None = None) -> bytes:
    """The head (and body) of a signed kit V2 tenantSync, as KooGallery sends it (§3.1), as
    bytes for a raw socket; with `content_length`, the head alone, declaring that length."""
    path, headers, raw = harness.kit_request("tenantSync", body)
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"Content-Type: {headers.pop('Content-Type')}"]
    lines += [f"Content-Length: {content_length or len(raw)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    head = ("\r\n".join([*lines, "Connection: close"]) + "\r\n\r\n").encode()
    return head if content_length else head + raw


def _tenant_body(n: int) -> dict:
    return {
        "instanceId": f"bench-slow-{n}",
        "orderId": f"CSBENCHSLOW{n}",
        "tenantId": f"bench-slow-tenant-{n}",
        "tenantCode": "bench",
        "name": f"Bench slow {n}",
        "domainName": "https://bench.example.com",
        "flag": 1,
        "testFlag": 0,
        "timeStamp": time.strftime("%Y%m%d%H%M%S000", time.gmtime(time.time() + 8 * 3600)),
    }


def _exchange(port: int, request: bytes, timeout: float = 10) -> tuple[float, str]:
    """(seconds to the whole answer, its first line and body, shortened)"""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks).decode(errors="replace")
    status = answer.split("\r\n", 1)[0]
    return time.perf_counter() - started, f"{status} {answer.rpartition(chr(10))[2][:60]}"


def healthz(port: int) -> tuple[float, str]:
    return _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")


def signed_call(port: int, n: int) -> tuple[float, str]:
    return _exchange(port, _kit_request(_tenant_body(n)))


class Dribbler(threading.Thread):
    """Sends a request's head (`body` kind: then a declared body; `headers` kind: the head
    itself) one byte a second until the server closes or answers."""

    def __init__(self, port: int, kind: str, n: int, limit_s: float):
        super().__init__(daemon=True)
        self.port, self.kind, self.n, self.limit_s = port, kind, n, limit_s
        self.held_s: float | None = None
        self.answer = ""

    def run(self) -> None:
        head = _kit_request(_tenant_body(1000 + self.n), content_length=DECLARED)
        started = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                if self.kind == "body":
                    sock.sendall(head)
                    drip = b"{" + b" " * DECLARED
                else:
                    drip = head
                for byte in drip:
                    if time.perf_counter() - started > self.limit_s:
                        self.answer = "still connected when the bench stopped"
                        return
                    sock.sendall(bytes([byte]))
                    try:
                        data = sock.recv(4096)
                    except TimeoutError:
                        continue  # nothing from the server: the usual case, one byte a second
                    self.answer = data.decode(errors="replace").split("\r\n", 1)[0] or "closed"
                    return
        except OSError as exc:
            self.answer = f"cut: {type(exc).__name__}"
        finally:
            self.held_s = time.perf_counter() - started


def probe(port: int, seconds: float, first: int) -> dict[str, list]:
    """/healthz and a signed call, alternately, for `seconds`."""
    figures: dict[str, list] = {"healthz": [], "tenantSync": [], "failures": []}
    deadline, n = time.monotonic() + seconds, first
    while time.monotonic() < deadline:
        for name, call in (("healthz", lambda: healthz(port)), ("tenantSync", None)):
            try:
                elapsed, answer = call() if call else signed_call(port, n)
            except OSError as exc:
                figures["failures"].append(f"{name}: {type(exc).__name__}")
                continue
            figures[name].append(elapsed)
            if (" 200 " not in answer) or (name == "tenantSync" and "000000" not in answer):
                figures["failures"].append(f"{name}: {answer}")
            n += 1
        time.sleep(0.1)
    return figures


def show(label: str, figures: dict[str, list]) -> None:
    for name in ("healthz", "tenantSync"):
        ms = sorted(x * 1000 for x in figures[name])
        if not ms:
            print(f"{label:<28} {name:<11} no answer")
            continue
        verdict = "met" if ms[-1] <= GOAL_S * 1000 else f"missed (> {GOAL_S:g} s)"
        print(
            f"{label:<28} {name:<11} {len(ms):>6} {statistics.median(ms):>8.1f} "
            f"{harness.percentile(ms, 0.99):>8.1f} {ms[-1]:>8.1f}  {verdict}"
        )
    if figures["failures"]:
        print(f"{'':<28} failures: {len(figures['failures'])}, e.g. {figures['failures'][:2]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dribblers", type=int, default=6, help="body dribblers (and as many "
                        "header dribblers)")
    parser.add_argument("--seconds", type=float, default=12, help="seconds of probing per phase")
    parser.add_argument("--hold", type=float, default=90, help="the longest a dribbler keeps on")
    harness.add_service_arguments(parser)
    harness.add_scratch_arguments(parser, db="bench_slow_clients", redis_db=14)
    args = parser.parse_args()

    database_url = f"{args.pg_url}/{args.db}"
    env = harness.service_env(database_url, args.redis_url, LOG_LEVEL="WARNING")
    with (
        harness.scratch_database(database_url, keep=args.keep, env=env),
        harness.service(args, env, "slow-clients") as service,
    ):
        port = service.port
        load_before = os.getloadavg()
        quiet = probe(port, args.seconds, 0)
        dribblers = [
            Dribbler(port, kind, n, args.hold)
            for kind in ("body", "headers")
            for n in range(args.dribblers)
        ]
        for dribbler in dribblers:
            dribbler.start()
        time.sleep(1)  # every dribbler connected and holding what it holds
        slow = probe(port, args.seconds, 10_000)
        for dribbler in dribblers:
            dribbler.join(args.hold + 5)
        load_after = os.getloadavg()
    log_path = service.log_path

    print(
        f"{harness.describe_service(args)}; PostgreSQL {args.db}; "
        f"{args.dribblers} body + {args.dribblers} header dribblers at 1 byte/s; "
        f"{os.cpu_count()} CPUs; service log: {log_path}"
    )
    print(harness.load_averages(load_before, load_after))
    columns = f"{'calls':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    print(f"{'phase':<28} {'call':<11} {columns}  goal")
    show("quiet (reference)", quiet)
    show(f"{2 * args.dribblers} dribblers connected", slow)
    print(f"{'dribbler':<12} {'held s':>7}  what the server did")
    for dribbler in dribblers:
        held = f"{dribbler.held_s:.1f}" if dribbler.held_s is not None else "-"
        print(f"{dribbler.kind + ' ' + str(dribbler.n):<12} {held:>7}  {dribbler.answer}")


if __name__ == "__main__":
    main()
