"""Reads behind the staff org-tree page and its JSON API (orgsync/api.py, staff_views.py).

Every read has a budget that holds whatever the tree's shape (issue 14): a tenant of 100,000
departments may be one chain 100,000 deep or one department with 99,999 children, and no
answer may cost work or bytes in proportion to that. The budgets below are the only knobs;
the API states them in its schema and `tests/orgsync/test_org_tree_budgets.py` proves the byte bound
that follows from them with max-length names.

- A tree answer places at most `MAX_NODES` departments, `MAX_DEPTH` levels below its top, each
  children list a page of at most `MAX_CHILD_PAGE` in orgCode order. It is built level by
  level: one statement per level (per `_CHUNK` parents), each child list an indexed range with
  its own LIMIT, so a 100,000-child department costs one page, not 100,000 rows.
- Totals of users over whole branches are counted by one walk down from the placed nodes that
  visits at most `TOTALS_WALK` departments per answer (breadth first). A branch too big for it
  keeps the users counted so far with `total_exact` False: a lower bound, said so.
- Paths of search hits are walked up at most `PATH_WALK` levels per hit and compacted to the
  first `PATH_HEAD` and last `PATH_TAIL` steps with the count of those left out between; a
  further request (`ancestors`) reads at most `MAX_ANCESTORS` more. No read follows a chain to
  its end: a 100,000-deep chain costs a read what `PATH_WALK` levels cost.

Nothing is stored for this (no depth or path column): a stored depth or path changes for every
row of a subtree that moves, which would put that cost on singleOrgSync and allOrgSync.

Every query names the tenant, in both terms of recursive CTEs too (STYLE.md §7): identical
orgCodes in two tenants (or in a tenant's production and debug rows, spec §2.5) never mix.
"""

import unicodedata
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import (
    Case,
    Count,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from tenants.models import Authorization, Tenant, TenantUser

from .models import Department

DEPARTMENTS = Department._meta.db_table
USERS = TenantUser._meta.db_table

# --- budgets -----------------------------------------------------------------------------------
# Every staff answer is bounded by these, whatever the tree's shape (see the module docstring).
MAX_DEPTH = 32  # levels loaded below the top of a tree answer
CHILD_PAGE = 200  # default entries per children list
MAX_CHILD_PAGE = 500  # most entries per children list (and per page of roots)
MAX_NODES = 1 + MAX_CHILD_PAGE  # departments in one tree answer: a full page and its parent
TOTALS_WALK = 5_000  # departments visited per answer to count users of whole branches
SEARCH_LIMIT = 50  # default matches per list (departments, users)
MAX_SEARCH_LIMIT = 100  # most matches per list
PATH_HEAD = 1  # steps kept from the top of a search hit's path
PATH_TAIL = 3  # steps kept at its end (the department and its two nearest ancestors)
PATH_WALK = 64  # levels walked up from a search hit
MAX_ANCESTORS = 100  # ancestors answered by one expansion request
USER_PAGE = 100  # default and most users per page
AUTHORIZATIONS_PER_USER = 10  # authorisations listed per user (the rest counted)

# Parents per children statement: one SELECT … LIMIT per parent, joined by UNION ALL (SQLite
# allows 500 terms in a compound SELECT).
_CHUNK = 100
_ROW = "id, org_code, org_name, parent_code, parent_id"


def _marks(values) -> str:
    return ", ".join(["%s"] * len(values))


def _chunks(values: list, size: int = 500):
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass
class TreeNode:
    """One department of a tree answer. `children` is None when they were not loaded (below
    the requested depth or past the node budget), else the first page of them.

    `total_users` counts the users of the department and its whole branch; `total_exact` is
    False when the branch was bigger than the walk budget: the count is then a lower bound."""

    id: int
    org_code: str
    org_name: str = ""
    parent_code: str = ""
    linked_parent: bool = False
    direct_users: int = 0
    total_users: int = 0
    total_exact: bool = True
    child_count: int = 0
    children: list["TreeNode"] | None = None
    more_after: bool = False  # a page read with a cursor: more children follow it

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
    next_after: str | None = None
    root: TreeNode | None = None
    placed: int = 0
    truncated: bool = False


def _node(row) -> TreeNode:
    pk, code, name, parent_code, parent_id = row
    return TreeNode(
        id=pk,
        org_code=code,
        org_name=name,
        parent_code=parent_code,
        linked_parent=parent_id is not None,
    )


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _fetch_walk(sql: str, params: list) -> list[tuple]:
    """A recursive walk. PostgreSQL cannot estimate how far one goes (it guesses thousands of
    times too many rows) and would JIT-compile it: a second spent compiling a walk that takes
    milliseconds. JIT is switched off for this statement's transaction only."""
    if connection.vendor != "postgresql":
        return _fetch(sql, params)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, params)
        return cursor.fetchall()


