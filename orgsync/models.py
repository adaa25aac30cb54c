"""Departments as an adjacency list keyed by (tenant, orgCode) (spec §4.1.4, §4.1.5, §2.6).

`parent_code` is stored exactly as received; `parent` is linked when a department with that
code exists in the same tenant (a child may arrive before its parent). A department whose
`parent_code` is set but whose `parent` is missing is an orphan and shown at the top level.
"""

from django.db import models


class Department(models.Model):
    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, related_name="departments"
    )
    org_code = models.CharField(max_length=64)
    org_name = models.CharField(max_length=128)
    parent_code = models.CharField(max_length=64, blank=True, help_text="as received")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "org_code"], name="uniq_department")
        ]
        indexes = [
            models.Index(fields=["tenant", "parent"]),
            models.Index(fields=["tenant", "parent_code"]),
        ]
        ordering = ["org_code"]

    def __str__(self) -> str:
        return f"{self.org_name} ({self.org_code})"

    @property
    def is_orphan(self) -> bool:
        return bool(self.parent_code) and self.parent_id is None
