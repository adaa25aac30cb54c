"""Query Order jobs that never ran are queued again (nothing accepted is ever lost).

newInstance, upgradeInstance and orderNotify commit their row with a Query Order job (an outbox
row, or a publish after the commit: koogallery/outbound/jobs.py). When the broker loses the message
(Redis restarted without persistence), or was down for an on-commit publish, the job never runs
and the row would wait for an operator. `sweep_order_fetches` (beat, every
KOOGALLERY_ORDER_SWEEP_INTERVAL_S) finds them:

- an instance or order whose Query Order has never been attempted (no answer, no error) for
  KOOGALLERY_ORDER_SWEEP_AFTER_S — longer than the job's longest backoff (30 min), so a job that
  is merely waiting is not doubled;
- an instance whose retries ran out on transient failures ("retrying: …" and untouched for as
  long): a new round of retries;

younger than KOOGALLERY_ORDER_SWEEP_MAX_AGE_S (older ones are left to the admin's re-fetch).
Each row swept is marked, so one lost job is queued again once, not at every sweep.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from koogallery.outbound import jobs

from .models import Instance, InstanceOrder
from .services import FETCH_ORDER_DETAILS, FETCH_ORDER_EVENT

logger = logging.getLogger(__name__)

RETRYING = "retrying: "
SWEPT = "queued again by the sweep (the first Query Order job never ran)"


def stale_order_fetches(*, now: datetime | None = None) -> tuple[list[int], list[int]]:
    """Ids of the instances and orders whose Query Order should be queued again."""
    now = now or timezone.now()
    quiet_since = now - timedelta(seconds=settings.KOOGALLERY_ORDER_SWEEP_AFTER_S)
    born_after = now - timedelta(seconds=settings.KOOGALLERY_ORDER_SWEEP_MAX_AGE_S)
    batch = settings.KOOGALLERY_ORDER_SWEEP_BATCH
    instances = (
        Instance.objects.filter(
            order_fetched_at__isnull=True,
            updated_at__lt=quiet_since,
            created_at__gte=born_after,
        )
        .filter(Q(order_fetch_error="") | Q(order_fetch_error__startswith=RETRYING))
        .order_by("pk")
        .values_list("pk", flat=True)[:batch]
    )
    orders = (
        InstanceOrder.objects.filter(
            order_fetched_at__isnull=True,
            order_fetch_error="",
            created_at__lt=quiet_since,
            created_at__gte=born_after,
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:batch]
    )
    return list(instances), list(orders)


def sweep_order_fetches(*, now: datetime | None = None) -> dict[str, int]:
    """Queue the Query Order jobs that were lost; returns how many of each kind."""
    now = now or timezone.now()
    instance_ids, order_ids = stale_order_fetches(now=now)
    with transaction.atomic():
        # Marked first: the next sweep leaves them to this one's jobs.
        Instance.objects.filter(pk__in=instance_ids).update(order_fetch_error=SWEPT, updated_at=now)
        InstanceOrder.objects.filter(pk__in=order_ids).update(order_fetch_error=SWEPT)
    queued = {"instances": 0, "orders": 0}
    for kind, model, task, ids in (
        ("instances", Instance, FETCH_ORDER_DETAILS, instance_ids),
        ("orders", InstanceOrder, FETCH_ORDER_EVENT, order_ids),
    ):
        for pk in ids:
            try:
                jobs.publish(task, pk)
                queued[kind] += 1
            except Exception:
                logger.exception("order sweep: could not queue %s(%s)", task, pk)
                # Still lost: unmarked, so the next sweep tries again.
                model.objects.filter(pk=pk, order_fetch_error=SWEPT).update(order_fetch_error="")
    if instance_ids or order_ids:
        logger.warning(
            "order sweep: %d instance(s) and %d order(s) had no Query Order job; queued again",
            queued["instances"],
            queued["orders"],
        )
    return queued
