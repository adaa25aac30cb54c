"""The job runner of the embedded default (koogallery/outbound/jobs.py `run_queued_jobs`, manage.py
koogallery_run_jobs): a call only commits its job's row, with its request id; the runner runs it
later in its own process, under that id, retrying as the Celery tasks do (the row goes back to
the outbox, due after the backoff), and runs beat's periodic tasks. In-process here, against the
fake KooGallery on loopback; tests/system/test_answers_never_wait.py runs it live next to runserver.
"""

import logging
import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from instances import tasks as koogallery_tasks
from instances.models import Instance
from koogallery.inbound.journal import InboundCall
from koogallery.management.commands.koogallery_run_jobs import Periodic
from koogallery.outbound.attempts import AttemptOutcome, OutboundAttempt, OutboundPurpose
from koogallery.outbound.jobs import QueuedJob, run_queued_jobs
from licensing.models import RequestState
from ops.context import current_request_id
from tests.support.kgclient import envelope, fixture_json
from tests.support.licensing_kit import (
    license_body,
    license_settings,  # noqa: F401 (fixture)
    make_instance,
    request_for,
)
from tests.support.procs import ROOT, group_alive, wait_for

pytestmark = pytest.mark.django_db

FETCH = "instances.tasks.fetch_order_details"
DELIVER = "licensing.tasks.deliver_license"


def new_instance(kg, order_id: str = "MOCKPERIODYEARNEW"):
    response = kg.basic(
        fixture_json(
            "newInstance__mock_period",
            businessId=f"inst-{order_id}",
            orderId=order_id,
            orderLineId=f"{order_id}-000001",
        )
    )
    assert envelope(response)["resultCode"] == "000000"
    return Instance.objects.get(instance_id=f"inst-{order_id}"), response["X-Request-ID"]


def attempts(purpose: str, subject: str) -> list[str]:
    return list(
        OutboundAttempt.objects.filter(purpose=purpose, subject=subject)
        .order_by("id")
        .values_list("outcome", flat=True)
    )


