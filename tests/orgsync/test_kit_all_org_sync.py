"""allOrgSync (部门全量同步), V2 and V1 (spec §4.1.5, §4.3, §2.6): a full snapshot."""

import json
import threading
import time

import pytest
from django.db import close_old_connections, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from koogallery.inbound.journal import InboundCall
from koogallery.protocol.times import kit_time
from orgsync import services, snapshot
from orgsync.models import Department
from tenants.models import SyncFlag, Tenant, TenantUser
from tenants.services import ensure_tenant
from tests.support.kgclient import fixture
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

HUAWEI_TENANT = "68cbc8******b880d92f36422fa0e"
TREE = [
    ("100", "总部", ""),
    ("110", "研发部", "100"),
    ("111", "平台组", "110"),
    ("112", "应用组", "110"),
    ("120", "市场部", "100"),
    ("200", "南京分公司", ""),
]
LINKED = {
    "100": ("总部", "", None),
    "110": ("研发部", "100", "100"),
    "111": ("平台组", "110", "110"),
    "112": ("应用组", "110", "110"),
    "120": ("市场部", "100", "100"),
    "200": ("南京分公司", "", None),
}


def test_huawei_body_with_a_string_list_and_bare_keys(kg):
    raw = fixture("allOrgSync__huawei")
    assert isinstance(json.loads(raw)["orgInfoList"], str)

    answer = send(kg, "v2", "allOrgSync", raw)

    assert answer == {"resultCode": "000000", "resultMsg": "success"}
    # 265789314 is not listed: both are top level, the raw parent code kept (§4.1.5).
    assert tree(HUAWEI_TENANT) == {
        "00000001": ("产品部", "265789314", None),
        "00000002": ("测试部", "265789314", None),
    }
    assert tenant(HUAWEI_TENANT).org_synced_at is not None
    assert InboundCall.objects.get().endpoint == "allOrgSync"


def test_huawei_v1_body_with_org_info_and_name(kg):
    answer = send(kg, "v1", "allOrgSync", fixture("allOrgSync__v1"))

    assert answer["resultCode"] == "000000"
    assert tree(HUAWEI_TENANT) == {"00000001": ("产品部", "265789314", None)}


@pytest.mark.parametrize("version", VERSIONS)
def test_a_snapshot_builds_the_linked_tree(kg, version):
    answer = full(kg, TREE, version=version)

    assert answer["resultCode"] == "000000"
    assert tree() == LINKED


def test_the_tree_fixture_in_any_order(kg):
    answer = send(kg, "v2", "allOrgSync", fixture("allOrgSync__tree"))
    assert answer["resultCode"] == "000000"
    assert tree() == LINKED

    full(kg, list(reversed(TREE)))

    assert tree() == LINKED


def test_v2_list_may_also_be_a_json_string(kg):
    rows_as_text = json.dumps(
        [{"orgCode": c, "orgName": n, "parentCode": p} for c, n, p in TREE], ensure_ascii=False
    )
    answer = send(
        kg,
        "v2",
        "allOrgSync",
        {
            "instanceId": "",
            "tenantId": TENANT_ID,
            "orgInfoList": rows_as_text,
            "testFlag": 0,
            "timeStamp": "20220420114117642",
        },
    )

    assert answer["resultCode"] == "000000"
    assert tree() == LINKED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[{orgCode:"1", orgName:"名字 parentCode:", parentCode:""}]',
            {"1": ("名字 parentCode:", "", None)},
        ),
        (
            r'[{orgCode:"1", orgName:"引号 \"orgCode:\" 与 {a:\"b\"}"}, {parentCode:"1",'
            r' orgName:"子", orgCode:"2"}]',
            {"1": ('引号 "orgCode:" 与 {a:"b"}', "", None), "2": ("子", "1", "1")},
        ),
        (
            '[{ orgCode : "1" , orgName : "空格" }]',
            {"1": ("空格", "", None)},
        ),
    ],
    ids=["key-text-ending-a-name", "escaped-quotes", "spaced-keys"],
)
def test_bare_keys_are_quoted_without_touching_names_that_look_like_keys(kg, text, expected):
    body = json.loads(fixture("allOrgSync__huawei"))
    body["orgInfoList"] = text

    answer = send(kg, "v2", "allOrgSync", body)

    assert answer["resultCode"] == "000000", answer
    assert tree(HUAWEI_TENANT) == expected


