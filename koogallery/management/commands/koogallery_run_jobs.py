"""The job runner of the embedded default (no broker): the Celery worker and beat of a deployment
with Redis, in one process and without a broker. scripts/run starts it next to the server.

manage.py koogallery_run_jobs                 # run until stopped (SIGINT/SIGTERM)
manage.py koogallery_run_jobs --once          # run what is due now, then exit

Every KOOGALLERY_JOB_DISPATCH_INTERVAL_S it runs the jobs calls committed to the outbox
(koogallery/outbound/jobs.py `run_queued_jobs`: Query Order, licence delivery; a retry goes back to
the
outbox with the Celery task's backoff), and it runs beat's periodic tasks when due
(CELERY_BEAT_SCHEDULE: order and licence sweeps, usage close-and-push, journal retention,
licence-code queries), first one interval after start, as beat does. A KooGallery call only
writes its job's row: it never waits on the job, whose outbound call may hang (spec §2.7).
"""

import logging
import os
import signal
import threading
import time

from celery import current_app
from celery.schedules import maybe_schedule
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from koogallery.outbound.jobs import _task, run_queued_jobs
from ops.context import new_request_id, request_id_var

logger = logging.getLogger("koogallery.jobs")

# beat's own outbox dispatch: the runner runs the outbox instead of publishing it.
DISPATCH = "koogallery.tasks.dispatch_jobs"


class _Stopped(BaseException):  # like KeyboardInterrupt: past `except Exception`
    """A stop signal arrived while a job ran: the job is abandoned (its claim expires and it
    runs again later; every task is idempotent)."""


class Periodic:
    """beat's schedule, kept in memory: each entry runs one interval after start, then as due."""

    def __init__(self, schedule: dict):
        now = current_app.now()
        self.entries = [
            (name, entry["task"], maybe_schedule(entry["schedule"], app=current_app), now)
            for name, entry in sorted(schedule.items())
            if entry["task"] != DISPATCH
        ]

    def run_due(self) -> None:
        for index, (name, task_name, schedule, last_run_at) in enumerate(self.entries):
            due, _next = schedule.is_due(last_run_at)
            if not due:
                continue
            self.entries[index] = (name, task_name, schedule, current_app.now())
            task = _task(task_name)
            if task is None:
                logger.error("runner: no task %r for the periodic %r", task_name, name)
                continue
            token = request_id_var.set(new_request_id())
            try:
                task.apply()
            finally:
                request_id_var.reset(token)


class Command(BaseCommand):
    help = "Run the outbox's jobs and the periodic tasks in-process (the embedded default)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="run what is due, then exit")
        parser.add_argument(
            "--with-parent",
            action="store_true",
            help="exit when the process that started this one ends (scripts/run)",
        )

    def handle(self, *args, **options):
        if settings.REDIS_URL:
            raise CommandError(
                "REDIS_URL is set: the Celery worker and beat run the jobs (Procfile), not this"
            )
        if options["once"]:
            ran = run_queued_jobs(limit=10_000)
            self.stdout.write(f"{ran} job(s) run.")
            return
        self._loop(with_parent=options["with_parent"])

    def _loop(self, *, with_parent: bool) -> None:
        stop = threading.Event()
        busy = threading.Event()
        parent = os.getppid()

        def on_signal(signum, frame):
            stop.set()
            if busy.is_set():
                raise _Stopped

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        periodic = Periodic(settings.CELERY_BEAT_SCHEDULE)
        interval = settings.KOOGALLERY_JOB_DISPATCH_INTERVAL_S
        logger.info("job runner started (every %ss)", interval)
        try:
            while not stop.is_set():
                if with_parent and os.getppid() != parent:
                    logger.info("job runner: its server is gone; stopping")
                    break
                started = time.monotonic()
                busy.set()
                try:
                    close_old_connections()
                    run_queued_jobs()
                    periodic.run_due()
                except _Stopped:
                    break
                except Exception:
                    # The database locked or away: said, and tried again at the next tick.
                    logger.exception("job runner: this round failed; trying again")
                finally:
                    busy.clear()
                stop.wait(max(0.0, interval - (time.monotonic() - started)))
        except _Stopped:
            pass
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            close_old_connections()
        logger.info("job runner stopped")
