"""The PostgreSQL writes of tenantSync, applicationSync and authSync (one statement each, in
tenants/services.py) leave exactly the rows the portable ORM writes leave.

Both paths apply the same random sequence of calls, each to a tenant of its own; the tenants'
rows are then compared column by column (ids and timestamps aside). On SQLite only the portable
path exists, and the kit tests cover it.
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test import Client
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from koogallery.inbound.journal import InboundCall
from koogallery.protocol.times import KIT_ZONE
from orgsync.models import Department
from tenants import services
from tenants.models import (
    Application,
    Authorization,
    Role,
    SyncFlag,
    Tenant,
    TenantBinding,
    TenantUser,
)
from tests.support.kgclient import KooGallery, envelope

pytestmark = pytest.mark.django_db

PATHS = {
    "postgresql": {
        "tenant": services._upsert_tenant_postgresql,
        "application": services._upsert_application_postgresql,
        "users": services._authorize_postgresql,
    },
    "portable": {
        "tenant": services._upsert_tenant,
        "application": services._upsert_application,
        "users": services._authorize_portable,
    },
}
CODES = ["D1", "D2", "D3", ""]  # D1 and D2 exist as departments, D3 does not
texts = st.sampled_from(["", "a", "张三", "x" * 32, 'O\'Brien "q" \\ \t', "🙂 emoji"])


def user_records():
    record = st.fixed_dictionaries(
        {
            "user_name": st.sampled_from(["u1", "u2", "李四", "u'5"]),
            "name": texts,
            "org_code": st.sampled_from(CODES),
            "position": texts,
            "employee_code": texts,
            "employee_type": st.sampled_from([None, 1, 2, 4]),
            "mobile": texts,
            "email": texts,
            "work_place": texts,
            "entry_date": texts,
            "extension": st.dictionaries(
                st.sampled_from(["entryDate", "a", "深"]),
                st.none() | st.booleans() | st.integers(-5, 5) | texts | st.lists(texts),
                max_size=3,
            ),
            "role": st.sampled_from([Role.ADMIN, Role.USER, "Administrator"]),
            "enabled": st.booleans(),
        }
    )
    return st.lists(record, min_size=1, max_size=6)


USER = {
    "user_name": "u1",
    "name": "张三",
    "org_code": "",
    "position": "",
    "employee_code": "",
    "employee_type": None,
    "mobile": "",
    "email": "",
    "work_place": "",
    "entry_date": "",
    "extension": {},
    "role": Role.ADMIN,
    "enabled": True,
}
# Call times (§2.3), out of order and repeated, or none (an untimed write).
BASE = datetime(2024, 6, 1, 12, tzinfo=KIT_ZONE)
moments = st.sampled_from([None, BASE, BASE + timedelta(milliseconds=1), BASE + timedelta(hours=1)])
calls = st.lists(
    st.one_of(
        st.tuples(st.just("tenant"), st.sampled_from(["", "i1"]), texts, texts, moments),
        st.tuples(st.just("application"), st.sampled_from(["", "i1"]), texts, texts, moments),
        st.tuples(st.just("users"), st.sampled_from(["", "i1"]), user_records(), texts, moments),
        # Shared by both paths, so that the upserts meet removed and revoked rows.
        st.tuples(
            st.just("removal"),
            st.sampled_from(["", "i1"]),
            st.sampled_from([0, 3]),
            texts,
            moments,
        ),
    ),
    min_size=1,
    max_size=5,
)


def apply(path: str, tenant_id: str, call: tuple) -> int | None:
    """Apply one call; for users, return how many authorisations were written."""
    kind, instance_id, first, second, *rest = call
    moment = rest[0] if rest else None
    if kind == "removal":
        remove(tenant_id, instance_id, flag=first, sync_time=second, call_time=moment)
        return None
    write = PATHS[path][kind]
    if kind == "tenant":
        write(
            tenant_id=tenant_id,
            is_test=False,
            instance_id=instance_id,
            order_id=second,
            tenant_code=first,
            name=second,
            domain_name=first,
            call_time=moment,
        )
    elif kind == "application":
        write(
            tenant_id=tenant_id,
            is_test=False,
            instance_id=instance_id,
            app_id="APP",
            client_id=first,
            client_secret_encrypted=second,
            call_time=moment,
        )
    else:
        users = services._last_wins(first)
        if path == "postgresql":  # for the tenant it holds (auth_sync does the same)
            return write(
                services._hold_tenant(tenant_id, False), instance_id, "APP", users, second, moment
            )
        return write(tenant_id, False, instance_id, "APP", users, second, moment)
    return None


def remove(
    tenant_id: str, instance_id: str, *, flag: int, sync_time: str, call_time=None
) -> None:
    """Delete (0) or cancel (3) the users' authorisations; on delete, the application and the
    tenant too."""
    names = ["u1", "u2", "李四"]
    services.auth_sync(
        tenant_id=tenant_id,
        is_test=False,
        instance_id=instance_id,
        app_id="APP",
        users=[{"user_name": name} for name in names],
        current_sync_time=sync_time,
        flag=SyncFlag(flag),
        call_time=call_time,
    )
    if flag == SyncFlag.DELETE:
        services.application_sync(
            tenant_id=tenant_id,
            is_test=False,
            instance_id=instance_id,
            app_id="APP",
            client_id="",
            client_secret_ciphertext="",
            flag=SyncFlag.DELETE,
            call_time=call_time,
        )
        services.tenant_sync(
            tenant_id=tenant_id,
            is_test=False,
            instance_id=instance_id,
            order_id="",
            tenant_code="",
            name="",
            domain_name="",
            flag=SyncFlag.DELETE,
            call_time=call_time,
        )


# Columns that differ between the two tenants whatever the path (ids, the tenant's own key, clock).
UNCOMPARED = {"id", "tenant_id", "user_id", "department_id", "created_at", "updated_at"}
MOMENTS = {"removed_at", "org_synced_at"}  # compared as set or not


def plain(queryset, *related: str) -> list[dict]:
    """Rows as column dicts without UNCOMPARED columns, plus `related` lookups, sorted."""
    columns = [field.attname for field in queryset.model._meta.concrete_fields]
    rows = [
        {k: (v is not None if k in MOMENTS else v) for k, v in row.items() if k not in UNCOMPARED}
        for row in queryset.values(*columns, *related)
    ]
    return sorted(rows, key=repr)


def rows_of(tenant_id: str) -> dict:
    """Everything the three interfaces write for one tenant."""
    return {
        "tenant": plain(Tenant.objects.filter(tenant_id=tenant_id)),
        "bindings": plain(TenantBinding.objects.filter(tenant__tenant_id=tenant_id)),
        "applications": plain(Application.objects.filter(tenant__tenant_id=tenant_id)),
        "users": plain(
            TenantUser.objects.filter(tenant__tenant_id=tenant_id), "department__org_code"
        ),
        "grants": plain(
            Authorization.objects.filter(tenant__tenant_id=tenant_id), "user__user_name"
        ),
    }


def tenant_with_departments(tenant_id: str) -> None:
    services.ensure_tenant(tenant_id=tenant_id, is_test=False)
    tenant = Tenant.objects.get(tenant_id=tenant_id)
    for code in ("D1", "D2"):
        Department.objects.create(tenant=tenant, org_code=code, org_name=code)


@pytest.mark.usefixtures("postgres_only")
@hsettings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=calls, fresh=st.booleans())
@example(  # a user moves between departments and comes back after a cancel and a delete
    sequence=[
        ("users", "i1", [USER | {"org_code": "D1"}, USER | {"user_name": "u2"}], "1"),
        ("removal", "i1", 3, "2"),
        (
            "users",
            "i1",
            [USER | {"org_code": "D2", "role": Role.USER, "extension": {"a": [1]}}],
            "3",
        ),
        ("removal", "i1", 0, "4"),
        (
            "users",
            "i1",
            [USER | {"org_code": "D3", "enabled": False, "extension": {"b": None}}],
            "5",
        ),
    ],
    fresh=False,
)
@example(  # late calls (§2.3): an older add after a newer one, an older one after a cancel
    sequence=[
        ("tenant", "i1", "c", "n", BASE + timedelta(hours=1)),
        ("tenant", "i1", "old", "old", BASE),
        ("users", "i1", [USER], "2", BASE + timedelta(milliseconds=1)),
        ("users", "i1", [USER | {"role": Role.USER, "name": "旧"}], "1", BASE),
        ("removal", "i1", 3, "3", BASE + timedelta(hours=1)),
        ("users", "i1", [USER | {"user_name": "u2"}, USER | {"enabled": False}], "2", BASE),
    ],
    fresh=False,
)
def test_postgresql_writes_equal_the_portable_ones(sequence, fresh):
    """Same calls, same rows (and the same authorisations written, stale ones left: §2.3);
    `fresh`: the tenant does not exist before the first call."""
    with transaction.atomic():  # each example starts from nothing
        if not fresh:
            tenant_with_departments("pg")
            tenant_with_departments("orm")
        for call in sequence:
            written = apply("postgresql", "pg", call)
            assert written == apply("portable", "orm", call)
        assert rows_of("pg") == rows_of("orm")
        transaction.set_rollback(True)


def test_the_services_choose_their_path(monkeypatch):
    """PostgreSQL runs the one-statement writes, other databases the portable ones, and the
    portable path also serves a PostgreSQL call whose tenant appeared mid-statement (tenant and
    application; authSync holds its tenant before its statement)."""
    chosen = []
    for kind in ("tenant", "application", "users"):
        for path, writes in PATHS.items():
            write = writes[kind]

            def spy(*args, _write=write, _name=f"{path}:{kind}", **kwargs):
                chosen.append(_name)
                return _write(*args, **kwargs)

            monkeypatch.setattr(services, write.__name__, spy)
    monkeypatch.setattr(services, "decrypt_inbound_client_secret", lambda text: text)
    services.tenant_sync(
        tenant_id="t",
        is_test=False,
        instance_id="i",
        order_id="o",
        tenant_code="c",
        name="n",
        domain_name="d",
        flag=SyncFlag.ADD,
    )
    services.application_sync(
        tenant_id="t",
        is_test=False,
        instance_id="i",
        app_id="a",
        client_id="c",
        client_secret_ciphertext="secret",
        flag=SyncFlag.ADD,
    )
    record = {column: "" for column in ("name", "org_code", "position", "employee_code")}
    record |= {column: "" for column in ("mobile", "email", "work_place", "entry_date")}
    record |= {"user_name": "u", "employee_type": None, "extension": {}}
    record |= {"role": Role.USER, "enabled": True}
    result = services.auth_sync(
        tenant_id="t",
        is_test=False,
        instance_id="i",
        app_id="a",
        users=[record],
        current_sync_time="1",
        flag=SyncFlag.ADD,
    )
    assert (result.written, result.stale) == (1, 0)
    expected = "postgresql" if connection.vendor == "postgresql" else "portable"
    assert chosen == [f"{expected}:tenant", f"{expected}:application", f"{expected}:users"]

    if connection.vendor == "postgresql":
        chosen.clear()
        monkeypatch.setattr(services, "_upsert_application_postgresql", lambda **kwargs: None)
        services.application_sync(
            tenant_id="t",
            is_test=False,
            instance_id="i",
            app_id="b",
            client_id="c",
            client_secret_ciphertext="secret",
            flag=SyncFlag.ADD,
        )
        assert chosen == ["portable:application"]
        assert Application.objects.filter(app_id="b").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_calls_of_a_new_tenant(postgres_only):
    """First calls racing to create the same tenant: one tenant, every call served (a statement
    that cannot see a twin's new tenant falls back to the portable path)."""
    start = threading.Barrier(6)

    def first_call(n: int) -> str:
        kg = KooGallery(Client())
        body = {
            "instanceId": "i1",
            "tenantId": "racing-tenant",
            "appId": f"APP{n % 2}",
            "userList": [
                {"userName": f"u{n}", "name": "", "orgCode": "", "role": "user", "enable": "true"}
            ],
            "currentSyncTime": "20240101000000000",
            "flag": 1,
            "testFlag": 0,
            "timeStamp": "20240101000000000",
        }
        try:
            start.wait(timeout=30)
            return envelope(kg.kit("authSync", body))["resultCode"]
        finally:
            connection.close()

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(first_call, range(6)))

    assert results == ["000000"] * 6
    assert Tenant.objects.filter(tenant_id="racing-tenant").count() == 1
    assert TenantUser.objects.count() == 6 and Authorization.objects.count() == 6
    assert InboundCall.objects.filter(result_code="000000").count() == 6
