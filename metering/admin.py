"""Metering in the admin: records per instance and hour with their state, events, push batches
with their HTTP attempts, and per metered instance its package and a 30-day hourly chart.

Everything is read-only but two operator actions, both through services: re-push failed
records, and relating an on-demand instance to its package (instances.services.link_package).
"""

import logging

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from instances import services as lifecycle
from instances.models import ChargingMode, Instance
from koogallery.admin_kit import (
    TestDataFilter,
    clip,
    clip_column,
    data_filter,
    debug_column,
    time_column,
)
from koogallery.outbound.attempts import OutboundAttempt

from . import chart, selectors, services, tasks
from .models import MeteredInstance, PushBatch, RecordState, UsageEvent, UsageRecord

logger = logging.getLogger(__name__)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


InstanceTestDataFilter = data_filter("instance__is_test")


def _instance_link(instance: Instance) -> str:
    url = reverse("admin:metering_meteredinstance_change", args=[instance.pk])
    return format_html('<a href="{}">{}</a>', url, clip(instance.instance_id))


def _queue_push(request) -> None:
    """Push right after the re-push commits; the next beat run does it if the broker is down."""

    def send() -> None:
        try:
            tasks.push_now.apply_async(retry=False)
        except Exception:
            logger.exception("could not queue the usage push: the next scheduled run sends it")

    transaction.on_commit(send)


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "hour",
        "instance_id_link",
        debug_column("instance__is_test"),
        "state",
        "value",
        "event_count",
        "attempts",
        "last_result_code",
        clip_column("metering_sn", "metering_sn", 10),
        time_column("accepted_at", "accepted"),
    )
    list_filter = (
        InstanceTestDataFilter,
        "state",
        ("instance", admin.RelatedOnlyFieldListFilter),
        ("hour_start", admin.DateFieldListFilter),
    )
    date_hierarchy = "hour_start"
    search_fields = ("instance__instance_id", "metering_sn")
    list_select_related = ("instance",)
    actions = ("repush_failed",)
    readonly_fields = (
        "instance_id_link",
        "hour_start",
        "begin_at",
        "end_at",
        "value",
        "event_count",
        "state",
        "metering_sn",
        "record_time",
        "relate_pkg_instance",
        "attempts",
        "next_attempt_at",
        "lease_until",
        "batch",
        "last_result_code",
        "last_error",
        "first_pushed_at",
        "accepted_at",
        "updated_at",
    )

    def lookup_allowed(self, lookup, value, request=None) -> bool:
        # The push batch page links to the records it carried (?batch=<id>).
        return lookup == "batch" or super().lookup_allowed(lookup, value, request)

    @admin.display(description="hour (UTC)", ordering="hour_start")
    def hour(self, obj: UsageRecord) -> str:
        return obj.hour_start.strftime("%Y-%m-%d %H:00")

    @admin.display(description="instance", ordering="instance__instance_id")
    def instance_id_link(self, obj: UsageRecord) -> str:
        return _instance_link(obj.instance)

    @admin.action(description="Re-push the selected failed records", permissions=["repush"])
    def repush_failed(self, request, queryset):
        ids = list(queryset.filter(state=RecordState.FAILED).values_list("pk", flat=True))
        count = services.repush_records(record_ids=ids)
        if not count:
            self.message_user(request, "No failed record selected.", messages.WARNING)
            return
        _queue_push(request)
        self.message_user(
            request,
            f"{count} record(s) queued with their metering_sn; they are being pushed now.",
            messages.SUCCESS,
        )

    def has_repush_permission(self, request) -> bool:
        return request.user.has_perm("metering.change_usagerecord")


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    list_display = (
        clip_column("event_id", "event id", 20),
        clip_column("instance__instance_id", "instance"),
        debug_column("instance__is_test"),
        "quantity",
        time_column("occurred_at", "occurred"),
        time_column("received_at", "received"),
    )
    list_filter = (InstanceTestDataFilter, ("instance", admin.RelatedOnlyFieldListFilter))
    date_hierarchy = "occurred_at"
    search_fields = ("event_id", "instance__instance_id")
    list_select_related = ("instance",)