@pytest.mark.parametrize("version", VERSIONS)
def test_the_same_snapshot_three_times_changes_nothing(kg, version):
    add_user("zhangsan01", "110")
    full(kg, TREE, version=version)
    after_first = rows()

    answers = [full(kg, TREE, version=version) for _ in range(2)]

    assert [a["resultCode"] for a in answers] == ["000000", "000000"]
    assert rows() == after_first  # same primary keys, same updated_at


def test_a_new_snapshot_renames_moves_adds_and_removes_leaving_the_rest_untouched(kg):
    add_user("zhangsan01", "111")
    add_user("lisi", "120")
    full(kg, TREE)
    before = {d.org_code: (d.pk, d.updated_at) for d in Department.objects.all()}

    answer = full(
        kg,
        [
            ("100", "总部", ""),
            ("110", "研发中心", "100"),  # renamed
            ("111", "平台组", "200"),  # moved
            ("112", "应用组", "110"),
            ("200", "南京分公司", ""),
            ("300", "上海分公司", ""),  # added; 120 absent: removed
        ],
    )

    assert answer["resultCode"] == "000000"
    assert tree() == {
        "100": ("总部", "", None),
        "110": ("研发中心", "100", "100"),
        "111": ("平台组", "200", "200"),
        "112": ("应用组", "110", "110"),
        "200": ("南京分公司", "", None),
        "300": ("上海分公司", "", None),
    }
    after = {d.org_code: (d.pk, d.updated_at) for d in Department.objects.all()}
    for code in ("100", "112", "200"):
        assert after[code] == before[code], code
    for code in ("110", "111"):
        assert after[code][0] == before[code][0] and after[code][1] > before[code][1]
    # Users stay, linked to the same rows; the removed department's user is unassigned.
    assert user_links() == {"zhangsan01": ("111", "111"), "lisi": ("120", None)}
    assert TenantUser.objects.count() == 2


@pytest.mark.parametrize(
    "writer", ["portable", "postgresql"] if connection.vendor == "postgresql" else ["portable"]
)
def test_both_writers_rewrite_only_the_rows_that_change(writer):
    def sync(items):
        services.all_org_sync(tenant_id=TENANT_ID, is_test=False, departments=items, writer=writer)
        return {d.org_code: (d.pk, d.updated_at) for d in Department.objects.all()}

    first = sync(TREE)
    again = sync(list(reversed(TREE)))
    assert again == first

    changed = sync(
        [("100", "总部", ""), ("110", "研发中心", "100"), ("111", "平台组", "200"), *TREE[3:]]
    )

    assert {code for code in first if changed[code] != first[code]} == {"110", "111"}
    assert all(changed[code][0] == first[code][0] for code in first)
    assert tree() == {**LINKED, "110": ("研发中心", "100", "100"), "111": ("平台组", "200", "200")}


@pytest.mark.parametrize(
    "writer", ["portable", "postgresql"] if connection.vendor == "postgresql" else ["portable"]
)
def test_new_departments_carry_the_time_they_were_written(writer):
    """The PostgreSQL writer's COPY leaves created_at and updated_at to the database's clock."""
    before = timezone.now()
    services.all_org_sync(tenant_id=TENANT_ID, is_test=False, departments=TREE, writer=writer)
    after = timezone.now()

    times = list(Department.objects.values_list("created_at", "updated_at"))
    assert len(times) == len(TREE)
    assert all(before <= created == updated <= after for created, updated in times)


def test_a_parent_not_in_the_snapshot_leaves_the_child_at_the_top_with_its_code(kg):
    full(kg, TREE)

    full(kg, [("110", "研发部", "100"), ("111", "平台组", "110"), ("120", "市场部", "999")])

    assert tree() == {
        "110": ("研发部", "100", None),
        "111": ("平台组", "110", "110"),
        "120": ("市场部", "999", None),
    }
    assert dangling_parents() == []


def test_an_orphan_is_linked_when_a_later_snapshot_lists_its_parent(kg):
    full(kg, [("110", "研发部", "100")])
    ids = dict(Department.objects.values_list("org_code", "pk"))

    full(kg, [("110", "研发部", "100"), ("100", "总部", "")])

    assert tree() == {"100": ("总部", "", None), "110": ("研发部", "100", "100")}
    assert Department.objects.get(org_code="110").pk == ids["110"]


