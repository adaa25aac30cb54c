"""Celery tasks for licences: thin callers of `services` / `license_codes`.

`deliver_license` is acknowledged late (a worker killed mid-task leaves the message to be
redelivered) and idempotent by request (each step locks the row and checks its state). Upload
retries use exponential backoff with jitter, as many as cover KooGallery's 2-hour patience
(§1.3); beyond them, and whenever a message is lost, `sweep_license_requests` (beat, every
minute) re-enqueues whatever is stuck.

Without a broker (the embedded default, no REDIS_URL) the runner (koogallery/outbound/jobs.py,
`manage.py koogallery_run_jobs`) runs the delivery seconds after getLicenseAsync committed it,
never inside the call, and puts a failed upload back in the outbox for its next attempt time.
Run in-process otherwise (tests, an operator's action) a failed upload is not retried inline
(an eager retry would run again at once) but left with its next attempt time for the sweep,
`manage.py license_sweep`, or KooGallery's next repeat of the call.
"""

import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from koogallery.outbound import jobs

from . import license_codes, services
from .models import RequestState

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # bounded below by the retry window, read when the task runs
    ignore_result=True,
)
def deliver_license(self, request_id: int) -> str:
    from .models import LicenseRequest

    try:
        request = services.deliver_license(request_id=request_id)
    except LicenseRequest.DoesNotExist:
        logger.warning("licence request %s no longer exists: message dropped", request_id)
        return "missing"
    retry_pending = (
        request.state in (RequestState.RECEIVED, RequestState.ISSUED)
        and request.next_attempt_at is not None
    )
    limit = services.retries_to_cover(settings.LICENSE_RETRY_WINDOW_S)
    if retry_pending and self.request.retries < limit:
        countdown = max(0.0, (request.next_attempt_at - timezone.now()).total_seconds())
        jobs.retry(self, countdown=countdown)
    return request.state


@shared_task(ignore_result=True)
def sweep_license_requests() -> int:
    return len(services.sweep_due_requests())


@shared_task(ignore_result=True)
def query_license_codes() -> dict:
    return license_codes.query_codes_in_use()
