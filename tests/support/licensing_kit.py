"""Shared fixtures and helpers of the licensing tests (imported by tests/test_licensing_*.py).

Delivery runs two ways, like the service itself:

- embedded default (no REDIS_URL): Celery is eager; the getLicenseAsync call commits its
  delivery job to the outbox and `wait_for` runs it in-process (`dispatch_queued_jobs`), as the
  job runner would; "the beat" is `pump()` calling the sweep.
- PostgreSQL + Redis (REDIS_URL set): `workers.start()` runs a real `celery -A config worker`
  subprocess on the test database (DJANGO_SETTINGS_MODULE=tests.settings, DATABASE_URL naming
  the test database), talking to the same fake KooGallery host on loopback.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from config.celery import app as celery_app
from instances.models import ChargingMode, Instance, InstanceState
from koogallery.outbound.jobs import dispatch_queued_jobs
from licensing import services, tokens
from licensing.models import LicenseRequest, RequestState
from tests.support import ROOT
from tests.support.kgclient import envelope, fixture_json

_PRIVATE_KEY = tokens.generate_private_key()
PRIVATE_PEM = tokens.private_key_pem(_PRIVATE_KEY)
PUBLIC_KEY = _PRIVATE_KEY.public_key()
PUBLIC_PEM = tokens.public_key_pem(PUBLIC_KEY)

# The Huawei example's instance (§4.2.8), created by `make_instance` unless told otherwise.
HUAWEI_INSTANCE_ID = "RA2****4LVS"


def uses_worker() -> bool:
    """True in the PostgreSQL + Redis pass: tasks go through Redis to a real worker."""
    return bool(settings.REDIS_URL) and not settings.CELERY_TASK_ALWAYS_EAGER


@pytest.fixture(autouse=True)
def license_settings(settings):
    """A signing key generated for this session; sweeps and retries fast enough for tests."""
    settings.LICENSE_SIGNING_KEY = PRIVATE_PEM
    settings.LICENSE_SWEEP_AFTER_S = 0
    settings.LICENSE_RETRY_BASE_S = 0.05
    settings.LICENSE_RETRY_MAX_S = 0.2
    os.environ["LICENSE_SIGNING_KEY"] = PRIVATE_PEM  # for worker subprocesses
    return settings


def make_instance(**fields) -> Instance:
    """An active PERIOD instance valid from a month ago for eleven months, 5 devices."""
    now = timezone.now()
    values = {
        "instance_id": f"inst-{uuid.uuid4().hex[:20]}",
        "order_id": f"CS{uuid.uuid4().hex[:14].upper()}",
        "state": InstanceState.ACTIVE,
        "charging_mode": ChargingMode.PERIOD,
        "order_created_at": now - timedelta(days=30),
        "expire_at": now + timedelta(days=335),
        "linear_value": 5,
        "product_id": "OFFI846204237451911168",
        "sku_code": "0a4d1578-5295-46a7-92d4-7c803dccc51d",
        "customer_id": "459bbbec25d24749b2eb83be37b602a8",
    }
    values.update(fields)
    values.setdefault("order_line_id", f"{values['order_id']}-000001")
    return Instance.objects.create(**values)


def huawei_window_instance(**fields) -> Instance:
    """The instance of Huawei's example body, valid over its 2023-10-27 → 2024-10-27 window."""
    fields.setdefault("instance_id", HUAWEI_INSTANCE_ID)
    fields.setdefault("order_created_at", datetime(2023, 10, 1, tzinfo=UTC))
    fields.setdefault("expire_at", datetime(2024, 10, 31, 23, 59, 59, tzinfo=UTC))
    return make_instance(**fields)