def test_a_repeated_org_code_counts_once_and_the_last_wins(kg):
    answer = full(
        kg,
        [("100", "总部", ""), ("110", "旧名", ""), ("200", "分公司", ""), ("110", "新名", "100")],
    )

    assert answer["resultCode"] == "000000"
    assert tree() == {
        "100": ("总部", "", None),
        "110": ("新名", "100", "100"),
        "200": ("分公司", "", None),
    }


def test_an_empty_snapshot_empties_the_tree_but_keeps_the_users(kg):
    add_user("zhangsan01", "110")
    full(kg, TREE)

    answer = full(kg, [])

    assert answer["resultCode"] == "000000"
    assert tree() == {}
    assert user_links() == {"zhangsan01": ("110", None)}


def test_users_synced_before_their_departments_are_linked_when_they_arrive(kg):
    """authSync before allOrgSync (§1.3: the order is not guaranteed)."""
    add_user("zhangsan01", "111")
    add_user("lisi", "120")
    add_user("wangwu", "999")  # no such department yet
    add_user("other", "111", tenant_id="another-tenant")

    full(kg, TREE)

    assert user_links() == {
        "zhangsan01": ("111", "111"),
        "lisi": ("120", "120"),
        "wangwu": ("999", None),
    }
    assert user_links("another-tenant") == {"other": ("111", None)}

    full(kg, [*TREE, ("999", "新部门", "")])

    assert user_links()["wangwu"] == ("999", "999")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "cycle",
    [
        [("100", "总部", "100")],
        [("100", "A", "110"), ("110", "B", "100")],
        [("100", "A", ""), ("110", "B", "112"), ("111", "C", "110"), ("112", "D", "111")],
    ],
    ids=["self-parent", "two", "three-below-a-root"],
)
def test_a_cycle_is_refused_and_nothing_is_written(kg, version, cycle):
    add_user("zhangsan01", "110")
    full(kg, TREE)
    before = rows()
    departments, users = Department.objects.count(), TenantUser.objects.count()

    answer = full(kg, [*TREE[3:], *cycle], version=version)

    assert_rejected(before, answer, "cycle")
    assert (Department.objects.count(), TenantUser.objects.count()) == (departments, users)
    assert InboundCall.objects.filter(result_code="000002").count() == 1


@pytest.mark.parametrize(
    ("moves", "message"),
    [
        ([("100", "总部", "111")], "parentCode cycle: 100 → 111 → 110 → 100"),
        ([("110", "研发部", "300"), ("300", "新部门", "112")], "110 → 300 → 112 → 110"),
    ],
    ids=["under-its-grandchild", "through-a-new-department"],
)
def test_a_re_sync_moving_a_department_under_its_descendant_is_refused(kg, moves, message):
    # The re-sync is checked from the rows it changes (issue 17); the cycle runs through rows
    # it keeps as they are, and is named as the walk over the whole snapshot names it.
    full(kg, TREE)
    before = rows()

    answer = full(kg, [*TREE, *moves])

    assert_rejected(before, answer, message)


def test_the_cycle_in_huawei_style_fixture_is_named(kg):
    answer = send(kg, "v2", "allOrgSync", fixture("allOrgSync__cycle"))

    assert answer["resultCode"] == "000002"
    assert "110 → 112 → 111 → 110" in answer["resultMsg"]
    assert Department.objects.count() == 0


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"orgName": "无编码"}, "orgInfoList[3].orgCode: This field is required."),
        ({"orgCode": "", "orgName": "空"}, "orgInfoList[3].orgCode: This field may not be blank."),
        ({"orgCode": "x" * 65, "orgName": "长"}, "orgInfoList[3].orgCode: Ensure this field"),
        ({"orgCode": "300"}, "orgInfoList[3].orgName: This field is required."),
        ({"orgCode": "300", "orgName": "名" * 129}, "orgInfoList[3].orgName: Ensure this field"),
        (
            {"orgCode": "300", "orgName": None},
            "orgInfoList[3].orgName: This field may not be null.",
        ),
        ({"orgCode": ["300"], "orgName": "列"}, "orgInfoList[3].orgCode: Not a valid string."),
        (
            {"orgCode": "300", "orgName": "父", "parentCode": {"code": "1"}},
            "orgInfoList[3].parentCode: Not a valid string.",
        ),
        (
            {"orgCode": "300", "orgName": "父", "parentCode": "p" * 65},
            "orgInfoList[3].parentCode: Ensure this field",
        ),
        ({"orgCode": "3\u00000", "orgName": "空字符"}, "orgInfoList[3].orgCode: Null characters"),
        ("300", "orgInfoList[3]: Invalid data. Expected a dictionary"),
    ],
)
def test_one_invalid_item_refuses_the_call_naming_it(kg, item, message):
    add_user("zhangsan01", "110")
    full(kg, TREE)
    before = rows()

    answer = full(kg, [*TREE[:3], item, *TREE[3:]])

    assert_rejected(before, answer, message)


