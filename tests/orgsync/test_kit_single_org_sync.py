"""singleOrgSync (部门增量同步), V2 and V1 (spec §4.1.4, §4.3, §2.6)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from koogallery.inbound.journal import InboundCall
from orgsync.models import Department
from tenants.models import Tenant, TenantUser
from tests.support.kgclient import fixture, kit_timestamp
from tests.support.org_kit import (
    TENANT_ID,
    VERSIONS,
    add_user,
    assert_rejected,
    dangling_parents,
    full,
    rows,
    send,
    single,
    tenant,
    tree,
    user_links,
)

pytestmark = pytest.mark.django_db

HUAWEI_TENANT = "68cbc********0d92f36422fa0e"


def test_huawei_body_with_its_duplicate_instance_id_adds_a_top_level_department(kg):
    raw = fixture("singleOrgSync__huawei")
    assert raw.count('"instanceId"') == 2  # as printed by Huawei: last one wins (§2.3)

    answer = send(kg, "v2", "singleOrgSync", raw)

    assert answer == {"resultCode": "000000", "resultMsg": "success"}
    assert tree(HUAWEI_TENANT) == {"10000": ("开发部", "", None)}
    assert tenant(HUAWEI_TENANT).org_synced_at is not None
    call = InboundCall.objects.get()
    assert (call.endpoint, call.tenant_id, call.result_code) == (
        "singleOrgSync",
        HUAWEI_TENANT,
        "000000",
    )


def test_v1_body_is_served_identically(kg):
    answer = send(kg, "v1", "singleOrgSync", fixture("singleOrgSync__v1"))

    assert answer["resultCode"] == "000000"
    assert tree(HUAWEI_TENANT) == {"10000": ("开发部", "", None)}


def test_v1_doc_example_with_its_trailing_comma_is_refused(kg):
    raw = fixture("singleOrgSync__v1_doc_typo")
    assert raw.rstrip().endswith(", }")

    response = kg.kit_v1("singleOrgSync", raw, token="stbNYlu2Ubt271qDr6WDAVLtLRb")

    body = response.json()
    assert body["resultCode"] == "000002"
    assert Department.objects.count() == 0 and Tenant.objects.count() == 0
    assert InboundCall.objects.get().result_code == "000002"


@pytest.mark.parametrize("version", VERSIONS)
def test_add_rename_move_and_delete(kg, version):
    for code, parent in (("100", ""), ("110", "100"), ("200", "")):
        assert single(kg, code, parent=parent, version=version)["resultCode"] == "000000"
    assert tree() == {
        "100": ("部门 100", "", None),
        "110": ("部门 110", "100", "100"),
        "200": ("部门 200", "", None),
    }

    assert single(kg, "110", "研发部", "100", flag=2, version=version)["resultCode"] == "000000"
    assert tree()["110"] == ("研发部", "100", "100")

    assert single(kg, "110", "研发部", "200", flag=2, version=version)["resultCode"] == "000000"
    assert tree()["110"] == ("研发部", "200", "200")

    assert single(kg, "110", "平台部", "", flag=2, version=version)["resultCode"] == "000000"
    assert tree()["110"] == ("平台部", "", None)

    assert single(kg, "110", flag=0, version=version)["resultCode"] == "000000"
    assert set(tree()) == {"100", "200"}


def test_add_of_a_known_code_updates_it_and_modify_of_an_unknown_code_creates_it(kg):
    single(kg, "100", "总部")
    single(kg, "100", "总公司", flag=1)
    single(kg, "300", "新部门", flag=2)

    assert tree() == {"100": ("总公司", "", None), "300": ("新部门", "", None)}


@pytest.mark.parametrize(
    ("flag", "name", "parent"),
    [(1, "开发部", "100"), (2, "研发部", "100"), (2, "研发部", ""), (0, None, "")],
)
def test_the_same_call_three_times_answers_success_and_changes_nothing_more(kg, flag, name, parent):
    single(kg, "100", "总部")
    single(kg, "110", "开发部", "100")
    add_user("zhangsan01", "110")

    stamp = kit_timestamp()  # the same call: its time too
    single(kg, "110", name, parent, flag=flag, timeStamp=stamp)
    after_first = rows()
    answers = [single(kg, "110", name, parent, flag=flag, timeStamp=stamp) for _ in range(2)]

    assert [a["resultCode"] for a in answers] == ["000000", "000000"]
    assert rows() == after_first  # not even updated_at moves
    assert Department.objects.filter(org_code="110").count() == (0 if flag == 0 else 1)


def test_deleting_an_unknown_department_succeeds(kg):
    assert single(kg, "404", flag=0)["resultCode"] == "000000"
    assert single(kg, "404", flag=0)["resultCode"] == "000000"
    assert Department.objects.count() == 0


def test_a_delete_needs_only_org_code(kg):
    single(kg, "100", "总部")
    body_without_name = {"orgName": ""}

    answer = single(kg, "100", flag=0, **body_without_name)

    assert answer["resultCode"] == "000000"
    assert tree() == {}


def test_a_modify_without_parent_code_keeps_the_parent(kg):
    single(kg, "100", "总部")
    single(kg, "110", "开发部", "100")

    single(kg, "110", "研发部", None, flag=2)

    assert tree()["110"] == ("研发部", "100", "100")


def test_a_child_arriving_before_its_parent_is_linked_when_the_parent_comes(kg):
    single(kg, "111", "平台组", "110")
    single(kg, "112", "应用组", "110")
    assert tree() == {"111": ("平台组", "110", None), "112": ("应用组", "110", None)}

    single(kg, "110", "研发部", "100")

    assert tree() == {
        "110": ("研发部", "100", None),
        "111": ("平台组", "110", "110"),
        "112": ("应用组", "110", "110"),
    }

    single(kg, "100", "总部")

    assert tree()["110"] == ("研发部", "100", "100")


def test_delete_leaves_children_as_orphans_and_users_unassigned_until_it_comes_back(kg):
    single(kg, "100", "总部")
    single(kg, "110", "研发部", "100")
    single(kg, "111", "平台组", "110")
    add_user("zhangsan01", "110")
    add_user("lisi", "111")
    assert user_links() == {"zhangsan01": ("110", "110"), "lisi": ("111", "111")}

    single(kg, "110", flag=0)

    assert tree() == {"100": ("总部", "", None), "111": ("平台组", "110", None)}
    assert dangling_parents() == []
    assert user_links() == {"zhangsan01": ("110", None), "lisi": ("111", "111")}
    assert TenantUser.objects.count() == 2

    single(kg, "110", "研发部", "100")

    assert tree()["111"] == ("平台组", "110", "110")
    assert user_links()["zhangsan01"] == ("110", "110")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("moved", "new_parent"),
    [("110", "110"), ("110", "111"), ("100", "112"), ("110", "1111")],
    ids=["itself", "child", "grandchild", "great-grandchild"],
)
def test_moving_a_department_under_itself_or_a_descendant_is_refused(
    kg, version, moved, new_parent
):
    for code, parent in (("100", ""), ("110", "100"), ("111", "110"), ("112", "110")):
        single(kg, code, parent=parent)
    single(kg, "1111", parent="111")
    add_user("zhangsan01", "110")
    before = rows()

    answer = single(kg, moved, "移动", new_parent, flag=2, version=version)

    assert_rejected(before, answer, "parentCode")


def test_adding_a_parent_under_its_own_waiting_child_is_refused(kg):
    # 111 arrived first naming 110 as parent; 110 now names 111 as its parent: a cycle.
    single(kg, "111", "平台组", "110")
    single(kg, "1111", "小组", "111")
    before = rows()

    answer = single(kg, "110", "研发部", "1111")

    assert_rejected(before, answer, "parentCode")
    assert "110" not in tree()


def test_moving_a_subtree_of_a_thousand_departments_is_one_update(kg):
    full(kg, [("A", "甲", ""), ("B", "乙", "")] + [(f"A{i}", f"子 {i}", "A") for i in range(1000)])
    before = {d.pk: d.updated_at for d in Department.objects.exclude(org_code="A")}

    with CaptureQueriesContext(connection) as queries:
        answer = single(kg, "A", "甲", "B", flag=2)

    assert answer["resultCode"] == "000000"
    writes = [
        q["sql"]
        for q in queries.captured_queries
        if "orgsync_department" in q["sql"]
        and q["sql"].lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))
    ]
    assert len(writes) == 1, writes
    assert tree()["A"] == ("甲", "B", "B")
    assert tree()["A7"] == ("子 7", "A", "A")
    # The descendants were not rewritten: a move is one row.
    assert {d.pk: d.updated_at for d in Department.objects.exclude(org_code="A")} == before


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"orgCode": ""}, "orgCode"),
        ({"orgCode": "x" * 65}, "orgCode"),
        ({"orgName": "名" * 129}, "orgName"),
        ({"orgName": ""}, "orgName"),
        ({"parentCode": "p" * 65}, "parentCode"),
        ({"parentCode": ["100"]}, "parentCode"),
        ({"flag": 3}, "flag"),
        ({"flag": "x"}, "flag"),
        ({"tenantId": ""}, "tenantId"),
        ({"testFlag": 2}, "testFlag"),
    ],
)
def test_invalid_fields_are_refused_naming_the_field(kg, overrides, field):
    single(kg, "100", "总部")
    before = rows()

    answer = send(
        kg,
        "v2",
        "singleOrgSync",
        {
            **{
                "instanceId": "",
                "tenantId": TENANT_ID,
                "orgCode": "200",
                "orgName": "新",
                "parentCode": "100",
                "flag": 1,
                "testFlag": 0,
                "timeStamp": "20220413093539534",
            },
            **overrides,
        },
    )

    assert_rejected(before, answer, field)


def test_missing_org_name_on_add_is_refused(kg):
    before = rows()

    answer = single(kg, "100", parent="", orgName=None)

    assert_rejected(before, answer, "orgName")


def test_identical_codes_of_two_tenants_never_mix(kg):
    single(kg, "100", "甲总部", tenant_id="tenant-a")
    single(kg, "100", "乙总部", tenant_id="tenant-b")
    single(kg, "110", "甲研发", "100", tenant_id="tenant-a")

    single(kg, "100", flag=0, tenant_id="tenant-b")

    assert tree("tenant-a") == {"100": ("甲总部", "", None), "110": ("甲研发", "100", "100")}
    assert tree("tenant-b") == {}
    child = Department.objects.get(org_code="110")
    assert child.parent.tenant_id == child.tenant_id


def test_debug_calls_keep_their_own_tree_for_the_same_tenant_id(kg):
    single(kg, "100", "生产部门", test_flag=0)
    single(kg, "100", "调试部门", test_flag=1, instanceId="")

    single(kg, "100", flag=0, test_flag=1)

    assert tree(is_test=False) == {"100": ("生产部门", "", None)}
    assert tree(is_test=True) == {}
    assert Tenant.objects.filter(tenant_id=TENANT_ID).count() == 2
