"""Admin of licences: requests with their state, licences, upload attempts; licence codes.

Read-only views; every change goes through a service (STYLE.md §2): retry a delivery, revoke a
licence deliberately, re-issue after a revoke; activate or query licence codes (§5.4). The signing
key never appears (only its public `key_id`); tokens are public by design (the software holds
them) and are shown for support.
"""

import json

from django.contrib import admin, messages
from django.db import transaction
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from koogallery.admin_kit import (
    ReadOnlyInline,
    TestDataFilter,
    clip,
    clip_column,
    debug_column,
    time_column,
)
from koogallery.inbound.journal import InboundCall

from . import license_codes, selectors, services
from .models import License, LicenseCode, LicenseCodeRenewal, LicenseRequest, RequestState


def _pretty(value) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


class LicenseInline(ReadOnlyInline):
    model = License
    verbose_name_plural = "licences (at most one not revoked)"
    fields = ("licence", "issued_at", "key_id", "revoked_at", "revoke_reason", "claims", "token_")
    readonly_fields = fields

    @admin.display(description="licence id")
    def licence(self, obj: License) -> str:
        return clip(obj.id, 8)

    @admin.display(description="payload")
    def claims(self, obj: License) -> str:
        return _pretty(obj.payload)

    @admin.display(description="token (what the software holds)")
    def token_(self, obj: License) -> str:
        return format_html('<code class="kg-token">{}</code>', obj.token)


@admin.register(LicenseRequest)
class LicenseRequestAdmin(admin.ModelAdmin):
    list_display = (
        clip_column("event_id", "event id"),
        debug_column(),
        "instance_id_",
        "fingerprint",
        "state",
        "attempt_count",
        "failure_code",
        time_column("created_at", "received"),
        time_column("delivered_at", "delivered"),
    )
    list_filter = (
        "state",
        TestDataFilter,
        ("instance", admin.RelatedOnlyFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
    )
    date_hierarchy = "created_at"
    search_fields = ("event_id", "instance__instance_id", "device_fingerprint")
    list_select_related = ("instance",)
    inlines = (LicenseInline,)
    actions = ("retry_delivery", "revoke", "reissue")
    fields = (
        "event_id",
        "instance",
        "device_fingerprint",
        "is_test",
        "effective_at",
        "expire_at",
        "state",
        "attempt_count",
        "next_attempt_at",
        "lease_until",
        "failure_code",
        "failure_message",
        "last_error",
        "created_at",
        "updated_at",
        "delivered_at",
        "attempts",
        "calls",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="instance", ordering="instance__instance_id")
    def instance_id_(self, obj: LicenseRequest) -> str:
        return clip(obj.instance.instance_id)

    @admin.display(description="fingerprint")
    def fingerprint(self, obj: LicenseRequest) -> str:
        return clip(obj.device_fingerprint)

    @admin.display(description="upload attempts")
    def attempts(self, obj: LicenseRequest) -> str:
        rows = selectors.upload_attempts(obj)
        if not rows:
            return "-"
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td>"
            "<td>{}</td></tr>",
            (
                (
                    f"{a.started_at:%Y-%m-%d %H:%M:%S}",
                    a.url,
                    a.status_code if a.status_code is not None else "-",
                    f"{a.result_code} {a.result_msg}".strip() or "-",
                    a.get_outcome_display(),
                    round(a.duration_ms),
                    a.error or "",
                )
                for a in rows
            ),
        )
        head = mark_safe(
            "<tr><th>started</th><th>URL</th><th>HTTP</th><th>answer</th><th>outcome</th>"
            "<th>took</th><th>error</th></tr>"
        )
        return format_html('<table class="kg-table">{}{}</table>', head, body)

    @admin.display(description="calls received")
    def calls(self, obj: LicenseRequest) -> str:
        journal = InboundCall.objects.filter(endpoint="getLicenseAsync", event_id=obj.event_id)
        links = format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            (
                (reverse("admin:koogallery_inboundcall_change", args=[c.pk]), c)
                for c in journal.order_by("received_at")[:20]
            ),
        )
        return links or "-"

    @admin.action(description="Retry delivery (failed or stuck requests)")
    def retry_delivery(self, request, queryset):
        count = 0
        for pk in queryset.values_list("pk", flat=True):
            result = services.rearm_delivery(request_id=pk, cause=f"admin {request.user}")
            count += result.state in RequestState.pending() or result.state == "delivered"
        self.message_user(request, f"Delivery re-armed for {count} request(s).")

    @admin.action(description="Revoke the licence (deliberate; allows a re-issue)")
    def revoke(self, request, queryset):
        for pk in queryset.values_list("pk", flat=True):
            services.revoke_license(request_id=pk, reason=f"revoked in admin by {request.user}")
        self.message_user(request, f"{queryset.count()} licence request(s) revoked.")

    @admin.action(description="Re-issue a revoked licence (new licence id, uploaded again)")
    def reissue(self, request, queryset):
        done = skipped = 0
        for pk in queryset.values_list("pk", flat=True):
            try:
                services.reissue_license(request_id=pk)
                done += 1
            except ValueError:
                skipped += 1
        self.message_user(request, f"{done} re-issued.")
        if skipped:
            self.message_user(
                request,
                f"{skipped} skipped: revoke a licence before re-issuing it.",
                messages.WARNING,
            )


