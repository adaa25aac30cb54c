"""Sign-in through KooGallery's unified login (spec §5.3).

- `TenantAccount` links the Django user a person signs in as to the synced `TenantUser`
  (tenant, userName) it stands for (authSync, §4.1.3).
- `SignIn` is one signed-in browser session: which user, tenant and application, and the
  platform's tokens, encrypted at rest with the same `SecretBox` as client secrets; the tokens
  never leave this model in clear except to call the tenant's endpoints.
- `LoginAudit` records every attempt and what became of it, without codes, tokens or secrets.
"""

from django.conf import settings
from django.db import models

from koogallery.protocol.secret_store import decrypt_secret, encrypt_secret


class TenantAccount(models.Model):
    """The Django user of one synced tenant user (username `kg:<tenant pk>:<userName>`)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tenant_account"
    )
    tenant_user = models.OneToOneField(
        "tenants.TenantUser", on_delete=models.CASCADE, related_name="account"
    )
    linked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        permissions = [
            # Granted through the "tenant administrators" group to users whose authSync role is
            # `admin` (§4.1.3); the merchant's product checks `sso.administer_tenant`.
            ("administer_tenant", "Can administer their own tenant in the app"),
        ]

    def __str__(self) -> str:
        return f"{self.user} = {self.tenant_user}"


class SignInEnd(models.TextChoices):
    LOGOUT = "logout", "signed out"
    REFRESH_FAILED = "refresh_failed", "token could not be refreshed"
    ACCESS_LOST = "access_lost", "access rules no longer met"
    REPLACED = "replaced", "replaced by a newer sign-in"
    DECLINED = "declined", "not confirmed in the browser"


class SignIn(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_sign_ins"
    )
    tenant_user = models.ForeignKey(
        "tenants.TenantUser", on_delete=models.CASCADE, related_name="sign_ins"
    )
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    application = models.ForeignKey(
        "tenants.Application", on_delete=models.CASCADE, related_name="sign_ins"
    )
    access_token_encrypted = models.TextField(editable=False)
    refresh_token_encrypted = models.TextField(editable=False, blank=True)
    expires_at = models.DateTimeField(help_text="access token expiry")
    created_at = models.DateTimeField(auto_now_add=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=16, choices=SignInEnd.choices, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "ended_at"])]

    def __str__(self) -> str:
        return f"{self.user} since {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def active(self) -> bool:
        return self.ended_at is None

    @property
    def has_refresh_token(self) -> bool:
        return bool(self.refresh_token_encrypted)

    def access_token(self) -> str:
        return decrypt_secret(self.access_token_encrypted)

    def refresh_token(self) -> str:
        return decrypt_secret(self.refresh_token_encrypted) if self.refresh_token_encrypted else ""

    def store_tokens(self, *, access_token: str, refresh_token: str) -> None:
        self.access_token_encrypted = encrypt_secret(access_token)
        if refresh_token:
            self.refresh_token_encrypted = encrypt_secret(refresh_token)


class AuditEvent(models.TextChoices):
    LOGIN = "login", "login"
    REFRESH = "refresh", "token refresh"
    RECHECK = "recheck", "access re-checked during a session"
    LOGOUT = "logout", "logout"


class AuditOutcome(models.TextChoices):
    SUCCESS = "success", "success"
    REFUSED = "refused", "refused"
    ERROR = "error", "error (platform or configuration)"


class Reason(models.TextChoices):
    """Why an attempt was refused or failed; the refused user sees a page for each."""

    MISSING_TENANT = "missing_tenant", "no tenant given"
    UNKNOWN_TENANT = "unknown_tenant", "unknown tenant"
    TENANT_REMOVED = "tenant_removed", "tenant removed (tenantSync flag 0)"
    TEST_TENANT = "test_tenant", "test-data tenant, SSO_ALLOW_TEST_TENANTS off"
    NO_APPLICATION = "no_application", "no application synced for the tenant"
    NO_INSTANCE = "no_instance", "application bound to no known instance"
    INSTANCE_PROVISIONING = "instance_provisioning", "instance not active yet"
    INSTANCE_FROZEN = "instance_frozen", "instance frozen"
    INSTANCE_RELEASED = "instance_released", "instance released"
    MISSING_CODE = "missing_code", "callback without code"
    BAD_STATE = "bad_state", "state missing, unknown or for another tenant"
    CODE_REPLAYED = "code_replayed", "code already presented here"
    CODE_REJECTED = "code_rejected", "code rejected by the platform (invalid_grant)"
    CLIENT_REJECTED = "client_rejected", "client credentials rejected by the platform"
    SECRET_UNREADABLE = "secret_unreadable", "stored client secret cannot be decrypted"
    PROVIDER_ERROR = "provider_error", "platform unreachable or answered unexpectedly"
    TENANT_MISMATCH = "tenant_mismatch", "user belongs to another tenant"
    UNKNOWN_USER = "unknown_user", "user not synced by authSync"
    NOT_AUTHORIZED = "not_authorized", "no authorisation for the application"
    AUTHORIZATION_REMOVED = "authorization_removed", "authorisation removed (authSync flag 0)"
    AUTHORIZATION_REVOKED = "authorization_revoked", "authorisation revoked (authSync flag 3)"
    USER_DISABLED = "user_disabled", "user disabled (enable false)"
    REFRESH_REJECTED = "refresh_rejected", "refresh token rejected"
    TOKEN_EXPIRED = "token_expired", "access token expired and cannot be refreshed"


class LoginAudit(models.Model):
    """One row per login attempt, token refresh, access re-check that failed, and logout.

    Deliberately holds no authorization code, token or client secret: `detail` carries only
    the platform's error code (e.g. `invalid_grant`) or an HTTP status.
    """

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    event = models.CharField(max_length=16, choices=AuditEvent.choices, default=AuditEvent.LOGIN)
    outcome = models.CharField(max_length=16, choices=AuditOutcome.choices)
    reason = models.CharField(max_length=32, choices=Reason.choices, blank=True)
    detail = models.CharField(max_length=255, blank=True)
    tenant_ref = models.CharField(
        max_length=64, blank=True, help_text="tenant or instance as the request named it"
    )
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    application = models.ForeignKey(
        "tenants.Application", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    instance_id = models.CharField(max_length=64, blank=True)
    user_name = models.CharField(max_length=64, blank=True, help_text="userName of userinfo")
    tenant_user = models.ForeignKey(
        "tenants.TenantUser", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    remote_addr = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["tenant", "at"]), models.Index(fields=["outcome", "at"])]

    def __str__(self) -> str:
        who = self.user_name or "?"
        return f"{self.event} {self.outcome} {who}@{self.tenant_ref} {self.reason}".strip()