def license_body(instance: Instance | None = None, **overrides) -> dict:
    """A getLicenseAsync body for `instance`: now → +30 days, a fresh eventId."""
    now = timezone.now()
    body = fixture_json(
        "getLicenseAsync__huawei",
        eventId=uuid.uuid4().hex,
        effectiveTime=now.strftime("%Y-%m-%d %H:%M:%S z"),
        expireTime=(now + timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S z"),
        deviceFingerprint=f"04:7C:16:5E:E3:{uuid.uuid4().hex[:2].upper()}|001B_444A|BOARD|CPU",
    )
    if instance is not None:
        body["instanceId"] = instance.instance_id
        if instance.is_test:
            body["testFlag"] = "1"
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def answer_code(response) -> str:
    return envelope(response)["resultCode"]


def request_for(body: dict) -> LicenseRequest:
    return LicenseRequest.objects.get(
        event_id=body["eventId"],
        fingerprint_sha256=services.fingerprint_digest(body.get("deviceFingerprint") or ""),
    )


def pump() -> None:
    """What Celery beat does every minute: sweep stuck requests (eager: delivers in-process)."""
    services.sweep_due_requests()


def wait_for(predicate, *, timeout: float = 30.0, interval: float = 0.05, sweep: bool = False):
    """Poll until `predicate()` is truthy. Between polls the outbox is dispatched, as beat does
    every second (koogallery/outbound/jobs.py); with `sweep`, the sweep runs too."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        dispatch_queued_jobs()
        if sweep:
            pump()
        time.sleep(interval)


def wait_for_state(body: dict, *states: str, timeout: float = 30.0, sweep: bool = False):
    def reached():
        request = LicenseRequest.objects.filter(
            event_id=body["eventId"],
            fingerprint_sha256=services.fingerprint_digest(body.get("deviceFingerprint") or ""),
        ).first()
        return request if request is not None and request.state in states else None

    return wait_for(reached, timeout=timeout, sweep=sweep)


def verify_upload(fake, body: dict) -> dict:
    """The uploaded token's payload, after checking its signature with the public key."""
    upload = fake.uploads[body["eventId"]]
    return tokens.verify(upload.token, PUBLIC_KEY)


# --- Celery: switching the broker, real workers ---------------------------------------------------


@contextmanager
def celery_broker(url: str, *, eager: bool = False):
    """Point this process's Celery producer at `url` (e.g. a dead port: "Redis down")."""
    conf = celery_app.conf
    saved = (conf.broker_url, conf.task_always_eager)
    conf.broker_url, conf.task_always_eager = url, eager
    celery_app._after_fork()  # drop pooled connections to the old broker
    try:
        yield
    finally:
        conf.broker_url, conf.task_always_eager = saved
        celery_app._after_fork()


DEAD_BROKER = "redis://127.0.0.1:9/0"  # port 9 (discard): nothing listens on loopback


def worker_database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] or ""
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    host = db["HOST"] or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{'@' if auth else ''}{host}{port}/{db['NAME']}"


class Workers:
    """Real Celery workers (subprocesses) on the test database and this session's Redis."""

    def __init__(self, fake):
        self.fake = fake
        self.processes: list[subprocess.Popen] = []

    def env(self, **extra: str) -> dict:
        env = os.environ.copy()
        env.update(
            DJANGO_SETTINGS_MODULE="tests.settings",
            DATABASE_URL=worker_database_url(),
            REDIS_URL=settings.REDIS_URL,
            LICENSE_SIGNING_KEY=PRIVATE_PEM,
            LICENSE_RETRY_BASE_S="0.05",
            LICENSE_RETRY_MAX_S="0.2",
            LICENSE_UPLOAD_LEASE_S="30",
            KOOGALLERY_API_TIMEOUT_S="1",
            DB_CONN_MAX_AGE="0",
            LOG_LEVEL="WARNING",
        )
        if self.fake is not None:
            env.update(
                KOOGALLERY_API_BASE=self.fake.url, KOOGALLERY_API_FALLBACK=self.fake.fallback.url
            )
        env.update(extra)
        return env

    def start(self, *, concurrency: int = 1, purge: bool = True, **extra: str):
        if purge:
            # Messages of earlier tests name rows that are gone (and a message queued before
            # this call and purged is exactly a lost message, which some tests want).
            celery_app.control.purge()
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=prefork" if concurrency > 1 else "--pool=solo",
            f"--concurrency={concurrency}",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=WARNING",
            f"--hostname=licensing-test-{uuid.uuid4().hex[:8]}@%h",
        ]
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env(**extra),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL the worker and its children: no shutdown, no acknowledgement."""
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def stop_all(self) -> None:
        # SIGKILL: a warm shutdown would wait for an upload the fake keeps hanging.
        for process in self.processes:
            self.kill(process)


@pytest.fixture
def delivery(transactional_db, fake_koogallery):
    """Where delivery happens: in-process (eager) or a real worker started for this test.

    Worker mode needs committed rows (the worker has its own connection), so the test must use
    `transactional_db`; so does eager mode (on_commit fires only on a real commit).
    """
    if not uses_worker():
        yield None
        return
    if connection.vendor != "postgresql":
        pytest.skip("a worker subprocess cannot share the in-memory SQLite test database")
    workers = Workers(fake_koogallery)
    workers.start()
    try:
        yield workers
    finally:
        workers.stop_all()


@pytest.fixture
def idle_workers(transactional_db, fake_koogallery):
    """Like `delivery` in worker mode, but no worker is started: the test starts them."""
    if uses_worker() and connection.vendor != "postgresql":
        pytest.skip("a worker subprocess cannot share the in-memory SQLite test database")
    workers = Workers(fake_koogallery)
    try:
        yield workers
    finally:
        workers.stop_all()


def is_final(request: LicenseRequest) -> bool:
    return request.state in RequestState.final()
