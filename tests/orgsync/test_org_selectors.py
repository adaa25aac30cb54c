"""Department tree reads (orgsync/selectors.py): one query per tree, always tenant-scoped."""

import pytest

from orgsync import selectors, services
from orgsync.models import Department
from tenants.models import Tenant
from tests.support.org_kit import add_user

pytestmark = pytest.mark.django_db

TREE = [
    ("100", "总部", ""),
    ("110", "研发部", "100"),
    ("111", "平台组", "110"),
    ("112", "应用组", "110"),
    ("1111", "内核小组", "111"),
    ("120", "市场部", "100"),
    ("200", "南京分公司", ""),
    ("300", "孤儿部门", "999"),  # parent never synced: an orphan
]


def load(tenant_id: str = "tenant-a", items=TREE) -> Tenant:
    return services.all_org_sync(tenant_id=tenant_id, is_test=False, departments=items).tenant


def shape(nodes) -> list:
    """[(code, direct, total, [children…])] — the forest as plain data."""
    return [(n.org_code, n.direct_users, n.total_users, shape(n.children)) for n in nodes]


@pytest.fixture
def tenant() -> Tenant:
    owner = load()
    for user, code in [("u1", "100"), ("u2", "111"), ("u3", "111"), ("u4", "1111"), ("u5", "300")]:
        add_user(user, code, tenant_id="tenant-a")
    add_user("lost", "555", tenant_id="tenant-a")  # no such department: counted nowhere
    # A second tenant with the same codes and users must never leak into tenant-a's answers.
    load("tenant-b")
    add_user("b1", "111", tenant_id="tenant-b")
    return owner


def test_forest_is_the_whole_tree_in_one_query_with_orphans_as_roots(
    tenant, django_assert_num_queries
):
    with django_assert_num_queries(1):
        forest = selectors.department_forest(tenant=tenant)

    assert shape(forest) == [
        (
            "100",
            1,
            4,
            [
                (
                    "110",
                    0,
                    3,
                    [("111", 2, 3, [("1111", 1, 1, [])]), ("112", 0, 0, [])],
                ),
                ("120", 0, 0, []),
            ],
        ),
        ("200", 0, 0, []),
        ("300", 1, 1, []),
    ]
    assert [n.is_orphan for n in forest] == [False, False, True]
    assert all(n.department.tenant_id == tenant.pk for root in forest for n in root.walk())


def test_forest_of_an_empty_tenant():
    empty = Tenant.objects.create(tenant_id="empty")
    assert selectors.department_forest(tenant=empty) == []


def test_branch_with_and_without_depth(tenant):
    whole = selectors.branch(tenant=tenant, org_code="110")
    assert shape([whole]) == [
        ("110", 0, 3, [("111", 2, 3, [("1111", 1, 1, [])]), ("112", 0, 0, [])])
    ]

    shallow = selectors.branch(tenant=tenant, org_code="110", depth=1)
    assert shape([shallow]) == [("110", 0, 2, [("111", 2, 2, []), ("112", 0, 0, [])])]

    assert shape([selectors.branch(tenant=tenant, org_code="110", depth=0)]) == [("110", 0, 0, [])]
    assert selectors.branch(tenant=tenant, org_code="nope") is None


def test_branch_is_one_query(tenant, django_assert_num_queries):
    with django_assert_num_queries(1):
        selectors.branch(tenant=tenant, org_code="100")


def test_path_to_root(tenant, django_assert_num_queries):
    with django_assert_num_queries(1):
        path = selectors.path_to_root(tenant=tenant, org_code="1111")

    assert [d.org_code for d in path] == ["1111", "111", "110", "100"]
    assert [d.org_code for d in selectors.path_to_root(tenant=tenant, org_code="300")] == ["300"]
    assert selectors.path_to_root(tenant=tenant, org_code="nope") == []


def test_user_counts(tenant):
    ids = dict(Department.objects.filter(tenant=tenant).values_list("org_code", "pk"))

    counts = selectors.user_counts(tenant=tenant)

    assert {code: counts[pk] for code, pk in ids.items()} == {
        "100": (1, 4),
        "110": (0, 3),
        "111": (2, 3),
        "112": (0, 0),
        "1111": (1, 1),
        "120": (0, 0),
        "200": (0, 0),
        "300": (1, 1),
    }


def test_orphans(tenant):
    assert [d.org_code for d in selectors.orphans(tenant=tenant)] == ["300"]

    services.single_org_sync(
        tenant_id="tenant-a", is_test=False, org_code="110", flag=0, org_name=""
    )

    assert [d.org_code for d in selectors.orphans(tenant=tenant)] == ["111", "112", "300"]


def test_a_stray_link_into_another_tenant_is_never_followed(tenant):
    """Both terms of the recursive queries carry the tenant (STYLE.md §7)."""
    other = Tenant.objects.get(tenant_id="tenant-b")
    foreign_child = Department.objects.get(tenant=other, org_code="111")
    # Corrupt data on purpose: tenant-b's 111 points at tenant-a's 110.
    Department.objects.filter(pk=foreign_child.pk).update(
        parent=Department.objects.get(tenant=tenant, org_code="110")
    )

    branch = selectors.branch(tenant=tenant, org_code="110")
    assert all(n.department.tenant_id == tenant.pk for n in branch.walk())
    assert sum(1 for _ in branch.walk()) == 4

    foreign_path = selectors.path_to_root(tenant=other, org_code="1111")
    assert [d.org_code for d in foreign_path] == ["1111", "111"]
    assert all(d.tenant_id == other.pk for d in foreign_path)
