"""Tenants for the staff org-tree tests (API and browser), written through the sync services as
KooGallery's calls would write them: allOrgSync, authSync, singleOrgSync.

The same orgCodes exist in three tenants: the production tenant, the debug tenant of the same
tenantId (testFlag 1, spec §2.5) and another tenant, with different names and users, so any mix
shows in an answer.
"""

from django.db import connection

from orgsync import services as org_services
from orgsync.models import Department
from tenants import services as tenant_services
from tenants.models import Role, SyncFlag, Tenant

TENANT_ID = "68cbc86abc2018ab880d92f36422fa0e"
OTHER_ID = "other0000tenant0000000000000001"
APP_ID = "KSIDJF1234456"
INSTANCE_ID = "huaiweitest123456"

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


def departments(tenant_id: str, items, *, is_test: bool = False) -> Tenant:
    return org_services.all_org_sync(
        tenant_id=tenant_id, is_test=is_test, departments=list(items)
    ).tenant


def users(tenant_id: str, rows, *, is_test: bool = False, flag=SyncFlag.ADD, app_id=APP_ID):
    """authSync of (userName, name, orgCode, role, enabled) rows."""
    records = [
        {
            "user_name": user_name,
            "name": name,
            "org_code": org_code,
            "role": role,
            "enabled": enabled,
            "position": "",
            "employee_code": "",
            "employee_type": None,
            "mobile": "",
            "email": "",
            "work_place": "",
            "entry_date": "",
            "extension": {},
        }
        for user_name, name, org_code, role, enabled in rows
    ]
    return tenant_services.auth_sync(
        tenant_id=tenant_id,
        is_test=is_test,
        instance_id=INSTANCE_ID,
        app_id=app_id,
        users=records,
        current_sync_time="20240101120000000",
        flag=flag,
    )


def small_world() -> dict[str, Tenant]:
    """The example tree in three tenants; users per department, one unassigned (orgCode 555),
    one disabled, one whose authorisation is cancelled (authSync flag 3)."""
    production = departments(TENANT_ID, TREE)
    users(
        TENANT_ID,
        [
            ("zhangsan01", "张三", "111", Role.ADMIN, True),
            ("lisi", "李四", "111", Role.USER, False),
            ("wangwu", "王五", "100", Role.USER, True),
            ("zhaoliu", "赵六", "1111", Role.USER, True),
            ("ghost", "幽灵", "555", Role.USER, True),
        ],
    )
    users(TENANT_ID, [("zhaoliu", "赵六", "1111", Role.USER, True)], flag=SyncFlag.CANCEL)
    users(TENANT_ID, [("zhangsan01", "张三", "111", Role.USER, True)], app_id="SECONDAPP")

    debug = departments(TENANT_ID, [(c, f"调试{n}", p) for c, n, p in TREE], is_test=True)
    users(TENANT_ID, [("debugger", "调试员", "111", Role.ADMIN, True)], is_test=True)

    other = departments(OTHER_ID, [(c, f"Other {n}", p) for c, n, p in TREE])
    users(
        OTHER_ID,
        [
            ("outsider", "张三丰", "111", Role.ADMIN, True),
            ("outsider2", "Other", "100", Role.USER, True),
        ],
    )
    for tenant in (production, debug, other):
        tenant.refresh_from_db()
    return {"production": production, "debug": debug, "other": other}


def big_world(*, divisions: int = 8, teams: int = 30, wide: int = 250) -> Tenant:
    """A few hundred departments and users: a head office with `divisions` divisions of
    `teams` teams each (two users per team), plus a division of `wide` teams (more than a page
    of children), an orphan and an unassigned user. The other tenant has the same codes."""
    items = [("1", "Head office", "")]
    for d in range(1, divisions + 1):
        items.append((f"1-{d}", f"Division {d}", "1"))
        items += [(f"1-{d}-{t}", f"Team {d}.{t}", f"1-{d}") for t in range(1, teams + 1)]
    items.append(("1-W", "Wide division", "1"))
    items += [(f"1-W-{t:03d}", f"Wide team {t:03d}", "1-W") for t in range(1, wide + 1)]
    items.append(("X", "Lost branch", "gone"))
    tenant = departments(TENANT_ID, items)
    rows = []
    for d in range(1, divisions + 1):
        for t in range(1, teams + 1):
            rows.append((f"user-{d}-{t}-a", f"Member {d}.{t} A", f"1-{d}-{t}", Role.USER, True))
            rows.append((f"user-{d}-{t}-b", f"Member {d}.{t} B", f"1-{d}-{t}", Role.USER, t != 1))
    rows.append(("boss", "Big Boss", "1", Role.ADMIN, True))
    rows.append(("nomad", "Nomad Without Team", "not-synced", Role.USER, True))
    users(TENANT_ID, rows)

    departments(OTHER_ID, [(c, f"Other {n}", p) for c, n, p in items])
    users(OTHER_ID, [("user-3-7-a", "Impostor", "1-3-7", Role.ADMIN, True)])
    tenant.refresh_from_db()
    return tenant


def bulk_tree(tenant_id: str, items: list[tuple[str, str, str]]) -> Tenant:
    """Departments (orgCode, orgName, parentCode) inserted in bulk, then linked to their
    parents by one UPDATE (as allOrgSync leaves them, without its per-row work)."""
    tenant = Tenant.objects.create(tenant_id=tenant_id)
    Department.objects.bulk_create(
        (Department(tenant=tenant, org_code=c, org_name=n, parent_code=p) for c, n, p in items),
        batch_size=1000,
    )
    table = Department._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET parent_id = (SELECT p.id FROM {table} p "
            f"WHERE p.tenant_id = {table}.tenant_id AND p.org_code = {table}.parent_code) "
            "WHERE tenant_id = %s AND parent_code <> ''",
            [tenant.pk],
        )
    return tenant
