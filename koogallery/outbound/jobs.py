"""Background jobs a call asks for, and how they reach what runs them.

A call that needs follow-up work (newInstance, upgrade and orderNotify need a Query Order;
getLicenseAsync needs a licence delivered) names a task and the row it is about. The call never
runs it, nor waits on anything that does (spec §2.7: an answer never waits on an outbound call).
Two ways to hand it over, chosen by KOOGALLERY_JOB_DISPATCH:

- ``outbox`` (the default): the call inserts a `QueuedJob` row in its own transaction, so the
  job commits or rolls back with the call's writes, with the call's request id (its log lines
  carry it). Then, on a deployment with a broker, `dispatch_queued_jobs` (beat, every
  KOOGALLERY_JOB_DISPATCH_INTERVAL_S) claims the oldest rows for a minute (`SKIP LOCKED`: two
  dispatchers never take the same row), publishes them outside any transaction and deletes those
  it published. A broker that is down leaves the rest for the next dispatch; a dispatcher killed
  mid-way leaves its claim to expire, and its rows are published again (every task is
  idempotent). Without a broker (the embedded default) `run_queued_jobs` — the runner,
  `manage.py koogallery_run_jobs`, which scripts/run starts next to the server — claims each
  due row and runs its task in its own process, a retry putting the row back with its backoff.
- ``on_commit`` (only with a broker): the task is published once the call's transaction
  commits; a publish that fails is logged, and the sweeps (licensing, instances/sweep.py) find
  the row later.

Either way a lost broker message is recovered by the sweeps, which look at the rows themselves.
"""

import importlib
import logging
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from celery import states
from celery.exceptions import Retry
from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import F, Q
from django.utils import timezone

from ops.context import current_request_id, new_request_id, request_id_var

logger = logging.getLogger(__name__)

OUTBOX = "outbox"
ON_COMMIT = "on_commit"
# How long a dispatcher owns the rows it claimed; then another may publish them.
CLAIM = timedelta(seconds=60)


class QueuedJob(models.Model):
    """One job a committed call asked for, not yet handed to the broker (the outbox)."""

    task = models.CharField(max_length=128, help_text="the Celery task's name")
    object_id = models.BigIntegerField(help_text="the task's one argument: the row's id")
    created_at = models.DateTimeField(default=timezone.now)
    claimed_until = models.DateTimeField(
        null=True, blank=True, help_text="a dispatcher is publishing it until then"
    )
    request_id = models.CharField(
        max_length=128,
        blank=True,
        default="",
        help_text="the request id of the call that asked for it: the job logs under it",
    )
    run_after = models.DateTimeField(
        null=True, blank=True, help_text="not before then (a retry's backoff, runner only)"
    )
    retries = models.PositiveIntegerField(default=0, help_text="runs retried so far (runner)")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.task}({self.object_id})"


def publish(task_name: str, object_id: int, options: Mapping[str, Any] | None = None) -> None:
    """Send the task named `task_name` with `object_id` to the broker; raises what the broker
    raises, and LookupError for a name no task answers to."""
    task = _task(task_name)
    if task is None:
        raise LookupError(f"no task {task_name!r}")
    # The argument reprs as Celery writes them, without its saferepr (a tenth of the publish).
    task.apply_async(
        (object_id,),
        argsrepr=f"({object_id!r},)",
        kwargsrepr="{}",
        **(options or {"retry": False}),
    )


def enqueue(task_name: str, object_id: int, *, options: Mapping[str, Any] | None = None) -> None:
    """Have the task named `task_name` run on `object_id` once the current transaction commits,
    never failing the call.

    Jobs are queued by the task's name (``"instances.tasks.fetch_order_details"``): a service
    never imports its task module, which imports the service. In the outbox mode the job row is
    written now, in the caller's transaction; in the on_commit mode the publish waits for the
    commit, and a failure is logged (the sweeps recover it)."""
    if settings.KOOGALLERY_JOB_DISPATCH == OUTBOX:
        QueuedJob.objects.create(
            task=task_name, object_id=object_id, request_id=current_request_id()
        )
        return

    def send() -> None:
        try:
            publish(task_name, object_id, options)
        except Exception:
            logger.exception(
                "could not enqueue %s(%s); the sweep or an operator will pick it up",
                task_name,
                object_id,
            )

    transaction.on_commit(send, robust=True)


