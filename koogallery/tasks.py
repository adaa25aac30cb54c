"""Periodic jobs of the KooGallery boundary (beat): publishing the job outbox and the journal's
retention. Tasks only call the functions they name."""

from celery import shared_task

from koogallery.inbound import retention
from koogallery.outbound import jobs


@shared_task(ignore_result=True)
def dispatch_jobs() -> int:
    """Publish the jobs calls left in the outbox (koogallery/outbound/jobs.py)."""
    return jobs.dispatch_queued_jobs()


@shared_task(ignore_result=True)
def purge_journal() -> dict:
    """Journal retention (koogallery/inbound/retention.py), daily."""
    return retention.purge_journal()
