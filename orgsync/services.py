"""Every write to departments: singleOrgSync and allOrgSync (spec §2.6, §4.1.4, §4.1.5).

Both take the tenant's row lock first (as `ensure_tenant(lock=True)`), so a full and an
incremental sync of one tenant never interleave while other tenants proceed in parallel.
Refusals raise `InvalidParam` before the first write; the caller's transaction rolls back
whatever the call did anyway (spec §2.4).

An incremental change is a few statements in raw SQL (the ORM's compiling cost more than the
queries, issue 6): lock the tenant; read the department and its new parent's ancestry
(O(depth)); write, in one statement on PostgreSQL (data-modifying CTEs; two for a modify), in
a few elsewhere. On PostgreSQL the usual add, of a new department no child waits for, skips
the read: two statements. A move of a subtree of any size is one UPDATE (adjacency list).

Late and replayed calls (spec §2.3) are ordered by the call's time (`call_time`, None for an
untimed write): a department keeps the time of the call that last wrote it, a deleted code the
time of its delete (`RemovedDepartment`), the tenant the time of its last department change
(`org_call_time`) and of its last allOrgSync (`org_snapshot_time`, which restated every
department). A singleOrgSync older than its department's time, its code's delete or the last
allOrgSync writes nothing; an allOrgSync older than the last department change writes nothing.
The tenant's row lock, taken first, makes each comparison and its write one step.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from koogallery.protocol.resultcodes import InvalidParam
from tenants.models import SyncFlag, Tenant, TenantUser
from tenants.services import SyncResult, ensure_tenant

from . import snapshot, writers
from .models import Department, RemovedDepartment
from .selectors import department_and_ancestors
from .serializers import OrgItem


@dataclass
class SnapshotResult:
    """What an allOrgSync did, for logs and the benchmark."""

    tenant: Tenant
    created: int
    updated: int
    deleted: int
    unchanged: int
    stale: int = 0  # departments listed by a call older than the last department change


def _mark_synced(tenant: Tenant, now, call_time: datetime | None, digest: str | None) -> None:
    """The snapshot restated every department at `call_time`: it is the tenant's last
    department change and its last snapshot, and the codes deleted before it need no time.
    `digest` (None: none) stands for the departments until another change clears it."""
    digest = digest or ""
    if call_time is None:
        Tenant.objects.filter(pk=tenant.pk).update(org_synced_at=now, org_snapshot_digest=digest)
        tenant.org_synced_at, tenant.org_snapshot_digest = now, digest
        return
    Tenant.objects.filter(pk=tenant.pk).update(
        org_synced_at=now,
        org_call_time=call_time,
        org_snapshot_time=call_time,
        org_snapshot_digest=digest,
    )
    tenant.org_synced_at, tenant.org_call_time, tenant.org_snapshot_time = now, call_time, call_time
    tenant.org_snapshot_digest = digest
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {REMOVED} WHERE tenant_id = %s", [tenant.pk])  # noqa: S608


# --- singleOrgSync ---------------------------------------------------------------------------
# Every statement names the tenant (STYLE.md §7).
DEPARTMENTS = Department._meta.db_table
USERS = TenantUser._meta.db_table
TENANTS = Tenant._meta.db_table
REMOVED = RemovedDepartment._meta.db_table
WRITERS = ("postgresql", "portable")
_LATER = "later"  # a digest not worked out yet (a real one is 64 hex digits, or None)

# The fields of the department a singleOrgSync returns; its timestamps are deferred.
_FIELDS = ("id", "tenant_id", "org_code", "org_name", "parent_code", "parent_id")


def default_single_writer() -> str:
    return "postgresql" if connection.vendor == "postgresql" else "portable"


def single_org_sync(
    *,
    tenant_id: str,
    is_test: bool,
    org_code: str,
    flag: SyncFlag,
    org_name: str = "",
    parent_code: str | None = None,
    writer: str | None = None,
    call_time: datetime | None = None,
) -> SyncResult:
    """Apply one department change; returns the department as `row` (None after a delete),
    with its timestamps deferred, or `stale` 1 when a newer call wrote the department (§2.3).

    `parent_code` None keeps the current parent (a rename need not repeat it), "" means top
    level. A delete of an unknown code succeeds (repeated deletes must, §4.1). `writer` chooses
    how rows are written ("postgresql" or "portable"; default by database).

    Atomic, without a savepoint: a refusal (`InvalidParam`) is raised before the first write,
    so it leaves the caller's transaction as it was (the pipeline rolls it back anyway), and
    the savepoint's two round trips are saved.
    """
    args = (tenant_id, is_test, org_code, flag, org_name, parent_code, call_time)
    writer = writer or default_single_writer()
    if writer not in WRITERS:  # pragma: no cover - programming error
        raise ValueError(f"unknown writer {writer!r}")
    if connection.in_atomic_block:
        return _single_org_sync(*args, writer)
    with transaction.atomic():
        return _single_org_sync(*args, writer)


def _single_org_sync(
    tenant_id: str,
    is_test: bool,
    org_code: str,
    flag: SyncFlag,
    org_name: str,
    parent_code: str | None,
    call_time: datetime | None,
    writer: str,
) -> SyncResult:
    if flag != SyncFlag.DELETE and parent_code == org_code:
        raise InvalidParam(f"parentCode: {org_code} cannot be its own parent")
    tenant_pk, snapshot_time = _lock_tenant(tenant_id, is_test)
    if call_time is not None and snapshot_time is not None and call_time < snapshot_time:
        return SyncResult(stale=1)  # a later allOrgSync restated this department
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    at = Stamp(now, tenant_pk, call_time)
    with connection.cursor() as cursor:
        if flag == SyncFlag.ADD and writer == "postgresql":
            added = _add_postgresql(cursor, at, org_code, org_name, parent_code or "")
            if added is not None:
                return SyncResult(row=added, written=1)
        if call_time is not None and _written_later(cursor, at, org_code):
            return SyncResult(stale=1)
        if flag == SyncFlag.DELETE:
            _delete(cursor, writer, at, org_code)
            return SyncResult(written=1)
        department = _upsert(cursor, writer, at, org_code, org_name, parent_code)
        return SyncResult(row=department, written=1)


@dataclass
class Stamp:
    """When a department change is written: the server's time (adapted for the database), the
    locked tenant, and the call's time (None for an untimed write)."""

    now: object
    tenant_pk: int
    call_time: datetime | None

    @property
    def time(self):
        """The call time as the database stores it."""
        if self.call_time is None:
            return None
        return connection.ops.adapt_datetimefield_value(self.call_time)

    def mark_synced(self) -> tuple[str, list]:
        """The tenant's last department sync (server time) and last department change (the
        latest call time applied), as an UPDATE and its parameters."""
        if self.call_time is None:
            return _MARK_SYNCED, [self.now, self.tenant_pk]
        return _MARK_CHANGED, [self.now, self.time, self.time, self.tenant_pk]


