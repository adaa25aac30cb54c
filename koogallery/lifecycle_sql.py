"""The lifecycle's writes as single PostgreSQL statements (issue 6: few round trips per call).

`lifecycle.py` decides what a call changes; on PostgreSQL each write below is one statement
(data-modifying CTEs), elsewhere the ORM does the same writes in several. The SQL is built from
the models' metadata and values are prepared by the fields as Django's own INSERT/UPDATE
prepares them (`pre_save`, `get_db_prep_save`), so a column added to a model needs no change
here. `tests/test_lifecycle_writers.py` runs both ways against each other.

Idempotency is `INSERT … ON CONFLICT DO NOTHING` on the natural keys (STYLE.md §3): a
concurrent twin's INSERT waits for the first transaction and then inserts nothing, so the
caller re-reads (a new statement, which sees the committed row) and answers what is stored.
"""

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Model

from .instances import Instance, InstanceOrder, InstanceTransition

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


@cache
def _trail_sql(source: str, rows: int) -> str:
    """INSERT of `rows` transitions of the instance whose id the CTE `source` returns, in order
    (the audit trail is ordered by (at, id))."""
    meta = InstanceTransition._meta
    columns = [meta.get_field("instance").column] + [
        meta.get_field(n).column for n in _TRAIL_FIELDS
    ]
    one = "(%s::int, %s, %s, %s, %s, %s::bigint, %s::timestamptz)"
    values = ", ".join([one] * rows)
    return (
        f"INSERT INTO {_q(meta.db_table)} ({', '.join(_q(c) for c in columns)}) "  # noqa: S608
        f"SELECT s.id, v.from_state, v.to_state, v.cause, v.detail, v.call_id, v.at "
        f"FROM {source} s CROSS JOIN (VALUES {values}) "
        "AS v(n, from_state, to_state, cause, detail, call_id, at) ORDER BY v.n"
    )


def _trail_params(trail: Sequence[Trail], inbound_call_id: int | None, at: datetime) -> list:
    params: list = []
    for n, (from_state, to_state, cause, detail) in enumerate(trail):
        params += [n, from_state, to_state, cause[:64], detail[:255], inbound_call_id, at]
    return params


@cache
def _insert_instance_sql(rows: int) -> str:
    meta = Instance._meta
    columns = ", ".join(_q(f.column) for f in _insert_fields(Instance))
    placeholders = ", ".join(["%s"] * len(_insert_fields(Instance)))
    return (
        f"WITH new AS (INSERT INTO {_q(meta.db_table)} ({columns}) "  # noqa: S608
        f"VALUES ({placeholders}) ON CONFLICT DO NOTHING RETURNING {_q(meta.pk.column)} AS id), "
        f"trail AS ({_trail_sql('new', rows)}) "
        "SELECT id FROM new"
    )


def insert_instance(
    instance: Instance, *, trail: Sequence[Trail], inbound_call_id: int | None, at: datetime
) -> bool:
    """Insert `instance` and its first transitions in one statement; False (nothing written)
    when a unique key is taken: the order line's instance exists, or the id is another's."""
    params = _insert_params(instance, _insert_fields(Instance))
    params += _trail_params(trail, inbound_call_id, at)
    with connection.cursor() as cursor:
        cursor.execute(_insert_instance_sql(len(trail)), params)
        row = cursor.fetchone()
    if row is None:
        return False
    instance.pk = row[0]
    instance._state.adding = False
    instance._state.db = connection.alias
    return True


@cache
def _update_instance_sql(names: tuple[str, ...]) -> str:
    meta = Instance._meta
    assignments = ", ".join(f"{_q(meta.get_field(n).column)} = %s" for n in names)
    return (
        f"WITH changed AS (UPDATE {_q(meta.db_table)} SET {assignments} "  # noqa: S608
        f"WHERE {_q(meta.pk.column)} = %s RETURNING {_q(meta.pk.column)} AS id) "
        f"{_trail_sql('changed', 1)}"
    )


def update_instance(
    instance: Instance,
    *,
    values: dict[str, Any],
    trail: Trail,
    inbound_call_id: int | None,
    at: datetime,
) -> None:
    """Write `values` (field name → value) to the instance's row and one transition; the
    caller sets them on `instance`."""
    params = [*_update_params(Instance, values), instance.pk]
    params += _trail_params([trail], inbound_call_id, at)
    with connection.cursor() as cursor:
        cursor.execute(_update_instance_sql(tuple(values)), params)


@cache
def _order_then_instance_sql(names: tuple[str, ...]) -> str:
    order, meta = InstanceOrder._meta, Instance._meta
    columns = ", ".join(_q(f.column) for f in _insert_fields(InstanceOrder))
    placeholders = ", ".join(["%s"] * len(_insert_fields(InstanceOrder)))
    assignments = ", ".join(f"{_q(meta.get_field(n).column)} = %s" for n in names)
    pk = _q(meta.pk.column)
    return (
        f"WITH new AS (INSERT INTO {_q(order.db_table)} ({columns}) "  # noqa: S608
        f"VALUES ({placeholders}) ON CONFLICT DO NOTHING RETURNING {_q(order.pk.column)} AS id), "
        f"changed AS (UPDATE {_q(meta.db_table)} SET {assignments} "
        f"WHERE {pk} = %s AND EXISTS (SELECT 1 FROM new) RETURNING {pk} AS id), "
        f"trail AS ({_trail_sql('changed', 1)}) "
        "SELECT id FROM new"
    )


def insert_order(
    order: InstanceOrder,
    *,
    instance: Instance,
    values: dict[str, Any],
    trail: Trail,
    inbound_call_id: int | None,
    at: datetime,
) -> bool:
    """Record `order` once (its natural key) and, only if it is new, write `values` to its
    instance's row and one transition; False (nothing written) for a repeat."""
    params = _insert_params(order, _insert_fields(InstanceOrder))
    params += [*_update_params(Instance, values), instance.pk]
    params += _trail_params([trail], inbound_call_id, at)
    with connection.cursor() as cursor:
        cursor.execute(_order_then_instance_sql(tuple(values)), params)
        row = cursor.fetchone()
    if row is None:
        return False
    order.pk = row[0]
    order._state.adding = False
    order._state.db = connection.alias
    return True
