"""Reads for licences: what getLicenseAsync, the sweep, the daily licence-code job and admin
look at."""

import functools
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet

from instances.models import Instance
from koogallery.outbound.attempts import OutboundAttempt, OutboundPurpose

from .models import LicenseCode, LicenseCodeStatus, LicenseRequest, RequestState

REQUESTS = LicenseRequest._meta.db_table
INSTANCES = Instance._meta.db_table


# --- getLicenseAsync (raw SQL: the ORM's compiling cost more than these queries, issue 6) ------


class InstanceTerms(NamedTuple):
    """What the §2.8 checks read of an instance (named as `Instance`'s fields)."""

    pk: int
    instance_id: str
    is_test: bool
    charging_mode: str
    state: str
    order_created_at: datetime | None
    expire_at: datetime | None
    linear_value: int | None


_TERMS = InstanceTerms._fields
_REQUEST_FIELDS = tuple(field.attname for field in LicenseRequest._meta.concrete_fields)


def stored_request_or_locked_instance(
    *, instance_id: str, is_test: bool, event_id: str, digest: str
) -> tuple[LicenseRequest | None, InstanceTerms | None]:
    """The request stored for (eventId, fingerprint digest, data set), or else the terms of
    the instance, its row locked until the transaction ends: one query.

    The lock makes new requests of one instance take turns, so the quota count sees every
    licence committed before it (two devices racing for the last seat, §2.8 000900); a repeat
    takes none. The instance is the one the call names (`instances.selectors.named_instance`):
    a debug call sees debug instances only (§2.5), a call without testFlag any (§2.7), and the
    data set of the key is the named instance's (else the call's flag).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _lookup_sql(connection.features.has_select_for_update, is_test),
            [instance_id, event_id, digest, event_id, digest]
            + ([True] if is_test else [instance_id]),
        )
        row = cursor.fetchone()
    split = len(_TERMS)
    if row[split] is not None:
        return _from_row(LicenseRequest, _REQUEST_FIELDS, row[split:]), None
    if row[0] is None:
        return None, None
    return None, InstanceTerms(*_converted(Instance, _TERMS, row[:split]))


def stored_request(*, event_id: str, digest: str, is_test: bool) -> LicenseRequest | None:
    columns = ", ".join(_column(LicenseRequest, name) for name in _REQUEST_FIELDS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {REQUESTS} "  # noqa: S608
            "WHERE event_id = %s AND fingerprint_sha256 = %s AND is_test = %s",
            [event_id, digest, is_test],
        )
        row = cursor.fetchone()
    return None if row is None else _from_row(LicenseRequest, _REQUEST_FIELDS, row)


def licensed_devices(*, instance_pk: int, is_test: bool, digest: str) -> tuple[int, bool]:
    """How many devices hold a licence of the instance (failed and revoked requests do not
    count), and whether the device `digest` is one of them: one query."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(DISTINCT fingerprint_sha256), "  # noqa: S608
            f"COUNT(CASE WHEN fingerprint_sha256 = %s THEN 1 END) FROM {REQUESTS} "
            "WHERE instance_id = %s AND is_test = %s AND state NOT IN (%s, %s)",
            [digest, instance_pk, is_test, RequestState.FAILED.value, RequestState.REVOKED.value],
        )
        used, mine = cursor.fetchone()
    return used, mine > 0


@functools.cache
def _lookup_sql(lock: bool, debug_call: bool) -> str:
    terms = ", ".join(f"i.{_column(Instance, name)}" for name in _TERMS)
    stored = ", ".join(f"r.{_column(LicenseRequest, name)}" for name in _REQUEST_FIELDS)
    key = "event_id = %s AND {0}.fingerprint_sha256 = %s"
    # The data set of the key: a debug call's is debug; any other call's is that of the
    # instance it names (production when it names none).
    data_set = (
        "%s"
        if debug_call
        else f"COALESCE((SELECT n.is_test FROM {INSTANCES} n WHERE n.instance_id = %s), FALSE)"  # noqa: S608
    )
    # The lock sits in the CTE: FOR UPDATE may not name the nullable side of an outer join.
    return (
        f"WITH locked AS (SELECT {terms} FROM {INSTANCES} i "  # noqa: S608
        f"WHERE i.instance_id = %s{' AND i.is_test' if debug_call else ''} AND NOT EXISTS ("
        f"SELECT 1 FROM {REQUESTS} s WHERE s.{key.format('s')} AND s.is_test = i.is_test)"
        f"{' FOR UPDATE' if lock else ''}) "
        f"SELECT locked.*, {stored} FROM (SELECT 1) AS one LEFT JOIN locked ON 1 = 1 "
        f"LEFT JOIN {REQUESTS} r ON r.{key.format('r')} AND r.is_test = {data_set}"
    )


def _column(model, name: str) -> str:
    return model._meta.pk.column if name == "pk" else model._meta.get_field(name).column


def _from_row(model, names: tuple[str, ...], values):
    return model.from_db(connection.alias, names, _converted(model, names, values))


def _converted(model, names: tuple[str, ...], values) -> list:
    """Values of the fields `names` read with a raw cursor, converted as the ORM would
    (SQLite hands back datetimes as text and booleans as integers; PostgreSQL needs none)."""
    key = (connection.ops, model, names)
    plan = _CONVERSIONS.get(key)
    if plan is None:
        plan = _CONVERSIONS[key] = _conversion_plan(model, names)
    out = list(values)
    for index, column, converters in plan:
        if out[index] is not None:
            for convert in converters:
                out[index] = convert(out[index], column, connection)
    return out


# Per database connection (the converters are bound to its `ops`), model and columns.
_CONVERSIONS: dict[tuple, list] = {}


def _conversion_plan(model, names: tuple[str, ...]) -> list:
    plan = []
    for index, name in enumerate(names):
        field = model._meta.pk if name == "pk" else model._meta.get_field(name)
        column = field.get_col(model._meta.db_table)
        converters = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
        if converters:
            plan.append((index, column, converters))
    return plan


# --- the sweep, licence codes, admin -------------------------------------------------------------


def due_request_ids(*, now: datetime, limit: int) -> list[int]:
    """Requests in a non-final state, without a live lease, past due by the sweep's grace.

    Due: a scheduled retry time long gone, or, without one, no change for the grace period
    (never enqueued, message lost, worker killed before it could record anything).
    """
    cutoff = now - timedelta(seconds=settings.LICENSE_SWEEP_AFTER_S)
    return list(
        LicenseRequest.objects.filter(state__in=RequestState.pending())
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
        .filter(
            Q(next_attempt_at__lte=cutoff) | Q(next_attempt_at__isnull=True, updated_at__lte=cutoff)
        )
        .order_by("updated_at")
        .values_list("pk", flat=True)[:limit]
    )


def upload_attempts(request: LicenseRequest) -> QuerySet[OutboundAttempt]:
    """The upload attempts for the request's event (OutboundAttempt subject = eventId)."""
    return OutboundAttempt.objects.filter(
        purpose=OutboundPurpose.LICENSE_UPLOAD, subject=request.event_id[:128]
    ).order_by("started_at", "id")


def license_codes_in_use() -> QuerySet[LicenseCode]:
    """Activated codes KooGallery has not released: the daily query covers these (§5.4)."""
    return LicenseCode.objects.filter(activated_at__isnull=False).exclude(
        status=LicenseCodeStatus.RELEASED
    )
