"""Tenants (buyer enterprises), their instance bindings, applications, users, authorisations.

Every natural key of the kit interfaces (spec §4.1) is a unique constraint here (STYLE.md §3);
test data (testFlag 1) lives in separate tenant rows, so every key below is scoped by the flag
through the tenant (spec §2.5).
"""

from django.db import models

# Spec §2.3 "Replays and late calls": each synced row keeps the KooGallery time of the call that
# last wrote it, and a call older than that writes nothing to it. Rows written before the field
# existed (or by an untimed write: staff, scripts) hold none: older than any call.
CALL_TIME_HELP = "KooGallery time of the call that last wrote this row; older calls are skipped"


def call_time_field(help_text: str = CALL_TIME_HELP) -> models.DateTimeField:
    return models.DateTimeField(null=True, blank=True, editable=False, help_text=help_text)


class SyncFlag(models.IntegerChoices):
    DELETE = 0, "delete"
    ADD = 1, "add"
    MODIFY = 2, "modify"
    CANCEL = 3, "cancel authorisation"


class Tenant(models.Model):
    tenant_id = models.CharField(max_length=64)
    is_test = models.BooleanField(default=False, help_text="created by testFlag 1 (debug) calls")
    tenant_code = models.CharField(max_length=64, blank=True)
    name = models.CharField(max_length=255, blank=True)
    domain_name = models.CharField(max_length=255, blank=True, help_text="OAuth base URL")
    removed_at = models.DateTimeField(null=True, blank=True, help_text="tenantSync flag 0")
    org_synced_at = models.DateTimeField(null=True, blank=True, help_text="last department sync")
    # tenantSync: the tenant and its binding to the call's instance are written together.
    call_time = call_time_field()
    # Department calls (orgsync): allOrgSync is skipped if older than the last department change
    # of any kind; singleOrgSync if older than the last allOrgSync, which wrote every department.
    org_call_time = call_time_field("KooGallery time of the last department change")
    org_snapshot_time = call_time_field("KooGallery time of the last allOrgSync applied")
    # SHA-256 of the last allOrgSync applied (orgsync.snapshot.digest), while the departments
    # are still exactly that snapshot: every other department write clears it, so an identical
    # re-sync can be answered without reading, diffing or writing 100k rows (issue 17).
    org_snapshot_digest = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_default="",  # the raw INSERTs of tenants/services.py need not name it
        editable=False,
        help_text="digest of the last allOrgSync, while no other department change followed",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "is_test"], name="uniq_tenant_id_flag")
        ]
        indexes = [models.Index(fields=["tenant_code"])]
        ordering = ["name", "tenant_id"]

    def __str__(self) -> str:
        label = self.name or self.tenant_code or self.tenant_id
        return f"{label} (test)" if self.is_test else label

    @property
    def active(self) -> bool:
        return self.removed_at is None


class TenantBinding(models.Model):
    """A tenant bound to one purchased instance (tenantSync keys (instanceId, tenantId)).

    `instance_id` is empty for the seller's app credential and for debugging (spec §4.1).
    """

    # No index of its own: uniq_binding leads with it.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="bindings", db_index=False
    )
    instance_id = models.CharField(max_length=64, blank=True)
    order_id = models.CharField(max_length=64, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "instance_id"], name="uniq_binding")
        ]
        # queryInstance and SSO find an instance's tenant by instance_id alone.
        indexes = [models.Index(fields=["instance_id"], name="tenants_binding_instance")]

    def __str__(self) -> str:
        return f"{self.tenant} ↔ {self.instance_id or '(no instance)'}"


