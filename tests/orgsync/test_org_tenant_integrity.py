"""A department never points at a missing tenant, and a deleted tenant takes its departments
with it (issue 17). The department→tenant foreign-key constraint is gone (100,000 row-by-row
checks at the commit of a first load); on PostgreSQL statement-level triggers hold its rules
(orgsync migration `department_tenant_checked_per_statement`), elsewhere the ORM's cascade.
"""

import pytest
from django.db import IntegrityError, connection, transaction

from orgsync import services
from orgsync.models import Department
from tenants.models import Tenant, TenantUser
from tests.support.org_kit import misplaced_users

pytestmark = pytest.mark.django_db

DEPARTMENTS = Department._meta.db_table
TENANTS = Tenant._meta.db_table
_COLUMNS = "tenant_id, org_code, org_name, parent_code, parent_id, created_at, updated_at"


def loaded(tenant_id: str, size: int = 30) -> Tenant:
    """A tenant whose departments arrived by allOrgSync, with a user linked to one of them."""
    codes = [f"D{n:03d}" for n in range(size)]
    items = [(code, f"部门 {code}", codes[n // 3] if n else "") for n, code in enumerate(codes)]
    tenant = Tenant.objects.create(tenant_id=tenant_id, name=tenant_id)
    TenantUser.objects.create(tenant=tenant, user_name="u1", org_code=items[-1][0])
    services.all_org_sync(tenant_id=tenant_id, is_test=False, departments=items)
    assert TenantUser.objects.get(tenant=tenant).department is not None
    return tenant


def missing_tenant_id() -> int:
    return (Tenant.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1000


def test_deleting_a_tenant_removes_its_departments_and_only_its_own():
    gone, kept = loaded("tenant-gone"), loaded("tenant-kept")
    kept_count = Department.objects.filter(tenant=kept).count()

    gone.delete()

    assert not Department.objects.filter(tenant_id=gone.pk).exists()
    assert Department.objects.filter(tenant=kept).count() == kept_count
    assert TenantUser.objects.get(tenant=kept).department is not None


def test_an_insert_naming_a_missing_tenant_is_refused(postgres_only):
    tenant = loaded("tenant-a")
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {DEPARTMENTS} ({_COLUMNS}) "
            "VALUES (%s, 'X1', 'x', '', NULL, now(), now()), "
            "(%s, 'X2', 'x', '', NULL, now(), now())",
            [tenant.pk, missing_tenant_id()],
        )
    assert not Department.objects.filter(org_code__in=["X1", "X2"]).exists()


def test_a_copy_naming_a_missing_tenant_is_refused(postgres_only):
    """COPY is how an allOrgSync writes new departments (orgsync/writers.py)."""
    from psycopg.errors import ForeignKeyViolation  # COPY is psycopg's own, unwrapped

    missing = missing_tenant_id()
    with (
        pytest.raises(ForeignKeyViolation),
        transaction.atomic(),
        connection.cursor() as cursor,
        cursor.copy(f"COPY {DEPARTMENTS} ({_COLUMNS}) FROM STDIN") as copy,
    ):
        for n in range(100):
            copy.write_row([missing, f"C{n}", "x", "", None, "2026-01-01Z", "2026-01-01Z"])
    assert not Department.objects.filter(tenant_id=missing).exists()


def test_moving_a_department_to_a_missing_tenant_is_refused(postgres_only):
    tenant = loaded("tenant-a")
    with pytest.raises(IntegrityError), transaction.atomic():
        Department.objects.filter(tenant=tenant).update(tenant_id=missing_tenant_id())
    assert Department.objects.filter(tenant=tenant).count() == 30


def test_a_tenant_deleted_in_sql_takes_its_departments(postgres_only):
    tenant = Tenant.objects.create(tenant_id="tenant-sql", name="t")
    services.all_org_sync(
        tenant_id="tenant-sql", is_test=False, departments=[("A", "a", ""), ("B", "b", "A")]
    )
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TENANTS} WHERE id = %s", [tenant.pk])
    assert not Department.objects.filter(tenant_id=tenant.pk).exists()


def test_a_tenant_with_departments_keeps_its_id(postgres_only):
    tenant = loaded("tenant-a")
    with pytest.raises(IntegrityError), transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(id=missing_tenant_id())


@pytest.mark.django_db(transaction=True)
def test_a_tenant_cannot_be_deleted_under_an_uncommitted_insert(postgres_only):
    """The insert locks the tenant as a foreign key's check does: a delete from another
    session waits for the commit, then removes the new rows with the tenant."""
    import psycopg

    tenant = Tenant.objects.create(tenant_id="tenant-raced", name="t")
    settings = connection.settings_dict
    other = psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings["PASSWORD"],
        host=settings["HOST"],
        port=settings["PORT"] or None,
    )
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {DEPARTMENTS} ({_COLUMNS}) "
                "VALUES (%s, 'R1', 'r', '', NULL, now(), now())",
                [tenant.pk],
            )
            other.execute("SET lock_timeout = '300ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute(f"DELETE FROM {TENANTS} WHERE id = %s", [tenant.pk])
            other.rollback()
        other.execute(f"DELETE FROM {TENANTS} WHERE id = %s", [tenant.pk])
        other.commit()
    finally:
        other.close()
    assert not Department.objects.filter(tenant_id=tenant.pk).exists()
    assert not Tenant.objects.filter(pk=tenant.pk).exists()


# --- users' department links (no constraint either: tenants migration 0005) ------------------


def test_a_department_deleted_through_the_orm_unassigns_its_users():
    """The admin and any other ORM delete: Django's SET_NULL unlinks them (no database
    constraint would)."""
    tenant = loaded("tenant-orm-delete")
    user = TenantUser.objects.get(tenant=tenant)

    Department.objects.get(pk=user.department_id).delete()

    user.refresh_from_db()
    assert (user.org_code, user.department_id) == ("D029", None)
    assert misplaced_users("tenant-orm-delete") == []
    assert Department.objects.filter(tenant=tenant, org_code="D029").exists() is False


def test_departments_dropped_by_a_resync_unassign_their_users_and_only_theirs():
    tenant = loaded("tenant-resync-drop")
    TenantUser.objects.create(tenant=tenant, user_name="u2", org_code="D001")
    services.all_org_sync(
        tenant_id="tenant-resync-drop", is_test=False, departments=[("D000", "top", "")]
    )
    items = [(f"D{n:03d}", f"部门 {n}", "D000" if n else "") for n in range(2)]
    services.all_org_sync(tenant_id="tenant-resync-drop", is_test=False, departments=items)

    links = dict(TenantUser.objects.filter(tenant=tenant).values_list("user_name", "department"))
    assert links["u1"] is None
    assert links["u2"] == Department.objects.get(tenant=tenant, org_code="D001").pk
    assert misplaced_users("tenant-resync-drop") == []