class RenewalInline(ReadOnlyInline):
    model = LicenseCodeRenewal
    fields = ("received_at", "scene", "order_id", "order_line_id", "product_id", "expire_at")
    readonly_fields = fields


@admin.register(LicenseCode)
class LicenseCodeAdmin(admin.ModelAdmin):
    list_display = (
        clip_column("code", "code", 20),
        debug_column(),
        "status",
        "frozen",
        time_column("expire_at", "expires"),
        clip_column("product_id", "product"),
        clip_column("order_id", "order"),
        time_column("activated_at", "activated"),
        time_column("checked_at", "last queried"),
    )
    list_filter = ("status", "frozen", TestDataFilter)
    search_fields = ("code", "order_id", "product_id")
    inlines = (RenewalInline,)
    actions = ("activate", "query")
    readonly_fields = (
        "status",
        "frozen",
        "expire_at",
        "product_id",
        "order_id",
        "amount",
        "activated_at",
        "released_at",
        "checked_at",
        "answers",
        "created_at",
        "updated_at",
    )
    fields = ("code", "is_test", "tenant", *readonly_fields)

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()

    def has_change_permission(self, request, obj=None) -> bool:
        # Staff may enter a code a buyer handed over (then activate it); nothing else is edited.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        """Adding a code = the buyer handed it over: record it, then activate it (§5.4)."""
        row = license_codes.register_license_code(
            code=obj.code, is_test=obj.is_test, tenant=obj.tenant
        )
        obj.pk = row.pk

        def activate() -> None:
            # After the admin's transaction: outbound calls keep their attempt rows even if
            # something later rolls back, so they refuse to run inside one.
            try:
                license_codes.activate_license_code(code=row.code, is_test=row.is_test)
            except license_codes.LicenseCodeError as exc:
                self.message_user(
                    request, f"{row.code} recorded, not activated: {exc}", messages.ERROR
                )

        transaction.on_commit(activate)

    @admin.display(description="last answers")
    def answers(self, obj: LicenseCode) -> str:
        return _pretty(obj.last_answer)

    @admin.action(description="Activate with KooGallery (§5.4)")
    def activate(self, request, queryset):
        self._call(request, queryset, license_codes.activate_license_code, "activated")

    @admin.action(description="Query the state at KooGallery now")
    def query(self, request, queryset):
        self._call(request, queryset, license_codes.query_license_code, "queried")

    def _call(self, request, queryset, service, verb: str) -> None:
        done = 0
        for row in queryset:
            try:
                service(code=row.code, is_test=row.is_test)
                done += 1
            except license_codes.LicenseCodeError as exc:
                self.message_user(request, f"{row.code}: {exc}", messages.ERROR)
        self.message_user(request, f"{done} code(s) {verb}.")
