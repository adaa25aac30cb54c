"""Publish the jobs waiting in the outbox now (beat does it every
KOOGALLERY_JOB_DISPATCH_INTERVAL_S): koogallery/outbound/jobs.py.

manage.py koogallery_dispatch_jobs          # publish what waits, print how many
manage.py koogallery_dispatch_jobs --list   # only show what waits, by task
"""

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count, Min

from koogallery.outbound.jobs import QueuedJob, dispatch_queued_jobs


class Command(BaseCommand):
    help = "Publish the jobs KooGallery calls left in the outbox to the Celery broker."

    def add_arguments(self, parser):
        parser.add_argument("--list", action="store_true", help="show the outbox, publish nothing")

    def handle(self, *args, **options):
        waiting = QueuedJob.objects.values("task").annotate(n=Count("id"), first=Min("created_at"))
        if options["list"]:
            for row in waiting.order_by("task"):
                oldest = f"{row['first']:%Y-%m-%d %H:%M:%S}"
                self.stdout.write(f"{row['task']}: {row['n']} (oldest {oldest})")
            return
        sent = dispatch_queued_jobs()
        left = QueuedJob.objects.count()
        self.stdout.write(f"{sent} job(s) published, {left} left in the outbox.")
        if left:
            raise CommandError("jobs are left: is the broker reachable? (see the log above)")
