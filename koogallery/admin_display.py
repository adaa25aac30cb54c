"""Compact list cells for the admin, so that lists fit a 1366 px screen (issue 15): long ids and
digests shortened with the whole value in a tooltip, times to the minute. CSS:
ops/static/ops/admin.css."""

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html


def clip(text, keep: int = 13) -> str:
    """`text` cut to `keep` characters and "…", the whole value in the tooltip (and in the
    search box: lists search whole ids)."""
    text = "" if text is None else str(text)
    if not text:
        return "-"
    if len(text) <= keep + 1:
        return text  # escaped by the admin like any value
    return format_html('<span class="kg-clip" title="{}">{}…</span>', text, text[:keep])


def when(value) -> str:
    """A time to the minute in the server's zone (the date and the time may wrap onto two
    lines); seconds and the zone in the tooltip."""
    if value is None:
        return "-"
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    return format_html(
        '<span class="kg-time" title="{}">{}</span>',
        local.isoformat(timespec="seconds"),
        local.strftime("%Y-%m-%d %H:%M"),
    )


def clip_column(path: str, description: str, keep: int = 13):
    """A list_display column showing the value at `path` (``a__b``) clipped."""
    parts = path.split("__")

    @admin.display(description=description, ordering=path)
    def column(obj) -> str:
        value = obj
        for part in parts:
            value = getattr(value, part, None) if value is not None else None
        return clip(value, keep)

    column.__name__ = f"clip_{path}"
    return column


def time_column(field: str, description: str):
    """A list_display column showing the time in `field` to the minute."""

    @admin.display(description=description, ordering=field)
    def column(obj) -> str:
        return when(getattr(obj, field))

    column.__name__ = f"when_{field}"
    return column
