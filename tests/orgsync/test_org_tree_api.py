"""Staff org-tree JSON API (orgsync/api.py) and the page shell (orgsync/staff_views.py), without a
browser: tree levels and paging, branch (root, depth), users per department, unassigned users,
search with paths, tenant isolation (same orgCodes in three tenants), staff only, schema."""

from pathlib import Path
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from orgsync import api, staff_selectors
from orgsync import services as org_services
from tenants.models import SyncFlag
from tests.support.org_kit import add_user
from tests.support.org_tree_world import APP_ID, OTHER_ID, TENANT_ID, big_world, small_world

pytestmark = pytest.mark.django_db

BASE = f"/api/tenants/{TENANT_ID}"


@pytest.fixture
def world():
    return small_world()


@pytest.fixture
def staff(client) -> Client:
    user = get_user_model().objects.create_user("operator", password="pw-Operator-1")
    user.is_staff = True
    user.save()
    client.force_login(user)
    return client


def get(client: Client, url: str, status: int = 200, **params) -> dict:
    response = client.get(url, params)
    assert response.status_code == status, response.content
    return response.json()


def shape(nodes) -> list:
    """[(orgCode, directUsers, totalUsers, childCount, children shape or None)]."""
    return [
        (
            n["orgCode"],
            n["directUsers"],
            n["totalUsers"],
            n["childCount"],
            None if n["children"] is None else shape(n["children"]),
        )
        for n in nodes
    ]


# --- tree ----------------------------------------------------------------------------------------


def test_the_top_levels_with_direct_and_total_users_and_orphans_at_the_top(world, staff):
    answer = get(staff, f"{BASE}/org-tree")

    assert (answer["root"], answer["depth"], answer["count"], answer["nextOffset"]) == (
        None,
        1,
        3,
        None,
    )
    # Totals count every level below, also those not loaded (110's children are not).
    assert shape(answer["nodes"]) == [
        ("100", 1, 4, 2, [("110", 0, 3, 2, None), ("120", 0, 0, 0, None)]),
        ("200", 0, 0, 0, []),
        ("300", 0, 0, 0, []),
    ]
    head, _, orphan = answer["nodes"]
    assert (head["orgName"], head["orphan"]) == ("总部", False)
    assert (orphan["orgName"], orphan["parentCode"], orphan["orphan"]) == ("孤儿部门", "999", True)
    assert answer["tenant"]["tenantId"] == TENANT_ID
    assert answer["tenant"]["isTest"] is False
    assert answer["tenant"]["orgSyncedAt"] == world["production"].org_synced_at.isoformat().replace(
        "+00:00", "Z"
    )


def test_a_branch_with_root_and_depth(world, staff):
    deep = get(staff, f"{BASE}/org-tree", root="110", depth=2)
    assert deep["root"] == "110"
    assert shape(deep["nodes"]) == [
        ("110", 0, 3, 2, [("111", 2, 3, 1, [("1111", 1, 1, 0, None)]), ("112", 0, 0, 0, [])])
    ]
    assert deep["nodes"][0]["parentCode"] == "100"

    alone = get(staff, f"{BASE}/org-tree", root="111", depth=0)
    assert shape(alone["nodes"]) == [("111", 2, 3, 1, None)]
    assert (alone["count"], alone["nextOffset"]) == (1, None)

    whole = get(staff, f"{BASE}/org-tree", root="100", depth=api.MAX_DEPTH)
    codes = []
    stack = list(whole["nodes"])
    while stack:
        node = stack.pop()
        codes.append(node["orgCode"])
        stack.extend(node["children"] or [])
    assert sorted(codes) == ["100", "110", "111", "1111", "112", "120"]


