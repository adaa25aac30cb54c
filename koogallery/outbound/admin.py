"""Admin of what goes out to KooGallery: one row per outbound attempt (STYLE.md §6, after Saleor)
and the job outbox. Read-only."""

from urllib.parse import urlsplit

from django.contrib import admin
from django.utils.html import format_html

from koogallery.admin_kit import ReadOnlyAdmin, clip_column, time_column

from .attempts import OutboundAttempt
from .jobs import QueuedJob


@admin.register(OutboundAttempt)
class OutboundAttemptAdmin(ReadOnlyAdmin):
    list_display = (
        time_column("started_at", "started"),
        "purpose",
        clip_column("subject", "subject", 20),
        "request",
        "status_code",
        "result_code",
        "outcome",
        "duration",
    )
    list_filter = ("purpose", "outcome", "result_code")
    date_hierarchy = "started_at"
    search_fields = ("subject", "result_code")
    show_full_result_count = False

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, obj: OutboundAttempt) -> str:
        return f"{obj.duration_ms:.1f} ms"

    @admin.display(description="request")
    def request(self, obj: OutboundAttempt) -> str:
        """The method and the URL's path (the host is the configured API base), whole URL in
        the tooltip."""
        path = urlsplit(obj.url).path or obj.url
        return format_html(
            '<span class="kg-wrap" title="{}">{} {}</span>', obj.url, obj.method, path
        )


@admin.register(QueuedJob)
class QueuedJobAdmin(ReadOnlyAdmin):
    """The outbox: jobs committed by calls and not yet handed to the broker (or, without one,
    run by the job runner). A row that stays here means no beat or no broker, or no job runner
    on the embedded default (docs/operations.md §5); a row with retries waits for its next try."""

    list_display = (
        "id",
        "task",
        "object_id",
        time_column("created_at", "queued"),
        "retries",
        time_column("run_after", "next try"),
        clip_column("request_id", "request id"),
    )
    list_filter = ("task",)
