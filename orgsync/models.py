"""Departments as an adjacency list keyed by (tenant, orgCode) (spec §4.1.4, §4.1.5, §2.6).

`parent_code` is stored exactly as received; `parent` is linked when a department with that
code exists in the same tenant (a child may arrive before its parent). A department whose
`parent_code` is set but whose `parent` is missing is an orphan and shown at the top level.
"""

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from tenants.models import call_time_field


class Department(models.Model):
    # No index of its own: the unique (tenant, org_code) index serves every tenant lookup, and
    # each index costs a 100k-department allOrgSync its share of the insert (issue 5).
    # No foreign-key constraint either: PostgreSQL checks one row by row, 100,000 checks at the
    # commit of a first load (~0.5 s, issue 17). On PostgreSQL, triggers keep its rules with one
    # check per statement (migration `department_tenant_checked_per_statement`): an INSERT
    # naming a missing tenant is refused, the tenants it names stay locked against deletion
    # until the commit, a tenant's delete removes its departments. On SQLite, which serialises
    # every writer, the services write only under their tenant and the ORM's cascade removes
    # them (tests/orgsync/test_org_tenant_integrity.py).
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.CASCADE,
        related_name="departments",
        db_index=False,
        db_constraint=False,
    )
    org_code = models.CharField(max_length=64)
    org_name = models.CharField(max_length=128)
    parent_code = models.CharField(max_length=64, blank=True, help_text="as received")
    # No database constraint: the sync services are the only writers and link a parent only
    # from a row of the same tenant read in the same locked transaction, and unlink children
    # before a delete; the per-row constraint check cost a 100k first load ~0.5 s (issue 5).
    # The reads treat a missing parent as "orphan, shown at the top level" anyway.
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        db_constraint=False,
        db_index=False,  # (tenant, parent, org_code) below serves every lookup by parent
    )
    # The time of the last singleOrgSync that wrote the row. An allOrgSync leaves it as it is
    # (empty for the rows it creates): its time is the tenant's `org_snapshot_time`, which
    # stands for every department it listed, and a call older than that is skipped before any
    # row's time is looked at (§2.3; a first load's COPY of 100,000 timestamps cost ~40 ms).
    call_time = call_time_field(
        "KooGallery time of the last singleOrgSync that wrote this row (empty: last written by "
        "an allOrgSync, whose time is the tenant's org snapshot time); older calls are skipped"
    )
    # The database's clock when a statement does not name them: a first load's COPY leaves
    # them out, as parsing 200,000 timestamps cost it ~50 ms (issue 17).
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now())
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "org_code"], name="uniq_department")
        ]
        # Children are found through (tenant, parent, org_code), which also gives a page of
        # them in orgCode order without sorting all of a 100,000-child department, and counts
        # them from the index alone (issue 14; it replaces the parent's own index, so a write
        # keeps as many indexes as before); orphans waiting for a code through
        # (tenant, parent_code) of the unlinked rows only: a first load of 100,000 linked
        # departments adds a handful of entries to it, not 100,000 (issue 17).
        indexes = [
            models.Index(
                fields=["tenant", "parent_code"],
                condition=Q(parent__isnull=True),
                name="orgsync_dept_unlinked",
            ),
            models.Index(fields=["tenant", "parent", "org_code"], name="orgsync_dept_children"),
        ]
        ordering = ["org_code"]

    def __str__(self) -> str:
        return f"{self.org_name} ({self.org_code})"

    @property
    def is_orphan(self) -> bool:
        return bool(self.parent_code) and self.parent_id is None


class RemovedDepartment(models.Model):
    """The time of the last delete of a department code (singleOrgSync flag 0), kept after its
    row is gone, so that an older add delivered late does not bring it back (spec §2.3). An
    allOrgSync, which restates every department, clears the tenant's."""

    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    org_code = models.CharField(max_length=64)
    call_time = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "org_code"], name="uniq_removed_department")
        ]

    def __str__(self) -> str:
        return f"{self.org_code} removed @ {self.call_time:%Y-%m-%d %H:%M:%S}"