def test_tree_nodes_are_rendered_as_their_declared_fields_render_them(world):
    from rest_framework import serializers

    from tenants.models import Tenant

    tenant = Tenant.objects.get(tenant_id=TENANT_ID, is_test=False)
    page = staff_selectors.department_tree(tenant=tenant, depth=32, limit=500)
    generic = serializers.Serializer.to_representation  # field by field

    def declared(node):
        data = generic(api.DepartmentNodeOut(), node)
        data["children"] = None if node.children is None else [declared(c) for c in node.children]
        return data

    assert [api.DepartmentNodeOut(n).data for n in page.nodes] == [
        declared(n) for n in page.nodes
    ]
    assert any(n.children for n in page.nodes)


def test_an_orphan_is_a_branch_of_its_own(world, staff):
    answer = get(staff, f"{BASE}/org-tree", root="300")
    assert answer["nodes"][0]["orphan"] is True


def test_children_are_paged(staff):
    big_world(divisions=2, teams=3, wide=7)
    first = get(staff, f"{BASE}/org-tree", root="1-W", depth=1, limit=3)
    wide = first["nodes"][0]
    assert wide["childCount"] == 7
    assert [c["orgCode"] for c in wide["children"]] == ["1-W-001", "1-W-002", "1-W-003"]
    assert (first["count"], first["nextOffset"]) == (7, 3)

    last = get(staff, f"{BASE}/org-tree", root="1-W", depth=1, limit=3, offset=6)
    assert [c["orgCode"] for c in last["nodes"][0]["children"]] == ["1-W-007"]
    assert last["nextOffset"] is None

    # Nested lists are cut at `limit` too; the node's childCount tells that more exist.
    top = get(staff, f"{BASE}/org-tree", depth=2, limit=2)
    head = top["nodes"][0]
    assert [c["orgCode"] for c in head["children"]] == ["1-1", "1-2"]
    assert head["childCount"] == 3
    assert [len(c["children"]) for c in head["children"]] == [2, 2]


def test_top_level_departments_come_before_orphans(world, staff):
    org_services.single_org_sync(
        tenant_id=TENANT_ID,
        is_test=False,
        org_code="000",
        org_name="早到的部门",
        parent_code="998",
        flag=SyncFlag.ADD,
    )
    answer = get(staff, f"{BASE}/org-tree", depth=0)
    assert [(n["orgCode"], n["orphan"]) for n in answer["nodes"]] == [
        ("100", False),
        ("200", False),
        ("000", True),
        ("300", True),
    ]


def test_the_roots_are_paged(world, staff):
    first = get(staff, f"{BASE}/org-tree", limit=2, depth=0)
    assert [n["orgCode"] for n in first["nodes"]] == ["100", "200"]
    assert (first["count"], first["nextOffset"]) == (3, 2)
    rest = get(staff, f"{BASE}/org-tree", limit=2, offset=2, depth=0)
    assert [n["orgCode"] for n in rest["nodes"]] == ["300"]
    assert rest["nextOffset"] is None


def test_an_answer_never_holds_more_nodes_than_the_budget(staff, monkeypatch):
    big_world(divisions=3, teams=5, wide=2)
    monkeypatch.setattr(staff_selectors, "MAX_NODES", 6)
    answer = get(staff, f"{BASE}/org-tree", depth=5)

    placed, not_loaded = 0, 0
    stack = list(answer["nodes"])
    while stack:
        node = stack.pop()
        placed += 1
        not_loaded += node["children"] is None and node["childCount"] > 0
        stack.extend(node["children"] or [])
    assert placed <= 6
    assert not_loaded > 0  # the rest is left for the client to load
    assert answer["truncated"] is True


def test_a_big_tree_is_read_in_a_few_queries(staff, django_assert_max_num_queries):
    big_world()
    staff.get(f"{BASE}/org-tree")  # session and user loaded once
    # Tenant, roots and their count, then two per level (children pages, their child counts),
    # and one walk for the totals (on PostgreSQL in a savepoint with JIT off: three more):
    # bounded by the depth asked, not by the tree's size.
    with django_assert_max_num_queries(9 + 2 * 3):
        answer = get(staff, f"{BASE}/org-tree", depth=3)
    assert answer["nodes"][0]["totalUsers"] == 8 * 30 * 2 + 1
    with django_assert_max_num_queries(9 + 2 * 1):
        get(staff, f"{BASE}/org-tree", root="1-W", depth=1)


