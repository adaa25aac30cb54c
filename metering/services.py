"""Writes of metering (STYLE.md §2): recording usage, the hourly job, operator actions.

Recording (`record_usage`) is how our product reports consumption, from Python or through
POST /api/usage. Events are idempotent on `event_id`: a repeat with the same content answers
what is stored; the same id with other content is refused. A batch is all or nothing: one
refused event refuses the batch, with every problem named (index, field, code, message).

The hourly job (`run_metering`, beat every minute, `koogallery_push_usage`) closes finished
hours into records (aggregation.py) and pushes what is due (push.py).
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from instances.models import ChargingMode, Instance, InstanceState

from . import aggregation, push
from .locks import shared_position
from .models import CursorName, PushTrigger, RecordState, UsageEvent, UsageRecord

logger = logging.getLogger(__name__)

# What `_check` reads of an instance.
CHECKED_FIELDS = (
    "instance_id",
    "charging_mode",
    "state",
    "created_at",
    "released_at",
    "frozen_at",
)
QUANTUM = Decimal("0.0001")  # usage_value: at most 4 decimals (§5.5)
MAX_QUANTITY = Decimal("1e15")  # 15 integer digits + 4 decimals fit usage_value String(20)


class UsageErrorCode:
    """Codes of refused events (the API answers them; see views.py)."""

    UNKNOWN_INSTANCE = "unknown_instance"
    PACKAGE_INSTANCE = "package_instance"
    NOT_ON_DEMAND = "not_on_demand"
    RELEASED_INSTANCE = "released_instance"
    FROZEN_INSTANCE = "frozen_instance"
    NOT_POSITIVE = "not_positive"
    TOO_PRECISE = "max_decimal_places"
    TOO_LARGE = "max_value"
    NAIVE_TIME = "naive_time"
    IN_FUTURE = "in_future"
    BEFORE_START = "before_start"
    PERIOD_CLOSED = "period_closed"
    EVENT_ID_CONFLICT = "event_id_conflict"


@dataclass(frozen=True)
class UsageInput:
    event_id: str
    instance_id: str
    quantity: Decimal
    occurred_at: datetime


@dataclass(frozen=True)
class UsageProblem:
    index: int
    event_id: str
    field: str
    code: str
    message: str

    def as_json(self) -> dict:
        return {
            "index": self.index,
            "eventId": self.event_id,
            "field": self.field,
            "code": self.code,
            "message": self.message,
        }


class UsageRejected(Exception):
    """Nothing was recorded; `problems` names each refused event."""

    def __init__(self, problems: list[UsageProblem]):
        self.problems = problems
        first = problems[0]
        super().__init__(f"{len(problems)} event(s) refused; first: {first.message}")


@dataclass
class UsageReceipt:
    """Per input, in order: the input and whether this call stored it (False: a duplicate of a
    stored event with the same content, or of an earlier input of the call)."""

    results: list[tuple[UsageInput, bool]] = field(default_factory=list)

    @property
    def created(self) -> int:
        return sum(1 for _, new in self.results if new)

    @property
    def duplicates(self) -> int:
        return len(self.results) - self.created


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _fmt(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- recording ---------------------------------------------------------------------------------


def record_usage(*, events: Sequence[UsageInput], now: datetime | None = None) -> UsageReceipt:
    """Record usage events, all or none (raises `UsageRejected` naming every refused event).

    Refused: unknown instances, package instances (usage belongs to the on-demand instance,
    §5.5), instances not billed on demand, usage at or after the instance's release or freeze,
    non-positive quantities or more than 4 decimals, times without a zone, in the future
    (beyond METERING_FUTURE_TOLERANCE_S), before the instance started, or in an hour already
    closed (its record is reported; KooGallery cannot take a correction, §5.5).
    """
    now = now or timezone.now()
    if connection.vendor == "postgresql":  # psycopg is then importable
        receipt = _record_at_once(events, now)
        if receipt is not None:
            return receipt
    for attempt in (1, 2):
        try:
            return _record(events, now)
        except IntegrityError:
            # A concurrent twin stored one of these event ids first (STYLE.md §3): on the
            # second pass it is a duplicate (or a conflict) like any stored event.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class _Conflict(Exception):
    """An event id reused with other content: `_record` names it (the writes are undone)."""


_EVENT_TABLE = UsageEvent._meta.db_table
_INSTANCE_TABLE = Instance._meta.db_table
# One statement for the whole call, in event id order (two calls sharing ids wait for each
# other in the same order, never in a cycle). A concurrent twin's uncommitted row makes the
# INSERT wait for its end; then the id is stored (not returned: a duplicate) or free (inserted).
# hour_start is hour_of(occurred_at). The arrays travel in binary where the server binds
# parameters (the default; a quarter of the call's CPU in this process goes to writing them as
# text), as text with client-side binding (DB_PREPARED_STATEMENTS=false), which has no binary.
_INSERT_NEW = f"""
    INSERT INTO {_EVENT_TABLE} (event_id, instance_id, quantity, occurred_at, hour_start,
        received_at)
    SELECT e, i, q, o, date_trunc('hour', o, 'UTC'), %s
    FROM unnest(%b::varchar[], %b::bigint[], %b::numeric[], %b::timestamptz[]) AS u(e, i, q, o)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