def _written_later(cursor, at: Stamp, org_code: str) -> bool:
    """A call newer than this one wrote the department, or deleted its code (§2.3)."""
    cursor.execute(
        f"SELECT EXISTS (SELECT 1 FROM {DEPARTMENTS} WHERE tenant_id = %s AND org_code = %s "  # noqa: S608
        f"AND call_time > %s) OR EXISTS (SELECT 1 FROM {REMOVED} WHERE tenant_id = %s "
        "AND org_code = %s AND call_time > %s)",
        [at.tenant_pk, org_code, at.time, at.tenant_pk, org_code, at.time],
    )
    return bool(cursor.fetchone()[0])


def _aware(value) -> datetime | None:
    """A time read with a raw cursor: SQLite hands back the stored text (UTC)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value


def _lock_tenant(tenant_id: str, is_test: bool) -> tuple[int, datetime | None]:
    """The tenant's primary key and last allOrgSync time, its row locked until the transaction
    ends (as `ensure_tenant(lock=True)`, which creates a tenant that does not exist yet)."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, org_snapshot_time FROM {TENANTS} "  # noqa: S608
            f"WHERE tenant_id = %s AND is_test = %s{lock}",
            [tenant_id, is_test],
        )
        row = cursor.fetchone()
    if row is not None:
        return row[0], _aware(row[1])
    tenant = ensure_tenant(tenant_id=tenant_id, is_test=is_test, lock=True)
    return tenant.pk, tenant.org_snapshot_time


