"""`manage.py koogallery_push_usage [--now]`: the beat job, on demand (spec §5.5).

Closes every finished hour and pushes the records that are due, exactly as the scheduled run
does (it is safe to run during one). `--now` also pushes pending records whose retry time has
not come yet. Exit code 1 when a push was refused or the run stopped early.
"""

from django.core.management.base import BaseCommand, CommandError

from metering import services
from metering.models import PushTrigger


class Command(BaseCommand):
    help = "Close finished usage hours and push due usage records to KooGallery (§5.5)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--now",
            action="store_true",
            help="push pending records now, ignoring their retry backoff",
        )

    def handle(self, *args, **options):
        report = services.run_metering(trigger=PushTrigger.COMMAND, ignore_backoff=options["now"])
        self.stdout.write(str(report))
        if report.pushed.failed or report.pushed.stopped:
            raise CommandError(f"usage push incomplete: {report.pushed}")