def test_bad_parameters_are_refused_naming_the_field(world, staff):
    assert "depth" in get(staff, f"{BASE}/org-tree", 400, depth=-1)
    assert "limit" in get(staff, f"{BASE}/org-tree", 400, limit=0)
    assert "limit" in get(staff, f"{BASE}/org-tree", 400, limit=api.MAX_CHILD_PAGE + 1)
    assert "depth" in get(staff, f"{BASE}/org-tree", 400, depth=api.MAX_DEPTH + 1)
    assert "test" in get(staff, f"{BASE}/org-tree", 400, test="maybe")
    assert "q" in get(staff, f"{BASE}/org-tree/search", 400)


def test_unknown_tenant_or_department_is_404(world, staff):
    assert "tenantId" in get(staff, "/api/tenants/nobody/org-tree", 404)["detail"]
    assert "tenantId" in get(staff, f"/api/tenants/{OTHER_ID}/org-tree", 404, test=1)["detail"]
    assert "root" in get(staff, f"{BASE}/org-tree", 404, root="999")["detail"]
    assert "orgCode" in get(staff, f"{BASE}/departments/999/users", 404)["detail"]
    assert get(staff, "/api/tenants/nobody", 404)
    assert get(staff, "/api/tenants/nobody/org-tree/search", 404, q="x")
    assert get(staff, "/api/tenants/nobody/unassigned-users", 404)


# --- users -------------------------------------------------------------------------------------


def test_a_departments_users_with_role_enabled_and_state_per_app(world, staff):
    page = get(staff, f"{BASE}/departments/111/users")
    assert page["count"] == 2
    by_name = {u["userName"]: u for u in page["results"]}
    assert sorted(by_name) == ["lisi", "zhangsan01"]
    assert by_name["zhangsan01"]["name"] == "张三"
    assert [
        (a["appId"], a["role"], a["enabled"], a["state"], a["canSignIn"])
        for a in by_name["zhangsan01"]["authorizations"]
    ] == [
        (APP_ID, "admin", True, "authorized", True),
        ("SECONDAPP", "user", True, "authorized", True),
    ]
    (disabled,) = by_name["lisi"]["authorizations"]
    assert (disabled["enabled"], disabled["canSignIn"]) == (False, False)

    (cancelled,) = get(staff, f"{BASE}/departments/1111/users")["results"]
    assert cancelled["userName"] == "zhaoliu"
    assert [(a["state"], a["canSignIn"]) for a in cancelled["authorizations"]] == [
        ("revoked", False)
    ]


def test_an_orgcode_with_a_slash_or_chinese_characters_in_the_path(world, staff):
    for code in ("研发/一部", "a b?c#d"):
        org_services.single_org_sync(
            tenant_id=TENANT_ID,
            is_test=False,
            org_code=code,
            org_name="特殊",
            parent_code="100",
            flag=SyncFlag.ADD,
        )
        add_user(f"user-of-{code}", code, tenant_id=TENANT_ID)
        url = f"{BASE}/departments/{quote(code, safe='')}/users"
        assert [u["userName"] for u in get(staff, url)["results"]] == [f"user-of-{code}"]
        assert get(staff, f"{BASE}/org-tree", root=code)["nodes"][0]["orgCode"] == code


def test_users_are_paged(world, staff):
    first = get(staff, f"{BASE}/departments/111/users", limit=1)
    assert (first["count"], len(first["results"])) == (2, 1)
    second = staff.get(first["next"]).json()
    assert [u["userName"] for u in first["results"] + second["results"]] == ["lisi", "zhangsan01"]


def test_a_removed_tenant_signs_nobody_in(world, staff):
    world["production"].removed_at = world["production"].org_synced_at
    world["production"].save()
    page = get(staff, f"{BASE}/departments/111/users")
    assert not [a for u in page["results"] for a in u["authorizations"] if a["canSignIn"]]
    assert get(staff, BASE)["tenant"]["removedAt"] is not None


