"""Pushing closed usage records to KooGallery (spec §5.5), in batches of at most 1000.

A push claims due records with one conditional UPDATE (pending → pushed, with a lease), so two
runs at once — two beat runs, or `koogallery_push_usage` during a scheduled one — claim
disjoint sets and each record goes out once. The HTTP call runs outside any transaction (its
attempt rows must survive); the answer is then written in one transaction:

- MKT.0000: accepted; entries of `abnormal_usage_data` (if any) failed, with their reason;
- 5xx, transport errors, MKT.0999, throttling: back to pending with exponential backoff and
  jitter, the same metering_sn next time; the run stops (the next one retries);
- MKT.01xx and MKT.9001: failed, ALERT, and the run stops (a key, a parameter or an instance is
  wrong: more of the same would fail alike); other refusals: failed and ALERT.

An accepted record is never sent again. A record claimed by a worker that died is sent again
(same metering_sn) once its lease expires. Before claiming, records older than
METERING_MAX_AGE_DAYS (21: KooGallery refuses them, MKT.9004) and records of instances known
not to be billed on demand are dropped, with an ALERT.
"""

import logging
import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from instances.models import ChargingMode
from koogallery.outbound.client import OutboundResult
from koogallery.outbound.usage_push import (
    VALUE_MAX_LENGTH,
    UsagePushRecord,
    UsagePushResult,
    push_usage,
    usage_value,
)

from .models import BatchOutcome, PushBatch, PushTrigger, RecordState, UsageRecord

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
# §5.5 project decision: stop and alert on these; a retry cannot fix them.
STOP_CODE_RE = re.compile(r"^MKT\.(?:01\d\d|9001)$")
MAX_CLAIM_RACES = 20
# What a push reads of a claimed record (not the instance's order data).
SENT_FIELDS = (
    "instance__instance_id",
    "hour_start",
    "begin_at",
    "end_at",
    "value",
    "metering_sn",
    "record_time",
    "relate_pkg_instance",
    "attempts",
    "first_pushed_at",
)


@dataclass
class PushReport:
    batches: int = 0
    accepted: int = 0
    failed: int = 0
    retried: int = 0
    dropped: int = 0
    stopped: str = ""  # why the run stopped before pushing everything due

    def __str__(self) -> str:
        text = (
            f"{self.batches} batch(es): {self.accepted} accepted, {self.failed} failed, "
            f"{self.retried} to retry, {self.dropped} dropped"
        )
        return text + (f" (stopped: {self.stopped})" if self.stopped else "")


def alert(message: str, *args: object) -> None:
    """Somebody must look now (the ops log pipeline pages on ALERT, as for AK/SK, §2.9)."""
    logger.error("ALERT usage push: " + message, *args)


def push_due_records(
    *,
    now: datetime | None = None,
    trigger: PushTrigger = PushTrigger.BEAT,
    ignore_backoff: bool = False,
) -> PushReport:
    """Push every due record (see the module doc); returns what happened."""
    started, wall = now or timezone.now(), timezone.now()

    def clock() -> datetime:  # `now` advanced by the time this run has taken
        return started + (timezone.now() - wall)

    report = PushReport()
    report.dropped = _drop_expired(started) + _drop_unbillable(started)
    _warn_waiting(started)
    races = 0
    while True:
        claim = _claim(clock(), trigger, ignore_backoff)
        if claim is None:
            break
        batch, records = claim
        if not records:  # another run took them between our read and our update
            races += 1
            if races > MAX_CLAIM_RACES:
                break
            continue
        report.batches += 1
        stop = _send(batch, records, clock(), report)
        if stop:
            report.stopped = stop
            break
    if report.batches or report.dropped:
        logger.info("usage push: %s", report)
    return report


# --- before claiming -----------------------------------------------------------------------------


def _unsent(now: datetime) -> Q:
    return Q(state=RecordState.PENDING) | Q(state=RecordState.PUSHED, lease_until__lt=now)


@transaction.atomic
def _drop_expired(now: datetime) -> int:
    cutoff = now - timedelta(days=settings.METERING_MAX_AGE_DAYS)
    stale = UsageRecord.objects.filter(_unsent(now), begin_at__lt=cutoff)
    instances = sorted(set(stale.values_list("instance__instance_id", flat=True)[:10]))
    count = stale.update(
        state=RecordState.DROPPED,
        lease_until=None,
        last_error=f"begin_time older than {settings.METERING_MAX_AGE_DAYS} days: KooGallery "
        "refuses it (MKT.9004); never sent",
        updated_at=now,
    )
    if count:
        alert(
            "%s record(s) older than %s days dropped unsent (revenue lost), instances %s",
            count,
            settings.METERING_MAX_AGE_DAYS,
            ", ".join(instances),
        )
    return count


