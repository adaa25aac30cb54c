"""The admin's "data" filter and debug marker, shared by every app.

Lists show every row by default, debug rows (testFlag 1, spec §2.5) marked with a "debug" badge,
so that an operator never takes filtered-out rows for missing data (issue 15: the buyer journey
writes debug data only). "production only" and "debug only" are one click away. Production
*queries* (selectors, metering push, sign-in) keep leaving debug data out; only the admin's
default changed. Each model says where its test flag lives."""

from django.contrib import admin
from django.db.models import Q
from django.utils.html import format_html

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