def _upsert(cursor, writer, at: Stamp, org_code, org_name, parent_code) -> Department:
    """Add or modify (rename and/or move) one department of a locked tenant."""
    tenant_pk = at.tenant_pk
    existing, ancestors = department_and_ancestors(
        tenant_pk=tenant_pk, org_code=org_code, parent_code=parent_code
    )
    if parent_code is None:
        parent_code = existing[3] if existing else ""
    if existing is not None and parent_code == existing[3]:
        parent_id = existing[4]  # not moving: no ancestry to check
    elif parent_code:
        parent_id = _parent_id(org_code, parent_code, ancestors)
    else:
        parent_id = None

    if existing is None:
        pk = (_insert_postgresql if writer == "postgresql" else _insert_portable)(
            cursor, at, org_code, org_name, parent_code, parent_id
        )
    else:
        pk = existing[0]
        changed = existing[2:] != (org_name, parent_code, parent_id)
        _update(cursor, at, pk, org_name, parent_code, parent_id, changed)
    return Department.from_db(
        connection.alias, _FIELDS, (pk, tenant_pk, org_code, org_name, parent_code, parent_id)
    )


def _parent_id(org_code: str, parent_code: str, ancestors: list[tuple]) -> int | None:
    """The id of the parent to link, or None if it has not arrived; refuses a move into one's
    own subtree.

    `ancestors` are the new parent and its ancestors as read (in any order). The department
    would become its own ancestor if it is on that path, or if the path ends at an orphan
    waiting for it (a child that arrived before its parent is linked when the parent comes).
    """
    by_id = {row[0]: row for row in ancestors}
    parent = next((row for row in ancestors if row[1] == parent_code), None)
    if parent is None:
        return None
    node, seen = parent, set()
    while node[1] != org_code:
        seen.add(node[0])
        above = by_id.get(node[4])
        if above is None or above[0] in seen:  # node is the top of the path
            if node[4] is None and node[3] == org_code:
                break  # an orphan waiting for this department
            return parent[0]
        node = above
    raise InvalidParam(
        f"parentCode: {parent_code} is inside the subtree of {org_code} "
        "(a department cannot move under its own descendant)"
    )


_INSERT = (
    f"INSERT INTO {DEPARTMENTS} (tenant_id, org_code, org_name, parent_code, parent_id, "  # noqa: S608
    "call_time, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
)
# Every singleOrgSync write ends with one of these, which also clear the digest of the last
# allOrgSync: the departments are no longer that snapshot (an identical one must be applied).
_MARK_SYNCED = (
    f"UPDATE {TENANTS} SET org_synced_at = %s, org_snapshot_digest = '' WHERE id = %s"  # noqa: S608
)
# The same, keeping the latest call time applied to the tenant's departments.
_MARK_CHANGED = (
    f"UPDATE {TENANTS} SET org_synced_at = %s, org_snapshot_digest = '', "  # noqa: S608
    "org_call_time = CASE "
    "WHEN org_call_time IS NULL OR org_call_time < %s THEN %s ELSE org_call_time END "
    "WHERE id = %s"
)


