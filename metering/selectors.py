"""Reads of metering (STYLE.md §2): queryInstance figures, the admin's chart and lists."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count, DecimalField, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from instances.models import ChargingMode, Instance
from instances.selectors import UsageFigure

from .models import CursorName, MeteringCursor, RecordState, UsageEvent, UsageRecord

ZERO = Decimal("0")
CHART_DAYS = 30


def usage_figures(instances: list[Instance]) -> dict[int, list[UsageFigure]]:
    """`usageInfo` of queryInstance (§4.2.2, §5.5), before formatting.

    On-demand: one figure, the cumulative usage of every event recorded so far. Package: one
    figure per billing item related to it (`relatedInstanceId`), the usage of that item since
    the package started and until it ended (released or expired). Statistics as of now.
    """
    now = timezone.now()
    answer: dict[int, list[UsageFigure]] = {}
    on_demand = [i for i in instances if i.charging_mode == ChargingMode.ON_DEMAND]
    if on_demand:
        totals = usage_totals(instances=on_demand)
        for instance in on_demand:
            answer[instance.pk] = [UsageFigure(value=totals[instance.pk], at=now)]
    for package in (i for i in instances if i.charging_mode == ChargingMode.ON_DEMAND_PKG):
        answer[package.pk] = package_figures(package=package, now=now)
    return answer


def package_window(package: Instance, now: datetime) -> tuple[datetime, datetime]:
    ends = [t for t in (package.released_at, package.expire_at, now) if t is not None]
    return package.created_at, min(ends)


def package_figures(*, package: Instance, now: datetime) -> list[UsageFigure]:
    """Used amount per billing item of a package, within the package's validity."""
    items = list(
        Instance.objects.filter(package_instance=package, is_test=package.is_test).order_by(
            "created_at", "id"
        )
    )
    if not items:
        return []
    start, end = package_window(package, now)
    used = usage_totals(instances=items, start=start, end=end)
    return [
        UsageFigure(value=used[item.pk], at=now, related_instance_id=item.instance_id)
        for item in items
    ]


def _hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _hour_ceil(moment: datetime) -> datetime:
    floor = _hour_floor(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


def usage_totals(
    *, instances: list[Instance], start: datetime | None = None, end: datetime | None = None
) -> dict[int, Decimal]:
    """Usage of each instance that occurred in [start, end) (None: unbounded), by pk.

    Closed hours lying wholly in the window count by their record (one row an hour instead of
    every event: a long-lived instance stays cheap to query), the rest by its events. One SQL
    statement, so it reads one snapshot even while the job closes an hour.
    """
    aggregated = (
        MeteringCursor.objects.filter(name=CursorName.AGGREGATED)
        .values_list("position", flat=True)
        .first()
    )
    first_full = _hour_ceil(start) if start is not None else None
    last_full = aggregated
    if end is not None and last_full is not None:
        last_full = min(last_full, _hour_floor(end))
    by_records: Q | None = None
    if last_full is not None and (first_full is None or first_full < last_full):
        by_records = Q(hour_start__lt=last_full)
        if first_full is not None:
            by_records &= Q(hour_start__gte=first_full)
    events = Q()
    if start is not None:
        events &= Q(occurred_at__gte=start)
    if end is not None:
        events &= Q(occurred_at__lt=end)
    amount = DecimalField(max_digits=30, decimal_places=4)

    def total(model, value_field: str, condition: Q):
        rows = (
            model.objects.filter(condition, instance=OuterRef("pk"))
            .order_by()
            .values("instance")
            .annotate(total=Sum(value_field))
            .values("total")
        )
        return Coalesce(Subquery(rows, output_field=amount), Value(ZERO), output_field=amount)

    if by_records is None:
        from_records, from_events = Value(ZERO, output_field=amount), events
    else:
        from_records, from_events = total(UsageRecord, "value", by_records), events & ~by_records
    rows = (
        Instance.objects.filter(pk__in=[i.pk for i in instances])
        .annotate(from_records=from_records, from_events=total(UsageEvent, "quantity", from_events))
        .values_list("pk", "from_records", "from_events")
    )
    totals = {pk: records + events_ for pk, records, events_ in rows}
    return {i.pk: totals.get(i.pk, ZERO) for i in instances}


# --- admin ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartHour:
    hour_start: datetime
    value: Decimal
    state: str  # RecordState, or "" for an hour without usage


def hourly_usage(
    *, instance: Instance, now: datetime | None = None, days: int = CHART_DAYS
) -> list[ChartHour]:
    """Every UTC hour of the last `days` days up to the current one, oldest first.

    Closed hours come from their records; the running hour (and any hour the job has not
    reached yet) from the events, as an open record would show them.
    """
    now = now or timezone.now()
    last = now.replace(minute=0, second=0, microsecond=0)
    first = last - timedelta(hours=days * 24 - 1)
    hours: dict[datetime, ChartHour] = {}
    for record in UsageRecord.objects.filter(
        instance=instance, hour_start__gte=first, hour_start__lte=last
    ).only("hour_start", "value", "state"):
        hours[record.hour_start] = ChartHour(record.hour_start, record.value, record.state)
    unrecorded: dict[datetime, Decimal] = defaultdict(lambda: ZERO)
    for row in (
        UsageEvent.objects.filter(instance=instance, hour_start__gte=first, hour_start__lte=last)
        .exclude(hour_start__in=[h for h, c in hours.items() if c.state != RecordState.OPEN])
        .values("hour_start")
        .annotate(total=Sum("quantity"))
    ):
        unrecorded[row["hour_start"]] = row["total"]
    for hour_start, total in unrecorded.items():
        hours[hour_start] = ChartHour(hour_start, total, RecordState.OPEN)
    return [
        hours.get(first + timedelta(hours=n), ChartHour(first + timedelta(hours=n), ZERO, ""))
        for n in range(days * 24)
    ]


def metered_instances() -> QuerySet[Instance]:
    """Instances billed from usage, and any instance that has reported usage."""
    return Instance.objects.filter(
        Q(charging_mode__in=[ChargingMode.ON_DEMAND, ChargingMode.ON_DEMAND_PKG])
        | Q(usage_events__isnull=False)
    ).distinct()


def state_counts(*, instance: Instance) -> dict[str, int]:
    """How many of the instance's records are in each state."""
    return dict(
        UsageRecord.objects.filter(instance=instance)
        .values("state")
        .annotate(n=Count("id"))
        .values_list("state", "n")
    )