def test_v1_messages_name_org_info_and_name(kg):
    body = json.loads(fixture("allOrgSync__v1"))
    body["orgInfo"] = json.dumps(
        [{"orgCode": "100", "name": "总部"}, {"orgCode": "110", "orgName": "V2 的名字"}],
        ensure_ascii=False,
    )

    answer = send(kg, "v1", "allOrgSync", body)

    assert answer["resultCode"] == "000002"
    assert "orgInfo[1].name: This field is required." in answer["resultMsg"]


def test_numbers_are_taken_as_their_text_like_every_string_field(kg):
    answer = full(
        kg,
        [
            {"orgCode": 100, "orgName": "总部"},
            {"orgCode": "110", "orgName": "研发", "parentCode": 100},
        ],
    )

    assert answer["resultCode"] == "000000"
    assert tree() == {"100": ("总部", "", None), "110": ("研发", "100", "100")}


def test_a_null_parent_code_means_top_level(kg):
    answer = full(kg, [{"orgCode": "100", "orgName": "总部", "parentCode": None}])

    assert answer["resultCode"] == "000000"
    assert tree() == {"100": ("总部", "", None)}


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("[{orgCode:", "orgInfoList"),
        ("{}", "orgInfoList"),
        (42, "orgInfoList"),
        (None, "orgInfoList"),
    ],
)
def test_an_unreadable_list_is_refused(kg, value, field):
    body = json.loads(fixture("allOrgSync__tree"))
    body["orgInfoList"] = value
    before = rows()

    answer = send(kg, "v2", "allOrgSync", body)

    assert_rejected(before, answer, field)


def test_v1_needs_org_info(kg):
    body = json.loads(fixture("allOrgSync__tree"))  # V2 shape: orgInfoList, not orgInfo

    answer = send(kg, "v1", "allOrgSync", body)

    assert answer["resultCode"] == "000002"
    assert "orgInfo" in answer["resultMsg"]


def test_identical_codes_of_two_tenants_never_mix(kg):
    full(kg, TREE, tenant_id="tenant-a")
    full(kg, [("100", "乙总部", ""), ("110", "乙研发", "100")], tenant_id="tenant-b")

    full(kg, [("100", "乙总部", "")], tenant_id="tenant-b")

    assert tree("tenant-a") == LINKED
    assert tree("tenant-b") == {"100": ("乙总部", "", None)}
    for department in Department.objects.select_related("parent"):
        assert department.parent is None or department.parent.tenant_id == department.tenant_id


def test_debug_snapshot_and_production_snapshot_of_one_tenant_id_stay_apart(kg):
    full(kg, TREE, test_flag=0)

    full(kg, [("900", "调试部门", "")], test_flag=1)

    assert tree(is_test=False) == LINKED
    assert tree(is_test=True) == {"900": ("调试部门", "", None)}


def test_incremental_changes_after_a_snapshot(kg):
    full(kg, TREE)

    single(kg, "113", "测试组", "110")
    single(kg, "110", flag=0)

    assert tree()["113"] == ("测试组", "110", None)
    assert tree()["111"] == ("平台组", "110", None)

    full(kg, TREE)

    assert tree() == LINKED


# --- an identical re-sync (issue 17) ------------------------------------------------------------
def _department_statements(queries) -> list[str]:
    return [q["sql"] for q in queries if Department._meta.db_table in q["sql"]]