class RequestIds(logging.Handler):
    """The request id current when each record is logged (what the formatters print)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.ids: list[str] = []

    def emit(self, record):
        self.ids.append(current_request_id())


def test_the_call_only_queues_and_the_runner_does_the_job_under_the_calls_id(
    kg, fake_koogallery
):
    instance, call_id = new_instance(kg)

    # Answered, and nothing was sent: the job waits as a row carrying the call's id.
    assert fake_koogallery.requests == []
    job = QueuedJob.objects.get()
    assert (job.task, job.object_id, job.request_id) == (FETCH, instance.pk, call_id)

    seen = RequestIds()
    outbound = logging.getLogger("koogallery.outbound")
    outbound.addHandler(seen)
    try:
        assert run_queued_jobs() == 1
    finally:
        outbound.removeHandler(seen)

    instance.refresh_from_db()
    assert instance.order_fetched_at is not None
    assert not QueuedJob.objects.exists()
    assert seen.ids and set(seen.ids) == {call_id}


def test_a_transient_failure_puts_the_job_back_with_the_tasks_backoff(kg, fake_koogallery):
    instance, _ = new_instance(kg)
    fake_koogallery.script("query_order", 503)
    fake_koogallery.fallback.script("query_order", 503)

    before = timezone.now()
    assert run_queued_jobs() == 1

    job = QueuedJob.objects.get()
    assert job.retries == 1 and job.claimed_until is None
    # Celery's first retry: full jitter over up to BACKOFF_FACTOR_S.
    limit = timedelta(seconds=koogallery_tasks.BACKOFF_FACTOR_S + 1)
    assert before <= job.run_after <= timezone.now() + limit
    assert attempts(OutboundPurpose.QUERY_ORDER, instance.order_id) == [
        AttemptOutcome.RETRY,
        AttemptOutcome.RETRY,
    ]

    # Not due yet: left alone. Due: run again, and done.
    QueuedJob.objects.update(run_after=timezone.now() + timedelta(minutes=5))
    assert run_queued_jobs() == 0
    QueuedJob.objects.update(run_after=timezone.now() - timedelta(seconds=1))
    assert run_queued_jobs() == 1
    instance.refresh_from_db()
    assert instance.order_fetched_at is not None
    assert not QueuedJob.objects.exists()


def test_retries_end_after_the_tasks_max_retries(kg, fake_koogallery):
    new_instance(kg)
    QueuedJob.objects.update(retries=koogallery_tasks.MAX_RETRIES)
    fake_koogallery.script("query_order", 503)
    fake_koogallery.fallback.script("query_order", 503)

    assert run_queued_jobs() == 1

    # Given up as a Celery worker gives up (the failure is recorded on the instance; the order
    # sweep or an operator fetches again).
    assert not QueuedJob.objects.exists()


def test_a_failed_licence_upload_comes_back_at_its_next_attempt_time(kg, fake_koogallery):
    body = license_body(make_instance())
    response = kg.basic(body)
    assert envelope(response)["resultCode"] == "000004"
    fake_koogallery.script("market_event", 503)
    fake_koogallery.fallback.script("market_event", 503)

    assert run_queued_jobs() == 1

    request = request_for(body)
    assert request.state == RequestState.ISSUED
    job = QueuedJob.objects.get()
    assert (job.task, job.retries, job.request_id) == (DELIVER, 1, response["X-Request-ID"])
    assert abs(job.run_after - request.next_attempt_at) < timedelta(seconds=1)

    QueuedJob.objects.update(run_after=timezone.now())
    assert run_queued_jobs() == 1
    assert request_for(body).state == RequestState.DELIVERED
    assert body["eventId"] in fake_koogallery.uploads


def test_a_job_claimed_by_a_runner_is_not_run_twice(kg, fake_koogallery):
    new_instance(kg)
    QueuedJob.objects.update(claimed_until=timezone.now() + timedelta(seconds=30))
    assert run_queued_jobs() == 0
    QueuedJob.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert run_queued_jobs() == 1  # a runner stopped mid-job: its claim expired


def test_the_runner_runs_beats_periodic_tasks_when_due_and_not_the_dispatch(kg, settings):
    assert envelope(kg.basic(fixture_json("newInstance__huawei")))["resultCode"] == "000000"
    InboundCall.objects.update(received_at=timezone.now() - timedelta(days=4000))
    settings.KOOGALLERY_JOURNAL_RETENTION_DAYS = 365
    periodic = Periodic(
        {
            "retention": {"task": "koogallery.tasks.purge_journal", "schedule": 60.0},
            "dispatch": {"task": "koogallery.tasks.dispatch_jobs", "schedule": 1.0},
        }
    )
    # The runner runs the outbox itself: beat's dispatch to a broker is not among its tasks.
    assert [name for name, *_ in periodic.entries] == ["retention"]

    periodic.run_due()  # as beat: a first run one interval after start
    assert InboundCall.objects.exists()

    name, task, schedule, last_run_at = periodic.entries[0]
    periodic.entries[0] = (name, task, schedule, last_run_at - timedelta(seconds=61))
    periodic.run_due()
    assert not InboundCall.objects.exists()


def test_the_command_runs_what_is_due_once_and_refuses_with_a_broker(
    kg, fake_koogallery, settings, capsys
):
    new_instance(kg)
    settings.REDIS_URL = ""  # the embedded default (also on the Redis pass)
    call_command("koogallery_run_jobs", "--once")
    assert "1 job(s) run." in capsys.readouterr().out
    settings.REDIS_URL = "redis://127.0.0.1:6379/15"
    with pytest.raises(CommandError, match="Celery worker and beat"):
        call_command("koogallery_run_jobs", "--once")


def test_the_admin_lists_a_waiting_jobs_retries_and_request_id(kg, admin_client):
    _, call_id = new_instance(kg)
    QueuedJob.objects.update(retries=2, run_after=timezone.now() + timedelta(minutes=1))
    page = admin_client.get("/admin/koogallery/queuedjob/")
    assert page.status_code == 200
    assert call_id in page.content.decode()


def test_the_runner_stops_when_the_server_that_started_it_is_gone(tmp_path):
    """scripts/run: a server killed outright (not by Ctrl-C, which reaches both) takes its
    runner with it within a second or so (--with-parent)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "DJANGO_SETTINGS_MODULE"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="true",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        LOG_FORMAT="plain",
    )
    log = tmp_path / "runner.log"
    server = subprocess.Popen(  # stands for runserver: the runner's parent
        [
            "bash",
            "-c",
            f"{sys.executable} manage.py koogallery_run_jobs --with-parent 2>{log} & "
            "exec sleep 600",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        wait_for(lambda: "job runner started" in log.read_text(), 60, "the runner")
        server.kill()
        server.wait(10)
        wait_for(lambda: not group_alive(server.pid), 15, "the runner to stop")
        assert "its server is gone; stopping" in log.read_text()
    finally:
        for pid in group_alive(server.pid):
            os.kill(pid, signal.SIGKILL)


def test_a_job_put_back_due_at_once_waits_for_the_next_pass(kg, fake_koogallery, monkeypatch):
    """A retry's full jitter may draw 0 s: the job is due again at once, yet one pass runs it
    once (it ran twice in a pass, back to back, before)."""
    monkeypatch.setattr(koogallery_tasks, "BACKOFF_FACTOR_S", 0)
    new_instance(kg)
    fake_koogallery.script("query_order", 503, 503)
    fake_koogallery.fallback.script("query_order", 503, 503)

    assert run_queued_jobs() == 1

    assert QueuedJob.objects.get().retries == 1
    assert run_queued_jobs() == 1
    assert QueuedJob.objects.get().retries == 2
