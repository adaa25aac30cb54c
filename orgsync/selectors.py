"""Reads of a tenant's department tree (adjacency list, see models.py).

Every query names the tenant, in both terms of a recursive CTE too (STYLE.md §7): department
ids are global, so a stray parent link could otherwise walk into another tenant's tree.
Trees are fetched in one query and assembled in Python. Departments whose parent is missing
(orphans: `parent_code` set, parent not synced yet or deleted) are roots of the forest.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import QuerySet

from tenants.models import Tenant, TenantUser

from .models import Department

DEPARTMENTS = Department._meta.db_table
USERS = TenantUser._meta.db_table


@dataclass
class Node:
    """A department with its children (sorted by org_code) and user counts.

    `direct_users` are the users assigned to this department; `total_users` adds the users of
    every descendant present in the tree that was fetched. `department` has its timestamps
    deferred (see `_TREE_COLUMNS`).
    """

    department: Department
    children: list["Node"] = field(default_factory=list)
    direct_users: int = 0
    total_users: int = 0

    @property
    def org_code(self) -> str:
        return self.department.org_code

    @property
    def is_orphan(self) -> bool:
        return self.department.is_orphan

    def walk(self) -> Iterable["Node"]:
        """This node and its descendants, depth first (iterative: trees may be deep)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


# Trees load these columns; created_at/updated_at are deferred (loading 200k timestamps
# doubles the time of a 100k-node forest): read them per department only if you show them.
_TREE_COLUMNS = "d.id, d.tenant_id, d.org_code, d.org_name, d.parent_code, d.parent_id"
_USER_COUNTS = (
    f"SELECT department_id, COUNT(*) AS n FROM {USERS} "  # noqa: S608
    "WHERE tenant_id = %s AND department_id IS NOT NULL GROUP BY department_id"
)

# A branch counts users per department (a probe of (tenant, org_code) each: a user is linked to
# the department of its org_code, and department_id has no index) rather than aggregating all the
# tenant's users: with stale statistics the planner would otherwise join a 5,000-node branch
# to a 20,000-row aggregate in a nested loop (seconds instead of milliseconds).
_BRANCH_ROWS = (
    f"SELECT {_TREE_COLUMNS}, (SELECT COUNT(*) FROM {USERS} u "  # noqa: S608
    "WHERE u.tenant_id = %s AND u.org_code = d.org_code AND u.department_id = d.id) "
    "AS direct_users "
    f"FROM {DEPARTMENTS} d JOIN sub ON sub.id = d.id "
    "WHERE d.tenant_id = %s ORDER BY d.org_code"
)


def _assemble(departments: Iterable[Department], root_ids: set[int] | None = None) -> list[Node]:
    """Link fetched rows into trees; a row whose parent was not fetched is a root."""
    nodes = {d.pk: Node(d, direct_users=getattr(d, "direct_users", 0) or 0) for d in departments}
    roots = []
    for node in nodes.values():
        parent = nodes.get(node.department.parent_id)
        if parent is None or (root_ids is not None and node.department.pk in root_ids):
            roots.append(node)
        else:
            parent.children.append(node)
    _add_totals(roots)
    return roots


def _add_totals(roots: list[Node]) -> None:
    order = [node for root in roots for node in root.walk()]
    for node in reversed(order):
        node.total_users = node.direct_users + sum(child.total_users for child in node.children)


def department_forest(*, tenant: Tenant) -> list[Node]:
    """The tenant's whole tree in one query: top-level departments and orphans are the roots."""
    departments = Department.objects.raw(
        f"SELECT {_TREE_COLUMNS}, COALESCE(u.n, 0) AS direct_users "  # noqa: S608
        f"FROM {DEPARTMENTS} d LEFT JOIN ({_USER_COUNTS}) u ON u.department_id = d.id "
        "WHERE d.tenant_id = %s ORDER BY d.org_code",
        [tenant.pk, tenant.pk],
    )
    return _assemble(departments)


def branch(*, tenant: Tenant, org_code: str, depth: int | None = None) -> Node | None:
    """The department `org_code` with its descendants, `depth` levels deep (None: all).

    With a depth, `total_users` counts the users of the levels returned.
    """
    if depth is None:
        cte = (
            f"WITH RECURSIVE sub(id) AS ("  # noqa: S608
            f" SELECT id FROM {DEPARTMENTS} WHERE tenant_id = %s AND org_code = %s"
            f" UNION SELECT c.id FROM {DEPARTMENTS} c JOIN sub ON c.parent_id = sub.id"
            " WHERE c.tenant_id = %s) "
        )
        params: list = [tenant.pk, org_code, tenant.pk]
    else:
        # UNION ALL with a level bound: terminates even if a cycle were ever stored.
        cte = (
            f"WITH RECURSIVE sub(id, level) AS ("  # noqa: S608
            f" SELECT id, 0 FROM {DEPARTMENTS} WHERE tenant_id = %s AND org_code = %s"
            f" UNION ALL SELECT c.id, sub.level + 1 FROM {DEPARTMENTS} c"
            " JOIN sub ON c.parent_id = sub.id WHERE c.tenant_id = %s AND sub.level < %s) "
        )
        params = [tenant.pk, org_code, tenant.pk, depth]
    departments = list(
        Department.objects.raw(
            cte + _BRANCH_ROWS,
            [*params, tenant.pk, tenant.pk],
        )
    )
    root = next((d for d in departments if d.org_code == org_code), None)
    if root is None:
        return None
    roots = _assemble(departments, root_ids={root.pk})
    return next(node for node in roots if node.department.pk == root.pk)