@transaction.atomic
def _drop_unbillable(now: datetime) -> int:
    unbillable = UsageRecord.objects.filter(_unsent(now)).exclude(
        instance__charging_mode__in=[ChargingMode.ON_DEMAND, ChargingMode.UNKNOWN]
    )
    instances = sorted(set(unbillable.values_list("instance__instance_id", flat=True)[:10]))
    count = unbillable.update(
        state=RecordState.DROPPED,
        lease_until=None,
        last_error="the instance is not billed on demand (Query Order): usage not billable",
        updated_at=now,
    )
    if count:
        alert(
            "%s record(s) of instances not billed on demand dropped: %s",
            count,
            ", ".join(instances),
        )
    return count


def _warn_waiting(now: datetime) -> None:
    """Records of instances whose charging mode Query Order has not told yet wait for it."""
    late = now - HOUR - timedelta(minutes=settings.METERING_PUSH_WINDOW_MIN)
    waiting = UsageRecord.objects.filter(
        state=RecordState.PENDING,
        instance__charging_mode=ChargingMode.UNKNOWN,
        hour_start__lt=late,
    )
    instances = sorted(set(waiting.values_list("instance__instance_id", flat=True)[:10]))
    if instances:
        logger.warning(
            "usage push: records of instances %s wait for their order (charging mode unknown): "
            "re-fetch the order in the admin",
            ", ".join(instances),
        )


# --- claiming ------------------------------------------------------------------------------------


def _claim(
    now: datetime, trigger: PushTrigger, ignore_backoff: bool
) -> tuple[PushBatch, list[UsageRecord]] | None:
    """Claim up to METERING_BATCH_SIZE due records; None when nothing is due."""
    due = Q(state=RecordState.PENDING)
    if not ignore_backoff:
        due &= Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    eligible = due | Q(state=RecordState.PUSHED, lease_until__lt=now)
    ids = list(
        UsageRecord.objects.filter(eligible, instance__charging_mode=ChargingMode.ON_DEMAND)
        .order_by("hour_start", "id")
        .values_list("pk", flat=True)[: settings.METERING_BATCH_SIZE]
    )
    if not ids:
        return None
    with transaction.atomic():
        batch = PushBatch.objects.create(trigger=trigger, created_at=now)
        # Conditional: a row another run claimed meanwhile no longer matches (PostgreSQL
        # re-checks the condition after waiting for its lock), so claims never overlap.
        count = UsageRecord.objects.filter(eligible, pk__in=ids).update(
            state=RecordState.PUSHED,
            batch=batch,
            lease_until=now + timedelta(seconds=settings.METERING_PUSH_LEASE_S),
            updated_at=now,
        )
        if not count:
            batch.delete()
            return batch, []
        batch.record_count = count
        batch.save(update_fields=["record_count"])
    records = list(
        UsageRecord.objects.filter(batch=batch, state=RecordState.PUSHED)
        .select_related("instance")
        .only(*SENT_FIELDS)
        .order_by("hour_start", "id")
    )
    return batch, records


# --- sending and recording the answer ------------------------------------------------------------


def _send(batch: PushBatch, records: list[UsageRecord], now: datetime, report: PushReport) -> str:
    """Push one claimed batch and record the answer; the reason to stop the run, or ''."""
    window = timedelta(minutes=settings.METERING_PUSH_WINDOW_MIN)
    late = [r for r in records if r.first_pushed_at is None and now > r.hour_start + HOUR + window]
    if late:
        logger.warning(
            "usage push: %s record(s) first sent after minute %s of the next hour (KooGallery "
            "collects at minute 15), oldest hour %s",
            len(late),
            settings.METERING_PUSH_WINDOW_MIN,
            min(r.hour_start for r in late).strftime("%Y-%m-%dT%H:00Z"),
        )
    unsendable = [r for r in records if not _sendable(r)]
    if unsendable:
        _fail(unsendable, f"usage_value longer than {VALUE_MAX_LENGTH} characters (§5.5)", now)
        report.failed += len(unsendable)
        records = [r for r in records if _sendable(r)]
        if not records:
            return ""
    outcome = push_usage(records=[_push_record(r) for r in records], subject=batch.subject)
    return _record_answer(batch, records, outcome, now, report)


def _sendable(record: UsageRecord) -> bool:
    try:
        usage_value(record.value)
    except ValueError:
        return False
    return True