def _add_postgresql(cursor, at: Stamp, org_code, org_name, parent_code) -> Department | None:
    """An add of a department that is new, whose code no newer call deleted, and that no
    child waits for (the usual add), in one statement without reading first; None, having
    written nothing, for any other add.

    Such a department cannot close a cycle (a cycle through it would need a descendant, and it
    has none), so it is inserted linked to its parent if present, with its waiting users and
    the tenant's sync time.
    """
    tenant_pk = at.tenant_pk
    mark_synced, mark_params = at.mark_synced()
    cursor.execute(
        f"WITH parent AS (SELECT id FROM {DEPARTMENTS} WHERE tenant_id = %s AND org_code = %s), "  # noqa: S608
        f"new AS (INSERT INTO {DEPARTMENTS} (tenant_id, org_code, org_name, parent_code, "
        "parent_id, call_time, created_at, updated_at) "
        "SELECT %s, %s, %s, %s, (SELECT id FROM parent), %s::timestamptz, %s, %s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {DEPARTMENTS} WHERE tenant_id = %s "
        "AND parent_id IS NULL AND parent_code = %s) "
        f"AND NOT EXISTS (SELECT 1 FROM {REMOVED} WHERE tenant_id = %s AND org_code = %s "
        "AND call_time > %s::timestamptz) "
        "ON CONFLICT (tenant_id, org_code) DO NOTHING RETURNING id, parent_id), "
        f"members AS (UPDATE {USERS} u SET department_id = new.id FROM new"
        " WHERE u.tenant_id = %s AND u.department_id IS NULL AND u.org_code = %s), "
        f"synced AS ({mark_synced} AND EXISTS (SELECT FROM new)) "
        "SELECT id, parent_id FROM new",
        [
            *(tenant_pk, parent_code),
            *(tenant_pk, org_code, org_name, parent_code, at.call_time, at.now, at.now),
            *(tenant_pk, org_code),
            *(tenant_pk, org_code, at.call_time),
            *(tenant_pk, org_code),
            *mark_params,
        ],
    )
    row = cursor.fetchone()
    if row is None:
        return None
    pk, parent_id = row
    return Department.from_db(
        connection.alias, _FIELDS, (pk, tenant_pk, org_code, org_name, parent_code, parent_id)
    )


def _insert_postgresql(cursor, at: Stamp, org_code, org_name, parent_code, parent_id) -> int:
    """The new row, the children and users that named its code before it existed (§2.6), and
    the tenant's sync time: one statement."""
    mark_synced, mark_params = at.mark_synced()
    cursor.execute(
        f"WITH new AS ({_INSERT}), "  # noqa: S608
        f"children AS (UPDATE {DEPARTMENTS} SET parent_id = (SELECT id FROM new), updated_at = %s"
        " WHERE tenant_id = %s AND parent_id IS NULL AND parent_code = %s), "
        f"members AS (UPDATE {USERS} SET department_id = (SELECT id FROM new)"
        " WHERE tenant_id = %s AND department_id IS NULL AND org_code = %s), "
        f"synced AS ({mark_synced}) "
        "SELECT id FROM new",
        [
            *(at.tenant_pk, org_code, org_name, parent_code, parent_id, at.time, at.now, at.now),
            *(at.now, at.tenant_pk, org_code),
            *(at.tenant_pk, org_code),
            *mark_params,
        ],
    )
    return cursor.fetchone()[0]


def _insert_portable(cursor, at: Stamp, org_code, org_name, parent_code, parent_id) -> int:
    tenant_pk, now = at.tenant_pk, at.now
    cursor.execute(
        _INSERT, [tenant_pk, org_code, org_name, parent_code, parent_id, at.time, now, now]
    )
    pk = cursor.fetchone()[0]
    # Children and users that named this code before it existed (§2.6).
    cursor.execute(
        f"UPDATE {DEPARTMENTS} SET parent_id = %s, updated_at = %s "  # noqa: S608
        "WHERE tenant_id = %s AND parent_id IS NULL AND parent_code = %s",
        [pk, now, tenant_pk, org_code],
    )
    cursor.execute(
        f"UPDATE {USERS} SET department_id = %s "  # noqa: S608
        "WHERE tenant_id = %s AND department_id IS NULL AND org_code = %s",
        [pk, tenant_pk, org_code],
    )
    cursor.execute(*at.mark_synced())
    return pk


def _update(cursor, at: Stamp, pk, org_name, parent_code, parent_id, changed) -> None:
    """Rename and/or move an existing department (a subtree moves with its root: one row);
    an unchanged one is not written (a repeated call changes nothing, not even updated_at),
    but a newer call's time is kept, so that an older change arriving later stays unapplied."""
    if changed:
        cursor.execute(
            f"UPDATE {DEPARTMENTS} SET org_name = %s, parent_code = %s, parent_id = %s, "  # noqa: S608
            "call_time = COALESCE(%s, call_time), updated_at = %s WHERE tenant_id = %s AND id = %s",
            [org_name, parent_code, parent_id, at.time, at.now, at.tenant_pk, pk],
        )
    elif at.call_time is not None:
        cursor.execute(
            f"UPDATE {DEPARTMENTS} SET call_time = %s WHERE tenant_id = %s AND id = %s "  # noqa: S608
            "AND (call_time IS NULL OR call_time < %s)",
            [at.time, at.tenant_pk, pk, at.time],
        )
    cursor.execute(*at.mark_synced())


