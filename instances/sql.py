"""The lifecycle's writes as single PostgreSQL statements (issue 6: few round trips per call).

`services.py` decides what a call changes; on PostgreSQL each write below is one statement
(data-modifying CTEs), elsewhere the ORM does the same writes in several. The SQL is built from
the models' metadata and values are prepared by the fields as Django's own INSERT/UPDATE
prepares them (`pre_save`, `get_db_prep_save`), so a column added to a model needs no change
here. `tests/instances/test_lifecycle_writers.py` runs both ways against each other.

Idempotency is `INSERT … ON CONFLICT DO NOTHING` on the natural keys (STYLE.md §3): a
concurrent twin's INSERT waits for the first transaction and then inserts nothing, so the
caller re-reads (a new statement, which sees the committed row) and answers what is stored.
"""

# ruff: noqa: S608 - SQL text holds identifiers from the models only; values are parameters.

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Model

from instances.models import Instance, InstanceOrder, InstanceTransition
from koogallery.inbound.journal import InboundCall
from koogallery.outbound import jobs

# (from_state, to_state, cause, detail) of one InstanceTransition row.
Trail = tuple[str, str, str, str]

_TRAIL_FIELDS = ("from_state", "to_state", "cause", "detail", "inbound_call", "at")


def enabled() -> bool:
    """Whether the single-statement writes are used (PostgreSQL); tests switch them off."""
    return connection.vendor == "postgresql"


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


@cache
def _insert_fields(model: type[Model]) -> list:
    return [f for f in model._meta.local_concrete_fields if not f.primary_key and not f.generated]


def _insert_params(obj: Model, fields: Sequence) -> list:
    """Values of a new row as Django's INSERT prepares them (auto_now fields set on `obj`)."""
    return [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]


def _update_params(model: type[Model], values: dict[str, Any]) -> list:
    meta = model._meta
    return [meta.get_field(n).get_db_prep_save(v, connection) for n, v in values.items()]


def reserves_journal_ids() -> bool:
    """Whether the call's journal row may be given its id before it is written: the journal
    then inserts it with that id (`InboundCall.WRITES_RESERVED_ID`), so a call that writes
    instance rows costs one journal INSERT, not an early INSERT and a final UPDATE."""
    return getattr(InboundCall, "WRITES_RESERVED_ID", False)


def _journal_cte(reserve: bool) -> str:
    """`journal`: the id the call's rows point to. Reserved from the journal's sequence (the row
    is inserted with it later in this transaction; the foreign keys are checked at commit), or
    given (a saved row, or NULL without one)."""
    if not reserve:
        return "journal AS (SELECT %s::bigint AS id)"
    meta = InboundCall._meta
    return (
        f"journal AS (SELECT nextval(pg_get_serial_sequence('{meta.db_table}', "
        f"'{meta.pk.column}')) AS id)"
    )


def _journal_params(journal: InboundCall | None) -> tuple[bool, list]:
    """Whether the statement reserves the journal row's id, and the `journal` CTE's params.

    Without reservation, an unsaved journal row is saved first so the rows can point to it; the
    pipeline saves it again with the result."""
    if journal is None:
        return False, [None]
    if journal.pk is None:
        if reserves_journal_ids():
            return True, []
        journal.write()
    return False, [journal.pk]


def _journal_id(journal: InboundCall | None, reserved: bool, journal_id: int | None) -> None:
    if reserved:
        journal.pk = journal_id  # still to be inserted: `_state.adding` stays True


@cache
def _trail_sql(source: str, rows: int) -> str:
    """INSERT of `rows` transitions of the instance whose id the CTE `source` returns, in order
    (the audit trail is ordered by (at, id)), naming the call's journal row."""
    meta = InstanceTransition._meta
    columns = [meta.get_field("instance").column] + [
        meta.get_field(n).column for n in _TRAIL_FIELDS
    ]
    one = "(%s::int, %s, %s, %s, %s, %s::timestamptz)"
    values = ", ".join([one] * rows)
    return (
        f"INSERT INTO {_q(meta.db_table)} ({', '.join(_q(c) for c in columns)}) "
        f"SELECT s.id, v.from_state, v.to_state, v.cause, v.detail, journal.id, v.at "
        f"FROM {source} s CROSS JOIN journal CROSS JOIN (VALUES {values}) "
        "AS v(n, from_state, to_state, cause, detail, at) ORDER BY v.n"
    )


def _trail_params(trail: Sequence[Trail], at: datetime) -> list:
    params: list = []
    for n, (from_state, to_state, cause, detail) in enumerate(trail):
        params += [n, str(from_state), str(to_state), cause[:64], detail[:255], at]
    return params


def _values_sql(fields: Sequence) -> str:
    """The VALUES of a new row; its foreign key to the call's journal row is the `journal` id."""
    return ", ".join(
        "(SELECT id FROM journal)" if f.name == "inbound_call" else "%s" for f in fields
    )


