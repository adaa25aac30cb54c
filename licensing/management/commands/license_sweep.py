"""Re-enqueue licence requests stuck in a non-final state (what Celery beat runs every minute).

On the embedded default (no broker, no beat) this delivers them in-process:

    manage.py license_sweep             # one pass
    manage.py license_sweep --every 60  # keep sweeping
"""

import time

from django.core.management.base import BaseCommand

from licensing import services


class Command(BaseCommand):
    help = "Push stuck licence requests forward (issue, upload) once or periodically."

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, help="repeat every N seconds until stopped")

    def handle(self, *args, every: float | None, **options):
        while True:
            ids = services.sweep_due_requests()
            self.stdout.write(f"{len(ids)} licence request(s) re-enqueued")
            if not every:
                return
            time.sleep(every)
