"""Budgets of the staff reads (issue 14): whatever the tree's shape, every answer of the
org-tree API, the tree page and the tenant's admin page holds a bounded number of nodes, hence
of bytes, and is read by indexed queries bounded by the same numbers.

Two hostile shapes, built with bulk inserts (a few thousand departments show the bounds; the
100,000-department figures are bench/org_tree.py's --shapes): a chain (each department the only
child of the previous one) and a flat tree (one head with thousands of children). The byte
bound is computed from the caps with max-length names of the characters JSON escapes most.
"""

import json

import pytest
from django.contrib.auth import get_user_model
from rest_framework.renderers import JSONRenderer

from orgsync import api, staff_selectors
from orgsync.models import Department
from orgsync.serializers import CODE_MAX, NAME_MAX
from orgsync.staff_selectors import CompactPath, PathStep, TreeNode
from tenants.models import Authorization, Tenant, TenantUser
from tests.support.org_tree_world import bulk_tree

pytestmark = pytest.mark.django_db

CHAIN_ID = "chain-tenant"
FLAT_ID = "flat-tenant"
CHAIN = 1500
FLAT = 3000
TWO_MB = 2_000_000


def code(n: int) -> str:
    return f"C{n:05d}"


@pytest.fixture
def chain() -> Tenant:
    """C00000 → C00001 → … → C01499, one user in every department."""
    items = [(code(n), f"Level {n}", code(n - 1) if n else "") for n in range(CHAIN)]
    tenant = bulk_tree(CHAIN_ID, items)
    departments = dict(Department.objects.filter(tenant=tenant).values_list("org_code", "pk"))
    TenantUser.objects.bulk_create(
        TenantUser(
            tenant=tenant, user_name=f"u{n}", org_code=code(n), department_id=departments[code(n)]
        )
        for n in range(CHAIN)
    )
    return tenant


@pytest.fixture
def flat() -> Tenant:
    """HEAD with 3,000 children F00000 … F02999."""
    items = [("HEAD", "Head", "")] + [(f"F{n:05d}", f"Flat {n}", "HEAD") for n in range(FLAT)]
    return bulk_tree(FLAT_ID, items)


@pytest.fixture
def staff(client):
    client.force_login(get_user_model().objects.create_user("operator", is_staff=True))
    return client


def get(client, url: str, status: int = 200, **params) -> dict:
    response = client.get(url, params)
    assert response.status_code == status, response.content[:300]
    return response.json()


def nodes_of(answer: dict) -> list[dict]:
    found, stack = [], list(answer["nodes"])
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(node["children"] or [])
    return found


def depth_of(answer: dict) -> int:
    deepest, stack = 0, [(n, 0) for n in answer["nodes"]]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((c, level + 1) for c in node["children"] or [])
    return deepest


# --- the chain ---------------------------------------------------------------------------------


def test_a_chain_is_read_a_bounded_number_of_levels_at_a_time(chain, staff):
    base = f"/api/tenants/{CHAIN_ID}/org-tree"
    top = get(staff, base)
    (head,) = top["nodes"]
    assert (head["orgCode"], head["childCount"], len(head["children"])) == ("C00000", 1, 1)
    assert head["children"][0]["children"] is None  # depth 1: the next level is not loaded
    assert (head["totalUsers"], head["totalUsersExact"]) == (CHAIN, True)

    deep = get(staff, base, root=code(700), depth=api.MAX_DEPTH)
    assert depth_of(deep) == api.MAX_DEPTH
    assert len(nodes_of(deep)) == api.MAX_DEPTH + 1
    assert nodes_of(deep)[-1]["orgCode"] == code(700 + api.MAX_DEPTH)
    assert "depth" in get(staff, base, 400, root=code(700), depth=api.MAX_DEPTH + 1)
    assert "depth" in get(staff, base, 400, depth=100_000)


