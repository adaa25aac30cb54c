"""The admin's "data" filter, shared by every app: production rows by default, debug rows
(testFlag 1, spec §2.5) or everything on request. Each model says where its test flag lives."""

from django.contrib import admin
from django.db.models import Q


class TestDataFilter(admin.SimpleListFilter):
    title = "data"
    parameter_name = "data"
    DEFAULT = "production"
    # Lookup of the row's test flag: "is_test" on tenants and instances, "tenant__is_test" etc.
    is_test_path = "is_test"

    def lookups(self, request, model_admin):
        return [("production", "production"), ("test", "test (debug calls)"), ("all", "all")]

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
