"""Reads behind the staff org-tree page and its JSON API (orgsync/api.py, staff_views.py).

Built for tenants of 100,000 departments: a tree read fetches the *shape* of the requested
part (ids, parent ids, codes and direct user counts, one query) so that every returned node can
carry its subtree's total user count and its number of children, then fetches names only for
the few thousand nodes actually returned (a second query). Nothing renders a whole big tree.

Every query names the tenant, in both terms of recursive CTEs too (STYLE.md §7): identical
orgCodes in two tenants (or in a tenant's production and debug rows, spec §2.5) never mix.
"""

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection
from django.db.models import Case, IntegerField, Prefetch, Q, QuerySet, Value, When

from tenants.models import Authorization, Tenant, TenantUser

from .models import Department

DEPARTMENTS = Department._meta.db_table
USERS = TenantUser._meta.db_table


@dataclass
class TreeNode:
    """One department of a tree answer. `children` is None when they were not loaded (below
    the requested depth or past the node budget), else the first page of them."""

    id: int
    org_code: str
    org_name: str = ""
    parent_code: str = ""
    linked_parent: bool = False
    direct_users: int = 0
    total_users: int = 0
    child_count: int = 0
    children: list["TreeNode"] | None = None

    @property
    def is_orphan(self) -> bool:
        # Same rule as Department.is_orphan: a parent code was received, no parent is linked.
        return bool(self.parent_code) and not self.linked_parent


@dataclass
class TreePage:
    """The nodes answering a tree read: the forest's roots (top-level departments and
    orphans) or the requested department, with `count` entries in the paged list (the roots,
    or the requested department's children) and the offset of the next page, if any."""

    nodes: list[TreeNode]
    count: int
    next_offset: int | None
    root: TreeNode | None = None


@dataclass
class _Shape:
    tenant: Tenant
    code: dict[int, str] = field(default_factory=dict)
    direct: dict[int, int] = field(default_factory=dict)
    parent: dict[int, int | None] = field(default_factory=dict)
    children: dict[int, list[int]] = field(default_factory=dict)
    roots: list[int] = field(default_factory=list)
    total: dict[int, int] = field(default_factory=dict)
    waiting: set[int] = field(default_factory=set)


# 1 for a department with a parent code: at the top of the forest, that makes it an orphan.
_WAITING = "CASE WHEN d.parent_code = '' THEN 0 ELSE 1 END"
_COUNTS = (
    f"SELECT department_id, COUNT(*) AS n FROM {USERS} "  # noqa: S608
    "WHERE tenant_id = %s AND department_id IS NOT NULL GROUP BY department_id"
)


def _shape(tenant: Tenant, root_id: int | None) -> _Shape:
    """Ids, parents, codes and user counts of the whole tenant or of one subtree, with subtree
    totals computed in Python (no ORDER BY: sorting 100,000 codes in the database costs more
    than the read; lists are sorted when they are paged, see `_sorted_children`)."""
    if root_id is None:
        sql = (
            f"SELECT d.id, d.parent_id, d.org_code, COALESCE(u.n, 0), {_WAITING} "  # noqa: S608
            f"FROM {DEPARTMENTS} d "
            f"LEFT JOIN ({_COUNTS}) u ON u.department_id = d.id "
            "WHERE d.tenant_id = %s"
        )
        params = [tenant.pk, tenant.pk]
    else:
        # UNION (not ALL): a stored cycle, which the services refuse, would still terminate.
        sql = (
            f"WITH RECURSIVE sub(id) AS ("  # noqa: S608
            f" SELECT id FROM {DEPARTMENTS} WHERE tenant_id = %s AND id = %s"
            f" UNION SELECT c.id FROM {DEPARTMENTS} c JOIN sub ON c.parent_id = sub.id"
            " WHERE c.tenant_id = %s) "
            f"SELECT d.id, d.parent_id, d.org_code, COALESCE(u.n, 0), {_WAITING} "
            f"FROM {DEPARTMENTS} d "
            "JOIN sub ON sub.id = d.id "
            f"LEFT JOIN (SELECT department_id, COUNT(*) AS n FROM {USERS} "
            " WHERE tenant_id = %s AND department_id IN (SELECT id FROM sub)"
            " GROUP BY department_id) u ON u.department_id = d.id "
            "WHERE d.tenant_id = %s"
        )
        params = [tenant.pk, root_id, tenant.pk, tenant.pk, tenant.pk]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()

    shape = _Shape(tenant)
    if not rows:
        return shape
    code, direct, parent, children = shape.code, shape.direct, shape.parent, shape.children
    for pk, parent_id, org_code, n, waiting in rows:
        code[pk] = org_code
        direct[pk] = n
        parent[pk] = parent_id
        if waiting:
            shape.waiting.add(pk)
    for pk, parent_id, _, _, _ in rows:
        if parent_id in code and pk != root_id:
            children.setdefault(parent_id, []).append(pk)
        else:
            shape.roots.append(pk)
    # Totals bottom-up: breadth-first order from the roots, then each node adds its total to
    # its parent's, deepest first (iterative: trees may be thousands deep). Only the roots
    # have no parent in `shape`.
    order = list(shape.roots)
    for pk in order:  # grows while iterating
        order.extend(children.get(pk, ()))
    total = dict(shape.direct)
    for pk in reversed(order[len(shape.roots) :]):
        total[parent[pk]] += total[pk]
    shape.total = total
    return shape


