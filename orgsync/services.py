"""Every write to departments: singleOrgSync and allOrgSync (spec §2.6, §4.1.4, §4.1.5).

Both take the tenant's row lock first (`ensure_tenant(lock=True)`), so a full and an
incremental sync of one tenant never interleave while other tenants proceed in parallel.
Refusals raise `InvalidParam` before the first write; the caller's transaction rolls back
whatever the call did anyway (spec §2.4).

Incremental changes cost O(1) writes (adjacency list: a move of a subtree of any size is one
UPDATE) plus one O(depth) ancestor query when the parent changes.
"""

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from koogallery.resultcodes import InvalidParam
from tenants.models import SyncFlag, Tenant, TenantUser
from tenants.services import ensure_tenant

from . import snapshot, writers
from .models import Department
from .selectors import path_to_root
from .serializers import OrgItem


@dataclass
class SnapshotResult:
    """What an allOrgSync did, for logs and the benchmark."""

    tenant: Tenant
    created: int
    updated: int
    deleted: int
    unchanged: int


def _mark_synced(tenant: Tenant, now) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(org_synced_at=now)
    tenant.org_synced_at = now


# --- singleOrgSync ---------------------------------------------------------------------------
@transaction.atomic
def single_org_sync(
    *,
    tenant_id: str,
    is_test: bool,
    org_code: str,
    flag: SyncFlag,
    org_name: str = "",
    parent_code: str | None = None,
) -> Department | None:
    """Apply one department change; returns the department (None after a delete).

    `parent_code` None keeps the current parent (a rename need not repeat it), "" means top
    level. A delete of an unknown code succeeds (repeated deletes must, §4.1).
    """
    tenant = ensure_tenant(tenant_id=tenant_id, is_test=is_test, lock=True)
    now = timezone.now()
    if flag == SyncFlag.DELETE:
        department_delete(tenant=tenant, org_code=org_code, now=now)
        result = None
    else:
        result = department_upsert(
            tenant=tenant, org_code=org_code, org_name=org_name, parent_code=parent_code, now=now
        )
    _mark_synced(tenant, now)
    return result


def _check_parent(tenant: Tenant, org_code: str, parent_code: str) -> Department | None:
    """The parent to link, or None if it has not arrived; refuse a move into one's own subtree.

    Walks up from the new parent (one recursive query, O(depth)). The department would become
    its own ancestor if it is on that path, or if the path ends at an orphan waiting for it
    (a child that arrived before its parent is linked when the parent comes).
    """
    if parent_code == org_code:
        raise InvalidParam(f"parentCode: {org_code} cannot be its own parent")
    ancestors = path_to_root(tenant=tenant, org_code=parent_code)
    if not ancestors:
        return None
    top = ancestors[-1]
    if any(a.org_code == org_code for a in ancestors) or (
        top.parent_id is None and top.parent_code == org_code
    ):
        raise InvalidParam(
            f"parentCode: {parent_code} is inside the subtree of {org_code} "
            "(a department cannot move under its own descendant)"
        )
    return ancestors[0]


# savepoint=False: called inside single_org_sync's transaction, whose savepoint already undoes
# a refusal; one more would cost two round trips per call.
@transaction.atomic(savepoint=False)
def department_upsert(
    *, tenant: Tenant, org_code: str, org_name: str, parent_code: str | None, now=None
) -> Department:
    """Add or modify (rename and/or move) one department of a locked tenant."""
    now = now or timezone.now()
    department = Department.objects.filter(tenant=tenant, org_code=org_code).first()
    if parent_code is None:
        parent_code = department.parent_code if department else ""
    if department is not None and parent_code == department.parent_code:
        parent_id = department.parent_id  # not moving: no ancestry to check
    elif parent_code:
        parent = _check_parent(tenant, org_code, parent_code)
        parent_id = parent.pk if parent else None
    else:
        parent_id = None

    if department is None:
        department = Department.objects.create(
            tenant=tenant,
            org_code=org_code,
            org_name=org_name,
            parent_code=parent_code,
            parent_id=parent_id,
        )
        # Children and users that named this code before it existed (§2.6).
        Department.objects.filter(tenant=tenant, parent__isnull=True, parent_code=org_code).update(
            parent=department, updated_at=now
        )
        TenantUser.objects.filter(tenant=tenant, department__isnull=True, org_code=org_code).update(
            department=department
        )
        return department
    if (department.org_name, department.parent_code, department.parent_id) != (
        org_name,
        parent_code,
        parent_id,
    ):
        department.org_name, department.parent_code = org_name, parent_code
        department.parent_id = parent_id
        department.save(update_fields=["org_name", "parent_code", "parent", "updated_at"])
    return department


@transaction.atomic(savepoint=False)  # as department_upsert
def department_delete(*, tenant: Tenant, org_code: str, now=None) -> None:
    """Remove one department: its children become root orphans (their `parent_code` kept, so
    they are relinked if it comes back) and its users unassigned (their `org_code` kept)."""
    now = now or timezone.now()
    department = Department.objects.filter(tenant=tenant, org_code=org_code).first()
    if department is None:
        return
    Department.objects.filter(tenant=tenant, parent=department).update(parent=None, updated_at=now)
    TenantUser.objects.filter(tenant=tenant, department=department).update(department=None)
    Department.objects.filter(tenant=tenant, pk=department.pk).delete()


# --- allOrgSync ------------------------------------------------------------------------------
@transaction.atomic
def all_org_sync(
    *, tenant_id: str, is_test: bool, departments: list[OrgItem], writer: str | None = None
) -> SnapshotResult:
    """Make the tenant's departments equal the snapshot (§2.6): unchanged rows are not written,
    kept departments keep their primary key (users stay linked), absent ones are removed.

    `writer` chooses how rows are written ("postgresql" or "portable"; default by database).
    """
    items = snapshot.last_wins(departments)
    parent_of = snapshot.links(items)
    cycle = snapshot.find_cycle(parent_of)
    if cycle:
        raise InvalidParam(str(snapshot.CycleError(cycle)))
    tenant = ensure_tenant(tenant_id=tenant_id, is_test=is_test, lock=True)
    now = timezone.now()
    stored = writers.load(tenant)
    plan = snapshot.plan(stored, items, parent_of)
    writers.apply(tenant, plan, stored, now, writer or writers.default_writer())
    _mark_synced(tenant, now)
    return SnapshotResult(
        tenant=tenant,
        created=len(plan.create),
        updated=len(plan.update),
        deleted=len(plan.delete),
        unchanged=plan.unchanged,
    )
