"""How long the inbound call journal keeps what it keeps (docs/operations.md, "Journal
retention").

Journal rows carry request bodies, and authSync bodies name people (mobile, e-mail when
KooGallery sends them). Two settings bound that:

- KOOGALLERY_JOURNAL_BODY_RETENTION_DAYS (default 90): past it a row keeps its metadata
  (endpoint, business keys, result, verification, nonce, size and SHA-256 of the body) and loses
  its bodies, query string and traceback;
- KOOGALLERY_JOURNAL_RETENTION_DAYS (default 0 = never): past it the row is deleted. Instance
  transitions and orders that pointed at it keep their own record (the link is cleared).

The stored answers of V1 calls (v1_answers.py, kept to answer replays) go with them, once past
KOOGALLERY_V1_MAX_AGE_S.

`purge_journal` runs daily in beat (`koogallery.tasks.purge_journal`) and from
`manage.py koogallery_purge_journal`; it works in batches, each its own transaction, so a large
backlog never holds long locks.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from koogallery.inbound import v1_answers
from koogallery.inbound.journal import InboundCall

logger = logging.getLogger(__name__)

BATCH = 2000
CLEARED = {"request_body": "", "response_body": "", "query_string": "", "error": ""}


def _cutoff(days: int, now: datetime) -> datetime | None:
    return now - timedelta(days=days) if days > 0 else None


def purge_journal(*, now: datetime | None = None, dry_run: bool = False) -> dict[str, int]:
    """Clear old bodies and delete expired rows; returns how many rows of each."""
    now = now or timezone.now()
    done = {"bodies_cleared": 0, "rows_deleted": 0, "v1_answers_deleted": 0}
    delete_before = _cutoff(settings.KOOGALLERY_JOURNAL_RETENTION_DAYS, now)
    clear_before = _cutoff(settings.KOOGALLERY_JOURNAL_BODY_RETENTION_DAYS, now)
    if delete_before is not None:
        done["rows_deleted"] = _in_batches(
            InboundCall.objects.filter(received_at__lt=delete_before),
            lambda rows: rows.delete()[1].get(InboundCall._meta.label, 0),
            dry_run,
        )
    if clear_before is not None:
        has_text = Q()
        for name in CLEARED:
            has_text |= ~Q(**{name: ""})
        done["bodies_cleared"] = _in_batches(
            InboundCall.objects.filter(has_text, received_at__lt=clear_before),
            lambda rows: rows.update(**CLEARED),
            dry_run,
        )
    done["v1_answers_deleted"] = v1_answers.purge(now=now, dry_run=dry_run)
    if any(done.values()):
        logger.info(
            "journal retention: %d row(s) deleted, %d row(s) cleared of bodies, "
            "%d V1 answer(s) past their max age deleted%s",
            done["rows_deleted"],
            done["bodies_cleared"],
            done["v1_answers_deleted"],
            " (dry run)" if dry_run else "",
        )
    return done


def _in_batches(queryset, apply, dry_run: bool) -> int:
    if dry_run:
        return queryset.count()
    total = 0
    while True:
        with transaction.atomic():
            ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:BATCH])
            if not ids:
                return total
            total += apply(InboundCall.objects.filter(pk__in=ids))