@admin.register(PushBatch)
class PushBatchAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        time_column("created_at", "started"),
        "trigger",
        "outcome",
        "record_count",
        "status_code",
        "result_code",
        time_column("finished_at", "finished"),
    )
    list_filter = ("outcome", "trigger")
    readonly_fields = (
        "trigger",
        "outcome",
        "record_count",
        "status_code",
        "result_code",
        "result_msg",
        "created_at",
        "finished_at",
        "records_link",
        "http_attempts",
    )

    @admin.display(description="records")
    def records_link(self, obj: PushBatch) -> str:
        url = reverse("admin:metering_usagerecord_changelist") + f"?data=all&batch={obj.pk}"
        return format_html(
            '<a href="{}">{} record(s) last sent in this batch</a>', url, obj.records.count()
        )

    @admin.display(description="HTTP attempts")
    def http_attempts(self, obj: PushBatch) -> str:
        attempts = OutboundAttempt.objects.filter(subject=obj.subject).order_by("started_at")
        return (
            format_html_join(
                "",
                "<div>{} {} → {} {} {} ({} ms) {}</div>",
                (
                    (
                        a.started_at.strftime("%H:%M:%S"),
                        a.url,
                        a.status_code or "-",
                        a.result_code or "",
                        a.outcome,
                        f"{a.duration_ms:.0f}",
                        a.error,
                    )
                    for a in attempts
                ),
            )
            or "-"
        )


class PackageForm(forms.ModelForm):
    class Meta:
        model = MeteredInstance
        fields = ("package_instance",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["package_instance"]
        field.queryset = Instance.objects.filter(
            charging_mode=ChargingMode.ON_DEMAND_PKG, is_test=self.instance.is_test
        ).exclude(pk=self.instance.pk)
        field.label_from_instance = lambda p: f"{p.instance_id} ({p.product_name or p.product_id})"

    def clean_package_instance(self):
        package = self.cleaned_data["package_instance"]
        if package is not None and self.instance.charging_mode == ChargingMode.ON_DEMAND_PKG:
            raise forms.ValidationError("a package is not itself deducted from a package")
        if package is not None and package.is_released:
            raise forms.ValidationError(f"package {package.instance_id} is released")
        return package


@admin.register(MeteredInstance)
class MeteredInstanceAdmin(admin.ModelAdmin):
    form = PackageForm
    list_display = (
        clip_column("instance_id", "instance id"),
        debug_column(),
        "charging_mode",
        clip_column("product_id", "product"),
        "state",
        "package",
    )
    list_filter = (TestDataFilter, "charging_mode", "state")
    search_fields = ("instance_id", "order_id", "product_id", "customer_id")
    list_select_related = ("package_instance",)
    fields = (
        "instance_id",
        "charging_mode",
        "order_id",
        "product_id",
        "sku_code",
        "product_name",
        "state",
        "created_at",
        "released_at",
        "package_instance",
        "billing_items",
        "records",
        "usage_chart",
    )
    readonly_fields = (
        "instance_id",
        "charging_mode",
        "order_id",
        "product_id",
        "sku_code",
        "product_name",
        "state",
        "created_at",
        "released_at",
        "billing_items",
        "records",
        "usage_chart",
    )

    def get_queryset(self, request):
        return selectors.metered_instances()

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        # Through the service: validated, audited as an instance transition.
        lifecycle.link_package(
            instance=obj, package=form.cleaned_data["package_instance"], cause="admin"
        )

    @admin.display(description="package")
    def package(self, obj: Instance) -> str:
        return clip(obj.package_instance.instance_id) if obj.package_instance else "-"

    @admin.display(description="billing items of this package")
    def billing_items(self, obj: Instance) -> str:
        items = obj.billing_items.order_by("created_at")
        return format_html_join(", ", "{}", ((_instance_link(i),) for i in items)) or "-"

    @admin.display(description="usage records")
    def records(self, obj: Instance) -> str:
        counts = selectors.state_counts(instance=obj)
        url = (
            reverse("admin:metering_usagerecord_changelist")
            + f"?data=all&instance__id__exact={obj.pk}"
        )
        text = ", ".join(f"{counts[s]} {s}" for s in RecordState.values if s in counts)
        return format_html('<a href="{}">{}</a>', url, text or "none")

    @admin.display(description="usage, last 30 days (hourly, UTC)")
    def usage_chart(self, obj: Instance) -> str:
        return chart.usage_chart(selectors.hourly_usage(instance=obj))
