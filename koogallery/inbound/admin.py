"""Admin of the inbound call journal: one row per KooGallery call, read-only. Bodies are stored
redacted (koogallery/protocol/redaction.py), so no secret reaches these pages."""

from django.contrib import admin

from koogallery.admin_kit import ReadOnlyAdmin, clip_column, debug_badge, time_column

from .journal import InboundCall


class StaleEntitiesFilter(admin.SimpleListFilter):
    """Kit calls that left entities as they were, a newer call having written them (§2.3); the
    count itself is on the call's page (a list column would not fit 1366 px)."""

    title = "stale entities"
    parameter_name = "stale"

    def lookups(self, request, model_admin):
        return [("yes", "some skipped as stale"), ("no", "none skipped")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(stale_entities__gt=0)
        if self.value() == "no":
            return queryset.filter(stale_entities=0)
        return queryset


@admin.register(InboundCall)
class InboundCallAdmin(ReadOnlyAdmin):
    list_display = (
        time_column("received_at", "received"),
        "endpoint",
        "data",
        "verification",
        "result_code",
        clip_column("tenant_id", "tenant", 8),
        clip_column("instance_id", "instance", 8),
        clip_column("order_id", "order", 10),
        "duration",
    )
    list_filter = (
        "endpoint",
        "family",
        "verification",
        "result_code",
        StaleEntitiesFilter,
        "test_flag",
    )
    date_hierarchy = "received_at"
    # Exact ids (each an index lookup); a substring search would read the whole journal.
    search_fields = ("tenant_id__exact", "instance_id__exact", "order_id__exact", "event_id__exact")
    search_help_text = "an exact tenantId, instanceId, orderId or eventId"
    show_full_result_count = False

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, obj: InboundCall) -> str:
        return f"{obj.duration_ms:.1f} ms"

    @admin.display(description="data", ordering="test_flag")
    def data(self, obj: InboundCall) -> str:
        return debug_badge(obj.test_flag)
