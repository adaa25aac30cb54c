"""Sign-in in the admin, read-only: the audit trail, open sign-ins and account links.

Tokens are never shown (not even encrypted): the sign-in admin lists only their expiry.
"""

from django.contrib import admin
from django.db.models import Q

from koogallery.admin_kit import TestDataFilter, clip_column, debug_column, time_column

from .models import LoginAudit, SignIn, TenantAccount


class DataFilter(TestDataFilter):
    """Attempts that named no known tenant count as production: someone tried them for real."""

    is_test_path = "tenant__is_test"

    def production(self) -> Q:
        return Q(tenant__isnull=True) | Q(tenant__is_test=False)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(LoginAudit)
class LoginAuditAdmin(ReadOnlyAdmin):
    list_display = (
        time_column("at", "at"),
        "event",
        "outcome",
        "reason",
        clip_column("tenant_ref", "tenant named"),
        "tenant",
        debug_column("tenant__is_test"),
        "user_name",
        clip_column("instance_id", "instance"),
        "remote_addr",
    )
    list_filter = (DataFilter, "event", "outcome", "reason")
    search_fields = (
        "user_name",
        "tenant_ref",
        "tenant__tenant_id",
        "tenant__name",
        "instance_id",
        "remote_addr",
    )
    date_hierarchy = "at"
    list_select_related = ("tenant",)
    fields = (
        "at",
        "event",
        "outcome",
        "reason",
        "detail",
        "tenant_ref",
        "tenant",
        "application",
        "instance_id",
        "user_name",
        "tenant_user",
        "user",
        "remote_addr",
        "user_agent",
    )


@admin.register(SignIn)
class SignInAdmin(ReadOnlyAdmin):
    list_display = (
        "user",
        "tenant",
        debug_column("tenant__is_test"),
        "application",
        time_column("created_at", "signed in"),
        time_column("expires_at", "expires"),
        time_column("refreshed_at", "refreshed"),
        time_column("ended_at", "ended"),
        "end_reason",
    )
    list_filter = (DataFilter, "end_reason")
    search_fields = ("user__username", "tenant_user__user_name", "tenant__tenant_id")
    list_select_related = ("user", "tenant", "application__tenant")
    fields = (
        "user",
        "tenant_user",
        "tenant",
        "application",
        "created_at",
        "expires_at",
        "refreshed_at",
        "has_refresh_token",
        "ended_at",
        "end_reason",
    )
    readonly_fields = fields

    @admin.display(boolean=True, description="refresh token held")
    def has_refresh_token(self, obj):
        return obj.has_refresh_token


@admin.register(TenantAccount)
class TenantAccountAdmin(ReadOnlyAdmin):
    list_display = ("user", "tenant_user", "linked_at")
    search_fields = ("user__username", "tenant_user__user_name", "tenant_user__tenant__tenant_id")
    list_select_related = ("user", "tenant_user")
