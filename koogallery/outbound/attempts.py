"""Outbound calls to KooGallery, one row per attempt (STYLE.md §6, after Saleor)."""

from django.db import models


class OutboundPurpose(models.TextChoices):
    QUERY_ORDER = "query_order", "Query Order"
    LICENSE_UPLOAD = "license_upload", "licence upload"
    LICENSE_CODE = "license_code", "licence-code API"
    USAGE_PUSH = "usage_push", "usage push"


class AttemptOutcome(models.TextChoices):
    SUCCESS = "success", "success"
    RETRY = "retry", "transient failure (retried)"
    FATAL = "fatal", "business error (not retried)"


class OutboundAttempt(models.Model):
    purpose = models.CharField(max_length=32, choices=OutboundPurpose.choices, db_index=True)
    subject = models.CharField(
        max_length=128, db_index=True, help_text="business key: orderId, eventId, licence…"
    )
    method = models.CharField(max_length=8)
    url = models.CharField(max_length=1024)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    result_code = models.CharField(max_length=32, blank=True)
    result_msg = models.CharField(max_length=1024, blank=True)
    response_body = models.TextField(blank=True)
    error = models.TextField(blank=True)
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    duration_ms = models.FloatField(default=0)
    started_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.purpose} {self.subject} {self.outcome}"