def path_to_root(*, tenant: Tenant, org_code: str) -> list[Department]:
    """The department `org_code`, its parent, … up to its root, in that order; [] if unknown."""
    rows = Department.objects.raw(
        f"WITH RECURSIVE up(id, parent_id) AS ("  # noqa: S608
        f" SELECT id, parent_id FROM {DEPARTMENTS} WHERE tenant_id = %s AND org_code = %s"
        f" UNION SELECT p.id, p.parent_id FROM {DEPARTMENTS} p JOIN up ON p.id = up.parent_id"
        " WHERE p.tenant_id = %s) "
        f"SELECT d.* FROM {DEPARTMENTS} d JOIN up ON up.id = d.id WHERE d.tenant_id = %s",
        [tenant.pk, org_code, tenant.pk, tenant.pk],
    )
    by_id = {d.pk: d for d in rows}
    path: list[Department] = []
    node = next((d for d in by_id.values() if d.org_code == org_code), None)
    seen: set[int] = set()
    while node is not None and node.pk not in seen:
        seen.add(node.pk)
        path.append(node)
        node = by_id.get(node.parent_id)
    return path


# (id, org_code, org_name, parent_code, parent_id): what a singleOrgSync needs of a row.
Row = tuple[int, str, str, str, int | None]


def department_and_ancestors(
    *, tenant_pk: int, org_code: str, parent_code: str | None
) -> tuple[Row | None, list[Row]]:
    """The department `org_code` (None if unknown) and, when `parent_code` is set, the
    department `parent_code` with its ancestors (`path_to_root`, unordered): one query."""
    with connection.cursor() as cursor:
        if not parent_code:
            cursor.execute(
                "SELECT id, org_code, org_name, parent_code, parent_id "  # noqa: S608
                f"FROM {DEPARTMENTS} WHERE tenant_id = %s AND org_code = %s",
                [tenant_pk, org_code],
            )
            return cursor.fetchone(), []
        cursor.execute(
            f"WITH RECURSIVE up(id, parent_id) AS ("  # noqa: S608
            f" SELECT id, parent_id FROM {DEPARTMENTS} WHERE tenant_id = %s AND org_code = %s"
            f" UNION SELECT p.id, p.parent_id FROM {DEPARTMENTS} p JOIN up ON p.id = up.parent_id"
            " WHERE p.tenant_id = %s) "
            "SELECT 0, d.id, d.org_code, d.org_name, d.parent_code, d.parent_id "
            f"FROM {DEPARTMENTS} d JOIN up ON up.id = d.id WHERE d.tenant_id = %s "
            "UNION ALL SELECT 1, id, org_code, org_name, parent_code, parent_id "
            f"FROM {DEPARTMENTS} WHERE tenant_id = %s AND org_code = %s",
            [tenant_pk, parent_code, tenant_pk, tenant_pk, tenant_pk, org_code],
        )
        rows = cursor.fetchall()
    existing = next((row[1:] for row in rows if row[0]), None)
    return existing, [row[1:] for row in rows if not row[0]]


def user_counts(*, tenant: Tenant) -> dict[int, tuple[int, int]]:
    """department id → (users assigned to it, users of it and all its descendants)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT d.id, d.parent_id, COALESCE(u.n, 0) FROM {DEPARTMENTS} d "  # noqa: S608
            f"LEFT JOIN ({_USER_COUNTS}) u ON u.department_id = d.id WHERE d.tenant_id = %s",
            [tenant.pk, tenant.pk],
        )
        rows = cursor.fetchall()
    direct = {pk: n for pk, _, n in rows}
    children: dict[int, list[int]] = {}
    roots = []
    for pk, parent_id, _ in rows:
        if parent_id in direct:
            children.setdefault(parent_id, []).append(pk)
        else:
            roots.append(pk)
    order, stack = [], roots
    while stack:
        pk = stack.pop()
        order.append(pk)
        stack.extend(children.get(pk, ()))
    total = dict(direct)
    for pk in reversed(order):
        total[pk] += sum(total[c] for c in children.get(pk, ()))
    return {pk: (direct[pk], total[pk]) for pk in direct}


def orphans(*, tenant: Tenant) -> QuerySet[Department]:
    """Departments waiting for their parent: `parent_code` set, parent not (or no longer) here."""
    return Department.objects.filter(tenant=tenant, parent__isnull=True).exclude(parent_code="")


def department(*, tenant: Tenant, org_code: str) -> Department | None:
    return Department.objects.filter(tenant=tenant, org_code=org_code).first()
