"""The jobs a call asks for (Query Order, licence delivery) reach the broker through the outbox
(koogallery/outbound/jobs.py): committed with the call, published by the dispatch beat runs every
second,
never lost to a broker that is down. Published tasks run eagerly here, against the fake
KooGallery on loopback, so "published" is seen as the work done.
"""

import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from instances.models import Instance
from koogallery.outbound.jobs import QueuedJob, dispatch_queued_jobs
from licensing.models import RequestState
from ops.collectors import OutboxCollector
from tests.support import ROOT
from tests.support.fakes.koogallery_server import MOCK_PRODUCT_ID
from tests.support.kgclient import envelope, fixture_json
from tests.support.licensing_kit import (
    DEAD_BROKER,
    celery_broker,
    license_body,
    license_settings,  # noqa: F401 (fixture)
    make_instance,
    request_for,
)
from tests.support.procs import production_env

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks", "license_settings")]

FETCH = "instances.tasks.fetch_order_details"
DELIVER = "licensing.tasks.deliver_license"


@pytest.fixture
def outbox(settings):
    settings.KOOGALLERY_JOB_DISPATCH = "outbox"


def new_instance(kg, order_id: str, capture) -> Instance:
    with capture(execute=True) as callbacks:
        body = envelope(
            kg.basic(
                fixture_json(
                    "newInstance__mock_period",
                    businessId=f"inst-{order_id}",
                    orderId=order_id,
                    orderLineId=f"{order_id}-000001",
                )
            )
        )
    assert body["resultCode"] == "000000"
    assert callbacks == [], "nothing waits for the commit: the job is a row"
    return Instance.objects.get(instance_id=body["instanceId"])


def waiting() -> list[tuple[str, int]]:
    return list(QueuedJob.objects.order_by("pk").values_list("task", "object_id"))


def test_a_call_commits_its_job_and_never_touches_the_broker(
    kg, outbox, django_capture_on_commit_callbacks, caplog
):
    with celery_broker(DEAD_BROKER):  # a publish on the call's path would fail, and log
        instance = new_instance(kg, "MOCKPERIODYEARNEW", django_capture_on_commit_callbacks)
        response = kg.basic(license_body(make_instance()))
    assert envelope(response)["resultCode"] == "000004"
    assert [task for task, _ in waiting()] == [FETCH, DELIVER]
    assert waiting()[0] == (FETCH, instance.pk)
    assert "could not" not in caplog.text


def test_a_refused_call_leaves_no_job(kg, outbox):
    body = fixture_json("newInstance__mock_period")
    del body["orderId"]
    assert envelope(kg.basic(body))["resultCode"] == "000002"
    assert waiting() == []
    assert not Instance.objects.exists()


def test_the_dispatch_runs_each_job_once_and_empties_the_outbox(
    kg, outbox, fake_koogallery, django_capture_on_commit_callbacks
):
    first = new_instance(kg, "MOCKPERIODYEARNEW", django_capture_on_commit_callbacks)
    assert first.order_fetched_at is None  # not before the dispatch

    assert dispatch_queued_jobs() == 1
    first.refresh_from_db()
    assert (first.product_id, first.order_fetch_error) == (MOCK_PRODUCT_ID, "")
    assert waiting() == []
    assert dispatch_queued_jobs() == 0
    assert len(fake_koogallery.requests_for("query_order")) == 1


def test_jobs_go_out_oldest_first_in_batches(
    kg, outbox, fake_koogallery, django_capture_on_commit_callbacks
):
    instances = [
        new_instance(kg, order, django_capture_on_commit_callbacks)
        for order in ("MOCKPERIODYEARNEW", "MOCKONETIMENEW", "MOCKPERIODDAYTRIAL")
    ]
    assert dispatch_queued_jobs(batch=2) == 3  # two rounds
    fetched = Instance.objects.filter(order_fetched_at__isnull=False).order_by("order_fetched_at")
    assert [i.pk for i in fetched] == [i.pk for i in instances]


def test_a_broker_that_is_down_keeps_every_job_for_the_next_dispatch(
    kg, outbox, fake_koogallery, django_capture_on_commit_callbacks, caplog
):
    instance = new_instance(kg, "MOCKPERIODYEARNEW", django_capture_on_commit_callbacks)
    with celery_broker(DEAD_BROKER):
        assert dispatch_queued_jobs() == 0
    assert waiting() == [(FETCH, instance.pk)]
    assert "could not publish" in caplog.text
    # Released at once, not after the claim: the next dispatch publishes it.
    assert QueuedJob.objects.get().claimed_until is None

    assert dispatch_queued_jobs() == 1
    instance.refresh_from_db()
    assert instance.order_fetched_at is not None


