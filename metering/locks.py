"""The cursor rows as locks, on PostgreSQL and SQLite alike (see aggregation.py).

PostgreSQL: ingestion holds the `closed` row FOR SHARE (many ingesters at once), the closer
takes it FOR UPDATE, which waits for every ingestion transaction that read the old position to
commit. SQLite has no row locks but one writer at a time: touching the row takes the database's
write lock at once, so a transaction cannot read a position another one is about to move.
"""

from datetime import datetime

from django.db import connection

from .models import CursorName, MeteringCursor

TABLE = MeteringCursor._meta.db_table


def _touch(name: CursorName) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET position = position WHERE name = %s", [name])  # noqa: S608


def _held(name: CursorName) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT position FROM {TABLE} WHERE name = %s FOR SHARE", [name])  # noqa: S608
        return cursor.fetchone()


def shared_position(name: CursorName) -> datetime | None:
    """The cursor's position, held (shared) until the current transaction ends."""
    if connection.vendor == "postgresql":
        # One statement when the row is there (every usage call takes this lock).
        row = _held(name)
        if row is None:
            # The migration creates the rows; a flushed test database may have lost them.
            MeteringCursor.objects.get_or_create(name=name)
            row = _held(name)
        return row[0]
    MeteringCursor.objects.get_or_create(name=name)
    if connection.vendor == "sqlite":
        _touch(name)
    return MeteringCursor.objects.get(name=name).position


def exclusive_cursor(name: CursorName) -> MeteringCursor:
    """The cursor row, locked exclusively until the current transaction ends."""
    if connection.vendor == "sqlite":
        _touch(name)
    return MeteringCursor.objects.select_for_update().get_or_create(name=name)[0]
