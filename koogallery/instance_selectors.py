"""Reads of SaaS instances (STYLE.md §2): lookups for calls, `appInfo`, the admin's lists."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import quote

from django.conf import settings
from django.db.models import QuerySet

from tenants.models import Tenant, TenantBinding

from .instances import Instance
from .resultcodes import KooGalleryError, ResultCode
from .secret_store import secret_box


def production_instances() -> QuerySet[Instance]:
    """Real purchases: debug (testFlag 1) rows stay out of production queries (§2.5)."""
    return Instance.objects.filter(is_test=False)


def instance_for_call(*, instance_id: str, is_test: bool) -> Instance:
    """The instance a call names, scoped by its test flag (§2.5); unknown → 000003 (§2.7)."""
    instance = Instance.objects.filter(instance_id=instance_id, is_test=is_test).first()
    if instance is None:
        raise KooGalleryError(ResultCode.INSTANCE_NOT_FOUND, f"instanceId {instance_id!r} unknown")
    return instance


def instances_in_order(*, instance_ids: list[str], is_test: bool) -> list[Instance]:
    """The known instances among `instance_ids`, in the order asked (unknown ids are skipped)."""
    # No ORDER BY: the order is the caller's. The Query Order answer and extendParams are JSON
    # nobody here reads: not fetched and decoded for up to 100 instances.
    rows = (
        Instance.objects.filter(instance_id__in=instance_ids, is_test=is_test)
        .order_by()
        .defer("order_info", "extend_params")
    )
    found = {instance.instance_id: instance for instance in rows}
    return [found[i] for i in dict.fromkeys(instance_ids) if i in found]


def bound_tenants(*, instances: list[Instance]) -> dict[str, Tenant]:
    """The tenant each instance is bound to by tenantSync (§4.1.1), when one is."""
    bindings = (
        TenantBinding.objects.filter(
            instance_id__in=[i.instance_id for i in instances],
            removed_at__isnull=True,
            tenant__removed_at__isnull=True,
        )
        .select_related("tenant")
        .order_by("created_at", "id")
    )
    by_instance: dict[str, Tenant] = {}
    flags = {i.instance_id: i.is_test for i in instances}
    for binding in bindings:
        if binding.tenant.is_test == flags.get(binding.instance_id):
            by_instance.setdefault(binding.instance_id, binding.tenant)
    return by_instance


def front_end_url(*, instance: Instance, tenant: Tenant | None) -> str:
    values = {
        "instance_id": instance.instance_id,
        "tenant_id": tenant.tenant_id if tenant else "",
        "tenant_code": tenant.tenant_code if tenant else "",
    }
    template = settings.KOOGALLERY_FRONTEND_URL_TEMPLATE
    return template.format_map({k: quote(v, safe="") for k, v in values.items()})


def app_info(*, instance: Instance, tenant: Tenant | None) -> dict[str, str]:
    """`appInfo` of queryInstance and V1 newInstance (§4.2.2, §2.7): where the buyer signs in.

    No credentials here: users arrive through the kit and SSO (§2.7).
    """
    info = {"frontEndUrl": front_end_url(instance=instance, tenant=tenant)}
    if settings.KOOGALLERY_ADMIN_URL:
        info["adminUrl"] = settings.KOOGALLERY_ADMIN_URL
    if settings.KOOGALLERY_APP_MEMO:
        info["memo"] = settings.KOOGALLERY_APP_MEMO[:1024]
    return info


def instance_credentials(*, instance: Instance) -> tuple[str, str] | None:
    """The admin account provisioned for a V1 instance, decrypted (user name, password)."""
    if not instance.has_credentials:
        return None
    return instance.admin_username, secret_box().decrypt(instance.admin_password_encrypted)


# --- usageInfo of queryInstance (§4.2.2, §5.5) ------------------------------------------------


@dataclass(frozen=True)
class UsageFigure:
    """One `usageInfo` entry before formatting: an on-demand instance's cumulative usage
    (`related_instance_id` empty) or, for a package, one billing item's used amount."""

    value: Decimal
    at: datetime
    related_instance_id: str = ""


# Instances (metered only) → {instance pk: figures}. The metering app provides it (its
# AppConfig.ready); without one, queryInstance answers no usageInfo.
UsageProvider = Callable[[list[Instance]], dict[int, list[UsageFigure]]]
_usage_provider: UsageProvider | None = None

USAGE_VALUE_QUANTUM = Decimal("0.0001")  # Double(12,4)


def register_usage_provider(provider: UsageProvider | None) -> None:
    global _usage_provider
    _usage_provider = provider


def statistical_time(moment: datetime) -> str:
    """UTC `yyyyMMddHHmmssSSS` (§4.2.2)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}"


def dashboard_url(*, instance: Instance) -> str:
    template = settings.KOOGALLERY_USAGE_DASHBOARD_URL
    if not template:
        return ""
    return template.format_map({"instance_id": quote(instance.instance_id, safe="")})[:512]


def usage_info(*, instances: list[Instance]) -> dict[str, list[dict]]:
    """`usageInfo` per instanceId, for on-demand and package instances only (§4.2.2, §5.5)."""
    metered = [i for i in instances if i.is_metered]
    if not metered or _usage_provider is None:
        return {}
    figures = _usage_provider(metered)
    answer: dict[str, list[dict]] = {}
    for instance in metered:
        entries = []
        url = dashboard_url(instance=instance)
        for figure in figures.get(instance.pk, []):
            entry: dict = {}
            if figure.related_instance_id:
                entry["relatedInstanceId"] = figure.related_instance_id
            # A JSON number (Double); Decimal → float keeps at most 4 decimals exactly enough.
            entry["usageValue"] = float(figure.value.quantize(USAGE_VALUE_QUANTUM))
            entry["statisticalTime"] = statistical_time(figure.at)
            if url:
                entry["dashboardUrl"] = url
            entries.append(entry)
        if entries:
            answer[instance.instance_id] = entries
    return answer