def test_a_claim_of_a_dispatcher_that_died_expires(
    kg, outbox, fake_koogallery, django_capture_on_commit_callbacks
):
    new_instance(kg, "MOCKPERIODYEARNEW", django_capture_on_commit_callbacks)
    QueuedJob.objects.update(claimed_until=timezone.now() + timedelta(seconds=30))
    assert dispatch_queued_jobs() == 0  # another dispatcher is on it
    QueuedJob.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert dispatch_queued_jobs() == 1


def test_a_job_of_an_unknown_task_stays_and_is_said(outbox, caplog):
    QueuedJob.objects.create(task="koogallery.tasks.renamed_away", object_id=7)
    assert dispatch_queued_jobs() == 0
    assert waiting() == [("koogallery.tasks.renamed_away", 7)]
    assert "no task 'koogallery.tasks.renamed_away'" in caplog.text


def test_a_licence_waits_in_the_outbox_and_is_delivered_after_the_dispatch(
    kg, outbox, fake_koogallery
):
    body = license_body(make_instance())
    assert envelope(kg.basic(body))["resultCode"] == "000004"
    request = request_for(body)
    assert waiting() == [(DELIVER, request.pk)]
    assert request.state == RequestState.RECEIVED

    assert dispatch_queued_jobs() == 1
    request.refresh_from_db()
    assert request.state == RequestState.DELIVERED
    assert list(fake_koogallery.uploads) == [body["eventId"]]


def test_on_commit_mode_publishes_after_the_commit_and_writes_no_job(
    kg, settings, fake_koogallery, django_capture_on_commit_callbacks
):
    settings.KOOGALLERY_JOB_DISPATCH = "on_commit"
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        body = envelope(kg.basic(fixture_json("newInstance__mock_period")))
    assert len(callbacks) == 1
    assert waiting() == []
    instance = Instance.objects.get(instance_id=body["instanceId"])
    assert instance.order_fetched_at is not None


def test_the_outbox_backlog_is_exported(kg, outbox, django_capture_on_commit_callbacks):
    new_instance(kg, "MOCKPERIODYEARNEW", django_capture_on_commit_callbacks)
    QueuedJob.objects.update(created_at=timezone.now() - timedelta(seconds=90))
    samples = {
        (s.name, s.labels.get("task", "")): s.value
        for family in OutboxCollector().collect()
        for s in family.samples
    }
    assert samples[("koogallery_job_outbox_backlog", FETCH)] == 1
    assert 90 <= samples[("koogallery_job_outbox_oldest_seconds", "")] < 120


def test_the_command_publishes_and_says_what_is_left(
    kg, outbox, fake_koogallery, django_capture_on_commit_callbacks, capsys
):
    new_instance(kg, "MOCKPERIODYEARNEW", django_capture_on_commit_callbacks)
    call_command("koogallery_dispatch_jobs", "--list")
    assert f"{FETCH}: 1" in capsys.readouterr().out
    with celery_broker(DEAD_BROKER), pytest.raises(CommandError, match="broker"):
        call_command("koogallery_dispatch_jobs")
    call_command("koogallery_dispatch_jobs")
    assert "1 job(s) published, 0 left" in capsys.readouterr().out


def settings_check(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django.conf import settings; print(settings.KOOGALLERY_JOB_DISPATCH)",
        ],
        cwd=ROOT,
        env=production_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_outbox_is_the_default_everywhere_and_on_commit_needs_a_broker():
    with_broker = settings_check(REDIS_URL="redis://127.0.0.1:6379/15")
    assert with_broker.returncode == 0, with_broker.stderr
    assert with_broker.stdout.strip().splitlines()[-1] == "outbox"
    # The embedded default too: its runner (koogallery_run_jobs) runs the outbox, not the call.
    embedded = settings_check(REDIS_URL="")
    assert embedded.returncode == 0, embedded.stderr
    assert embedded.stdout.strip().splitlines()[-1] == "outbox"
    # Without a broker, on_commit would run the job inside the call (spec §2.7): refused.
    refused = settings_check(REDIS_URL="", KOOGALLERY_JOB_DISPATCH="on_commit")
    assert refused.returncode != 0
    assert "KOOGALLERY_JOB_DISPATCH=on_commit needs REDIS_URL" in refused.stderr