@pytest.mark.parametrize("version", VERSIONS)
def test_an_identical_resync_reads_and_writes_no_department_but_keeps_its_time(kg, version):
    add_user("zhangsan01", "110")
    full(kg, TREE, version=version)
    before = rows()

    with CaptureQueriesContext(connection) as queries:
        answer = full(kg, TREE, version=version, time_stamp="20300101120000000")

    assert answer["resultCode"] == "000000"
    assert _department_statements(queries) == []
    assert rows() == before
    assert tenant().org_snapshot_time == tenant().org_call_time == kit_time("20300101120000000")
    journal = InboundCall.objects.order_by("-id").first()
    assert (journal.endpoint, journal.result_code, journal.stale_entities) == (
        "allOrgSync",
        "000000",
        0,
    )


@pytest.mark.parametrize(
    "change",
    [
        lambda kg: single(kg, "110", "研发中心", "100", flag=2),  # rename
        lambda kg: single(kg, "111", "平台组", "200", flag=2),  # move
        lambda kg: single(kg, "120", flag=0),  # delete
        lambda kg: single(kg, "130", "新部门", "100"),  # add
        lambda kg: single(kg, "110", "研发部", "100", flag=2),  # the same again
    ],
    ids=["rename", "move", "delete", "add", "no-op modify"],
)
def test_a_single_change_between_two_identical_snapshots_is_undone_by_the_second(kg, change):
    full(kg, TREE)
    assert change(kg)["resultCode"] == "000000"

    assert full(kg, TREE)["resultCode"] == "000000"

    assert tree() == LINKED
    assert dangling_parents() == []


@pytest.mark.parametrize(
    "writer", ["portable", "postgresql"] if connection.vendor == "postgresql" else ["portable"]
)
@pytest.mark.parametrize("flag", [SyncFlag.DELETE, SyncFlag.ADD, SyncFlag.MODIFY])
def test_every_single_writer_clears_the_snapshot_digest(writer, flag):
    services.all_org_sync(tenant_id=TENANT_ID, is_test=False, departments=TREE)
    assert tenant().org_snapshot_digest

    services.single_org_sync(
        tenant_id=TENANT_ID,
        is_test=False,
        org_code="130" if flag == SyncFlag.ADD else "112",
        org_name="某部门",
        parent_code="110",
        flag=flag,
        writer=writer,
    )

    assert tenant().org_snapshot_digest == ""
    services.all_org_sync(tenant_id=TENANT_ID, is_test=False, departments=TREE)
    assert tree() == LINKED


def test_a_late_identical_snapshot_is_still_skipped_and_counted_stale(kg):
    full(kg, TREE, time_stamp="20300101120000000")
    before = rows()

    answer = full(kg, TREE, time_stamp="20300101110000000")

    assert answer["resultCode"] == "000000"
    assert rows() == before
    assert InboundCall.objects.order_by("-id").first().stale_entities == len(TREE)
    assert tenant().org_snapshot_time == kit_time("20300101120000000")


def test_a_change_older_than_an_identical_resync_is_skipped(kg):
    """The re-sync that wrote nothing still restated every department at its time (§2.3)."""
    full(kg, TREE, time_stamp="20300101110000000")
    full(kg, TREE, time_stamp="20300101130000000")

    answer = single(kg, "110", "旧名", "100", flag=2, timeStamp="20300101120000000")

    assert answer["resultCode"] == "000000"
    assert tree() == LINKED
    assert InboundCall.objects.order_by("-id").first().stale_entities == 1


def test_the_same_departments_in_another_order_are_diffed(kg):
    full(kg, TREE)
    Department.objects.filter(org_code="200").delete()  # not a sync: no digest cleared

    full(kg, list(reversed(TREE)))  # the same departments, another digest: diffed, restored

    assert tree() == LINKED


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ([("ab", "c", "")], [("a", "bc", "")]),
        ([("a", "b", "c")], [("a", "bc", "")]),
        ([("a", "b", ""), ("c", "d", "")], [("c", "d", ""), ("a", "b", "")]),
        ([("a", "b", "")], [("a", "b", ""), ("c", "d", "a")]),
        ([], [("a", "b", "")]),
        # A tab or a newline in a field: the lines would read back otherwise (NUL-joined).
        ([("a", "b\tc", "")], [("a", "b", "c")]),
        ([("a", "b\nc\td", "")], [("a", "b", ""), ("c", "d", "")]),
    ],
)
def test_snapshot_digests_tell_different_snapshots_apart(one, other):
    digest = snapshot.digest
    assert digest(snapshot.last_wins(one)) != digest(snapshot.last_wins(other))
    assert digest(snapshot.last_wins(one)) == digest(snapshot.last_wins(list(one)))


