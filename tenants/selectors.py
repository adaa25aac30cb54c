"""Reads of tenants, applications, users and authorisations (STYLE.md §2).

Test data (testFlag 1) lives in its own tenant rows (spec §2.5): every lookup names `is_test`,
and the "production" querysets exclude debug rows.
"""

from django.db.models import QuerySet

from .models import Application, Authorization, Tenant, TenantUser


def tenant(*, tenant_id: str, is_test: bool) -> Tenant | None:
    return Tenant.objects.filter(tenant_id=tenant_id, is_test=is_test).first()


def production_tenants() -> QuerySet[Tenant]:
    """Tenants of real calls that have not been dissolved (tenantSync flag 0)."""
    return Tenant.objects.filter(is_test=False, removed_at__isnull=True)


def application(
    *, tenant_id: str, is_test: bool, instance_id: str, app_id: str
) -> Application | None:
    """The application of applicationSync's natural key, removed or not."""
    return (
        Application.objects.select_related("tenant")
        .filter(
            tenant__tenant_id=tenant_id,
            tenant__is_test=is_test,
            instance_id=instance_id,
            app_id=app_id,
        )
        .first()
    )


def tenant_user(*, tenant: Tenant, user_name: str) -> TenantUser | None:
    return TenantUser.objects.filter(tenant=tenant, user_name=user_name).first()


def authorization(
    *, tenant: Tenant, user_name: str, instance_id: str, app_id: str
) -> Authorization | None:
    """A user's authorisation for one application of one instance (authSync's natural key);
    check `can_sign_in` before letting the user in."""
    return (
        Authorization.objects.select_related("tenant", "user")
        .filter(tenant=tenant, user__user_name=user_name, instance_id=instance_id, app_id=app_id)
        .first()
    )
