"""Apply the journal retention now (beat runs it daily): koogallery/inbound/retention.py.

manage.py koogallery_purge_journal            # clear old bodies, delete expired rows
manage.py koogallery_purge_journal --dry-run  # only count them
"""

from django.core.management.base import BaseCommand

from koogallery.inbound.retention import purge_journal


class Command(BaseCommand):
    help = "Clear journal bodies past KOOGALLERY_JOURNAL_BODY_RETENTION_DAYS, delete rows past "
    help += "KOOGALLERY_JOURNAL_RETENTION_DAYS."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count, change nothing")

    def handle(self, *args, dry_run: bool, **options):
        done = purge_journal(dry_run=dry_run)
        verb = "would be" if dry_run else "were"
        self.stdout.write(
            f"{done['bodies_cleared']} row(s) {verb} cleared of bodies, "
            f"{done['rows_deleted']} row(s) {verb} deleted."
        )