def test_unassigned_users_include_those_of_a_deleted_department(world, staff):
    assert [u["userName"] for u in get(staff, f"{BASE}/unassigned-users")["results"]] == ["ghost"]

    org_services.single_org_sync(
        tenant_id=TENANT_ID, is_test=False, org_code="1111", flag=SyncFlag.DELETE
    )
    page = get(staff, f"{BASE}/unassigned-users")
    assert [(u["userName"], u["orgCode"]) for u in page["results"]] == [
        ("ghost", "555"),
        ("zhaoliu", "1111"),
    ]
    summary = get(staff, BASE)
    assert (summary["unassignedUserCount"], summary["departmentCount"]) == (2, 7)


def test_the_summary(world, staff):
    summary = get(staff, BASE)
    assert {k: v for k, v in summary.items() if k != "tenant"} == {
        "departmentCount": 8,
        "userCount": 5,
        "orphanCount": 1,
        "unassignedUserCount": 1,
    }


# --- search ------------------------------------------------------------------------------------


def steps(path) -> list[str]:
    """orgCodes of a compact path with nothing elided (head + tail)."""
    assert path["elided"] == 0 and path["exact"] is True
    return [s["orgCode"] for s in path["head"] + path["tail"]]


def test_search_by_department_name_and_orgcode_gives_paths(world, staff):
    by_name = get(staff, f"{BASE}/org-tree/search", q="平台")
    assert [(d["orgCode"], steps(d["path"])) for d in by_name["departments"]] == [
        ("111", ["100", "110", "111"])
    ]
    assert [s["orgName"] for s in by_name["departments"][0]["path"]["head"]] == [
        "总部",
        "研发部",
        "平台组",
    ]

    by_code = get(staff, f"{BASE}/org-tree/search", q="111")
    # The exact orgCode first, then the others containing it.
    assert [d["orgCode"] for d in by_code["departments"]] == ["111", "1111"]
    assert by_code["departments"][1]["path"]["head"][-1] == {
        "orgCode": "1111",
        "orgName": "内核小组",
    }

    orphan = get(staff, f"{BASE}/org-tree/search", q="孤儿")["departments"][0]
    assert (orphan["orphan"], steps(orphan["path"])) == (True, ["300"])


def test_search_by_user_name_and_username(world, staff):
    by_name = get(staff, f"{BASE}/org-tree/search", q="张三")
    assert [(u["userName"], u["department"]) for u in by_name["users"]] == [("zhangsan01", "111")]
    assert steps(by_name["users"][0]["path"]) == ["100", "110", "111"]

    by_user_name = get(staff, f"{BASE}/org-tree/search", q="ZHANGSAN")
    assert [u["name"] for u in by_user_name["users"]] == ["张三"]

    lost = get(staff, f"{BASE}/org-tree/search", q="ghost")["users"][0]
    assert (lost["department"], lost["orgCode"], lost["path"]) == (None, "555", None)


def test_search_results_are_limited(staff):
    big_world(divisions=2, teams=10, wide=3)
    answer = get(staff, f"{BASE}/org-tree/search", q="Team", limit=5)
    assert len(answer["departments"]) == 5
    assert answer["departmentsTruncated"] is True
    answer = get(staff, f"{BASE}/org-tree/search", q="Member 2.3", limit=5)
    assert (len(answer["users"]), answer["usersTruncated"]) == (2, False)


# Names where case rules are tricky: characters that uppercase to ASCII letters (ı, ſ, the
# Kelvin sign), to several letters (ß, ŉ, ﬁ), titlecase digraphs, Greek sigmas, LIKE's own
# wildcards, letters without case.
TRICKY_NAMES = [
    "Straße", "STRASSE", "ıi", "İI", "ſs", "Ss", "ŉ", "ʼN", "ﬁle", "FILE", "Kelvin K",
    "kelvin k", "Team 10%", "Team_1", "Team 1", "部门 54322", "部门 5432", "Émile", "émile",
    "ÉMILE", "Ǆ dž", "ǅ", "Σσς", "ⅰⅱ", "Ⅰ", "ⓐb", "Ⓐ", "d0054322", "D0054322",
]
TRICKY_QUERIES = [
    *TRICKY_NAMES, "s", "S", "i", "I", "k", "K", "n", "N", "é", "É", "1", "门 5", "MILE",
    "team 1", "%", "_", "0%", "m_1", "ss", "SS", "fi", "FI", "ſ", "ı", "σ", "Σ", "ς", "ǆ",
    "dž", "Ⅱ", "ⓑ", "00543", "D00", "d00", "kelvin K", "x",
]


