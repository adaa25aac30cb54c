"""Admin of SaaS instances: instances with their audit trail and the orders after the purchase.

Read-only (STYLE.md §2): data changes only through KooGallery calls and services; the one action,
re-fetching order details, queues the same task newInstance queues. An instance's provisioned
password is not shown at all, not even encrypted.
"""

from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from koogallery.admin_kit import (
    ReadOnlyAdmin,
    ReadOnlyInline,
    TestDataFilter,
    call_link,
    clip,
    clip_column,
    debug_column,
    time_column,
)
from tenants.models import TenantBinding

from . import tasks
from .models import Instance, InstanceOrder, InstanceTransition


class TransitionInline(ReadOnlyInline):
    model = InstanceTransition
    verbose_name_plural = "audit trail"
    fields = ("at", "from_state", "to_state", "cause", "detail", "call")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("inbound_call")

    @admin.display(description="call")
    def call(self, obj: InstanceTransition) -> str:
        return call_link(obj.inbound_call)


class InstanceOrderInline(ReadOnlyInline):
    model = InstanceOrder
    verbose_name_plural = "orders after the purchase"
    fields = (
        "created_at",
        "event",
        "scene",
        "order_id",
        "order_line_id",
        "product_id",
        "sku_code",
        "expire_at",
        "order_type",
        "order_fetched_at",
        "order_fetch_error",
    )
    readonly_fields = fields


def _refetch(modeladmin, request, task, pks: list[int], what: str) -> None:
    queued = 0
    for pk in pks:
        try:
            task.apply_async((pk,), retry=False)
            queued += 1
        except Exception as exc:  # broker down: say so, the operator can try again
            modeladmin.message_user(request, f"could not queue {what} {pk}: {exc}", messages.ERROR)
    if queued:
        modeladmin.message_user(
            request, f"Query Order queued for {queued} {what}(s).", messages.SUCCESS
        )


@admin.register(Instance)
class InstanceAdmin(ReadOnlyAdmin):
    list_display = (
        clip_column("instance_id", "instance id"),
        debug_column(),
        "state",
        "charging_mode",
        "product",
        "customer_name",
        "tenant",
        time_column("expire_at", "expires"),
        "order_fetched",
    )
    list_filter = (TestDataFilter, "state", "charging_mode", "is_trial", "family")
    search_fields = (
        "instance_id",
        "order_id",
        "customer_id",
        "customer_name",
        "product_id",
        "sku_code",
    )
    date_hierarchy = "created_at"
    show_full_result_count = False
    # The provisioned password (even encrypted) is never shown.
    exclude = ("admin_password_encrypted",)
    inlines = (TransitionInline, InstanceOrderInline)
    actions = ("refetch_order_details",)

    def get_readonly_fields(self, request, obj=None):
        fields = [f.name for f in Instance._meta.fields if f.name != "admin_password_encrypted"]
        return [*fields, "tenants"]

    def get_queryset(self, request):
        first_tenant = (
            TenantBinding.objects.filter(
                instance_id=OuterRef("instance_id"),
                tenant__is_test=OuterRef("is_test"),
                removed_at__isnull=True,
            )
            .order_by("created_at", "id")
            .values("tenant__name")[:1]
        )
        return super().get_queryset(request).annotate(tenant_name=Subquery(first_tenant))

    @admin.display(description="product")
    def product(self, obj: Instance) -> str:
        return clip(obj.product_name or obj.product_id, 16)

    @admin.display(description="tenant", ordering="tenant_name")
    def tenant(self, obj: Instance) -> str:
        return obj.tenant_name or "-"

    @admin.display(description="order fetched", boolean=True)
    def order_fetched(self, obj: Instance) -> bool | None:
        if obj.order_fetched_at:
            return True
        return False if obj.order_fetch_error else None

    @admin.display(description="tenants (tenantSync)")
    def tenants(self, obj: Instance) -> str:
        bindings = (
            TenantBinding.objects.filter(instance_id=obj.instance_id, tenant__is_test=obj.is_test)
            .select_related("tenant")
            .order_by("created_at", "id")
        )
        rows = []
        for binding in bindings:
            label = f"{binding.tenant} [{binding.tenant.tenant_id}]"
            if binding.removed_at:
                label += " (unbound)"
            try:
                url = reverse("admin:tenants_tenant_change", args=[binding.tenant_id])
            except NoReverseMatch:  # tenants admin not registered
                rows.append(format_html("{}", label))
            else:
                rows.append(format_html('<a href="{}">{}</a>', url, label))
        return mark_safe("<br>".join(rows)) if rows else "-"  # noqa: S308 - parts escaped

    @admin.action(description="Re-fetch order details (Query Order)", permissions=["refetch"])
    def refetch_order_details(self, request, queryset):
        _refetch(
            self,
            request,
            tasks.fetch_order_details,
            list(queryset.values_list("pk", flat=True)),
            "instance",
        )

    def has_refetch_permission(self, request) -> bool:
        return request.user.has_perm("instances.change_instance")


@admin.register(InstanceOrder)
class InstanceOrderAdmin(ReadOnlyAdmin):
    list_display = (
        time_column("created_at", "received"),
        debug_column(),
        "event",
        "scene",
        clip_column("order_id", "order id", 10),
        clip_column("order_line_id", "order line", 8),
        clip_column("instance__instance_id", "instance", 8),
        "order_type",
        time_column("order_fetched_at", "order fetched"),
        clip_column("order_fetch_error", "fetch error", 24),
    )
    list_filter = (TestDataFilter, "event", "scene", "order_type")
    search_fields = ("order_id", "order_line_id", "instance__instance_id")
    date_hierarchy = "created_at"
    list_select_related = ("instance",)
    show_full_result_count = False
    actions = ("refetch_orders",)

    @admin.action(description="Re-fetch these orders (Query Order)", permissions=["refetch"])
    def refetch_orders(self, request, queryset):
        _refetch(
            self,
            request,
            tasks.fetch_order_event,
            list(queryset.values_list("pk", flat=True)),
            "order",
        )

    def has_refetch_permission(self, request) -> bool:
        return request.user.has_perm("instances.change_instance")
