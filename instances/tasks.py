"""Background jobs of the instance lifecycle: Query Order after newInstance, upgrade and
orderNotify (spec §2.7, §5.1). Tasks only call services.

Transient failures (transport, 5xx, MKT.0999…, §2.9) are retried with exponential backoff and
full jitter (up to 5 s, 10 s, 20 s … capped at 30 min; 10 retries over about an hour, inside
KooGallery's own 3-hour window); business errors are recorded on the row and not retried. Every
HTTP attempt is an `OutboundAttempt` row, written by the outbound client.

Without a broker (the embedded default) the runner (koogallery/outbound/jobs.py,
`koogallery_run_jobs`)
runs the jobs and puts a retried one back in the outbox with the same backoff. Run in-process
otherwise (tests, an operator's action on the embedded default) a failure is only recorded: the
order sweep or the operator fetches again.
"""

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval

from koogallery.outbound import jobs
from koogallery.outbound.client import TransientOutboundError

from . import services as lifecycle
from . import sweep
from .models import Instance, InstanceOrder

MAX_RETRIES = 10
BACKOFF_FACTOR_S = 5
BACKOFF_MAX_S = 1800


def _retry_later(task, exc: TransientOutboundError):
    countdown = get_exponential_backoff_interval(
        factor=BACKOFF_FACTOR_S,
        retries=task.request.retries,
        maximum=BACKOFF_MAX_S,
        full_jitter=True,
    )
    jobs.retry(task, countdown=countdown, exc=exc)


@shared_task(bind=True, acks_late=True, max_retries=MAX_RETRIES)
def fetch_order_details(self, instance_pk: int) -> None:
    """Fill an instance's product, period and buyer from its purchase order."""
    instance = Instance.objects.filter(pk=instance_pk).first()
    if instance is None:
        return
    try:
        lifecycle.refresh_order_details(instance=instance)
    except TransientOutboundError as exc:
        _retry_later(self, exc)


@shared_task(bind=True, acks_late=True, max_retries=MAX_RETRIES)
def fetch_order_event(self, order_pk: int) -> None:
    """Fetch an upgrade or notified order and apply what it changes."""
    order = InstanceOrder.objects.filter(pk=order_pk).select_related("instance").first()
    if order is None:
        return
    try:
        lifecycle.refresh_order_event(order=order)
    except TransientOutboundError as exc:
        _retry_later(self, exc)


@shared_task(ignore_result=True)
def sweep_order_fetches() -> dict:
    """Queue again the Query Order jobs that never ran (instances/sweep.py)."""
    return sweep.sweep_order_fetches()
