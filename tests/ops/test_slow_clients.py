"""Slow clients (issue 14): a client that dribbles its request cannot starve the service.

Found: six connections sending a declared body at a byte a second kept /healthz and every
KooGallery call unanswered for 8 s and more under the sync workers. Now (ops/server.py,
ops/wsgi.py, ops/deadlines.py) a dribbler holds one thread of the production server for a
bounded time: the others answer at once, and a head or body that has not arrived by its deadline
is cut, the reason logged, and the call never processed.

Over real sockets against the production server configuration (`gunicorn -c python:ops.gunicorn`,
one worker with its default threads), with short deadlines so the module runs in seconds. The
service shares the test database, so this runs in the PostgreSQL + Redis pass.
"""

import json
import socket
import threading
import time
import uuid

import pytest
from django.conf import settings
from django.db import connection

from koogallery.inbound.journal import InboundCall
from koogallery.protocol import signing
from tenants.models import Tenant
from tests.support.kgclient import fixture_json, now_ms
from tests.support.procs import Service, database_url, service_env

HEADER_TIMEOUT_S = 2
BODY_TIMEOUT_S = 3
TENANT_SYNC = "/koogallery/produceAPI/v2/tenantSync"


@pytest.fixture(scope="module")
def service(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        if connection.vendor != "postgresql" or not settings.REDIS_URL:
            pytest.skip(
                "a live server shares the test database only in the PostgreSQL + Redis pass "
                "(SQLite's test database is in memory)"
            )
        env = service_env(
            database_url(connection.settings_dict),
            settings.REDIS_URL,
            HTTP_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
            HTTP_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        )
    env.pop("GUNICORN_THREADS", None)  # the production default
    service = Service(env, workers=1).start()
    yield service
    service.stop()


def tenant_sync(tenant_id: str) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(fixture_json("tenantSync__huawei_example", tenantId=tenant_id)).encode()
    nonce, stamp = uuid.uuid4().hex, now_ms()
    sign = signing.kit_sign(settings.KOOGALLERY_KIT_KEY[0], nonce, stamp, raw)
    headers = {"x-sign": sign, "x-timestamp": stamp, "x-nonce": nonce}
    return raw, headers


def head_of(raw: bytes, headers: dict[str, str]) -> bytes:
    head = f"POST {TENANT_SYNC} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += f"Content-Type: application/json;charset=utf8\r\nContent-Length: {len(raw)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (head + "\r\n").encode()


class Dribbler(threading.Thread):
    """Sends `first` at once, then `rest` a byte every `pace` seconds, until the server answers
    or closes; records what came back and when."""

    def __init__(self, port: int, first: bytes, rest: bytes, pace: float = 0.1):
        super().__init__(daemon=True)
        self.port, self.first, self.rest, self.pace = port, first, rest, pace
        self.answer = b""
        self.ended_after: float | None = None
        self.connected = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            if self.first:
                sock.sendall(self.first)
            self.connected.set()
            sock.settimeout(self.pace)
            for byte in self.rest:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break  # cut
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                self.answer += chunk
                break  # answered or closed
            sock.settimeout(10)
            try:
                while chunk := sock.recv(65536):
                    self.answer += chunk
            except OSError:
                pass
        self.ended_after = time.monotonic() - started


def start(dribblers: list[Dribbler]) -> None:
    for dribbler in dribblers:
        dribbler.start()
    for dribbler in dribblers:
        assert dribbler.connected.wait(5)
    time.sleep(0.5)  # every one of them is in the middle of its request now


def signed_call(service: Service) -> tuple[str, dict, float]:
    tenant_id = f"prompt-{uuid.uuid4().hex[:8]}"
    raw, headers = tenant_sync(tenant_id)
    status, answer, seconds = service.post_json(TENANT_SYNC, raw, headers)
    assert status == 200, answer
    return tenant_id, answer, seconds


def test_six_body_dribblers_starve_neither_healthz_nor_a_signed_call(service, transactional_db):
    calls = []
    for _ in range(6):
        tenant_id = f"dribble-{uuid.uuid4().hex[:8]}"
        raw, headers = tenant_sync(tenant_id)
        calls.append((tenant_id, Dribbler(service.port, head_of(raw, headers), raw)))
    start([d for _, d in calls])

    status, _, seconds = service.get("/healthz")
    assert status == 200 and seconds < 1, seconds
    tenant_id, answer, seconds = signed_call(service)
    assert answer["resultCode"] == "000000" and seconds < 1, (answer, seconds)
    assert Tenant.objects.filter(tenant_id=tenant_id).exists()

    # Each dribbler is cut at its body deadline: 408 and the envelope, nothing processed.
    for tenant_id, dribbler in calls:
        dribbler.join(BODY_TIMEOUT_S + 5)
        assert dribbler.ended_after is not None and dribbler.ended_after < BODY_TIMEOUT_S + 3
        head, _, body = dribbler.answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), dribbler.answer[:300]
        answer = json.loads(body)
        assert answer["resultCode"] == "000002", answer
        assert f"not received within {BODY_TIMEOUT_S} s" in answer["resultMsg"]
        assert not Tenant.objects.filter(tenant_id=tenant_id).exists()
        assert not InboundCall.objects.filter(tenant_id=tenant_id).exists()
    logs = service.logs()
    assert logs.count("cut a slow client: its request body did not arrive in time") >= 6, logs
    assert f"reason=not received within {BODY_TIMEOUT_S} s" in logs
    assert f"path={TENANT_SYNC}" in logs


def test_six_head_dribblers_are_cut_and_do_not_starve_the_service(service, transactional_db):
    """Slowloris: the request head itself arrives a byte at a time, and never ends."""
    first = f"POST {TENANT_SYNC} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    endless = b"X-Padding: " + b"a" * 10_000
    dribblers = [Dribbler(service.port, first, endless) for _ in range(6)]
    start(dribblers)

    status, _, seconds = service.get("/healthz")
    assert status == 200 and seconds < 1, seconds
    _, answer, seconds = signed_call(service)
    assert answer["resultCode"] == "000000" and seconds < 1, (answer, seconds)

    for dribbler in dribblers:
        dribbler.join(HEADER_TIMEOUT_S + 5)
        assert dribbler.ended_after is not None and dribbler.ended_after < HEADER_TIMEOUT_S + 3
        assert not dribbler.answer.startswith(b"HTTP/1.1 2"), dribbler.answer[:300]
    logs = service.logs()
    assert logs.count("cut a slow client: its request head did not arrive in time") >= 6, logs


def test_idle_connections_cost_no_thread_and_are_closed(service):
    """More silent connections than the worker has threads: they wait in the poller, not in a
    thread, so the service answers at once; each is closed after the head deadline."""
    idle = [socket.create_connection(("127.0.0.1", service.port), timeout=10) for _ in range(24)]
    try:
        time.sleep(0.3)
        status, _, seconds = service.get("/healthz")
        assert status == 200 and seconds < 1, seconds
        started = time.monotonic()
        for sock in idle:
            sock.settimeout(HEADER_TIMEOUT_S + 5)
            assert sock.recv(1024) == b""  # closed by the server, without an answer
        assert time.monotonic() - started < HEADER_TIMEOUT_S + 3
    finally:
        for sock in idle:
            sock.close()


def test_a_body_cut_short_by_the_client_is_not_processed(service, transactional_db):
    tenant_id = f"short-{uuid.uuid4().hex[:8]}"
    raw, headers = tenant_sync(tenant_id)
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(head_of(raw, headers) + raw[: len(raw) // 2])
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert not Tenant.objects.filter(tenant_id=tenant_id).exists()
    assert not InboundCall.objects.filter(tenant_id=tenant_id).exists()
    assert "reason=connection closed before its end" in service.logs()


def test_a_body_sent_in_time_is_served_over_a_kept_alive_connection(service, transactional_db):
    """The deadlines do not touch a prompt client, nor its next request on the same connection."""
    logged_before = len(service.logs())
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        for _ in range(2):
            tenant_id = f"prompt-{uuid.uuid4().hex[:8]}"
            raw, headers = tenant_sync(tenant_id)
            request = head_of(raw, headers)
            sock.sendall(request[: len(request) // 2])
            time.sleep(0.3)
            sock.sendall(request[len(request) // 2 :] + raw[:10])
            time.sleep(0.3)
            sock.sendall(raw[10:])
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
            assert b'"resultCode":"000000"' in answer.replace(b" ", b""), answer
            assert Tenant.objects.filter(tenant_id=tenant_id).exists()
        time.sleep(HEADER_TIMEOUT_S + 1.5)  # idle past the deadlines: a kept-alive connection
        # is closed after gunicorn's keepalive (5 s), not cut as a slow client
    assert "cut a slow client" not in service.logs()[logged_before:]
