"""Licences: asynchronous licence requests (spec §2.8, §4.2.8) and licence codes (§4.5, §5.4).

A `LicenseRequest` is one getLicenseAsync, keyed by (eventId, deviceFingerprint) and the test
flag (STYLE.md §3, spec §2.5). Its state machine:

    received → issued → uploading → delivered
                  ↑  ↓        ↓
                  └──┴── (transient failure: back to issued, retried)
                              ↓
                            failed (business error 9138xxxx, or transient failures for too long)

    delivered/failed --(deliberate revoke)--> revoked --(re-issue)--> issued → …

At most one live (not revoked) `License` exists per request: a partial unique constraint, so a
redelivery never mints a second licence. Every upload attempt is an `OutboundAttempt` row
(purpose licence upload, subject = eventId) written by `koogallery.outbound.client`.
"""

import uuid

from django.db import models
from django.db.models import Q


class RequestState(models.TextChoices):
    RECEIVED = "received", "received"
    ISSUED = "issued", "issued"
    UPLOADING = "uploading", "uploading"
    DELIVERED = "delivered", "delivered"
    FAILED = "failed", "failed"
    REVOKED = "revoked", "revoked"

    @classmethod
    def pending(cls) -> tuple["RequestState", ...]:
        """States the sweep keeps pushing forward."""
        return (cls.RECEIVED, cls.ISSUED, cls.UPLOADING)

    @classmethod
    def final(cls) -> tuple["RequestState", ...]:
        return (cls.DELIVERED, cls.FAILED, cls.REVOKED)


class LicenseRequest(models.Model):
    event_id = models.CharField(max_length=64, help_text="getLicenseAsync eventId = upload event")
    device_fingerprint = models.CharField(max_length=1024, blank=True, help_text="as received")
    # The fingerprint may be 1024 characters: the unique key uses its digest (index size).
    fingerprint_sha256 = models.CharField(max_length=64)
    is_test = models.BooleanField(default=False)
    instance = models.ForeignKey(
        "instances.Instance", on_delete=models.PROTECT, related_name="license_requests"
    )
    effective_at = models.DateTimeField()
    expire_at = models.DateTimeField(null=True, blank=True)

    state = models.CharField(
        max_length=16, choices=RequestState.choices, default=RequestState.RECEIVED
    )
    attempt_count = models.PositiveIntegerField(default=0, help_text="upload attempts so far")
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="earliest time the sweep may push this request again"
    )
    lease_until = models.DateTimeField(
        null=True, blank=True, help_text="an upload in progress owns the request until then"
    )
    failure_code = models.CharField(max_length=32, blank=True)
    failure_message = models.CharField(max_length=1024, blank=True)
    last_error = models.TextField(blank=True, help_text="last transient failure")

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["event_id", "fingerprint_sha256", "is_test"], name="uniq_license_request"
            )
        ]
        # Leads with state: no index of state alone (nor its varchar_pattern_ops twin).
        indexes = [models.Index(fields=["state", "updated_at"])]
        ordering = ["-created_at", "-id"]
        verbose_name = "licence request"

    def __str__(self) -> str:
        return f"{self.event_id} [{self.state}]"

    @property
    def live_license(self) -> "License | None":
        return self.licenses.filter(revoked_at__isnull=True).first()


class License(models.Model):
    """One minted licence token. Never deleted; a deliberate revoke keeps the row."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, help_text="lid")
    request = models.ForeignKey(LicenseRequest, on_delete=models.PROTECT, related_name="licenses")
    token = models.TextField(help_text="base64url(payload).base64url(Ed25519 signature)")
    payload = models.JSONField(help_text="the signed claims, as in the token")
    key_id = models.CharField(max_length=16, help_text="sha256 prefix of the public key")
    issued_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.CharField(max_length=255, blank=True)

    class Meta:
        constraints = [
            # Issue once per request (spec §2.8 "never mint a second licence").
            models.UniqueConstraint(
                fields=["request"],
                condition=Q(revoked_at__isnull=True),
                name="uniq_live_license_per_request",
            )
        ]
        ordering = ["-issued_at"]
        verbose_name = "licence"

    def __str__(self) -> str:
        return f"{self.id}{' (revoked)' if self.revoked_at else ''}"


# --- licence codes (授权码, §4.5 / §5.4) ----------------------------------------------------------


class LicenseCodeStatus(models.TextChoices):
    NOT_ACTIVATED = "", "not activated"
    ALIVE = "ALIVE", "alive"
    EXPIRED = "EXPIRED", "expired"
    RELEASED = "RELEASED", "released"


class LicenseCodeScene(models.TextChoices):
    RENEWAL = "RENEWAL", "renewal (续费)"
    UNSUBSCRIBE_RENEWAL_PERIOD = "UNSUBSCRIBE_RENEWAL_PERIOD", "renewal cancelled (退续费)"


class LicenseCodeStatusChange(models.TextChoices):
    FREEZE = "FREEZE", "freeze (冻结)"
    UNFREEZE = "UNFREEZE", "unfreeze (解冻)"


class LicenseCode(models.Model):
    """A licence code (授权码) the buyer hands to us; KooGallery drives its life (§4.5)."""

    code = models.CharField(max_length=64)
    is_test = models.BooleanField(default=False)
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(
        max_length=16, choices=LicenseCodeStatus.choices, blank=True, default=""
    )
    frozen = models.BooleanField(default=False, help_text="updateLicenseCodeStatus FREEZE")
    expire_at = models.DateTimeField(null=True, blank=True)
    product_id = models.CharField(max_length=64, blank=True)
    order_id = models.CharField(max_length=64, blank=True)
    amount = models.PositiveIntegerField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True, help_text="last query (heartbeat)")
    last_answer = models.JSONField(default=dict, blank=True, help_text="last activate/query data")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["code", "is_test"], name="uniq_license_code")
        ]
        ordering = ["-created_at", "-id"]
        verbose_name = "licence code"

    def __str__(self) -> str:
        return f"{self.code} [{self.get_status_display()}{', frozen' if self.frozen else ''}]"

    @property
    def activated(self) -> bool:
        return self.activated_at is not None


class LicenseCodeRenewal(models.Model):
    """One refreshLicenseCode, idempotent per (licence, orderId) (§4.5)."""

    license_code = models.ForeignKey(LicenseCode, on_delete=models.CASCADE, related_name="renewals")
    order_id = models.CharField(max_length=64)
    order_line_id = models.CharField(max_length=64)
    scene = models.CharField(max_length=64, choices=LicenseCodeScene.choices)
    product_id = models.CharField(max_length=64, blank=True)
    expire_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["license_code", "order_id"], name="uniq_license_code_renewal"
            )
        ]
        ordering = ["received_at", "id"]

    def __str__(self) -> str:
        return f"{self.scene} {self.order_id} → {self.expire_at:%Y-%m-%d %H:%M:%S}"