def test_search_matches_exactly_what_a_case_insensitive_contains_matches(staff):
    """The search's own tests (issue 17) find what Django's icontains (UPPER … LIKE on
    PostgreSQL) finds, whatever the characters."""
    from django.db.models import Q

    from orgsync.models import Department
    from tenants.models import Tenant, TenantUser

    tenant = Tenant.objects.create(tenant_id=TENANT_ID)
    Department.objects.bulk_create(
        Department(tenant=tenant, org_code=f"C{n:03d}-{name[:3]}", org_name=name)
        for n, name in enumerate(TRICKY_NAMES)
    )
    TenantUser.objects.bulk_create(
        TenantUser(tenant=tenant, user_name=f"u{n}{name}", name=name)
        for n, name in enumerate(TRICKY_NAMES)
    )
    for text in TRICKY_QUERIES:
        expected = set(
            Department.objects.filter(tenant=tenant)
            .filter(Q(org_code__icontains=text) | Q(org_name__icontains=text))
            .values_list("org_code", flat=True)
        )
        found = staff_selectors.search_departments(tenant=tenant, text=text, limit=100)
        assert {d.org_code for d in found} == expected, text
        expected_users = set(
            TenantUser.objects.filter(tenant=tenant)
            .filter(Q(user_name__icontains=text) | Q(name__icontains=text))
            .values_list("user_name", flat=True)
        )
        users = staff_selectors.search_users(tenant=tenant, text=text, limit=100)
        assert {u.user_name for u in users} == expected_users, text
    answer = get(staff, f"{BASE}/org-tree/search", q="d0054322")
    assert [d["orgName"] for d in answer["departments"]] == ["d0054322", "D0054322"]


# --- tenant isolation --------------------------------------------------------------------------


def all_codes_and_names(answer) -> set[tuple[str, str]]:
    found, stack = set(), list(answer["nodes"])
    while stack:
        node = stack.pop()
        found.add((node["orgCode"], node["orgName"]))
        stack.extend(node["children"] or [])
    return found


def test_same_orgcodes_in_other_tenants_never_mix(world, staff):
    production = all_codes_and_names(get(staff, f"{BASE}/org-tree", depth=10))
    debug = all_codes_and_names(get(staff, f"{BASE}/org-tree", depth=10, test=1))
    other = all_codes_and_names(get(staff, f"/api/tenants/{OTHER_ID}/org-tree", depth=10))
    codes = {code for code, _ in production}
    assert codes == {code for code, _ in debug} == {code for code, _ in other}
    assert all(not name.startswith(("调试", "Other")) for _, name in production)
    assert all(name.startswith("调试") for _, name in debug)
    assert all(name.startswith("Other") for _, name in other)

    # Counts of a branch are the tenant's own users only.
    assert shape(get(staff, f"{BASE}/org-tree", root="111", depth=0)["nodes"]) == [
        ("111", 2, 3, 1, None)
    ]
    assert shape(get(staff, f"{BASE}/org-tree", root="111", depth=0, test=1)["nodes"]) == [
        ("111", 1, 1, 1, None)
    ]

    users = {u["userName"] for u in get(staff, f"{BASE}/departments/111/users")["results"]}
    debug_users = get(staff, f"{BASE}/departments/111/users", test=1)["results"]
    other_users = get(staff, f"/api/tenants/{OTHER_ID}/departments/111/users")["results"]
    assert users == {"lisi", "zhangsan01"}
    assert [u["userName"] for u in debug_users] == ["debugger"]
    assert [u["userName"] for u in other_users] == ["outsider"]

    # "张三" is part of "张三丰" of the other tenant: not found here.
    hits = get(staff, f"{BASE}/org-tree/search", q="张三")
    assert [u["userName"] for u in hits["users"]] == ["zhangsan01"]
    hits = get(staff, f"{BASE}/org-tree/search", q="111", test=1)
    assert [s["orgName"] for s in hits["departments"][0]["path"]["head"]] == [
        "调试总部",
        "调试研发部",
        "调试平台组",
    ]
    assert get(staff, f"{BASE}/unassigned-users", test=1)["count"] == 0
    assert get(staff, BASE, test=1)["userCount"] == 1