class Application(models.Model):
    """OAuth client credentials of applicationSync; the secret is encrypted at rest."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="applications")
    instance_id = models.CharField(max_length=64, blank=True)
    app_id = models.CharField(max_length=64)
    client_id = models.CharField(max_length=64)
    client_secret_encrypted = models.TextField(editable=False)
    removed_at = models.DateTimeField(null=True, blank=True)
    call_time = call_time_field()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "instance_id", "app_id"], name="uniq_application"
            )
        ]

    def __str__(self) -> str:
        return f"{self.app_id} of {self.tenant}"


class Role(models.TextChoices):
    ADMIN = "admin", "tenant administrator"
    USER = "user", "user"


class AuthorizationState(models.TextChoices):
    AUTHORIZED = "authorized", "authorized"
    REVOKED = "revoked", "revoked (flag 3)"
    REMOVED = "removed", "removed (flag 0)"


class TenantUser(models.Model):
    """A person of a tenant, unique by userName within the tenant (spec §4.1.3)."""

    # No index of its own: uniq_tenant_user leads with it (one index less for authSync to keep).
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="users", db_index=False
    )
    user_name = models.CharField(max_length=64)
    name = models.CharField(max_length=64, blank=True)
    org_code = models.CharField(max_length=64, blank=True, help_text="as received")
    # The department of `org_code` in the tenant, once it exists (§2.6): derived data, kept by
    # the sync services under the tenant's row lock, which link a user only to a department read
    # in that transaction and unlink users before deleting a department (the ORM's SET_NULL does
    # the same for other deletes). No index and no database constraint (issue 17), as for
    # Department.parent: a foreign key's deferred check cost a first load linking 20,000
    # waiting users ~0.1 s at commit; and with the column in no index, linking them is a HOT
    # update (the table keeps room on its pages, migration 0005) instead of a new entry in every
    # index of the table, ~0.1 s more. Users of a department are found through
    # (tenant, org_code), which the link follows by construction.
    department = models.ForeignKey(
        "orgsync.Department",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="users",
        help_text="linked once a department with org_code exists",
        db_index=False,
        db_constraint=False,
    )
    position = models.CharField(max_length=64, blank=True)
    employee_code = models.CharField(max_length=64, blank=True)
    employee_type = models.PositiveSmallIntegerField(null=True, blank=True)
    mobile = models.CharField(max_length=32, blank=True)
    email = models.CharField(max_length=128, blank=True)
    work_place = models.CharField(max_length=255, blank=True)
    entry_date = models.CharField(max_length=32, blank=True)
    extension = models.JSONField(default=dict, blank=True)
    call_time = call_time_field("KooGallery time of the authSync that last wrote this record")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user_name"], name="uniq_tenant_user")
        ]
        indexes = [models.Index(fields=["tenant", "org_code"])]
        ordering = ["user_name"]

    def __str__(self) -> str:
        return f"{self.name or self.user_name} ({self.user_name})"


class Authorization(models.Model):
    """A user's access to one application of one instance (authSync)."""

    # No indexes of their own: the (tenant, app_id) index and uniq_authorization lead with them.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="authorizations", db_index=False
    )
    user = models.ForeignKey(
        TenantUser, on_delete=models.CASCADE, related_name="authorizations", db_index=False
    )
    instance_id = models.CharField(max_length=64, blank=True)
    app_id = models.CharField(max_length=64)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.USER)
    enabled = models.BooleanField(default=True)
    state = models.CharField(
        max_length=16, choices=AuthorizationState.choices, default=AuthorizationState.AUTHORIZED
    )
    current_sync_time = models.CharField(max_length=32, blank=True)
    call_time = call_time_field("currentSyncTime read as a time; older calls are skipped")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "instance_id", "app_id"], name="uniq_authorization"
            )
        ]
        indexes = [models.Index(fields=["tenant", "app_id"])]

    def __str__(self) -> str:
        return f"{self.user.user_name} → {self.app_id} [{self.state}]"

    @property
    def can_sign_in(self) -> bool:
        """Authorised, enabled, and the tenant not removed (tenantSync flag 0 deactivates)."""
        return (
            self.state == AuthorizationState.AUTHORIZED
            and self.enabled
            and self.tenant.removed_at is None
        )