@transaction.atomic
def _fail(records: list[UsageRecord], error: str, now: datetime) -> None:
    UsageRecord.objects.filter(pk__in=[r.pk for r in records]).update(
        state=RecordState.FAILED, lease_until=None, last_error=error, updated_at=now
    )
    alert("%s record(s) failed before sending: %s", len(records), error)


def _push_record(record: UsageRecord) -> UsagePushRecord:
    return UsagePushRecord(
        instance_id=record.instance.instance_id,
        record_time=record.record_time,
        begin_time=record.begin_at,
        end_time=record.end_at,
        usage_value=record.value,
        metering_sn=record.metering_sn,
        relate_pkg_instance=record.relate_pkg_instance,
    )


def backoff(attempts: int) -> timedelta:
    """Exponential from METERING_RETRY_BASE_S, capped at METERING_RETRY_MAX_S, equal jitter."""
    ceiling = min(
        settings.METERING_RETRY_MAX_S, settings.METERING_RETRY_BASE_S * 2 ** max(attempts - 1, 0)
    )
    return timedelta(seconds=ceiling / 2 + random.uniform(0, ceiling / 2))  # noqa: S311


def _error_text(result: OutboundResult) -> str:
    code = result.result_code or (f"HTTP {result.status_code}" if result.status_code else "")
    code = code or "no answer"
    return (f"{code}: {result.result_msg}" if result.result_msg else code)[:1024]


@transaction.atomic
def _record_answer(
    batch: PushBatch,
    records: list[UsageRecord],
    outcome: UsagePushResult,
    now: datetime,
    report: PushReport,
) -> str:
    result = outcome.result
    code = result.result_code
    # One UPDATE per outcome; a record another run re-claimed (lease expired) is not ours.
    mine = UsageRecord.objects.filter(batch=batch, state=RecordState.PUSHED)
    sent = {
        "attempts": F("attempts") + 1,
        "lease_until": None,
        "last_result_code": code[:32],
        "first_pushed_at": Coalesce("first_pushed_at", Value(now)),
        "updated_at": now,
    }
    listed = [r for r in records if r.metering_sn in outcome.abnormal]
    for record in listed:
        mine.filter(pk=record.pk).update(
            **sent,
            state=RecordState.FAILED,
            last_error=f"abnormal_usage_data: {outcome.abnormal[record.metering_sn]}"[:1024],
        )
    rest = mine.exclude(pk__in=[r.pk for r in listed]) if listed else mine
    report.failed += len(listed)
    stop = ""

    if result.ok and not outcome.unmatched:
        report.accepted += rest.update(
            **sent, state=RecordState.ACCEPTED, accepted_at=now, last_error=""
        )
        batch.outcome = BatchOutcome.PARTIAL if listed else BatchOutcome.ACCEPTED
    elif result.retryable or (listed and not result.ok):
        # Transient, or a refusal naming its records: the others were not taken; send them
        # again (same metering_sn) after the backoff, or at once when only some were refused.
        attempts = max(r.attempts for r in records) + 1
        due = now + backoff(attempts) if result.retryable else now
        report.retried += rest.update(
            **sent, state=RecordState.PENDING, next_attempt_at=due, last_error=_error_text(result)
        )
        batch.outcome = BatchOutcome.PARTIAL if listed else BatchOutcome.RETRY
        if result.retryable:
            stop = f"{_error_text(result)} (retry at {due:%H:%M:%S}Z)"
        elif STOP_CODE_RE.match(code):
            stop = _error_text(result)
    else:
        error = _error_text(result)
        if result.ok:  # abnormal entries we cannot tie to records: nobody knows which failed
            error = (
                f"answer lists {outcome.unmatched} abnormal record(s) naming no record of this "
                "batch: check the seller console (话单管理) before re-pushing"
            )
        report.failed += rest.update(**sent, state=RecordState.FAILED, last_error=error)
        batch.outcome = BatchOutcome.FAILED
        if STOP_CODE_RE.match(code):
            stop = error

    failed = records if batch.outcome == BatchOutcome.FAILED else listed
    if failed:
        alert(
            "batch %s of %s record(s) answered %s; %s record(s) failed, instances %s: re-push "
            "them from the admin once the cause is fixed%s",
            batch.pk,
            len(records),
            _error_text(result),
            len(failed),
            ", ".join(sorted({r.instance.instance_id for r in failed}))[:500],
            "; pushing stopped for this run" if stop else "",
        )
    batch.status_code = result.status_code
    batch.result_code = code[:32]
    batch.result_msg = result.result_msg[:1024]
    batch.finished_at = now
    batch.save()
    return stop
