"""Tenants, applications, users and authorisations in the admin.

Everything here is owned by KooGallery's kit calls (spec §2.6): pages are read-only, nothing can
be added, changed or deleted by hand (the next sync would silently undo or contradict it).
Lists show debug (testFlag 1, spec §2.5) rows next to production ones, marked "debug", with
"production only" one click away (koogallery/admin_kit.py). The OAuth client secret is never
shown, not even encrypted.
"""

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe

from koogallery.admin_kit import clip, clip_column, data_filter, debug_column, time_column
from orgsync.models import Department

from .models import (
    Application,
    Authorization,
    AuthorizationState,
    Tenant,
    TenantBinding,
    TenantUser,
)

# The department tree on a tenant's page: at most this many departments, levels and entries
# per list (issue 14: bounded whatever the tree's shape); the org-tree page has the rest.
TREE_NODE_LIMIT = 200
TREE_DEPTH = 2
TREE_PAGE = 50


# --- filters -----------------------------------------------------------------------------------


def removed_filter(removed_path: str = "removed_at") -> type[admin.SimpleListFilter]:
    class RemovedFilter(admin.SimpleListFilter):
        title = "status"
        parameter_name = "removed"

        def lookups(self, request, model_admin):
            return [("no", "active"), ("yes", "removed (flag 0)")]

        def queryset(self, request, queryset):
            if self.value() in ("yes", "no"):
                return queryset.filter(**{f"{removed_path}__isnull": self.value() == "no"})
            return queryset

    return RemovedFilter