_REMOVE_CODE = (
    f"INSERT INTO {REMOVED} (tenant_id, org_code, call_time) VALUES (%s, %s, %s) "  # noqa: S608
    "ON CONFLICT (tenant_id, org_code) DO UPDATE SET call_time = EXCLUDED.call_time"
)


def _delete(cursor, writer, at: Stamp, org_code) -> None:
    """Remove one department: its children become root orphans (their `parent_code` kept, so
    they are relinked if it comes back) and its users unassigned (their `org_code` kept). The
    code keeps the delete's time (`RemovedDepartment`), so an older add arriving later does not
    bring it back."""
    tenant_pk, now = at.tenant_pk, at.now
    mark_synced, mark_params = at.mark_synced()
    if at.call_time is not None:
        cursor.execute(_REMOVE_CODE, [tenant_pk, org_code, at.time])
    if writer == "postgresql":
        cursor.execute(
            f"WITH gone AS (DELETE FROM {DEPARTMENTS} WHERE tenant_id = %s AND org_code = %s "  # noqa: S608
            "RETURNING id), "
            f"children AS (UPDATE {DEPARTMENTS} c SET parent_id = NULL, updated_at = %s FROM gone"
            " WHERE c.tenant_id = %s AND c.parent_id = gone.id), "
            f"members AS (UPDATE {USERS} u SET department_id = NULL FROM gone"
            " WHERE u.tenant_id = %s AND u.org_code = %s AND u.department_id = gone.id), "
            f"synced AS ({mark_synced}) "
            "SELECT 1",
            [tenant_pk, org_code, now, tenant_pk, tenant_pk, org_code, *mark_params],
        )
        return
    cursor.execute(
        f"SELECT id FROM {DEPARTMENTS} WHERE tenant_id = %s AND org_code = %s",  # noqa: S608
        [tenant_pk, org_code],
    )
    row = cursor.fetchone()
    if row is not None:
        cursor.execute(
            f"UPDATE {DEPARTMENTS} SET parent_id = NULL, updated_at = %s "  # noqa: S608
            "WHERE tenant_id = %s AND parent_id = %s",
            [now, tenant_pk, row[0]],
        )
        cursor.execute(
            f"UPDATE {USERS} SET department_id = NULL "  # noqa: S608
            "WHERE tenant_id = %s AND org_code = %s AND department_id = %s",
            [tenant_pk, org_code, row[0]],
        )
        cursor.execute(
            f"DELETE FROM {DEPARTMENTS} WHERE tenant_id = %s AND id = %s",  # noqa: S608
            [tenant_pk, row[0]],
        )
    cursor.execute(mark_synced, mark_params)


