"""Writes for tenants, applications, users and authorisations (every write goes through here)."""

from django.db import transaction

from .models import Tenant


@transaction.atomic
def ensure_tenant(*, tenant_id: str, is_test: bool, lock: bool = False) -> Tenant:
    """The tenant row for a kit call, created if a call arrives before tenantSync (§1.3: the
    order of kit calls is not guaranteed). With `lock`, the row is locked until the caller's
    transaction ends, which serialises department syncs of one tenant without blocking others.
    """
    tenant, _ = Tenant.objects.get_or_create(tenant_id=tenant_id, is_test=is_test)
    if lock:
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    return tenant