def test_totals_of_a_branch_bigger_than_the_walk_are_a_lower_bound_said_so(
    chain, staff, monkeypatch
):
    monkeypatch.setattr(staff_selectors, "TOTALS_WALK", 500)
    base = f"/api/tenants/{CHAIN_ID}/org-tree"
    (head,) = get(staff, base)["nodes"]
    assert head["totalUsersExact"] is False
    assert 0 < head["totalUsers"] <= 500 < CHAIN
    # On the flat tree the head's total is cut short; its leaves are exact all the same.
    tenant = bulk_tree("flat-users", [("HEAD", "Head", "")] + [
        (f"F{n:05d}", f"Flat {n}", "HEAD") for n in range(1000)
    ])
    TenantUser.objects.bulk_create(
        TenantUser(tenant=tenant, user_name=f"u{d.pk}", org_code=d.org_code, department=d)
        for d in Department.objects.filter(tenant=tenant)
    )
    (head,) = get(staff, "/api/tenants/flat-users/org-tree")["nodes"]
    assert (head["totalUsersExact"], head["childCount"]) == (False, 1000)
    assert 0 < head["totalUsers"] <= 500
    assert [(c["totalUsers"], c["totalUsersExact"]) for c in head["children"]] == [
        (1, True)
    ] * api.CHILD_PAGE
    # Near the end of the chain the branch fits the walk: exact again.
    (tail,) = get(staff, base, root=code(CHAIN - 300), depth=0)["nodes"]
    assert (tail["totalUsers"], tail["totalUsersExact"]) == (300, True)


def test_search_on_a_chain_names_the_ancestors_compactly(chain, staff):
    url = f"/api/tenants/{CHAIN_ID}/org-tree/search"
    hits = get(staff, url, q="Level 4", limit=api.MAX_SEARCH_LIMIT)
    assert len(hits["departments"]) == api.MAX_SEARCH_LIMIT
    assert hits["departmentsTruncated"] is True
    by_code = {d["orgCode"]: d["path"] for d in hits["departments"]}

    # Level 4 is 5 steps from the top: first step, 1 elided, last three.
    near = by_code[code(4)]
    assert [s["orgCode"] for s in near["head"]] == [code(0)]
    assert [s["orgCode"] for s in near["tail"]] == [code(2), code(3), code(4)]
    assert (near["elided"], near["exact"]) == (1, True)

    # Level 40: the top is within the walk, 36 steps elided between.
    mid = by_code[code(40)]
    assert [s["orgCode"] for s in mid["head"]] == [code(0)]
    assert (mid["elided"], mid["exact"]) == (40 + 1 - 1 - 3, True)

    # Level 400: deeper than the walk up; the path says so and names the nearest steps.
    far = by_code[code(400)]
    assert far["head"] == [] and far["exact"] is False
    assert [s["orgCode"] for s in far["tail"]] == [code(398), code(399), code(400)]
    assert far["elided"] == staff_selectors.PATH_WALK + 1 - 3  # those walked: at least that

    # Every path in the answer is at most head + tail steps.
    for path in by_code.values():
        assert len(path["head"]) + len(path["tail"]) <= 4


def test_elided_ancestors_are_read_on_demand_a_bounded_page_at_a_time(chain, staff):
    url = f"/api/tenants/{CHAIN_ID}/departments/{code(398)}/ancestors"
    first = get(staff, url, limit=api.MAX_ANCESTORS)
    assert [s["orgCode"] for s in first["ancestors"]] == [code(n) for n in range(298, 398)]
    assert first["more"] is True

    # Step by step up to the top: the gap of the path above closes.
    above = code(298)
    steps = first["ancestors"]
    while True:
        page = get(staff, f"/api/tenants/{CHAIN_ID}/departments/{above}/ancestors", limit=100)
        steps = page["ancestors"] + steps
        if not page["more"]:
            break
        above = page["ancestors"][0]["orgCode"]
    assert [s["orgCode"] for s in steps] == [code(n) for n in range(398)]

    assert get(staff, f"/api/tenants/{CHAIN_ID}/departments/{code(0)}/ancestors") == {
        "orgCode": code(0),
        "ancestors": [],
        "more": False,
    }
    assert "limit" in get(staff, url, 400, limit=api.MAX_ANCESTORS + 1)
    assert "limit" in get(staff, url, 400, limit=0)
    assert get(staff, f"/api/tenants/{CHAIN_ID}/departments/nope/ancestors", 404)


# --- the flat tree -----------------------------------------------------------------------------