# --- staff only ----------------------------------------------------------------------------------

API_URLS = [
    BASE,
    f"{BASE}/org-tree",
    f"{BASE}/org-tree?root=110&depth=2",
    f"{BASE}/org-tree/search?q=zhang",
    f"{BASE}/departments/111/users",
    f"{BASE}/unassigned-users",
    "/api/schema/",
    "/api/schema/swagger-ui/",
    "/api/schema/redoc/",
]


@pytest.mark.parametrize("who", ["anonymous", "signed-in non-staff"])
def test_non_staff_are_refused_everywhere(world, who):
    client = Client()
    if who != "anonymous":
        client.force_login(get_user_model().objects.create_user("buyer", password="pw-Buyer-1"))
    for url in API_URLS:
        response = client.get(url)
        assert response.status_code == 403, url
        assert "zhangsan" not in response.content.decode(), url

    page = client.get(f"/staff/tenants/{TENANT_ID}/org-tree")
    assert page.status_code == 302
    assert page["Location"].startswith("/admin/login/")


def test_staff_reach_every_url(world, staff):
    for url in API_URLS:
        assert staff.get(url).status_code == 200, url


# --- page shell and admin link -----------------------------------------------------------------


def test_the_page_shows_the_summary_and_points_the_script_at_the_api(world, staff):
    page = staff.get(f"/staff/tenants/{TENANT_ID}/org-tree")
    html = page.content.decode()
    assert page.status_code == 200
    assert f'data-api-base="{BASE}"' in html
    assert 'data-test="0"' in html
    assert world["production"].org_synced_at.strftime("%Y-%m-%d %H:%M:%S") in html
    assert '<dd id="orphan-count"><span class="org-flag">1</span></dd>' in html
    assert "/static/orgsync/org_tree.js" in html

    debug = staff.get(f"/staff/tenants/{TENANT_ID}/org-tree?test=1").content.decode()
    assert 'data-test="1"' in debug
    assert "debug (testFlag 1)" in debug

    assert staff.get(f"/staff/tenants/{OTHER_ID}/org-tree?test=1").status_code == 404
    assert staff.get("/staff/tenants/a%00b/org-tree").status_code == 404
    assert staff.get(f"/staff/tenants/{TENANT_ID}/org-tree?test=x").status_code == 400


def test_the_tenant_admin_page_links_to_the_tree(world, admin_client):
    for kind, query in (("production", ""), ("debug", "?test=1")):
        tenant = world[kind]
        html = admin_client.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content.decode()
        assert f'href="/staff/tenants/{TENANT_ID}/org-tree{query}"' in html


# --- schema ------------------------------------------------------------------------------------


def test_the_schema_is_valid_and_describes_the_api(tmp_path):
    out = Path(tmp_path) / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = out.read_text()
    for path in (
        "/api/tenants/{tenant_id}:",
        "/api/tenants/{tenant_id}/org-tree:",
        "/api/tenants/{tenant_id}/org-tree/search:",
        "/api/tenants/{tenant_id}/departments/{org_code}/users:",
        "/api/tenants/{tenant_id}/unassigned-users:",
    ):
        assert path in schema
    assert "DepartmentNodeOut" in schema
    assert "/api/schema/:" not in schema