class DepartmentLinkedFilter(admin.SimpleListFilter):
    """Users whose orgCode has no department yet (it arrives with the next org sync)."""

    title = "department"
    parameter_name = "linked"

    def lookups(self, request, model_admin):
        return [("yes", "linked"), ("no", "not linked (department not synced)")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(department__isnull=self.value() == "no")
        return queryset


# --- read-only base ----------------------------------------------------------------------------


class SyncedAdminMixin:
    """Rows the kit calls own: viewable, never added, changed or deleted by hand."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# Rows an inline lists at most (issue 14: a tenant's page stays bounded however many
# instances or applications it has); the changelist has them all.
INLINE_LIMIT = 50


class CappedInlineFormSet(BaseInlineFormSet):
    """The first `INLINE_LIMIT` rows, newest first (read-only inlines: nothing is posted)."""

    def get_queryset(self):
        if not hasattr(self, "_capped"):
            self._capped = super().get_queryset().order_by("-updated_at", "-pk")[:INLINE_LIMIT]
        return self._capped


class SyncedInline(SyncedAdminMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True
    formset = CappedInlineFormSet


def changelist_url(model, **params) -> str:
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def _data_param(tenant: Tenant) -> str:
    # Lists reached from a debug tenant show its debug rows only; from a production one, all.
    return "test" if tenant.is_test else "all"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _count_of(model, **filters) -> Coalesce:
    rows = (
        model.objects.filter(tenant=OuterRef("pk"), **filters)
        .order_by()
        .values("tenant")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), Value(0))


# --- Tenant ------------------------------------------------------------------------------------


class TenantBindingInline(SyncedInline):
    model = TenantBinding
    fields = ("instance_id", "order_id", "removed_at", "created_at", "updated_at")
    readonly_fields = fields
    show_change_link = False
    verbose_name = "instance bound by tenantSync"
    verbose_name_plural = "instances bound by tenantSync"


class ApplicationInline(SyncedInline):
    model = Application
    # No client_secret_encrypted: the secret is not shown in any form (spec §2.6).
    fields = ("app_id", "instance_id", "client_id", "removed_at", "updated_at")
    readonly_fields = fields


@admin.register(Tenant)
class TenantAdmin(SyncedAdminMixin, admin.ModelAdmin):
    list_display = (
        "tenant",
        clip_column("tenant_code", "tenant code"),
        "name",
        debug_column(),
        "is_active",
        time_column("org_synced_at", "departments synced"),
        "user_count",
        "department_count",
        "application_count",
    )
    list_filter = (data_filter("is_test"), removed_filter())
    search_fields = ("tenant_id", "tenant_code", "name", "users__user_name")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "tenant_id",
                    "is_test",
                    "tenant_code",
                    "name",
                    "domain_name",
                    "removed_at",
                    "org_synced_at",
                    "created_at",
                    "updated_at",
                )
            },
        ),
        ("Users", {"fields": ("users_link", "authorizations_link")}),
        ("Departments", {"fields": ("departments_link", "org_tree_link", "department_tree")}),
    )
    readonly_fields = (
        *fieldsets[0][1]["fields"],
        "users_link",
        "authorizations_link",
        "departments_link",
        "org_tree_link",
        "department_tree",
    )
    inlines = (TenantBindingInline, ApplicationInline)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                users_n=_count_of(TenantUser),
                departments_n=_count_of(Department),
                applications_n=_count_of(Application, removed_at__isnull=True),
            )
        )

    @admin.display(description="tenant id", ordering="tenant_id")
    def tenant(self, tenant: Tenant) -> str:
        return clip(tenant.tenant_id)

    @admin.display(boolean=True, description="active", ordering="removed_at")
    def is_active(self, tenant: Tenant) -> bool:
        return tenant.active

    @admin.display(description="users", ordering="users_n")
    def user_count(self, tenant: Tenant) -> int:
        return tenant.users_n

    @admin.display(description="departments", ordering="departments_n")
    def department_count(self, tenant: Tenant) -> int:
        return tenant.departments_n

    @admin.display(description="applications", ordering="applications_n")
    def application_count(self, tenant: Tenant) -> int:
        return tenant.applications_n

    @admin.display(description="users")
    def users_link(self, tenant: Tenant) -> str:
        url = changelist_url(TenantUser, tenant__id__exact=tenant.pk, data=_data_param(tenant))
        return format_html('<a href="{}">{}</a>', url, _plural(tenant.users_n, "user"))

    @admin.display(description="authorisations")
    def authorizations_link(self, tenant: Tenant) -> str:
        url = changelist_url(Authorization, tenant__id__exact=tenant.pk, data=_data_param(tenant))
        can_sign_in = Q(state=AuthorizationState.AUTHORIZED, enabled=True)
        counts = tenant.authorizations.aggregate(
            all=Count("pk"), active=Count("pk", filter=can_sign_in)
        )
        note = "" if tenant.active else " — tenant removed: nobody can sign in"
        return format_html(
            '<a href="{}">{}</a> ({} authorised and enabled){}',
            url,
            _plural(counts["all"], "authorisation"),
            counts["active"],
            note,
        )

    @admin.display(description="department list")
    def departments_link(self, tenant: Tenant) -> str:
        try:
            url = changelist_url(Department, tenant__id__exact=tenant.pk, data=_data_param(tenant))
        except NoReverseMatch:
            return _plural(tenant.departments_n, "department")
        return format_html('<a href="{}">{}</a>', url, _plural(tenant.departments_n, "department"))

    # --- orgsync staff page (orgsync/staff_views.py) ---
    @admin.display(description="staff org-tree page")
    def org_tree_link(self, tenant: Tenant) -> str:
        try:
            from orgsync.staff_views import org_tree_url

            url = org_tree_url(tenant)
        except (ImportError, NoReverseMatch):
            return "unavailable"
        return format_html(
            '<a href="{}" id="org-tree-link">Open the department tree</a> '
            "(search, users per department, orphans, unassigned users)",
            url,
        )

    # --- end orgsync ---

    @admin.display(description="department tree")
    def department_tree(self, tenant: Tenant) -> str:
        try:
            from orgsync.staff_selectors import department_tree
        except ImportError:
            return "tree unavailable"
        # Bounded like every staff read (issue 14): a page of the top levels, whatever the
        # tree's shape; the org-tree page reads the rest on demand.
        page = department_tree(
            tenant=tenant,
            depth=TREE_DEPTH,
            limit=TREE_PAGE,
            budget=TREE_NODE_LIMIT,
        )
        if not page.nodes:
            return "no departments synced"
        return render_tree(page, tenant=tenant, departments=tenant.departments_n)


def render_tree(page, *, tenant: Tenant, departments: int) -> SafeString:
    """Nested <ul> of the nodes of a `TreePage` (staff_selectors.TreeNode), with "… N more"
    where a list was cut, and how many departments are shown of all."""
    parts: list[str] = []
    shown = 0

    def more(count: int, noun: str) -> str:
        return format_html("<li>… {} more {}</li>", count, noun) if count > 0 else ""

    def render(nodes, hidden: int, noun: str) -> None:
        nonlocal shown
        parts.append("<ul>")
        for node in nodes:
            shown += 1
            parts.append("<li>" + _node_html(node, tenant))
            loaded = node.children or []
            if loaded:
                render(loaded, node.child_count - len(loaded), "sub-departments")
            elif node.child_count:
                hidden_children = _plural(node.child_count, "sub-department")
                parts.append(format_html(" ({} not shown)", hidden_children))
            parts.append("</li>")
        parts.append(more(hidden, noun))
        parts.append("</ul>")

    render(page.nodes, page.count - len(page.nodes), "top-level departments")
    if departments > shown:
        try:
            from orgsync.staff_views import org_tree_url

            tree_url = org_tree_url(tenant)
        except (ImportError, NoReverseMatch):
            tree_url = changelist_url(
                Department, tenant__id__exact=tenant.pk, data=_data_param(tenant)
            )
        parts.append(
            format_html(
                "<p>Showing {} of {} departments; {} more are not shown "
                '(see the <a href="{}">department tree</a>).</p>',
                shown,
                departments,
                departments - shown,
                tree_url,
            )
        )
    # Every fragment is either a constant tag or built by format_html (which escapes values).
    return mark_safe('<div class="kg-tree">' + "".join(parts) + "</div>")  # noqa: S308


def _node_html(node, tenant: Tenant) -> str:
    # Through (tenant, org_code), which is indexed; department_id is not (migration 0005).
    users_url = changelist_url(
        TenantUser,
        tenant__id__exact=tenant.pk,
        org_code=node.org_code,
        department__id__exact=node.id,
        data=_data_param(tenant),
    )
    orphan = (
        format_html(" <em>(parent {} not synced)</em>", node.parent_code)
        if node.is_orphan
        else ""
    )
    total = node.total_users if node.total_exact else f"at least {node.total_users}"
    return format_html(
        '<a href="{}">{}</a> <code>{}</code>{} — <a href="{}">{}</a>, {} with sub-departments',
        reverse("admin:orgsync_department_change", args=[node.id]),
        node.org_name,
        node.org_code,
        orphan,
        users_url,
        _plural(node.direct_users, "user"),
        total,
    )


# --- Users and authorisations ------------------------------------------------------------------


class AuthorizationInline(SyncedInline):
    model = Authorization
    fk_name = "user"
    fields = ("app_id", "instance_id", "role", "enabled", "state", "current_sync_time")
    readonly_fields = fields


@admin.register(TenantUser)
class TenantUserAdmin(SyncedAdminMixin, admin.ModelAdmin):
    list_display = (
        "user_name",
        "name",
        "tenant",
        debug_column("tenant__is_test"),
        clip_column("org_code", "org code"),
        "department",
        time_column("updated_at", "updated"),
    )
    list_filter = (data_filter("tenant__is_test"), DepartmentLinkedFilter, "employee_type")
    search_fields = ("user_name", "name", "org_code")
    list_select_related = ("tenant", "department")
    show_full_result_count = False
    fields = (
        "tenant",
        "user_name",
        "name",
        "org_code",
        "department",
        "position",
        "employee_code",
        "employee_type",
        "mobile",
        "email",
        "work_place",
        "entry_date",
        "extension",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    inlines = (AuthorizationInline,)


@admin.register(Authorization)
class AuthorizationAdmin(SyncedAdminMixin, admin.ModelAdmin):
    list_display = (
        "user_name",
        "tenant",
        debug_column("tenant__is_test"),
        clip_column("instance_id", "instance"),
        "role",
        "state",
        "signs_in",
        time_column("updated_at", "updated"),
    )
    list_filter = ("role", "enabled", "state", data_filter("tenant__is_test"))
    search_fields = ("user__user_name", "app_id", "tenant__tenant_id")
    list_select_related = ("user", "tenant")
    show_full_result_count = False
    fields = (
        "tenant",
        "user",
        "instance_id",
        "app_id",
        "role",
        "enabled",
        "state",
        "signs_in",
        "current_sync_time",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    @admin.display(description="user", ordering="user__user_name")
    def user_name(self, authorization: Authorization) -> str:
        return authorization.user.user_name

    @admin.display(boolean=True, description="can sign in")
    def signs_in(self, authorization: Authorization) -> bool:
        return authorization.can_sign_in


@admin.register(Application)
class ApplicationAdmin(SyncedAdminMixin, admin.ModelAdmin):
    list_display = (
        "app_id",
        "tenant",
        debug_column("tenant__is_test"),
        clip_column("instance_id", "instance"),
        clip_column("client_id", "client id"),
        "is_active",
        time_column("updated_at", "updated"),
    )
    list_filter = (data_filter("tenant__is_test"), removed_filter())
    search_fields = ("app_id", "client_id", "tenant__tenant_id")
    list_select_related = ("tenant",)
    # No client_secret_encrypted: the secret is not shown in any form (spec §2.6).
    fields = (
        "tenant",
        "instance_id",
        "app_id",
        "client_id",
        "removed_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    @admin.display(boolean=True, description="active", ordering="removed_at")
    def is_active(self, application: Application) -> bool:
        return application.removed_at is None