def test_a_flat_tree_is_paged_within_the_node_cap(flat, staff):
    base = f"/api/tenants/{FLAT_ID}/org-tree"
    (head,) = get(staff, base)["nodes"]
    assert (head["childCount"], len(head["children"])) == (FLAT, api.CHILD_PAGE)
    assert (head["totalUsers"], head["totalUsersExact"]) == (0, True)

    page = get(staff, base, root="HEAD", depth=1, limit=api.MAX_CHILD_PAGE)
    assert len(page["nodes"][0]["children"]) == api.MAX_CHILD_PAGE
    assert (page["count"], page["nextOffset"]) == (FLAT, api.MAX_CHILD_PAGE)
    last = get(staff, base, root="HEAD", depth=1, limit=api.MAX_CHILD_PAGE, offset=FLAT - 10)
    assert [c["orgCode"] for c in last["nodes"][0]["children"]] == [
        f"F{n:05d}" for n in range(FLAT - 10, FLAT)
    ]
    assert last["nextOffset"] is None

    # A cursor pages through all of them, each page an index range however deep.
    codes, after = [], None
    while True:
        params = {"root": "HEAD", "depth": 1, "limit": api.MAX_CHILD_PAGE}
        page = get(staff, base, **params, **({"after": after} if after else {}))
        codes += [c["orgCode"] for c in page["nodes"][0]["children"]]
        if after:
            assert page["nextOffset"] is None  # a page read by cursor gives the next cursor
        after = page["nextAfter"]
        if after is None:
            break
    assert codes == [f"F{n:05d}" for n in range(FLAT)]
    assert "after" in get(staff, base, 400, after="F00010")  # without root
    assert "after" in get(staff, base, 400, root="HEAD", after="F00010", offset=5)

    # Deeper reads fill the node cap and stop there; the answer says it was cut.
    wide = get(staff, base, depth=api.MAX_DEPTH, limit=api.MAX_CHILD_PAGE)
    assert len(nodes_of(wide)) <= api.MAX_NODES
    assert "limit" in get(staff, base, 400, limit=api.MAX_CHILD_PAGE + 1)
    assert "offset" in get(staff, base, 400, offset=-1)


def test_a_tenant_without_departments_answers_an_empty_tree(staff, admin_client):
    tenant = Tenant.objects.create(tenant_id="empty-tenant")
    answer = get(staff, "/api/tenants/empty-tenant/org-tree", depth=api.MAX_DEPTH)
    assert (answer["nodes"], answer["count"], answer["nextOffset"]) == ([], 0, None)
    page = admin_client.get(f"/admin/tenants/tenant/{tenant.pk}/change/")
    assert "no departments synced" in page.content.decode()


def test_many_roots_are_paged_too(staff):
    bulk_tree("roots-tenant", [(f"R{n:05d}", f"Root {n}", "") for n in range(2000)])
    answer = get(staff, "/api/tenants/roots-tenant/org-tree", depth=2)
    assert (answer["count"], len(answer["nodes"]), answer["nextOffset"]) == (
        2000,
        api.CHILD_PAGE,
        api.CHILD_PAGE,
    )


def test_users_and_their_authorisations_are_capped(flat, staff):
    tenant = Tenant.objects.get(tenant_id=FLAT_ID)
    head = Department.objects.get(tenant=tenant, org_code="HEAD")
    users = TenantUser.objects.bulk_create(
        TenantUser(tenant=tenant, user_name=f"u{n:04d}", org_code="HEAD", department=head)
        for n in range(150)
    )
    Authorization.objects.bulk_create(
        Authorization(tenant=tenant, user=users[0], app_id=f"APP{n:02d}", instance_id="i")
        for n in range(25)
    )
    url = f"/api/tenants/{FLAT_ID}/departments/HEAD/users"
    page = get(staff, url, limit=api.USER_PAGE)
    assert (page["count"], len(page["results"])) == (150, api.USER_PAGE)
    first = page["results"][0]
    assert len(first["authorizations"]) == api.AUTHORIZATIONS_PER_USER
    assert first["authorizationCount"] == 25
    assert [a["appId"] for a in first["authorizations"]][:2] == ["APP00", "APP01"]
    # LimitOffsetPagination clamps a larger limit to its maximum.
    assert len(get(staff, url, limit=10_000)["results"]) == api.USER_PAGE


# --- pages -------------------------------------------------------------------------------------


def test_the_tenant_admin_page_shows_a_bounded_tree_of_a_chain_and_a_flat_tree(
    chain, flat, admin_client
):
    from tenants import admin as tenant_admin

    for tenant in (chain, flat):
        page = admin_client.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content.decode()
        shown = page.count("/admin/orgsync/department/")
        assert 0 < shown <= tenant_admin.TREE_NODE_LIMIT + 1
        assert "more are not shown" in page
    flat_page = admin_client.get(f"/admin/tenants/tenant/{flat.pk}/change/").content.decode()
    assert f"… {FLAT - tenant_admin.TREE_PAGE} more sub-departments" in flat_page
    assert len(flat_page) < 500_000