# --- allOrgSync ------------------------------------------------------------------------------
@transaction.atomic
def all_org_sync(
    *,
    tenant_id: str,
    is_test: bool,
    departments: list[OrgItem],
    writer: str | None = None,
    call_time: datetime | None = None,
) -> SnapshotResult:
    """Make the tenant's departments equal the snapshot (§2.6): unchanged rows are not written,
    kept departments keep their primary key (users stay linked), absent ones are removed.

    A snapshot older than the tenant's last department change (§2.3) writes nothing; every
    department it lists counts as stale. A snapshot identical to the last one applied, with no
    department change since (the tenant's `org_snapshot_digest`), is neither read nor diffed:
    only its time is recorded, as the full diff would (issue 17); any other snapshot of a tenant
    that has departments is diffed and checked for cycles from the items it adds or edits
    (`_resync_plan`). `writer` chooses how rows are written ("postgresql" or "portable"; default
    by database).
    """
    tenant = ensure_tenant(tenant_id=tenant_id, is_test=is_test, lock=True)
    # The snapshot the departments still are (no other change since, which clears the digest):
    # it was checked for cycles and diffed when applied, and would be diffed to no writes now.
    # With no digest stored (a first load, or a change since), it is worked out when needed.
    # Meanwhile PostgreSQL reads the rows any other snapshot is compared with.
    known = tenant.org_snapshot_digest

    def look() -> tuple[dict[str, OrgItem], snapshot.Lines | None, str | object | None]:
        items = snapshot.last_wins(departments)
        if not known:
            return items, None, _LATER
        lines = snapshot.as_lines(items)  # the digest's text, and the diff's lines
        return items, lines, snapshot.digest(items, lines)

    (items, lines, digest), stored_items = writers.load_items_while(tenant, look)
    repeated = digest == known and digest is not None
    writer = writer or writers.default_writer()
    ahead = None
    if not repeated:
        # A tenant with departments is re-synced from the rows that change (issue 17).
        held = stored_items()
        if held:
            plan, stored = _resync_plan(tenant, items, held, lines)
        else:
            # A first load: every item is new. PostgreSQL draws their ids and reads the
            # waiting users while Python looks for a cycle and sorts the codes.
            stored = []
            codes, ahead = writers.read_ahead(tenant, len(items), lambda: _first(items), writer)
    last_change = tenant.org_call_time
    if call_time is not None and last_change is not None and call_time < last_change:
        return SnapshotResult(tenant, 0, 0, 0, 0, stale=len(items))
    now = timezone.now()
    if repeated:
        _mark_synced(tenant, now, call_time, digest)  # the call's time counts as before
        return SnapshotResult(tenant, 0, 0, 0, unchanged=len(items))
    if ahead is not None:  # a first load on PostgreSQL: the digest while the rows are copied
        later = snapshot.digest if digest is _LATER else lambda _: digest
        digest = writers.write_first_load(
            tenant, items, codes, ahead, meanwhile=lambda: later(items)
        )
        _mark_synced(tenant, now, call_time, digest)
        return SnapshotResult(tenant, created=len(codes), updated=0, deleted=0, unchanged=0)
    if digest is _LATER:
        digest = snapshot.digest(items)
    if not held:
        plan = snapshot.first_plan(items, snapshot.links(items))
    writers.apply(tenant, plan, stored, now, writer)
    _mark_synced(tenant, now, call_time, digest)
    return SnapshotResult(
        tenant=tenant,
        created=len(plan.create),
        updated=len(plan.update),
        deleted=len(plan.delete),
        unchanged=plan.unchanged,
    )


def _first(items: dict[str, OrgItem]) -> list[str]:
    """The codes of a snapshot for a tenant without departments, sorted; refuses a cycle.
    The walk over the snapshot itself answers whether there is one (no map of parent links to
    build first, ~25 ms of a 100k load); the rare refusal describes it as ever."""
    if snapshot.has_cycle_through(items, items):
        raise _cycle_refused(items)
    return sorted(items)


def _cycle_refused(items: dict[str, OrgItem]) -> InvalidParam:
    """The refusal of a snapshot with a cycle, described by the walk over all of it."""
    return InvalidParam(str(snapshot.CycleError(snapshot.find_cycle(snapshot.links(items)))))


def _resync_plan(
    tenant: Tenant,
    items: dict[str, OrgItem],
    held: list[OrgItem] | list[str],
    lines: snapshot.Lines | None = None,
) -> tuple[snapshot.Plan, list[snapshot.Stored]]:
    """The plan of a snapshot for a tenant that has departments (`held`, as items), and the
    stored rows the writers need the ids of; refuses a cycle as `find_cycle` does, before any
    write. Only the items that are new or edited are looked at, and the stored rows of those
    and of their parents read again, with their ids (see snapshot.py): a re-sync that renames
    a thousand and moves one root of 100,000 handles a few thousand rows, not 100,000."""
    changed = snapshot.fresh(held, items, lines)
    codes = {item[0] for item in changed}
    if snapshot.has_cycle_through(items, codes):
        raise _cycle_refused(items)
    rows = writers.load_codes(tenant, codes | {item[2] for item in changed if item[2]})
    known = {row[1] for row in rows}
    created = {code for code in codes if code not in known}
    gone = []
    if len(items) - len(created) < len(held):  # some stored codes are not listed
        gone = [code for code in map(snapshot.stored_code, held) if code not in items]
    relinked = snapshot.relinked(items, created.union(gone), codes)
    if relinked or gone:
        rows += writers.load_codes(tenant, {item[0] for item in relinked}.union(gone) - known)
    return snapshot.plan_changes(items, [*changed, *relinked], gone, rows), rows
