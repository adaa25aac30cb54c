"""What every app's admin builds on: read-only admin classes, compact list cells and the
"data" filter with its debug marker.

Everything is read-only: data changes only through KooGallery calls and services (STYLE.md §2).

Compact cells keep lists within a 1366 px screen (issue 15): long ids and digests shortened with
the whole value in a tooltip, times to the minute. CSS: ops/static/ops/admin.css.

The "data" filter: lists show every row by default, debug rows (testFlag 1, spec §2.5) marked
with a "debug" badge, so that an operator never takes filtered-out rows for missing data (issue
15: the buyer journey writes debug data only). "production only" and "debug only" are one click
away. Production *queries* (selectors, metering push, sign-in) keep leaving debug data out; only
the admin's default changed. Each model says where its test flag lives."""

from django.contrib import admin
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def call_link(call) -> str:
    """A link to a journal row's admin page (an `InboundCall`), or "-"."""
    if call is None:
        return "-"
    url = reverse("admin:koogallery_inboundcall_change", args=[call.pk])
    return format_html('<a href="{}">{}</a>', url, call)


# --- compact cells ---------------------------------------------------------------------------


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


# --- the data filter and the debug marker ------------------------------------------------------

DEBUG_TITLE = "debug data: sent with testFlag 1 (spec §2.5); production queries leave it out"


class TestDataFilter(admin.SimpleListFilter):
    title = "data"
    parameter_name = "data"
    DEFAULT = "all"
    # Lookup of the row's test flag: "is_test" on tenants and instances, "tenant__is_test" etc.
    is_test_path = "is_test"

    def lookups(self, request, model_admin):
        return [
            ("all", "all (debug rows marked)"),
            ("production", "production only"),
            ("test", "debug only (testFlag 1)"),
        ]

    def choices(self, changelist):
        current = self.value() or self.DEFAULT
        for value, label in self.lookup_choices:
            yield {
                "selected": current == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }

    def production(self) -> Q:
        return Q(**{self.is_test_path: False})

    def queryset(self, request, queryset):
        value = self.value() or self.DEFAULT
        if value == "production":
            return queryset.filter(self.production())
        if value == "test":
            return queryset.filter(**{self.is_test_path: True})
        return queryset


def data_filter(is_test_path: str) -> type[TestDataFilter]:
    """The data filter for a model whose test flag sits at `is_test_path`."""
    return type("TestDataFilter", (TestDataFilter,), {"is_test_path": is_test_path})


def debug_badge(is_test: bool | None) -> str:
    """The marker of a debug row in a list or on a page; nothing for production rows."""
    if not is_test:
        return ""
    return format_html('<span class="kg-debug" title="{}">debug</span>', DEBUG_TITLE)


def debug_column(is_test_path: str = "is_test"):
    """A list_display column: "debug" on rows whose test flag (at `is_test_path`) is set."""
    parts = is_test_path.split("__")

    @admin.display(description="data", ordering=is_test_path)
    def data(obj) -> str:
        value = obj
        for part in parts:
            value = getattr(value, part, None) if value is not None else None
        return debug_badge(value)

    return data