def test_the_tree_page_is_a_shell_whatever_the_tree(chain, flat, staff):
    for tenant_id in (CHAIN_ID, FLAT_ID):
        page = staff.get(f"/staff/tenants/{tenant_id}/org-tree")
        assert page.status_code == 200
        assert len(page.content) < 50_000
        assert "Level 9" not in page.content.decode()  # the tree comes from the API


# --- the byte bound ----------------------------------------------------------------------------

# JSON writes a control character as \\u00XX: six bytes for one character of a name.
WORST = "\x01"


def worst(length: int) -> str:
    return WORST * length


def test_the_worst_character_is_the_one_assumed():
    renderer = JSONRenderer()
    for char in ("a", "é", "部", "😀", "\u2028", "\x01", '"', "\\"):
        assert len(renderer.render({"x": char})) <= len(renderer.render({"x": WORST}))


def test_the_byte_bound_follows_from_the_caps_with_max_length_names():
    """The biggest answer each endpoint can give, every count at its cap and every string at
    its maximum length in the character JSON escapes most, rendered as the API renders it."""
    renderer = JSONRenderer()
    big = 10**12

    def tree_node(children=None) -> TreeNode:
        return TreeNode(
            id=1,
            org_code=worst(CODE_MAX),
            org_name=worst(NAME_MAX),
            parent_code=worst(CODE_MAX),
            direct_users=big,
            total_users=big,
            child_count=big,
            children=children,
        )

    # MAX_NODES nodes: a chain as deep as allowed, the rest as children of the last one.
    leaves = [tree_node([]) for _ in range(api.MAX_NODES - api.MAX_DEPTH - 1)]
    node = tree_node(leaves)
    for _ in range(api.MAX_DEPTH):
        node = tree_node([node])
    tenant = Tenant(tenant_id=worst(64), name=worst(255), tenant_code=worst(64))
    tree = api.OrgTreeOut(
        {
            "tenant": tenant,
            "root": worst(CODE_MAX),
            "depth": api.MAX_DEPTH,
            "offset": big,
            "limit": api.MAX_CHILD_PAGE,
            "count": big,
            "next_offset": big,
            "nodes": [node],
            "truncated": True,
        }
    ).data
    assert len(renderer.render(tree)) < TWO_MB

    step = PathStep(worst(CODE_MAX), worst(NAME_MAX))
    path = CompactPath(
        [step] * staff_selectors.PATH_HEAD, big, False, [step] * staff_selectors.PATH_TAIL
    )
    department = Department(
        org_code=worst(CODE_MAX), org_name=worst(NAME_MAX), parent_code=worst(CODE_MAX)
    )
    department.path = path
    user = TenantUser(user_name=worst(64), name=worst(64), org_code=worst(64))
    user.department = Department(org_code=worst(CODE_MAX))
    user.path = path
    search = api.SearchOut(
        {
            "q": worst(128),
            "departments": [department] * api.MAX_SEARCH_LIMIT,
            "departmentsTruncated": True,
            "users": [user] * api.MAX_SEARCH_LIMIT,
            "usersTruncated": True,
        }
    ).data
    assert len(renderer.render(search)) < TWO_MB

    ancestors = api.AncestorsOut(
        {"orgCode": worst(CODE_MAX), "ancestors": [step] * api.MAX_ANCESTORS, "more": True}
    ).data
    assert len(renderer.render(ancestors)) < TWO_MB

    authorization = Authorization(
        app_id=worst(64), instance_id=worst(64), role="admin", state="authorized"
    )
    full_user = TenantUser(
        user_name=worst(64),
        name=worst(64),
        org_code=worst(64),
        position=worst(64),
        employee_code=worst(64),
    )
    full_user.first_authorizations = [authorization] * api.AUTHORIZATIONS_PER_USER
    full_user.authorization_count = big
    users = api.UserOut(
        [full_user] * api.USER_PAGE, many=True, context={"tenant": Tenant(removed_at=None)}
    ).data
    page = {"count": big, "next": worst(2000), "previous": worst(2000), "results": users}
    assert len(renderer.render(page)) < TWO_MB
    # For the record (pytest -s): the worst sizes, in bytes.
    sizes = [len(renderer.render(x)) for x in (tree, search, ancestors, page)]
    print(json.dumps(dict(zip(["tree", "search", "ancestors", "users"], sizes, strict=True))))
