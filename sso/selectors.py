"""Reads for sign-in: which tenant, application and instance a request means, and who the
signed-in person is (STYLE.md §2)."""

from django.conf import settings

from instances.models import Instance, InstanceState
from orgsync.models import Department
from orgsync.selectors import path_to_root
from tenants.models import Application, Authorization, Tenant, TenantUser

from .models import SignIn, TenantAccount


def find_tenant(*, ref: str) -> Tenant | None:
    """The tenant a `tenant` parameter names: by tenantId, then by tenantCode (§5.3).

    Production rows come before test-data rows (§2.5), live ones before removed ones; test rows
    are only candidates when `SSO_ALLOW_TEST_TENANTS` is on, but a test-only match is still
    returned so that the caller can say why it is refused.
    """
    if not ref:
        return None
    for lookup in ({"tenant_id": ref}, {"tenant_code": ref}):
        candidates = list(Tenant.objects.filter(**lookup))
        if candidates:
            allow_test = settings.SSO_ALLOW_TEST_TENANTS
            candidates.sort(
                key=lambda t: (
                    t.is_test and not allow_test,
                    t.is_test,
                    t.removed_at is not None,
                    -t.pk,
                )
            )
            return candidates[0]
    return None


def instances_by_id(instance_ids: list[str]) -> dict[str, Instance]:
    ids = [i for i in instance_ids if i]
    if not ids:
        return {}
    return {i.instance_id: i for i in Instance.objects.filter(instance_id__in=ids)}


def preferred_application(*, tenant: Tenant) -> Application | None:
    """The tenant's live application to sign in to; with several, one whose instance is active,
    then one without instance for an allowed test tenant, then the most recently synced."""
    applications = list(
        Application.objects.filter(tenant=tenant, removed_at__isnull=True).select_related("tenant")
    )
    if not applications:
        return None
    instances = instances_by_id([a.instance_id for a in applications])
    test_ok = tenant.is_test and settings.SSO_ALLOW_TEST_TENANTS

    def rank(application: Application) -> tuple:
        instance = instances.get(application.instance_id)
        if instance is not None and instance.state == InstanceState.ACTIVE:
            usable = 0
        elif not application.instance_id and test_ok:
            usable = 1
        elif instance is not None:
            usable = 2
        else:
            usable = 3
        return (usable, -application.updated_at.timestamp(), -application.pk)

    return min(applications, key=rank)


def application_for_instance(*, instance_id: str) -> Application | None:
    """The live application bound to a purchased instance (`/sso/login?instance=…`, the
    front-end URL that queryInstance hands out, §2.7)."""
    if not instance_id:
        return None
    return (
        Application.objects.filter(instance_id=instance_id, removed_at__isnull=True)
        .select_related("tenant")
        .order_by("tenant__removed_at", "-updated_at", "-pk")
        .first()
    )


def application_by_pk(pk: int) -> Application | None:
    return Application.objects.select_related("tenant").filter(pk=pk).first()


def instance_of(application: Application) -> Instance | None:
    if not application.instance_id:
        return None
    return Instance.objects.filter(instance_id=application.instance_id).first()


def tenant_user(*, tenant: Tenant, user_name: str) -> TenantUser | None:
    return TenantUser.objects.filter(tenant=tenant, user_name=user_name).first()


def authorization_for(*, tenant_user: TenantUser, application: Application) -> Authorization | None:
    """The authSync authorisation of this user for this app of this instance (§4.1.3 key)."""
    return (
        Authorization.objects.filter(
            user=tenant_user, instance_id=application.instance_id, app_id=application.app_id
        )
        .select_related("tenant")
        .first()
    )


def account_of(*, tenant_user: TenantUser) -> TenantAccount | None:
    return TenantAccount.objects.select_related("user").filter(tenant_user=tenant_user).first()


def department_path(*, tenant_user: TenantUser) -> list[Department]:
    """The user's department and its ancestors, root first; [] when none is known."""
    if not tenant_user.org_code:
        return []
    return list(reversed(path_to_root(tenant=tenant_user.tenant, org_code=tenant_user.org_code)))


def open_sign_in(*, pk: int | None) -> SignIn | None:
    """A sign-in not ended yet, whoever's it is (one held for confirmation has no browser)."""
    if not pk:
        return None
    return (
        SignIn.objects.select_related("tenant", "application__tenant", "tenant_user__tenant")
        .filter(pk=pk, ended_at__isnull=True)
        .first()
    )


def active_sign_in(*, pk: int | None, user) -> SignIn | None:
    if not pk or not user.is_authenticated:
        return None
    return (
        SignIn.objects.select_related("tenant", "application__tenant", "tenant_user__tenant")
        .filter(pk=pk, user=user, ended_at__isnull=True)
        .first()
    )
