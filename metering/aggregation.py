"""Closing UTC hours into usage records (spec §5.5: one record per instance and hour).

Two cursors (models.MeteringCursor) make closing exact under concurrency:

1. `closed`: hours before it take no new event. Recording holds the row shared for its whole
   transaction; the closer moves it under an exclusive lock, which waits for every recording
   transaction that read the old position. Once the move commits, every event of the closed
   hours is committed and no other can arrive (a late one is refused: period closed).
2. `aggregated`: hours before it have their final records. One closer at a time holds it while
   it turns the events of [aggregated, closed) into records — value = sum of the hour's events,
   state pending, a fresh metering_sn — and moves it to `closed`, all in one transaction: a
   crash leaves nothing half done, a second job finds nothing to do.

Hours from `closed` on get `open` records with their value so far (the admin shows them); they
are rewritten on every run until their hour closes. A record that has left `open` is never
rewritten: no second record, and no second push, for a period.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Sum

from instances.models import Instance

from .locks import exclusive_cursor
from .models import CursorName, RecordState, UsageEvent, UsageRecord

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
CHUNK = 2000
ANALYZE_AFTER = 5000  # records closed at once (a backlog) before statistics are refreshed
FINAL_FIELDS = [
    "begin_at",
    "end_at",
    "value",
    "event_count",
    "state",
    "metering_sn",
    "record_time",
    "relate_pkg_instance",
    "updated_at",
]
OPEN_FIELDS = ["begin_at", "end_at", "value", "event_count", "updated_at"]


@dataclass
class CloseReport:
    closed_until: datetime | None
    records: int = 0  # records closed by this run (now pending)
    open_records: int = 0  # open records refreshed
    skipped: int = 0  # (instance, hour) already closed: events ignored (should never happen)

    def __str__(self) -> str:
        until = self.closed_until.strftime("%Y-%m-%dT%H:%MZ") if self.closed_until else "-"
        return f"closed until {until}: {self.records} record(s) closed, {self.open_records} open"


def hour_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def close_hours(*, now: datetime) -> CloseReport:
    """Close every hour that ended METERING_CLOSE_DELAY_S before `now` (see the module doc)."""
    target = hour_floor(now - timedelta(seconds=settings.METERING_CLOSE_DELAY_S))
    with transaction.atomic():
        closed = exclusive_cursor(CursorName.CLOSED)
        if closed.position is None or closed.position < target:
            closed.position = target
            closed.save(update_fields=["position"])
        closed_until = closed.position
    report = CloseReport(closed_until)
    with transaction.atomic():
        aggregated = exclusive_cursor(CursorName.AGGREGATED)
        if aggregated.position is None or aggregated.position < closed_until:
            report.records, report.skipped = _close(aggregated.position, closed_until, now)
            aggregated.position = closed_until
            aggregated.save(update_fields=["position"])
        report.open_records = _refresh_open(closed_until, now)
    if report.records >= ANALYZE_AFTER and connection.vendor == "postgresql":
        # The push that follows at once picks due records by state; planned on statistics from
        # before thousands of new rows (autovacuum analyses a minute later at best), that query
        # takes a nested loop per instance. Fresh statistics keep it one index scan.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {UsageRecord._meta.db_table}")
    if report.records:
        logger.info("metering: %s", report)
    return report


def _groups(**hour_filter):
    return (
        UsageEvent.objects.filter(**hour_filter)
        .values("instance_id", "hour_start")
        .annotate(total=Sum("quantity"), count=Count("id"))
        .order_by()
    )


def _instances(ids: set[int]) -> dict[int, Instance]:
    return (
        Instance.objects.select_related("package_instance")
        .only(
            "instance_id",
            "created_at",
            "released_at",
            "frozen_at",
            "package_instance__instance_id",
            "package_instance__released_at",
        )
        .in_bulk(ids)
    )


def period(instance: Instance, hour_start: datetime) -> tuple[datetime, datetime]:
    """begin_time/end_time of an hour: clamped to the instance's start and to its release or
    freeze (§5.5: begin ≥ the resource's start, end ≤ its close time, begin ≤ end)."""
    begin = max(hour_start, instance.created_at)
    stops = [t for t in (instance.released_at, instance.frozen_at) if t is not None]
    end = min([hour_start + HOUR, *stops])
    return begin, max(begin, end)


def _package(instance: Instance, begin: datetime) -> str:
    """`relate_pkg_instance` (§5.5, stop-before-excess packages only: a setting)."""
    package = instance.package_instance
    if not settings.KOOGALLERY_USAGE_RELATE_PACKAGE or package is None:
        return ""
    if package.released_at is not None and package.released_at <= begin:
        return ""
    return package.instance_id


def _close(start: datetime | None, end: datetime, now: datetime) -> tuple[int, int]:
    hour_filter = {"hour_start__lt": end}
    if start is not None:
        hour_filter["hour_start__gte"] = start
    groups = list(_groups(**hour_filter))
    done = set(
        UsageRecord.objects.filter(**hour_filter)
        .exclude(state=RecordState.OPEN)
        .values_list("instance_id", "hour_start")
    )
    instances = _instances({g["instance_id"] for g in groups})
    records, skipped = [], 0
    for group in groups:
        if (group["instance_id"], group["hour_start"]) in done:
            # Cannot happen while the cursors only move forward; if someone moved them back,
            # the reported record stands (KooGallery takes no correction, §5.5).
            skipped += 1
            logger.error(
                "ALERT metering: events of instance pk %s in %s ignored: that hour's record was "
                "closed before (were the metering cursors moved back?)",
                group["instance_id"],
                group["hour_start"],
            )
            continue
        instance = instances[group["instance_id"]]
        begin, end_at = period(instance, group["hour_start"])
        records.append(
            UsageRecord(
                instance_id=group["instance_id"],
                hour_start=group["hour_start"],
                begin_at=begin,
                end_at=end_at,
                value=group["total"],
                event_count=group["count"],
                state=RecordState.PENDING,
                # Fixed now, before any send; every retry repeats it (§5.5).
                metering_sn=uuid.uuid4().hex,
                record_time=now,
                relate_pkg_instance=_package(instance, begin),
                updated_at=now,
            )
        )
    _upsert(records, FINAL_FIELDS)
    return len(records), skipped


def _refresh_open(closed_until: datetime, now: datetime) -> int:
    groups = list(_groups(hour_start__gte=closed_until))
    instances = _instances({g["instance_id"] for g in groups})
    records = []
    for group in groups:
        begin, end_at = period(instances[group["instance_id"]], group["hour_start"])
        records.append(
            UsageRecord(
                instance_id=group["instance_id"],
                hour_start=group["hour_start"],
                begin_at=begin,
                end_at=end_at,
                value=group["total"],
                event_count=group["count"],
                state=RecordState.OPEN,
                updated_at=now,
            )
        )
    _upsert(records, OPEN_FIELDS)
    return len(records)


def _upsert(records: list[UsageRecord], fields: list[str]) -> None:
    for index in range(0, len(records), CHUNK):
        UsageRecord.objects.bulk_create(
            records[index : index + CHUNK],
            update_conflicts=True,
            unique_fields=["instance", "hour_start"],
            update_fields=fields,
        )