def _values_params(obj: Model, fields: Sequence) -> list:
    return _insert_params(obj, [f for f in fields if f.name != "inbound_call"])


@cache
def _insert_instance_sql(rows: int, reserve: bool, queue: bool) -> str:
    meta = Instance._meta
    fields = _insert_fields(Instance)
    return (
        f"WITH {_journal_cte(reserve)}, "
        f"new AS (INSERT INTO {_q(meta.db_table)} ({', '.join(_q(f.column) for f in fields)}) "
        f"VALUES ({_values_sql(fields)}) ON CONFLICT DO NOTHING "
        f"RETURNING {_q(meta.pk.column)} AS id), "
        f"trail AS ({_trail_sql('new', rows)}) "
        f"{', ' + jobs.job_cte('new') if queue else ''} "
        "SELECT (SELECT id FROM new), journal.id FROM journal"
    )


def insert_instance(
    instance: Instance,
    *,
    trail: Sequence[Trail],
    journal: InboundCall | None,
    at: datetime,
    job: str = "",
) -> bool:
    """Insert `instance` and its first transitions in one statement, with the task `job` queued
    for it in the outbox if named; False (nothing written) when a unique key is taken: the
    order line's instance exists, or the id is another's."""
    reserve, params = _journal_params(journal)
    params += _insert_params(instance, _insert_fields(Instance))
    params += _trail_params(trail, at)
    if job:
        params += jobs.job_params(job)
    with connection.cursor() as cursor:
        cursor.execute(_insert_instance_sql(len(trail), reserve, bool(job)), params)
        instance_id, journal_id = cursor.fetchone()
    _journal_id(journal, reserve, journal_id)
    if instance_id is None:
        return False
    instance.pk = instance_id
    instance._state.adding = False
    instance._state.db = connection.alias
    return True


@cache
def _update_instance_sql(names: tuple[str, ...], reserve: bool) -> str:
    meta = Instance._meta
    assignments = ", ".join(f"{_q(meta.get_field(n).column)} = %s" for n in names)
    pk = _q(meta.pk.column)
    return (
        f"WITH {_journal_cte(reserve)}, "
        f"changed AS (UPDATE {_q(meta.db_table)} SET {assignments} "
        f"WHERE {pk} = %s RETURNING {pk} AS id), "
        f"trail AS ({_trail_sql('changed', 1)}) "
        "SELECT journal.id FROM journal"
    )


def update_instance(
    instance: Instance,
    *,
    values: dict[str, Any],
    trail: Trail,
    journal: InboundCall | None,
    at: datetime,
) -> None:
    """Write `values` (field name → value) to the instance's row and one transition; the
    caller sets them on `instance`."""
    reserve, params = _journal_params(journal)
    params += [*_update_params(Instance, values), instance.pk]
    params += _trail_params([trail], at)
    with connection.cursor() as cursor:
        cursor.execute(_update_instance_sql(tuple(values), reserve), params)
        (journal_id,) = cursor.fetchone()
    _journal_id(journal, reserve, journal_id)


@cache
def _order_then_instance_sql(names: tuple[str, ...], reserve: bool) -> str:
    order, meta = InstanceOrder._meta, Instance._meta
    fields = _insert_fields(InstanceOrder)
    assignments = ", ".join(f"{_q(meta.get_field(n).column)} = %s" for n in names)
    pk = _q(meta.pk.column)
    return (
        f"WITH {_journal_cte(reserve)}, "
        f"new AS (INSERT INTO {_q(order.db_table)} ({', '.join(_q(f.column) for f in fields)}) "
        f"VALUES ({_values_sql(fields)}) ON CONFLICT DO NOTHING "
        f"RETURNING {_q(order.pk.column)} AS id), "
        f"changed AS (UPDATE {_q(meta.db_table)} SET {assignments} "
        f"WHERE {pk} = %s AND EXISTS (SELECT 1 FROM new) RETURNING {pk} AS id), "
        f"trail AS ({_trail_sql('changed', 1)}) "
        "SELECT (SELECT id FROM new), journal.id FROM journal"
    )


def insert_order(
    order: InstanceOrder,
    *,
    instance: Instance,
    values: dict[str, Any],
    trail: Trail,
    journal: InboundCall | None,
    at: datetime,
) -> bool:
    """Record `order` once (its natural key) and, only if it is new, write `values` to its
    instance's row and one transition; False (nothing written) for a repeat."""
    reserve, params = _journal_params(journal)
    params += _values_params(order, _insert_fields(InstanceOrder))
    params += [*_update_params(Instance, values), instance.pk]
    params += _trail_params([trail], at)
    with connection.cursor() as cursor:
        cursor.execute(_order_then_instance_sql(tuple(values), reserve), params)
        order_id, journal_id = cursor.fetchone()
    _journal_id(journal, reserve, journal_id)
    order.inbound_call_id = journal.pk if journal else None
    if order_id is None:
        return False
    order.pk = order_id
    order._state.adding = False
    order._state.db = connection.alias
    return True