def _roots(tenant: Tenant, *, offset: int, limit: int) -> tuple[list[tuple], int]:
    """A page of the forest's roots: top-level departments, then orphans, each in orgCode
    order; and how many roots there are."""
    rows = _fetch(
        f"SELECT {_ROW} FROM {DEPARTMENTS} WHERE tenant_id = %s AND parent_id IS NULL "  # noqa: S608
        "ORDER BY CASE WHEN parent_code = '' THEN 0 ELSE 1 END, org_code "
        "LIMIT %s OFFSET %s",
        [tenant.pk, limit, offset],
    )
    (count,) = _fetch(
        f"SELECT COUNT(*) FROM {DEPARTMENTS} WHERE tenant_id = %s AND parent_id IS NULL",  # noqa: S608
        [tenant.pk],
    )[0]
    return rows, count


def _child_counts(tenant: Tenant, ids: list[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for chunk in _chunks(ids):
        counts.update(
            _fetch(
                f"SELECT parent_id, COUNT(*) FROM {DEPARTMENTS} "  # noqa: S608
                f"WHERE tenant_id = %s AND parent_id IN ({_marks(chunk)}) GROUP BY parent_id",
                [tenant.pk, *chunk],
            )
        )
    return counts


def _children_pages(tenant: Tenant, wants: list[tuple]) -> dict[int, list]:
    """parent id → the rows of its children [start, start + take) in orgCode order (those
    after the orgCode `after`, if given), for each (parent id, start, take, after): each list
    a range of the (tenant, parent, org_code) index with its own LIMIT."""
    pages: dict[int, list] = {}
    for chunk in _chunks(wants, _CHUNK):
        parts, params = [], []
        for i, (parent_id, start, take, after) in enumerate(chunk):
            cursor = "" if after is None else " AND org_code > %s"
            parts.append(
                f"SELECT * FROM (SELECT {_ROW} FROM {DEPARTMENTS} "  # noqa: S608
                f"WHERE tenant_id = %s AND parent_id = %s{cursor} ORDER BY org_code "
                f"LIMIT %s OFFSET %s) AS page{i}"
            )
            params += [tenant.pk, parent_id, *([] if after is None else [after]), take, start]
        # Each arm's rows arrive in its order (the database's collation, as every other list).
        for row in _fetch(" UNION ALL ".join(parts), params):
            pages.setdefault(row[4], []).append(row)
    return pages


def _step(link: str, column: str, walk: str = "walk w") -> str:
    """The FROM clause of a recursive step: the walk's rows joined to the departments `c`
    whose `column` equals `link`, in the tenant (the first %s).

    On PostgreSQL a LATERAL subquery (kept apart by OFFSET 0) makes each step an index probe
    per row: a plain join lets the planner pick a merge or hash join that scans and sorts all
    of the tenant's departments at every level, which a chain repeats thousands of times."""
    if connection.vendor == "postgresql":
        return (
            f"{walk} CROSS JOIN LATERAL (SELECT id, parent_id, org_code, org_name "  # noqa: S608
            f"FROM {DEPARTMENTS} WHERE tenant_id = %s AND {column} = {link} OFFSET 0) c"
        )
    return f"{walk} JOIN {DEPARTMENTS} c ON c.{column} = {link} AND c.tenant_id = %s"


def _count_totals(tenant: Tenant, nodes: list[TreeNode]) -> None:
    """Direct users of every placed node, and users of its whole branch as far as
    `TOTALS_WALK` departments go: one walk down from all placed nodes at once (a placed node's
    placed children are walked from themselves), breadth first, stopped at the budget."""
    if not nodes:
        return
    ids = [n.id for n in nodes]
    postgresql = connection.vendor == "postgresql"
    # PostgreSQL evaluates a recursive CTE only as far as the outer LIMIT reads; SQLite takes
    # the LIMIT inside it. Either way the walk is breadth first and stops at the budget.
    sql = (
        f"WITH RECURSIVE walk(origin, id, code, level) AS ("  # noqa: S608
        f" SELECT id, id, org_code, 0 FROM {DEPARTMENTS} "
        f"WHERE tenant_id = %s AND id IN ({_marks(ids)})"
        " UNION ALL SELECT w.origin, c.id, c.org_code, w.level + 1 "
        f"FROM {_step('w.id', 'parent_id')} WHERE (w.level > 0 OR c.id NOT IN ({_marks(ids)}))"
        f"{'' if postgresql else ' LIMIT %s'}) "
        "SELECT w.origin, w.level, "
        # Users through (tenant, org_code): department_id has no index (tenants migration 0005).
        f"(SELECT COUNT(*) FROM {USERS} u WHERE u.tenant_id = %s AND u.org_code = w.code "
        "AND u.department_id = w.id) "
        f"FROM (SELECT origin, id, code, level FROM walk{' LIMIT %s' if postgresql else ''}) w"
    )
    params = [tenant.pk, *ids, tenant.pk, *ids, TOTALS_WALK + 1, tenant.pk]
    if postgresql:
        params = [tenant.pk, *ids, tenant.pk, *ids, tenant.pk, TOTALS_WALK + 1]
    rows = _fetch_walk(sql, params)
    truncated = len(rows) > TOTALS_WALK
    # Breadth first: with the walk cut at level K, levels below K-1 are complete, so a branch
    # that ends above level K-1 was counted whole.
    last_complete = rows[-1][1] - 2 if truncated else None
    rows = rows[:TOTALS_WALK]
    walked: dict[int, int] = {}
    deepest: dict[int, int] = {}
    for origin, level, users in rows:
        walked[origin] = walked.get(origin, 0) + users
        deepest[origin] = max(deepest.get(origin, 0), level)
    by_id = {n.id: n for n in nodes}
    for origin, level, users in rows:
        if level == 0:
            by_id[origin].direct_users = users
    # Children were placed after their parents: add up from the last placed.
    for node in reversed(nodes):
        # A node whose children are all placed has nothing below it for its own walk.
        whole = node.child_count == len(node.children or ())
        exact = last_complete is None or whole or deepest.get(node.id, 0) <= last_complete
        total = walked.get(node.id, 0)
        for child in node.children or ():
            total += child.total_users
            exact = exact and child.total_exact
        node.total_users, node.total_exact = total, exact


def _build(
    tenant: Tenant,
    top: list[TreeNode],
    *,
    depth: int,
    limit: int,
    budget: int,
    paged_children_of: int | None = None,
    offset: int = 0,
    after: str | None = None,
) -> tuple[list[TreeNode], bool]:
    """Load `depth` levels below `top`, level by level, each children list a page of at most
    `limit` (those of `paged_children_of` from `offset`, or after the orgCode `after`, one
    more read to tell whether a page follows), until `budget` nodes are placed; the
    nodes not given children keep None. Returns every placed node (parents before children)
    and whether the budget cut the answer short."""
    placed = list(top)
    counts = _child_counts(tenant, [n.id for n in top])
    level_nodes = list(top)
    truncated = False
    for node in top:
        node.child_count = counts.get(node.id, 0)
    for _ in range(depth):
        wants, given, room, takes = [], [], budget - len(placed), {}
        for node in level_nodes:
            paged = node.id == paged_children_of
            start = offset if paged else 0
            wanted = min(limit, max(node.child_count - start, 0))
            take = min(wanted, room)
            truncated = truncated or take < wanted
            if wanted and not take:
                continue  # past the budget: not loaded, children stay None
            node.children = []
            given.append(node)
            room -= take
            if take:
                cursor = after if paged else None
                takes[node.id] = take
                wants.append((node.id, start, take + (cursor is not None), cursor))
        pages = _children_pages(tenant, wants)
        next_level = []
        for node in given:
            rows = pages.get(node.id, [])
            if node.id == paged_children_of and after is not None:
                node.more_after = len(rows) > takes.get(node.id, 0)
                rows = rows[: takes.get(node.id, 0)]
            node.children = [_node(row) for row in rows]
            next_level += node.children
        if not next_level:
            break
        counts = _child_counts(tenant, [n.id for n in next_level])
        for node in next_level:
            node.child_count = counts.get(node.id, 0)
        placed += next_level
        level_nodes = next_level
    _count_totals(tenant, placed)
    return placed, truncated


def department_tree(
    *,
    tenant: Tenant,
    root: Department | None = None,
    depth: int,
    offset: int = 0,
    after: str | None = None,
    limit: int,
    budget: int = MAX_NODES,
) -> TreePage:
    """The forest's roots (no `root`; top-level departments, then orphans, paged by `offset`
    and `limit`) or `root` (its children are paged), each with `depth` levels of descendants
    (0: none loaded) and whole-branch user totals. Every children list is cut at `limit`; at
    most `budget` nodes are returned (`MAX_NODES` at most, whatever is asked).

    `after` (with `root` only): the page of children starts after that orgCode instead of at
    `offset`, an index range however deep into the list (OFFSET skips its entries one by
    one); `next_after` names the cursor of the following page."""
    if after is not None and (root is None or offset):
        raise ValueError("after: only with a root and without offset")
    if root is not None and root.tenant_id != tenant.pk:
        raise ValueError("department of another tenant")
    budget = min(budget, MAX_NODES)
    depth = min(depth, MAX_DEPTH)
    limit = min(limit, MAX_CHILD_PAGE, budget)
    if root is None:
        rows, count = _roots(tenant, offset=offset, limit=limit)
        top = [_node(row) for row in rows]
        placed, truncated = _build(tenant, top, depth=depth, limit=limit, budget=budget)
        shown = len(top)
        has_more = offset + shown < count
    else:
        top = [_node((root.pk, root.org_code, root.org_name, root.parent_code, root.parent_id))]
        placed, truncated = _build(
            tenant,
            top,
            depth=depth,
            limit=limit,
            budget=budget,
            paged_children_of=root.pk,
            offset=offset,
            after=after,
        )
        count = top[0].child_count
        shown = len(top[0].children or [])
        has_more = depth > 0 and offset + shown < count
        if after is not None:
            has_more = depth > 0 and top[0].more_after
    children = (top[0].children or []) if root is not None else []
    return TreePage(
        nodes=top,
        count=count,
        next_offset=offset + shown if has_more and after is None else None,
        next_after=children[-1].org_code if has_more and children else None,
        root=top[0] if root is not None else None,
        placed=len(placed),
        truncated=truncated,
    )


# --- paths -------------------------------------------------------------------------------------


@dataclass
class PathStep:
    org_code: str
    org_name: str


@dataclass
class CompactPath:
    """A department's path from the top, compacted: `head` (the first `PATH_HEAD` steps from
    the top), `elided` steps left out, `tail` (the last `PATH_TAIL` steps, ending at the
    department). With nothing left out the whole path is `head` and `tail` is empty.

    `exact` is False when the walk up (`PATH_WALK` levels) did not reach the top: `head` is
    then empty and `elided` counts only the steps walked (there are more above)."""

    head: list[PathStep]
    elided: int
    exact: bool
    tail: list[PathStep]


def _walk_up(tenant: Tenant, ids: list[int], levels: int) -> dict[int, list[tuple]]:
    """department id → [(orgCode, orgName, parent id)] from the department up, at most
    `levels` steps above it: one statement, at most len(ids) × (levels + 1) rows."""
    if not ids:
        return {}
    rows = _fetch_walk(
        "WITH RECURSIVE up(origin, id, parent_id, code, name, level) AS ("  # noqa: S608
        f" SELECT id, id, parent_id, org_code, org_name, 0 FROM {DEPARTMENTS}"
        f" WHERE tenant_id = %s AND id IN ({_marks(ids)})"
        " UNION ALL SELECT up.origin, c.id, c.parent_id, c.org_code, c.org_name, up.level + 1"
        f" FROM {_step('up.parent_id', 'id', walk='up')} WHERE up.level < %s) "
        "SELECT origin, level, code, name, parent_id FROM up",
        [tenant.pk, *ids, tenant.pk, levels],
    )
    walks: dict[int, list] = {}
    for origin, _level, code, name, parent_id in sorted(rows, key=lambda r: (r[0], r[1])):
        walks.setdefault(origin, []).append((code, name, parent_id))
    return walks


def ancestor_paths(*, tenant: Tenant, department_ids: list[int]) -> dict[int, CompactPath]:
    """department id → its compacted path from the top (`CompactPath`); one statement for all,
    `PATH_WALK` levels up from each at most."""
    paths = {}
    for pk, steps in _walk_up(tenant, department_ids, PATH_WALK).items():
        reached = len(steps) <= PATH_WALK or steps[-1][2] is None
        full = [PathStep(code, name) for code, name, _ in reversed(steps)]
        if reached and len(full) <= PATH_HEAD + PATH_TAIL:
            paths[pk] = CompactPath(full, 0, True, [])
        elif reached:
            elided = len(full) - PATH_HEAD - PATH_TAIL
            paths[pk] = CompactPath(full[:PATH_HEAD], elided, True, full[-PATH_TAIL:])
        else:
            paths[pk] = CompactPath([], len(full) - PATH_TAIL, False, full[-PATH_TAIL:])
    return paths


def ancestors(
    *, tenant: Tenant, department: Department, limit: int
) -> tuple[list[PathStep], bool]:
    """The `limit` nearest ancestors of `department`, from the farthest down to its parent,
    and whether it has more above them: a walk of `limit` + 1 levels."""
    if department.tenant_id != tenant.pk:
        raise ValueError("department of another tenant")
    limit = min(limit, MAX_ANCESTORS)
    steps = _walk_up(tenant, [department.pk], limit + 1).get(department.pk, [])[1:]
    more = len(steps) > limit
    return [PathStep(code, name) for code, name, _ in reversed(steps[:limit])], more


# --- search ------------------------------------------------------------------------------------
# Characters without case that no case mapping produces from another one: digits, letters
# without case (CJK, kana, Hangul, …), spaces, punctuation. Uppercasing (one character to one
# with the C library, to several with ICU: ß → SS, ŉ → ʼN) yields from every other character
# only cased letters (Lu, Lt), modifier letters and combining marks, none of these; so where
# UPPER(value) holds a run of such characters, value holds the same run.
_CASELESS = frozenset({"Nd", "Lo", "Zs", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po"})


def _caseless_run(text: str) -> str:
    """The longest run of `text` made of caseless characters ('' if none)."""
    best = run = ""
    for char in text:
        caseless = (
            unicodedata.category(char) in _CASELESS and char.upper() == char == char.lower()
        )
        run = run + char if caseless else ""
        best = max(best, run, key=len)
    return best


def _contains(field: str, text: str) -> Q:
    """`field` contains `text`, case-insensitively: Django's icontains, on PostgreSQL
    UPPER(field) LIKE UPPER('%text%') with the database's case rules.

    On a 100,000-department tenant the search scans the tenant's rows, and PostgreSQL's UPPER
    (a copy of every value) was half of that scan; a trigram index would put its cost on every
    allOrgSync (issue 17). So on PostgreSQL the rows are first tested with a plain LIKE on the
    longest caseless run of `text` ("部门 54322", the digits of "D0054322"), and with UPPER only
    when they pass: the same matches (the test is implied by the match, see `_CASELESS`). A
    text made only of such characters needs no UPPER at all: the test is the match. SQLite's
    LIKE (icontains there) is case-insensitive for ASCII by itself."""
    condition = Q(**{f"{field}__icontains": text})
    if connection.vendor != "postgresql":
        return condition
    run = _caseless_run(text)
    if not run:
        return condition
    test = Q(**{f"{field}__contains": run})
    return test if run == text else test & condition


def search_departments(*, tenant: Tenant, text: str, limit: int) -> list[Department]:
    """Departments whose orgCode or name contains `text` (exact code, then exact name first),
    at most `limit` + 1 (the caller tells "more" from the extra one)."""
    limit = min(limit, MAX_SEARCH_LIMIT)
    rank = Case(
        When(org_code=text, then=Value(0)),
        When(org_name=text, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return list(
        Department.objects.filter(tenant=tenant)
        .filter(_contains("org_code", text) | _contains("org_name", text))
        .annotate(rank=rank)
        .order_by("rank", "org_code")
        .only("pk", "tenant_id", "org_code", "org_name", "parent_code", "parent_id")[: limit + 1]
    )


def search_users(*, tenant: Tenant, text: str, limit: int) -> list[TenantUser]:
    """Users whose userName or display name contains `text` (exact userName first)."""
    limit = min(limit, MAX_SEARCH_LIMIT)
    rank = Case(
        When(user_name=text, then=Value(0)),
        When(name=text, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return list(
        TenantUser.objects.filter(tenant=tenant)
        .filter(_contains("user_name", text) | _contains("name", text))
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
    """Each user's first `AUTHORIZATIONS_PER_USER` authorisations (by application and
    instance) and how many it has."""
    authorizations = Authorization.objects.filter(tenant=tenant).order_by("app_id", "instance_id")
    count = (
        Authorization.objects.filter(tenant=tenant, user=OuterRef("pk"))
        .order_by()
        .values("user")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return users.annotate(
        authorization_count=Coalesce(Subquery(count, output_field=IntegerField()), Value(0))
    ).prefetch_related(
        Prefetch(
            "authorizations",
            queryset=authorizations[:AUTHORIZATIONS_PER_USER],
            to_attr="first_authorizations",
        )
    )


def department_users(*, tenant: Tenant, department: Department) -> QuerySet[TenantUser]:
    """The users assigned to `department`, each with its authorisations (role, enabled and
    state per application, spec §2.6 authSync)."""
    users = TenantUser.objects.filter(
        tenant=tenant, org_code=department.org_code, department=department
    ).order_by("user_name")
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
