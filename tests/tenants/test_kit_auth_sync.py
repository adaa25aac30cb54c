"""authSync (用户授权同步), V2 and V1 (spec §4.1.3, §4.3, §2.5, §2.6)."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from koogallery.inbound.journal import InboundCall
from orgsync.models import Department
from orgsync.services import single_org_sync
from orgsync.writers import link_users
from tenants.models import (
    Authorization,
    AuthorizationState,
    Role,
    SyncFlag,
    Tenant,
    TenantUser,
)
from tenants.services import ensure_tenant
from tests.support import org_tree_world
from tests.support.kgclient import KooGallery, envelope, fixture
from tests.support.tenant_kit import (
    VERSIONS,
    assert_rejected,
    body_of,
    domain_state,
    send,
    stable_state,
    v1_body,
)

pytestmark = pytest.mark.django_db

TENANT_ID = "68cbc86****************880d92f36422fa0e"
EXAMPLE = "authSync__composed_example"


def example(version: str = "v2", **overrides) -> dict:
    body = body_of(EXAMPLE, **overrides)
    return v1_body(body) if version == "v1" else body


def user(**fields) -> dict:
    record = {"userName": "zhangsan01", "name": "张三", "orgCode": "123456789", "role": "user"}
    record["enable"] = "true"
    record.update(fields)
    return {k: v for k, v in record.items() if v is not None}


def stored(user_name: str = "zhangsan01", is_test: bool = False) -> TenantUser:
    return TenantUser.objects.get(
        tenant__tenant_id=TENANT_ID, tenant__is_test=is_test, user_name=user_name
    )


def authorization(user_name: str = "zhangsan01", is_test: bool = False) -> Authorization:
    return Authorization.objects.get(user=stored(user_name, is_test), app_id="KSIDJF1234456")


# --- the examples --------------------------------------------------------------------------------


def test_composed_example_creates_the_user_and_the_authorisation(kg):
    answer = send(kg, "v2", "authSync", fixture(EXAMPLE))

    assert answer["resultCode"] == "000000"
    row = stored()
    assert (row.name, row.position, row.org_code) == ("张三", "系统管理员", "123456789")
    # entryDate, employeeType and workPlace sit in `extension` here (§2.6) ...
    assert (row.entry_date, row.employee_type, row.work_place) == ("2022-11-9", 4, "南京")
    # ... which is stored as received.
    assert row.extension == {"entryDate": "2022-11-9", "employeeType": "4", "workPlace": "南京"}
    assert row.department is None
    grant = authorization()
    assert (grant.role, grant.enabled, grant.state) == (
        Role.ADMIN,
        True,
        AuthorizationState.AUTHORIZED,
    )
    assert grant.instance_id == "huaiweitest123456"
    assert grant.current_sync_time == "20220413093539534"
    assert grant.can_sign_in
    assert Tenant.objects.get().tenant_id == TENANT_ID  # created ahead of tenantSync (§1.3)


def test_v1_string_user_list(kg):
    answer = send(kg, "v1", "authSync", fixture("authSync__v1_string_user_list"))

    assert answer["resultCode"] == "000000"
    assert (stored().name, stored().employee_type) == ("张三", 4)
    assert authorization().role == Role.ADMIN


@pytest.mark.parametrize("version", VERSIONS)
def test_string_user_list_with_bare_keys(kg, version):
    answer = send(kg, version, "authSync", fixture("authSync__v1_bare_keys"))

    assert answer["resultCode"] == "000000"
    assert stored("lisi02").name == "李四"
    grant = authorization("lisi02")
    assert (grant.role, grant.enabled, grant.can_sign_in) == (Role.USER, False, False)


@pytest.mark.parametrize("version", VERSIONS)
def test_missing_optional_fields_are_stored_empty(kg, version):
    body = json.loads(fixture("authSync__mandatory_fields_only"))
    answer = send(kg, version, "authSync", v1_body(body) if version == "v1" else body)

    assert answer["resultCode"] == "000000"
    row = stored("wangwu03")
    assert (row.position, row.employee_code, row.employee_type, row.mobile, row.email) == (
        "",
        "",
        None,
        "",
        "",
    )
    assert (row.work_place, row.entry_date, row.extension) == ("", "", {})
    assert authorization("wangwu03").enabled is True  # JSON boolean accepted


def test_top_level_fields_win_over_extension(kg):
    body = example(
        userList=[
            user(
                employeeType=1,
                workPlace="上海",
                entryDate="",
                mobile="13800000000",
                email="zs@example.com",
                employeeCode="E001",
                extension={"employeeType": "4", "workPlace": "南京", "entryDate": "2022-11-9"},
            )
        ]
    )

    send(kg, "v2", "authSync", body)

    row = stored()
    assert (row.employee_type, row.work_place, row.entry_date) == (1, "上海", "2022-11-9")
    assert (row.mobile, row.email, row.employee_code) == ("13800000000", "zs@example.com", "E001")


# --- flags -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_modify_replaces_the_record_and_can_disable(kg, version):
    send(kg, version, "authSync", example(version))

    answer = send(
        kg,
        version,
        "authSync",
        example(version, flag=2, userList=[user(name="张三丰", role="user", enable="false")]),
    )

    assert answer["resultCode"] == "000000"
    row = stored()
    assert row.name == "张三丰"
    # The whole record is replaced: what is no longer sent is no longer kept.
    assert (row.position, row.employee_type, row.extension) == ("", None, {})
    grant = authorization()
    assert (grant.role, grant.enabled, grant.can_sign_in) == (Role.USER, False, False)
    assert TenantUser.objects.count() == 1 and Authorization.objects.count() == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_delete_removes_the_authorisation_and_keeps_the_user(kg, version):
    send(kg, version, "authSync", example(version))

    answer = send(kg, version, "authSync", example(version, flag=0))

    assert answer["resultCode"] == "000000"
    assert stored().name == "张三"
    grant = authorization()
    assert grant.state == AuthorizationState.REMOVED and not grant.can_sign_in

    # Authorised again: a new call (a V1 call sent again is answered as its replay, §2.3).
    send(kg, version, "authSync", example(version, timeStamp="20220413093540000"))
    assert authorization().state == AuthorizationState.AUTHORIZED


def test_cancel_revokes_the_authorisation_and_keeps_the_user(kg):
    send(kg, "v2", "authSync", example())

    answer = send(kg, "v2", "authSync", example(flag=3, currentSyncTime="20220414000000000"))

    assert answer["resultCode"] == "000000"
    assert stored().name == "张三"
    grant = authorization()
    assert grant.state == AuthorizationState.REVOKED and not grant.can_sign_in
    assert grant.current_sync_time == "20220414000000000"

    send(kg, "v2", "authSync", example(flag=2, currentSyncTime="20220415000000000"))
    assert authorization().can_sign_in


def test_v1_refuses_cancel(kg):
    send(kg, "v1", "authSync", example("v1"))
    before, journal = domain_state(), InboundCall.objects.count()

    answer = send(kg, "v1", "authSync", example("v1", flag=3))

    assert_rejected(before, answer, "flag", journal)


def test_authorisation_is_per_app_and_instance(kg):
    send(kg, "v2", "authSync", example())
    send(kg, "v2", "authSync", example(appId="OTHERAPP"))
    send(kg, "v2", "authSync", example(appId="OTHERAPP", flag=0))

    assert TenantUser.objects.count() == 1
    states = dict(Authorization.objects.values_list("app_id", "state"))
    assert states == {"KSIDJF1234456": "authorized", "OTHERAPP": "removed"}


# V1 has no cancel (§4.3).
@pytest.mark.parametrize(("version", "flag"), [("v2", 0), ("v2", 3), ("v1", 0)])
def test_removing_an_unknown_user_succeeds_and_creates_nothing(kg, version, flag):
    send(kg, version, "authSync", example(version))
    before = domain_state()

    answer = send(
        kg, version, "authSync", example(version, flag=flag, userList=[user(userName="nobody")])
    )
    send(kg, version, "authSync", example(version, flag=flag, tenantId="unknown-tenant"))

    assert answer["resultCode"] == "000000"
    assert domain_state() == before


# V1 has no cancel (§4.3).
@pytest.mark.parametrize(
    ("version", "flag"),
    [("v2", 1), ("v2", 2), ("v2", 0), ("v2", 3), ("v1", 1), ("v1", 2), ("v1", 0)],
)
def test_each_flag_repeated_three_times_leaves_the_same_state(kg, version, flag):
    send(kg, version, "authSync", example(version))
    body = example(version, flag=flag)

    answers, states = [], []
    for _ in range(3):
        answers.append(send(kg, version, "authSync", body)["resultCode"])
        states.append(stable_state())

    assert answers == ["000000"] * 3
    assert states[0] == states[1] == states[2]
    assert TenantUser.objects.count() == 1 and Authorization.objects.count() == 1


def test_duplicated_user_name_last_wins(kg):
    body = example(userList=[user(name="first", role="admin"), user(name="last", role="user")])

    send(kg, "v2", "authSync", body)

    assert stored().name == "last"
    assert authorization().role == Role.USER
    assert TenantUser.objects.count() == 1


def test_role_other_than_admin_is_a_normal_user(kg):
    send(kg, "v2", "authSync", example(userList=[user(role="Administrator")]))

    assert authorization().role == Role.USER


def test_more_than_500_users_in_few_queries(kg):
    users = [user(userName=f"user{i:04d}", name=f"用户{i}") for i in range(600)]
    body = example(userList=users)

    with CaptureQueriesContext(connection) as first:
        answer = send(kg, "v2", "authSync", body)
    with CaptureQueriesContext(connection) as again:
        send(kg, "v2", "authSync", example(userList=users, flag=2))
    with CaptureQueriesContext(connection) as removal:
        send(kg, "v2", "authSync", example(userList=users, flag=0))

    assert answer["resultCode"] == "000000"
    assert TenantUser.objects.count() == 600
    assert Authorization.objects.filter(state=AuthorizationState.REMOVED).count() == 600
    # A handful of statements, not one or two per user (SQLite splits big inserts in batches).
    assert len(first) < 40 and len(again) < 40 and len(removal) < 20, (
        len(first),
        len(again),
        len(removal),
    )


def test_debug_users_are_kept_apart_from_production_users(kg):
    send(kg, "v2", "authSync", example())

    send(kg, "v2", "authSync", example(testFlag=1, instanceId="", userList=[user(name="测试")]))
    send(kg, "v2", "authSync", example(testFlag=1, instanceId="", flag=0))

    assert Tenant.objects.count() == 2
    assert stored().name == "张三" and authorization().can_sign_in
    assert stored(is_test=True).name == "测试"
    assert authorization(is_test=True).state == AuthorizationState.REMOVED


# --- departments -------------------------------------------------------------------------------


def test_user_is_linked_to_an_existing_department(kg):
    send(kg, "v2", "authSync", example(userList=[user(orgCode="D1")]))  # creates the tenant
    department = Department.objects.create(
        tenant=Tenant.objects.get(), org_code="D1", org_name="开发部"
    )

    send(kg, "v2", "authSync", example(flag=2, userList=[user(orgCode="D1")]))

    assert stored().department == department


def test_other_tenants_department_is_not_linked(kg):
    other = Tenant.objects.create(tenant_id="other")
    Department.objects.create(tenant=other, org_code="123456789", org_name="别人的部门")

    send(kg, "v2", "authSync", fixture(EXAMPLE))

    assert stored().department is None


def test_unknown_org_code_is_kept_and_linked_when_the_department_arrives(kg):
    send(kg, "v2", "authSync", fixture(EXAMPLE))
    row = stored()
    assert (row.org_code, row.department) == ("123456789", None)

    department = Department.objects.create(
        tenant=row.tenant, org_code="123456789", org_name="开发部"
    )
    link_users(row.tenant)  # what orgsync runs when departments arrive

    assert stored().department == department


def test_user_is_linked_when_single_org_sync_adds_its_department(kg):
    send(kg, "v2", "authSync", fixture(EXAMPLE))

    answer = send(
        kg,
        "v2",
        "singleOrgSync",
        {
            "instanceId": "huaiweitest123456",
            "tenantId": TENANT_ID,
            "orgCode": "123456789",
            "orgName": "开发部",
            "parentCode": "",
            "flag": 1,
            "testFlag": 0,
            "timeStamp": "20220413093539534",
        },
    )

    assert answer["resultCode"] == "000000"
    assert stored().department.org_name == "开发部"


# --- validation --------------------------------------------------------------------------------

INVALID_USER = [
    ({"userName": None}, "userName"),
    ({"userName": ""}, "userName"),
    ({"userName": "u" * 65}, "userName"),
    ({"name": None}, "name"),
    ({"name": "n" * 65}, "name"),
    ({"orgCode": None}, "orgCode"),
    ({"orgCode": "o" * 65}, "orgCode"),
    ({"position": "p" * 65}, "position"),
    ({"employeeCode": "e" * 65}, "employeeCode"),
    ({"employeeType": 5}, "employeeType"),
    ({"employeeType": "regular"}, "employeeType"),
    ({"role": None}, "role"),
    ({"role": "r" * 33}, "role"),
    ({"enable": None}, "enable"),
    ({"enable": "yes"}, "enable"),
    ({"enable": 1}, "enable"),
    ({"mobile": "1" * 33}, "mobile"),
    ({"email": "e" * 129}, "email"),
    ({"workPlace": "w" * 256}, "workPlace"),
    ({"extension": "not an object"}, "extension"),
    ({"extension": {"employeeType": "9"}}, "extension.employeeType"),
    ({"extension": {"entryDate": "d" * 33}}, "extension.entryDate"),
    # Stored as JSON: PostgreSQL refuses U+0000 (answered 000005 before, not 000002).
    ({"extension": {"note": "a\x00b"}}, "extension"),
    ({"extension": {"a\x00": "x"}}, "extension"),
    ({"extension": '{"note": "a\\u0000b"}'}, "extension"),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("change", "field"), INVALID_USER)
def test_one_invalid_user_rejects_the_whole_call(kg, version, change, field):
    send(kg, version, "authSync", example(version))
    bad = user(userName="bad")
    for name, value in change.items():
        if value is None:
            bad.pop(name)
        else:
            bad[name] = value
    users = [user(name="changed", enable="false"), bad, user(userName="new")]
    before, journal = domain_state(), InboundCall.objects.count()

    answer = send(kg, version, "authSync", example(version, flag=2, userList=users))

    assert_rejected(before, answer, field, journal)
    assert "userList" in answer["resultMsg"]


INVALID_CALL = [
    ({"tenantId": None}, "tenantId"),
    ({"appId": None}, "appId"),
    ({"appId": "a" * 65}, "appId"),
    ({"userList": None}, "userList"),
    ({"userList": "[{userName:"}, "userList"),
    ({"userList": {"userName": "x"}}, "userList"),
    ({"userList": ["zhangsan01"]}, "userList"),
    ({"currentSyncTime": None}, "currentSyncTime"),
    ({"flag": 4}, "flag"),
    ({"testFlag": "yes"}, "testFlag"),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("change", "field"), INVALID_CALL)
def test_invalid_call_field_answers_000002_and_writes_nothing(kg, version, change, field):
    send(kg, version, "authSync", example(version))
    body = example(version, flag=2, userList=[user(name="changed")])
    for name, value in change.items():
        if value is None:
            body.pop(name)
        else:
            body[name] = value
    before, journal = domain_state(), InboundCall.objects.count()

    answer = send(kg, version, "authSync", body)

    assert_rejected(before, answer, field, journal)


def test_selectors_find_the_synced_authorisation(kg):
    from tenants import selectors

    send(kg, "v2", "authSync", fixture(EXAMPLE))
    row = selectors.tenant(tenant_id=TENANT_ID, is_test=False)

    found = selectors.authorization(
        tenant=row, user_name="zhangsan01", instance_id="huaiweitest123456", app_id="KSIDJF1234456"
    )
    assert found == authorization() and found.can_sign_in
    assert (
        selectors.authorization(
            tenant=row, user_name="zhangsan01", instance_id="other", app_id="KSIDJF1234456"
        )
        is None
    )
    assert selectors.tenant(tenant_id=TENANT_ID, is_test=True) is None
    assert list(selectors.production_tenants()) == [row]


# --- admin -------------------------------------------------------------------------------------


def test_user_and_authorisation_admin_pages(kg, admin_client):
    send(kg, "v2", "authSync", example(userList=[user(), user(userName="lisi02", orgCode="D1")]))
    Department.objects.create(tenant=Tenant.objects.get(), org_code="D1", org_name="开发部")
    send(kg, "v2", "authSync", example(flag=2, userList=[user(userName="lisi02", orgCode="D1")]))
    send(kg, "v2", "authSync", example(flag=3, userList=[user(userName="lisi02")]))
    send(kg, "v2", "authSync", example(testFlag=1, instanceId="", userList=[user(userName="t")]))

    def listed(url: str) -> list[str]:
        response = admin_client.get(url)
        assert response.status_code == 200
        return sorted(str(row) for row in response.context["cl"].result_list)

    users = "/admin/tenants/tenantuser/"
    assert listed(users) == ["张三 (lisi02)", "张三 (t)", "张三 (zhangsan01)"]  # debug too
    assert listed(f"{users}?data=production") == ["张三 (lisi02)", "张三 (zhangsan01)"]
    assert listed(f"{users}?data=test") == ["张三 (t)"]
    assert listed(f"{users}?data=production&linked=no") == ["张三 (zhangsan01)"]
    assert listed(f"{users}?linked=yes&q=lisi") == ["张三 (lisi02)"]
    assert listed(f"{users}?data=production&q=123456789") == ["张三 (zhangsan01)"]  # orgCode

    grants = "/admin/tenants/authorization/"
    assert listed(f"{grants}?state__exact=revoked") == ["lisi02 → KSIDJF1234456 [revoked]"]
    assert len(listed(f"{grants}?role__exact=user&data=all")) == 3
    assert listed(f"{grants}?q=zhangsan01") == ["zhangsan01 → KSIDJF1234456 [authorized]"]

    lisi = stored("lisi02")
    page = admin_client.get(f"{users}{lisi.pk}/change/").content.decode()
    assert "开发部" in page and "revoked" in page and "KSIDJF1234456" in page
    grant = authorization("lisi02")
    assert admin_client.get(f"{grants}{grant.pk}/change/").status_code == 200
    assert admin_client.get(f"{users}add/").status_code == 403
    assert admin_client.get(f"{grants}{grant.pk}/delete/").status_code == 403


# --- concurrency (PostgreSQL) ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_twins_leave_one_row_each(postgres_only):
    """KooGallery's twins racing each other (STYLE.md §3): every copy succeeds, no duplicates."""
    users = [user(userName=f"user{i:03d}") for i in range(200)]
    calls = [
        ("tenantSync", body_of("tenantSync__huawei_example")),
        ("authSync", example(userList=users)),
        ("authSync", example(userList=list(reversed(users)), flag=2)),
    ]
    start = threading.Barrier(6)

    def twin(_) -> list[str]:
        kg = KooGallery(Client())
        try:
            start.wait(timeout=30)
            return [envelope(kg.kit(name, body))["resultCode"] for name, body in calls]
        finally:
            connection.close()

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(twin, range(6)))

    assert results == [["000000"] * 3] * 6
    assert Tenant.objects.count() == 1
    assert TenantUser.objects.count() == 200
    assert Authorization.objects.count() == 200
    assert InboundCall.objects.filter(result_code="000000").count() == 18


