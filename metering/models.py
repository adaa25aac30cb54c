"""Usage of on-demand instances and its push to KooGallery (spec §5.5).

The merchant's product reports `UsageEvent`s (idempotent on `event_id`). A beat job closes each
UTC hour: the events of one instance in [HH:00, HH+1:00) become ONE `UsageRecord`, which gets a
`metering_sn` before it is first sent and keeps it on every retry. Records travel to KooGallery
in `PushBatch`es of at most 1000; each HTTP attempt is an `OutboundAttempt` row (subject
`usage-batch-<id>`).

Record life: open (hour still running; value so far) → pending (closed, sn assigned) → pushed
(claimed by a push, answer awaited) → accepted (MKT.0000), or back to pending (5xx, transport:
retried with backoff), failed (refused: an operator re-pushes it), dropped (never to be sent:
older than 21 days, or the instance turned out not to be billed on demand).
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from instances.models import Instance


class RecordState(models.TextChoices):
    OPEN = "open", "open (hour still running)"
    PENDING = "pending", "pending (closed, to be pushed)"
    PUSHED = "pushed", "pushed (answer awaited)"
    ACCEPTED = "accepted", "accepted by KooGallery"
    FAILED = "failed", "failed (re-push from the admin)"
    DROPPED = "dropped", "dropped (never sent)"


class UsageEvent(models.Model):
    """One consumption reported by our product: `quantity` of the billing item at a moment."""

    # Unique through Meta.constraints (one index; a unique field would add a LIKE index too).
    event_id = models.CharField(max_length=128, help_text="the reporter's id")
    instance = models.ForeignKey(
        Instance,
        on_delete=models.PROTECT,
        related_name="usage_events",
        db_index=False,  # metering_event_instance (instance, occurred_at) serves every lookup
    )
    quantity = models.DecimalField(max_digits=19, decimal_places=4)
    occurred_at = models.DateTimeField()
    hour_start = models.DateTimeField(help_text="the UTC hour of occurred_at")
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # Closing an hour reads a range of hours across instances.
            models.Index(fields=["hour_start", "instance"], name="metering_event_hour"),
            # queryInstance totals and package windows read one instance's events by time.
            models.Index(fields=["instance", "occurred_at"], name="metering_event_instance"),
        ]
        # Every recorded event writes each index: no more of them than reads need (issue 17).
        constraints = [models.UniqueConstraint(fields=["event_id"], name="uniq_usage_event_id")]
        ordering = ["-occurred_at", "-id"]

    def __str__(self) -> str:
        return f"{self.event_id}: {self.quantity} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class BatchOutcome(models.TextChoices):
    SENDING = "sending", "sending"
    ACCEPTED = "accepted", "accepted"
    PARTIAL = "partial", "partly refused (abnormal_usage_data)"
    RETRY = "retry", "transient failure (records retried)"
    FAILED = "failed", "refused"


class PushTrigger(models.TextChoices):
    BEAT = "beat", "scheduled (beat)"
    COMMAND = "command", "koogallery_push_usage"
    ADMIN = "admin", "admin re-push"


class PushBatch(models.Model):
    """One usage-data call (§5.5) carrying up to 1000 records."""

    trigger = models.CharField(max_length=16, choices=PushTrigger.choices)
    outcome = models.CharField(
        max_length=16, choices=BatchOutcome.choices, default=BatchOutcome.SENDING
    )
    record_count = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    result_code = models.CharField(max_length=32, blank=True)
    result_msg = models.CharField(max_length=1024, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "push batches"

    def __str__(self) -> str:
        return f"{self.subject} [{self.outcome}]"

    @property
    def subject(self) -> str:
        """The `OutboundAttempt.subject` of this batch's HTTP attempts."""
        return f"usage-batch-{self.pk}"


class UsageRecord(models.Model):
    """The usage of one instance in one UTC hour: what KooGallery bills (§5.5)."""

    instance = models.ForeignKey(Instance, on_delete=models.PROTECT, related_name="usage_records")
    hour_start = models.DateTimeField(help_text="HH:00 UTC; the record covers [HH:00, HH+1:00)")
    begin_at = models.DateTimeField(help_text="begin_time: the hour, from the instance's start")
    end_at = models.DateTimeField(help_text="end_time: the hour, up to release or freeze")
    value = models.DecimalField(max_digits=19, decimal_places=4)
    event_count = models.PositiveIntegerField(default=0)
    state = models.CharField(
        max_length=16, choices=RecordState.choices, default=RecordState.OPEN, db_index=True
    )
    metering_sn = models.CharField(
        max_length=64,
        unique=True,
        null=True,
        blank=True,
        help_text="assigned when the hour closes, before the first send; reused on retries",
    )
    record_time = models.DateTimeField(null=True, blank=True, help_text="when the hour closed")
    relate_pkg_instance = models.CharField(
        max_length=64, blank=True, help_text="package the usage is deducted from, if sent"
    )
    attempts = models.PositiveIntegerField(default=0, help_text="usage-data calls that carried it")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True, help_text="claimed by a push")
    batch = models.ForeignKey(
        PushBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="records"
    )
    last_result_code = models.CharField(max_length=32, blank=True)
    last_error = models.CharField(max_length=1024, blank=True)
    first_pushed_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # One record per (instance, hour): a second record would be a duplicate period
            # KooGallery refuses, and a collected one cannot be corrected (§5.5).
            models.UniqueConstraint(fields=["instance", "hour_start"], name="uniq_usage_hour"),
            models.CheckConstraint(
                condition=Q(state="open") | Q(metering_sn__isnull=False),
                name="usage_closed_has_sn",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="metering_record_due"),
            models.Index(fields=["hour_start"], name="metering_record_hour"),
        ]
        ordering = ["-hour_start", "instance_id"]

    def __str__(self) -> str:
        return f"{self.instance_id} {self.hour_start:%Y-%m-%d %H:00} [{self.state}]"


class CursorName(models.TextChoices):
    CLOSED = "closed", "hours before this are closed to new events"
    AGGREGATED = "aggregated", "hours before this have their final records"


class MeteringCursor(models.Model):
    """Where closing stands; the rows double as locks (ingestion shares `closed`, the closer
    takes it exclusively; one closer at a time holds `aggregated`)."""

    name = models.CharField(max_length=16, primary_key=True, choices=CursorName.choices)
    position = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.position or '-'}"


class MeteredInstance(Instance):
    """On-demand and package instances as the metering admin shows them (usage, chart, the
    package relation)."""

    class Meta:
        proxy = True
        verbose_name = "metered instance"