"""  # noqa: S608
_SELECT_INSTANCES = f"""
    SELECT id, {", ".join(CHECKED_FIELDS)} FROM {_INSTANCE_TABLE}
    WHERE instance_id = ANY(%s::varchar[])
"""  # noqa: S608
_SELECT_STORED = f"""
    SELECT e.event_id, i.instance_id, e.quantity, e.occurred_at
    FROM {_EVENT_TABLE} e JOIN {_INSTANCE_TABLE} i ON i.id = e.instance_id
    WHERE e.event_id = ANY(%s::varchar[])
"""  # noqa: S608


class _Checked(NamedTuple):
    """What `_check` reads of an instance (CHECKED_FIELDS), and its primary key."""

    pk: int
    instance_id: str
    charging_mode: str
    state: str
    created_at: datetime
    released_at: datetime | None
    frozen_at: datetime | None


def _record_at_once(events: Sequence[UsageInput], now: datetime) -> UsageReceipt | None:
    """PostgreSQL: a call whose every new event passes the checks, stored with one INSERT …
    ON CONFLICT DO NOTHING; the ids it did not insert are compared with what is stored. None
    (nothing written) when an event is refused or an id conflicts: `_record` then answers,
    naming each problem as it always has."""
    try:
        return _insert_checked(events, now)
    except _Conflict:
        return None


@transaction.atomic
def _insert_checked(events: Sequence[UsageInput], now: datetime) -> UsageReceipt | None:
    import psycopg

    closed_until = shared_position(CursorName.CLOSED)
    latest = _latest(now)
    with connection.cursor() as cursor:
        binary = not isinstance(cursor.cursor, psycopg.ClientCursor)
        if binary:
            # Their times in binary: read by psycopg's C loaders (in text, each one goes
            # through Django's time zone loader in Python: three quarters of this read's CPU).
            cursor.cursor.format = psycopg.pq.Format.BINARY
        cursor.execute(_SELECT_INSTANCES, [list({e.instance_id for e in events})])
        instances = {row[1]: _Checked(*row) for row in cursor.fetchall()}
    first: dict[str, UsageInput] = {}
    for index, item in enumerate(events):
        earlier = first.get(item.event_id)
        if earlier is not None:
            if not _same_input(earlier, item):
                return None
            continue
        if _check(index, item, instances.get(item.instance_id), closed_until, latest) is not None:
            return None  # (a stored duplicate is not checked: `_record` tells them apart)
        first[item.event_id] = item
    if not first:
        return UsageReceipt([])
    ordered = sorted(first.values(), key=lambda e: e.event_id)
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_NEW if binary else _INSERT_NEW.replace("%b", "%s"),
            [
                now,
                [e.event_id for e in ordered],
                [instances[e.instance_id].pk for e in ordered],
                [e.quantity for e in ordered],
                [e.occurred_at for e in ordered],
            ],
        )
        inserted = {event_id for (event_id,) in cursor.fetchall()}
        if len(inserted) < len(first):
            cursor.execute(
                _SELECT_STORED, [[event_id for event_id in first if event_id not in inserted]]
            )
            for event_id, instance_id, quantity, occurred_at in cursor.fetchall():
                item = first[event_id]
                if (instance_id, quantity, occurred_at) != (
                    item.instance_id,
                    item.quantity,
                    item.occurred_at,
                ):
                    raise _Conflict  # undoes the INSERT
    results, seen = [], set()
    for item in events:
        results.append((item, item.event_id in inserted and item.event_id not in seen))
        seen.add(item.event_id)
    return UsageReceipt(results)


def _same_input(a: UsageInput, b: UsageInput) -> bool:
    return (a.instance_id, a.quantity, a.occurred_at) == (b.instance_id, b.quantity, b.occurred_at)


@transaction.atomic
def _record(events: Sequence[UsageInput], now: datetime) -> UsageReceipt:
    # Held until commit: the closer cannot move past an hour while we write into it.
    closed_until = shared_position(CursorName.CLOSED)
    stored = {
        e.event_id: e
        for e in UsageEvent.objects.select_related("instance").filter(
            event_id__in={e.event_id for e in events}
        )
    }
    instances = {
        i.instance_id: i
        for i in Instance.objects.filter(instance_id__in={e.instance_id for e in events}).only(
            *CHECKED_FIELDS
        )
    }
    latest = _latest(now)
    problems: list[UsageProblem] = []
    results: list[tuple[UsageInput, bool]] = []
    new: list[UsageEvent] = []
    for index, item in enumerate(events):
        known = stored.get(item.event_id)
        if known is not None:
            if _same(known, item):
                results.append((item, False))
            else:
                problems.append(_conflict(index, item, known))
            continue
        problem = _check(index, item, instances.get(item.instance_id), closed_until, latest)
        if problem is not None:
            problems.append(problem)
            continue
        instance = instances[item.instance_id]
        event = UsageEvent(
            event_id=item.event_id,
            instance_id=instance.pk,
            quantity=item.quantity,
            occurred_at=item.occurred_at,
            hour_start=hour_of(item.occurred_at),
            received_at=now,
        )
        event.instance = instance  # cached: a repeat later in this batch compares with it
        stored[item.event_id] = event  # a repeat later in this batch is its duplicate
        new.append(event)
        results.append((item, True))
    if problems:
        raise UsageRejected(problems)
    UsageEvent.objects.bulk_create(new, batch_size=1000)
    return UsageReceipt(results)


def _same(known: UsageEvent, item: UsageInput) -> bool:
    return (
        known.instance.instance_id == item.instance_id
        and known.quantity == item.quantity
        and known.occurred_at == item.occurred_at
    )


def _conflict(index: int, item: UsageInput, known: UsageEvent) -> UsageProblem:
    return UsageProblem(
        index,
        item.event_id,
        "eventId",
        UsageErrorCode.EVENT_ID_CONFLICT,
        f"eventId: {item.event_id!r} was recorded with other content (instance "
        f"{known.instance.instance_id}, quantity {known.quantity}, occurredAt "
        f"{_fmt(known.occurred_at)}); event ids are never reused",
    )


def _latest(now: datetime) -> datetime:
    """The latest `occurredAt` taken at `now` (once a call: reading a setting is not free)."""
    return now + timedelta(seconds=settings.METERING_FUTURE_TOLERANCE_S)


# Read once (an enum member looked up on its class, per event, shows in a 1,000-event call).
_PACKAGE = ChargingMode.ON_DEMAND_PKG
_ON_DEMAND = (ChargingMode.ON_DEMAND, ChargingMode.UNKNOWN)
_FROZEN = InstanceState.FROZEN


def _check(
    index: int,
    item: UsageInput,
    instance: Instance | _Checked | None,
    closed_until: datetime | None,
    latest: datetime,
) -> UsageProblem | None:
    """The problem with `item`, or None; `latest` is `_latest(now)`."""

    def problem(name: str, code: str, message: str) -> UsageProblem:
        return UsageProblem(index, item.event_id, name, code, f"{name}: {message}")

    if instance is None:
        return problem(
            "instanceId", UsageErrorCode.UNKNOWN_INSTANCE, f"no instance {item.instance_id!r}"
        )
    if instance.charging_mode == _PACKAGE:
        return problem(
            "instanceId",
            UsageErrorCode.PACKAGE_INSTANCE,
            f"{item.instance_id} is a package; report usage on the on-demand instance of the "
            "billing item (§5.5)",
        )
    if instance.charging_mode not in _ON_DEMAND:
        return problem(
            "instanceId",
            UsageErrorCode.NOT_ON_DEMAND,
            f"{item.instance_id} is billed {instance.charging_mode}, not on demand",
        )
    quantity = item.quantity
    if not quantity.is_finite() or quantity <= 0:
        return problem("quantity", UsageErrorCode.NOT_POSITIVE, "must be greater than 0")
    if quantity != quantity.quantize(QUANTUM):
        return problem("quantity", UsageErrorCode.TOO_PRECISE, "at most 4 decimal places")
    if quantity >= MAX_QUANTITY:
        return problem("quantity", UsageErrorCode.TOO_LARGE, f"must be below {MAX_QUANTITY:f}")
    moment = item.occurred_at
    if moment.tzinfo is None:
        return problem("occurredAt", UsageErrorCode.NAIVE_TIME, "needs a UTC offset or Z")
    if moment > latest:
        return problem("occurredAt", UsageErrorCode.IN_FUTURE, f"{_fmt(moment)} is in the future")
    if moment < instance.created_at:
        return problem(
            "occurredAt",
            UsageErrorCode.BEFORE_START,
            f"{_fmt(moment)} is before instance {instance.instance_id} started "
            f"({_fmt(instance.created_at)})",
        )
    if instance.released_at is not None and moment >= instance.released_at:
        return problem(
            "instanceId",
            UsageErrorCode.RELEASED_INSTANCE,
            f"{instance.instance_id} was released at {_fmt(instance.released_at)}",
        )
    if (
        instance.state == _FROZEN
        and instance.frozen_at is not None
        and moment >= instance.frozen_at
    ):
        return problem(
            "instanceId",
            UsageErrorCode.FROZEN_INSTANCE,
            f"{instance.instance_id} is frozen since {_fmt(instance.frozen_at)}",
        )
    if closed_until is not None and moment < closed_until:
        return problem(
            "occurredAt",
            UsageErrorCode.PERIOD_CLOSED,
            f"the hour {_fmt(hour_of(moment))} is closed and reported (hours before "
            f"{_fmt(closed_until)} are); KooGallery takes no second record for it (§5.5)",
        )
    return None


# --- the job -----------------------------------------------------------------------------------


@dataclass
class MeteringReport:
    closed: aggregation.CloseReport
    pushed: push.PushReport

    def __str__(self) -> str:
        return f"{self.closed}; {self.pushed}"


def run_metering(
    *,
    now: datetime | None = None,
    trigger: PushTrigger = PushTrigger.BEAT,
    ignore_backoff: bool = False,
) -> MeteringReport:
    """Close every finished hour, then push what is due (§5.5). Safe to run concurrently.

    `ignore_backoff` pushes pending records whose retry time has not come yet.
    """
    now = now or timezone.now()
    closed = aggregation.close_hours(now=now)
    pushed = push.push_due_records(now=now, trigger=trigger, ignore_backoff=ignore_backoff)
    return MeteringReport(closed, pushed)


# --- operator actions --------------------------------------------------------------------------


@transaction.atomic
def repush_records(*, record_ids: Sequence[int], now: datetime | None = None) -> int:
    """Queue failed records again (same metering_sn); the next push sends them. The count."""
    now = now or timezone.now()
    count = UsageRecord.objects.filter(pk__in=record_ids, state=RecordState.FAILED).update(
        state=RecordState.PENDING, next_attempt_at=None, lease_until=None, updated_at=now
    )
    if count:
        logger.info("%s failed usage record(s) queued for a re-push", count)
    return count