@pytest.mark.django_db(transaction=True)
def test_a_user_synced_while_its_department_is_added_is_linked_to_it(postgres_only):
    """singleOrgSync adds department X while authSync brings a user of X: whichever commits
    first, the user ends linked to X (the add links the users it can see; authSync must then
    see the department, not write an unlinked user after the add has looked)."""
    ensure_tenant(tenant_id=TENANT_ID, is_test=False)
    added, done = threading.Event(), threading.Event()

    def add_department() -> None:
        try:
            with transaction.atomic():
                single_org_sync(
                    tenant_id=TENANT_ID,
                    is_test=False,
                    org_code="X",
                    flag=SyncFlag.ADD,
                    org_name="研发部",
                    parent_code="",
                )
                added.set()
                # Commit only once the authSync is waiting on this transaction.
                deadline = time.monotonic() + 10
                while not blocked_on_a_lock() and time.monotonic() < deadline:
                    time.sleep(0.01)
        finally:
            connection.close()

    def sync_user() -> None:
        try:
            added.wait(10)
            org_tree_world.users(TENANT_ID, [("lisi", "李四", "X", "user", True)])
            done.set()
        finally:
            connection.close()

    threads = [threading.Thread(target=add_department), threading.Thread(target=sync_user)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert done.is_set()
    assert stored("lisi").department == Department.objects.get(org_code="X")


def blocked_on_a_lock() -> bool:
    """Some other backend of this database waits for a lock."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] > 0