def _free(now: datetime) -> Q:
    """Jobs nobody has claimed and due now."""
    unclaimed = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    return unclaimed & (Q(run_after__isnull=True) | Q(run_after__lte=now))


def _claim(batch: int) -> list[QueuedJob]:
    """The oldest `batch` jobs nobody is publishing, claimed for CLAIM."""
    with transaction.atomic():
        now = timezone.now()
        ids = list(
            QueuedJob.objects.select_for_update(skip_locked=True)
            .filter(_free(now))
            .order_by("pk")
            .values_list("pk", flat=True)[:batch]
        )
        QueuedJob.objects.filter(pk__in=ids).update(claimed_until=now + CLAIM)
    return list(QueuedJob.objects.filter(pk__in=ids).order_by("pk"))


def queued_by_statement() -> bool:
    """Whether a writer may queue its job inside its own INSERT statement (`job_cte`): the outbox
    on PostgreSQL, one statement less per call. The writer then does not call `enqueue`."""
    return settings.KOOGALLERY_JOB_DISPATCH == OUTBOX and connection.vendor == "postgresql"


def job_cte(source: str) -> str:
    """A CTE, `queued`, putting in the outbox one job per id the CTE `source` returns. Its
    parameters are `job_params(task name)`."""
    meta = QueuedJob._meta
    column = {f.name: connection.ops.quote_name(f.column) for f in meta.concrete_fields}
    return (
        f"queued AS (INSERT INTO {connection.ops.quote_name(meta.db_table)} "  # noqa: S608
        f"({column['task']}, {column['object_id']}, {column['created_at']}, "
        f"{column['request_id']}, {column['retries']}) "
        f"SELECT %s, s.id, statement_timestamp(), %s, 0 FROM {source} s)"
    )


def job_params(task_name: str) -> list[str]:
    """The parameters of `job_cte`: the task, and the request id its job will log under."""
    return [task_name, current_request_id()]


def _task(name: str):
    """The registered task `name`; its module is imported first where this process has not
    (a management command's process knows only the tasks something imported)."""
    from celery import current_app

    task = current_app.tasks.get(name)
    if task is None:
        try:
            importlib.import_module(name.rpartition(".")[0])
        except ImportError:
            return None
        task = current_app.tasks.get(name)
    return task


def dispatch_queued_jobs(*, batch: int | None = None, rounds: int = 20) -> int:
    """Publish the outbox's jobs, oldest first, and delete those sent; how many were sent.

    Up to `rounds` batches in one go (a backlog drains at once, and one dispatch never runs for
    long). A publish that fails stops the dispatch: that job and the rest stay for the next one."""
    batch = batch or settings.KOOGALLERY_JOB_DISPATCH_BATCH
    sent_total = 0
    for _ in range(rounds):
        jobs = _claim(batch)
        sent: list[int] = []
        failed = False
        try:
            for job in jobs:
                if _task(job.task) is None:
                    # Unknown (a task renamed by an upgrade?): kept, and said, for an operator.
                    logger.error("outbox: no task %r for job %s; left in place", job.task, job.pk)
                    continue
                try:
                    # Published under the id of the call that queued it (ops/celery_context.py
                    # puts the current id in the message): the job logs under that call's id.
                    token = request_id_var.set(job.request_id)
                    try:
                        publish(job.task, job.object_id)
                    finally:
                        request_id_var.reset(token)
                except Exception:
                    logger.exception("outbox: could not publish %s; kept for later", job)
                    failed = True
                    break
                sent.append(job.pk)
        finally:
            QueuedJob.objects.filter(pk__in=sent).delete()
            if failed:
                # Not published: free for the next dispatch now, not after the claim.
                unsent = {job.pk for job in jobs} - set(sent)
                QueuedJob.objects.filter(pk__in=unsent).update(claimed_until=None)
        sent_total += len(sent)
        if failed or len(jobs) < batch:
            break
    return sent_total