def _sorted_children(shape: _Shape, pk: int) -> list[int]:
    """Children in orgCode order (code points: the same on every database), sorted only for
    the lists a request pages through, not for all 100,000."""
    return sorted(shape.children.get(pk, ()), key=shape.code.__getitem__)


def _build(
    shape: _Shape,
    top: list[int],
    *,
    depth: int,
    offset: int,
    limit: int,
    budget: int,
    paged_children_of: int | None,
) -> list[TreeNode]:
    """Breadth first from `top`, `depth` levels below it, each children list cut at `limit`
    entries; once `budget` nodes are placed, deeper nodes keep children=None (not loaded).

    The children of `paged_children_of` (the requested root) start at `offset`."""
    placed = 0

    def node(pk: int) -> TreeNode:
        return TreeNode(
            id=pk,
            org_code=shape.code[pk],
            linked_parent=shape.parent[pk] is not None,
            direct_users=shape.direct[pk],
            total_users=shape.total[pk],
            child_count=len(shape.children.get(pk, ())),
        )

    nodes = [node(pk) for pk in top]
    placed += len(nodes)
    queue = deque((n, 0) for n in nodes)
    while queue:
        current, level = queue.popleft()
        if level >= depth or placed >= budget:
            continue
        ids = _sorted_children(shape, current.id)
        start = offset if current.id == paged_children_of else 0
        page = ids[start : start + min(limit, budget - placed)]
        current.children = [node(pk) for pk in page]
        placed += len(page)
        queue.extend((child, level + 1) for child in current.children)
    _fill_details(shape.tenant, nodes)
    return nodes


def _fill_details(tenant: Tenant, nodes: list[TreeNode]) -> None:
    every: dict[int, TreeNode] = {}
    stack = list(nodes)
    while stack:
        current = stack.pop()
        every[current.id] = current
        stack.extend(current.children or ())
    details = Department.objects.filter(tenant=tenant, pk__in=list(every)).values_list(
        "pk", "org_name", "parent_code"
    )
    for pk, name, parent_code in details:
        every[pk].org_name = name
        every[pk].parent_code = parent_code


def department_tree(
    *,
    tenant: Tenant,
    root: Department | None = None,
    depth: int,
    offset: int = 0,
    limit: int,
    budget: int,
) -> TreePage:
    """The forest's roots (no `root`; top-level departments, then orphans, paged by `offset`
    and `limit`) or `root` (its children are paged), each with `depth` levels of descendants
    (0: none loaded) and whole-subtree user totals. Every children list is cut at `limit`; at
    most `budget` nodes are returned."""
    if root is not None and root.tenant_id != tenant.pk:
        raise ValueError("department of another tenant")
    shape = _shape(tenant, root.pk if root is not None else None)
    if root is None:
        # Top-level departments first, then the orphans, each group in orgCode order.
        listed = sorted(shape.roots, key=lambda pk: (pk in shape.waiting, shape.code[pk]))
        top = listed[offset : offset + limit]
        nodes = _build(
            shape,
            top,
            depth=depth,
            offset=0,
            limit=limit,
            budget=budget,
            paged_children_of=None,
        )
        count = len(listed)
        shown = len(top)
    else:
        nodes = _build(
            shape,
            [root.pk],
            depth=depth,
            offset=offset,
            limit=limit,
            budget=budget,
            paged_children_of=root.pk,
        )
        count = nodes[0].child_count
        shown = len(nodes[0].children or [])
    following = offset + shown
    has_more = following < count and (root is None or depth > 0)
    return TreePage(
        nodes=nodes,
        count=count,
        next_offset=following if has_more else None,
        root=nodes[0] if root is not None else None,
    )


# --- search ------------------------------------------------------------------------------------


@dataclass
class PathStep:
    org_code: str
    org_name: str