def test_a_snapshot_that_could_be_read_two_ways_gets_no_digest():
    assert snapshot.digest({"a": ("a", "b\x00c", "")}) is None
    assert snapshot.digest(snapshot.last_wins([("a", "b", ""), ("a", "c", "")])) == (
        snapshot.digest({"a": ("a", "c", "")})
    )


# --- concurrency (PostgreSQL: real parallel transactions) ------------------------------------
def _in_thread(target, *args, **kwargs) -> threading.Thread:
    def run():
        try:
            target(*args, **kwargs)
        finally:
            close_old_connections()
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_syncs_of_one_tenant_wait_for_each_other_and_other_tenants_do_not(postgres_only):
    ensure_tenant(tenant_id="tenant-a", is_test=False)
    lock_held, release = threading.Event(), threading.Event()
    finished: dict[str, float] = {}

    def hold_tenant_a():
        with transaction.atomic():
            ensure_tenant(tenant_id="tenant-a", is_test=False, lock=True)
            lock_held.set()
            release.wait(10)

    def sync(tenant_id, items):
        services.all_org_sync(tenant_id=tenant_id, is_test=False, departments=items)
        finished[tenant_id] = time.monotonic()

    holder = _in_thread(hold_tenant_a)
    assert lock_held.wait(10)
    same = _in_thread(sync, "tenant-a", [("100", "总部", "")])
    other = _in_thread(sync, "tenant-b", [("100", "总部", "")])
    other.join(10)
    time.sleep(0.3)

    assert "tenant-b" in finished  # not blocked by tenant-a's lock
    assert "tenant-a" not in finished  # waits for it

    released_at = time.monotonic()
    release.set()
    for thread in (holder, same):
        thread.join(10)
    assert finished["tenant-a"] >= released_at
    assert tree("tenant-a") == {"100": ("总部", "", None)}


@pytest.mark.django_db(transaction=True)
def test_parallel_full_and_incremental_syncs_end_in_a_serial_outcome(postgres_only):
    snapshot = [("100", "总部", "")] + [(f"1{i:03d}", f"部门 {i}", "100") for i in range(2000)]
    barrier = threading.Barrier(2)

    def full_sync():
        barrier.wait()
        services.all_org_sync(tenant_id="tenant-a", is_test=False, departments=snapshot)

    def incremental():
        barrier.wait()
        services.single_org_sync(
            tenant_id="tenant-a",
            is_test=False,
            org_code="9999",
            flag=1,
            org_name="新部门",
            parent_code="1000",
        )

    threads = [_in_thread(full_sync), _in_thread(incremental)]
    for thread in threads:
        thread.join(30)

    stored = tree("tenant-a")
    expected = {code: (name, parent, parent or None) for code, name, parent in snapshot}
    # Either the snapshot came last (9999 removed) or the add did (9999 linked under 1000).
    assert stored in (expected, {**expected, "9999": ("新部门", "1000", "1000")})
    assert Tenant.objects.filter(tenant_id="tenant-a").count() == 1


@pytest.mark.parametrize(
    "writer", ["portable", "postgresql"] if connection.vendor == "postgresql" else ["portable"]
)
def test_tabs_newlines_and_backslashes_are_stored_as_sent(writer):
    # PostgreSQL's writer streams rows as COPY text, where these characters must be escaped;
    # among plain rows, so that a block of both kinds is written.
    special = {
        "T\t1": ("tab\there", ""),
        "N\n1": ("line\nbreak\r\n", "T\t1"),
        "B\\1": ("back\\slash\\", "N\n1"),
        "\\N": ("\\N", "B\\1"),
        "E1": ("ends in \\", "\\N"),
    }
    items = [(code, name, parent) for code, (name, parent) in special.items()]
    items += [(f"P{n:03d}", f"plain {n}", "E1") for n in range(50)]

    services.all_org_sync(tenant_id=TENANT_ID, is_test=False, departments=items, writer=writer)

    stored = tree()
    assert len(stored) == len(items)
    for code, (name, parent) in special.items():
        assert stored[code] == (name, parent, parent or None), repr(code)
    assert stored["P007"] == ("plain 7", "E1", "E1")
