"""Background jobs a call asks for, and how they reach the Celery broker.

A call that needs follow-up work (newInstance, upgrade and orderNotify need a Query Order;
getLicenseAsync needs a licence delivered) names a task and the row it is about. Two ways to
hand that to a worker, chosen by KOOGALLERY_JOB_DISPATCH:

- ``outbox`` (the default with a broker): the call inserts a `QueuedJob` row in its own
  transaction, so the job commits or rolls back with the call's writes, and the call never waits
  on the broker. `dispatch_queued_jobs` (beat, every KOOGALLERY_JOB_DISPATCH_INTERVAL_S) claims
  the oldest rows for a minute (`SKIP LOCKED`: two dispatchers never take the same row),
  publishes them outside any transaction and deletes those it published. A broker that is down
  leaves the rest for the next dispatch; a dispatcher killed mid-way leaves its claim to expire,
  and its rows are published again (every task is idempotent).
- ``on_commit`` (the default without a broker, where tasks run in-process): the task is
  published once the call's transaction commits; a publish that fails is logged, and the sweeps
  (licensing, order_sweep) find the row later.

Either way a lost broker message is recovered by the sweeps, which look at the rows themselves.
"""

import importlib
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone

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

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.task}({self.object_id})"


def publish(task, object_id: int, options: Mapping[str, Any] | None = None) -> None:
    """Send `task(object_id)` to the broker; raises what the broker raises."""
    # The argument reprs as Celery writes them, without its saferepr (a tenth of the publish).
    task.apply_async(
        (object_id,),
        argsrepr=f"({object_id!r},)",
        kwargsrepr="{}",
        **(options or {"retry": False}),
    )


def enqueue(task, object_id: int, *, options: Mapping[str, Any] | None = None) -> None:
    """Have `task(object_id)` run once the current transaction commits, never failing the call.

    In the outbox mode the job row is written now, in the caller's transaction; in the on_commit
    mode the publish waits for the commit, and a failure is logged (the sweeps recover it)."""
    if settings.KOOGALLERY_JOB_DISPATCH == OUTBOX:
        QueuedJob.objects.create(task=task.name, object_id=object_id)
        return

    def send() -> None:
        try:
            publish(task, object_id, options)
        except Exception:
            logger.exception(
                "could not enqueue %s(%s); the sweep or an operator will pick it up",
                task.name,
                object_id,
            )

    transaction.on_commit(send, robust=True)


def _claim(batch: int) -> list[QueuedJob]:
    """The oldest `batch` jobs nobody is publishing, claimed for CLAIM."""
    with transaction.atomic():
        now = timezone.now()
        ids = list(
            QueuedJob.objects.select_for_update(skip_locked=True)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
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
    """A CTE, `queued`, putting in the outbox one job per id the CTE `source` returns. Its one
    parameter is the task's name."""
    meta = QueuedJob._meta
    column = {f.name: connection.ops.quote_name(f.column) for f in meta.concrete_fields}
    return (
        f"queued AS (INSERT INTO {connection.ops.quote_name(meta.db_table)} "  # noqa: S608
        f"({column['task']}, {column['object_id']}, {column['created_at']}) "
        f"SELECT %s, s.id, statement_timestamp() FROM {source} s)"
    )


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
                task = _task(job.task)
                if task is None:
                    # Unknown (a task renamed by an upgrade?): kept, and said, for an operator.
                    logger.error("outbox: no task %r for job %s; left in place", job.task, job.pk)
                    continue
                try:
                    publish(task, job.object_id)
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