def ancestor_paths(*, tenant: Tenant, department_ids: list[int]) -> dict[int, list[PathStep]]:
    """department id → its path from the top (root first, the department last), one query
    for all of them."""
    if not department_ids:
        return {}
    marks = ", ".join(["%s"] * len(department_ids))
    sql = (
        f"WITH RECURSIVE up(id, parent_id) AS ("  # noqa: S608
        f" SELECT id, parent_id FROM {DEPARTMENTS} WHERE tenant_id = %s AND id IN ({marks})"
        f" UNION SELECT p.id, p.parent_id FROM {DEPARTMENTS} p JOIN up ON p.id = up.parent_id"
        " WHERE p.tenant_id = %s) "
        f"SELECT d.id, d.parent_id, d.org_code, d.org_name FROM {DEPARTMENTS} d "
        "JOIN up ON up.id = d.id WHERE d.tenant_id = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [tenant.pk, *department_ids, tenant.pk, tenant.pk])
        rows = {pk: (parent_id, code, name) for pk, parent_id, code, name in cursor.fetchall()}
    paths = {}
    for pk in department_ids:
        steps: list[PathStep] = []
        seen: set[int] = set()
        current = pk
        while current in rows and current not in seen:
            seen.add(current)
            parent_id, code, name = rows[current]
            steps.append(PathStep(code, name))
            current = parent_id
        if steps:
            paths[pk] = list(reversed(steps))
    return paths


def search_departments(*, tenant: Tenant, text: str, limit: int) -> list[Department]:
    """Departments whose orgCode or name contains `text` (exact code, then exact name first),
    at most `limit` + 1 (the caller tells "more" from the extra one)."""
    rank = Case(
        When(org_code=text, then=Value(0)),
        When(org_name=text, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return list(
        Department.objects.filter(tenant=tenant)
        .filter(Q(org_code__icontains=text) | Q(org_name__icontains=text))
        .annotate(rank=rank)
        .order_by("rank", "org_code")
        .only("pk", "tenant_id", "org_code", "org_name", "parent_code", "parent_id")[: limit + 1]
    )


def search_users(*, tenant: Tenant, text: str, limit: int) -> list[TenantUser]:
    """Users whose userName or display name contains `text` (exact userName first)."""
    rank = Case(
        When(user_name=text, then=Value(0)),
        When(name=text, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return list(
        TenantUser.objects.filter(tenant=tenant)
        .filter(Q(user_name__icontains=text) | Q(name__icontains=text))
        .annotate(rank=rank)
        .order_by("rank", "user_name")
        .select_related("department")
        .only(
            "pk",
            "tenant_id",
            "user_name",
            "name",
            "org_code",
            "department__org_code",
            "department__org_name",
        )[: limit + 1]
    )


# --- users -------------------------------------------------------------------------------------


def _with_authorizations(users: QuerySet[TenantUser], tenant: Tenant) -> QuerySet[TenantUser]:
    authorizations = Authorization.objects.filter(tenant=tenant).order_by("app_id", "instance_id")
    return users.prefetch_related(Prefetch("authorizations", queryset=authorizations))


def department_users(*, tenant: Tenant, department: Department) -> QuerySet[TenantUser]:
    """The users assigned to `department`, each with its authorisations (role, enabled and
    state per application, spec §2.6 authSync)."""
    users = TenantUser.objects.filter(tenant=tenant, department=department).order_by("user_name")
    return _with_authorizations(users, tenant)


def unassigned_users(*, tenant: Tenant) -> QuerySet[TenantUser]:
    """Users without a department: their orgCode has not been synced (or was deleted, spec §2.6
    "users unassigned"), or authSync sent it empty."""
    users = TenantUser.objects.filter(tenant=tenant, department__isnull=True).order_by("user_name")
    return _with_authorizations(users, tenant)


# --- summary -----------------------------------------------------------------------------------


@dataclass
class TenantSummary:
    tenant: Tenant
    departments: int
    users: int
    orphans: int
    unassigned_users: int
    org_synced_at: datetime | None


def tenant_summary(*, tenant: Tenant) -> TenantSummary:
    orphan = Q(parent__isnull=True) & ~Q(parent_code="")
    departments = Department.objects.filter(tenant=tenant).order_by()
    users = TenantUser.objects.filter(tenant=tenant).order_by()
    return TenantSummary(
        tenant=tenant,
        departments=departments.count(),
        users=users.count(),
        orphans=departments.filter(orphan).count(),
        unassigned_users=users.filter(department__isnull=True).count(),
        org_synced_at=tenant.org_synced_at,
    )