# --- the runner: the outbox's worker where there is no broker -------------------------------------

# Set while the runner runs a job: a task's `retry` then reschedules the job's row.
_in_runner: ContextVar[bool] = ContextVar("koogallery_job_runner", default=False)


def retry(task, *, countdown: float, exc: BaseException | None = None) -> None:
    """Have the running `task` run again in `countdown` s, as Celery's `task.retry` does: through
    the broker on a Celery worker; in the runner (`run_queued_jobs`) by putting its outbox row
    back, due then; not at all when it runs in-process otherwise (a test, an operator's action:
    the failure is recorded and a sweep, KooGallery's repeat or the operator takes it up — an
    eager retry would run again at once, back to back). Raises (Retry, or `exc` once
    `task.max_retries` retries were made) unless it returns None."""
    if not task.request.is_eager:
        raise task.retry(exc=exc, countdown=countdown)
    if not _in_runner.get():
        return
    if task.max_retries is not None and task.request.retries >= task.max_retries:
        if exc is not None:
            raise exc
        raise task.MaxRetriesExceededError(f"{task.name}: {task.max_retries} retries made")
    raise Retry(exc=exc, when=countdown)


def _claim_one(now: datetime, ran: set[int]) -> QueuedJob | None:
    """The oldest due job nobody runs and this pass has not run (`ran`), claimed for CLAIM by
    one conditional UPDATE (on SQLite a read-then-write transaction could meet the server's
    writes and fail; this waits its turn)."""
    due = QueuedJob.objects.filter(_free(now)).exclude(pk__in=ran).order_by("pk")
    for pk in due.values_list("pk", flat=True)[:5]:
        claimed = (
            QueuedJob.objects.filter(_free(now), pk=pk).update(claimed_until=now + CLAIM) == 1
        )
        if claimed:
            return QueuedJob.objects.filter(pk=pk).first()
    return None


def run_job(job: QueuedJob) -> str:
    """Run one claimed job's task in this process, under its call's request id; its row is
    deleted once done (or failed for good) and put back, due after the backoff, on a retry.
    Returns the task's final state."""
    task = _task(job.task)
    if task is None:
        logger.error("outbox: no task %r for job %s; left in place", job.task, job.pk)
        return states.REJECTED
    id_token = request_id_var.set(job.request_id or new_request_id())
    runner_token = _in_runner.set(True)
    try:
        result = task.apply((job.object_id,), retries=job.retries)
        if result.state == states.RETRY and isinstance(result.result, Retry):
            when = result.result.when
            if isinstance(when, datetime):
                due = when
            else:
                due = timezone.now() + timedelta(seconds=float(when or 0))
            QueuedJob.objects.filter(pk=job.pk).update(
                retries=F("retries") + 1, run_after=due, claimed_until=None
            )
            logger.info("outbox: %s runs again at %s (retry %s)", job, due, job.retries + 1)
        else:
            QueuedJob.objects.filter(pk=job.pk).delete()
    finally:
        _in_runner.reset(runner_token)
        request_id_var.reset(id_token)
    return result.state


def run_queued_jobs(*, limit: int = 50) -> int:
    """Run up to `limit` due jobs of the outbox in this process, oldest first; how many ran.

    The runner's work where there is no broker (`manage.py koogallery_run_jobs`, started by
    scripts/run): each job is claimed alone, so a job whose outbound call hangs holds only
    itself, and a runner stopped mid-job leaves its claim to expire (the job runs again: every
    task is idempotent). A pass runs each job once: one put back due at once (a retry's jitter
    may draw 0 s) waits for the next pass."""
    ran: set[int] = set()
    while len(ran) < limit:
        job = _claim_one(timezone.now(), ran)
        if job is None:
            break
        ran.add(job.pk)
        run_job(job)
    return len(ran)
