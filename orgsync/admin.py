"""Departments in the admin: read-only, since singleOrgSync/allOrgSync own them (§2.6)."""

from django.contrib import admin
from django.db.models import Q

from koogallery.admin_kit import clip_column, data_filter, debug_column, time_column

from .models import Department

DataFilter = data_filter("tenant__is_test")


class OrphanFilter(admin.SimpleListFilter):
    """Departments whose parent has not arrived or was deleted (shown at the top level)."""

    title = "orphan"
    parameter_name = "orphan"

    def lookups(self, request, model_admin):
        return [("yes", "orphans"), ("no", "linked or top level")]

    def queryset(self, request, queryset):
        orphan = Q(parent__isnull=True) & ~Q(parent_code="")
        if self.value() == "yes":
            return queryset.filter(orphan)
        if self.value() == "no":
            return queryset.exclude(orphan)
        return queryset


@admin.register(Department)
class DepartmentAdmin(admin.ModelAdmin):
    list_display = (
        clip_column("org_code", "org code", 16),
        "org_name",
        "tenant",
        debug_column("tenant__is_test"),
        clip_column("parent_code", "parent code", 16),
        "parent",
        time_column("updated_at", "updated"),
    )
    list_filter = (DataFilter, OrphanFilter)
    search_fields = ("org_code", "org_name", "tenant__tenant_id")
    list_select_related = ("tenant", "parent")
    show_full_result_count = False  # COUNT(*) over 100k-department tenants on every page
    readonly_fields = [f.name for f in Department._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
