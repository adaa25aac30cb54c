"""Reads of SaaS instances (STYLE.md §2): lookups for calls, `appInfo`, the admin's lists."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache, lru_cache
from string import Formatter
from typing import NamedTuple
from urllib.parse import quote

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet

from instances.models import ON_DEMAND_MODES, Instance
from koogallery.protocol.resultcodes import KooGalleryError, ResultCode
from koogallery.protocol.secret_store import secret_box
from tenants.models import Tenant, TenantBinding


def production_instances() -> QuerySet[Instance]:
    """Real purchases: debug (testFlag 1) rows stay out of production queries (§2.5)."""
    return Instance.objects.filter(is_test=False)


def named_instance(*, instance_id: str, is_test: bool) -> QuerySet[Instance]:
    """The instance a call names (at most one row: `instance_id` is unique across data sets).

    An instanceId names one instance across production and test data (§2.7): a call without
    testFlag (or `"0"`) is served on the instance it names, a debug one included, since the
    console's saved debug cases and their twice-daily replays may carry none (Huawei's own
    getLicenseAsync example has none). A debug call (testFlag `"1"`) is served on debug
    instances only: it cannot touch a production instance (§2.5).
    """
    named = Instance.objects.filter(instance_id=instance_id)
    return named.filter(is_test=True) if is_test else named


def instance_for_call(*, instance_id: str, is_test: bool) -> Instance:
    """The instance a call names (`named_instance`); unknown → 000003 (§2.7)."""
    instance = named_instance(instance_id=instance_id, is_test=is_test).first()
    if instance is None:
        raise KooGalleryError(ResultCode.INSTANCE_NOT_FOUND, f"instanceId {instance_id!r} unknown")
    return instance


class QueriedInstance(NamedTuple):
    """What queryInstance answers about an instance: read without building the model."""

    pk: int
    instance_id: str
    charging_mode: str

    @property
    def is_metered(self) -> bool:
        return self.charging_mode in ON_DEMAND_MODES


class BoundTenant(NamedTuple):
    """The fields of a bound tenant that `appInfo` may show."""

    tenant_id: str
    tenant_code: str


@cache
def _query_sql(ids: int, with_tenant: bool, debug_call: bool) -> str:
    instance = Instance._meta.db_table
    binding, tenant = TenantBinding._meta.db_table, Tenant._meta.db_table
    columns, join = "i.id, i.instance_id, i.charging_mode", ""
    if with_tenant:
        # The tenant bound first (bound_tenants' rule), in the same statement.
        columns += ", t.tenant_id, t.tenant_code"
        join = (
            f" LEFT JOIN {tenant} t ON t.id = ("  # noqa: S608 - identifiers from the models
            f"SELECT b.tenant_id FROM {binding} b INNER JOIN {tenant} bt ON bt.id = b.tenant_id"
            " WHERE b.instance_id = i.instance_id AND b.removed_at IS NULL"
            " AND bt.removed_at IS NULL AND bt.is_test = i.is_test"
            " ORDER BY b.created_at, b.id LIMIT 1)"
        )
    placeholders = ", ".join(["%s"] * ids)
    # A debug call sees debug instances only; any other sees the instances it names (§2.7).
    scope = "i.is_test = %s AND " if debug_call else ""
    return (
        f"SELECT {columns} FROM {instance} i{join} "  # noqa: S608 - identifiers from the models
        f"WHERE {scope}i.instance_id IN ({placeholders})"
    )


def instances_for_query(
    *, instance_ids: list[str], is_test: bool
) -> list[tuple[QueriedInstance, BoundTenant | None]]:
    """The known instances among `instance_ids` (as `named_instance` finds them), in the order
    asked (unknown ids are skipped), each with the tenant bound to it when `appInfo` shows one
    (the front-end URL template names a tenant placeholder): one statement, no model built."""
    ids = list(dict.fromkeys(instance_ids))
    with_tenant = front_end_url_needs_tenant()
    with connection.cursor() as cursor:
        cursor.execute(_query_sql(len(ids), with_tenant, is_test), [True, *ids] if is_test else ids)
        rows = cursor.fetchall()
    found = {}
    for row in rows:
        tenant = BoundTenant(row[3], row[4]) if with_tenant and row[3] is not None else None
        found[row[1]] = (QueriedInstance(row[0], row[1], row[2]), tenant)
    return [found[i] for i in ids if i in found]


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


TENANT_PLACEHOLDERS = frozenset({"tenant_id", "tenant_code"})


def front_end_url_needs_tenant() -> bool:
    return bool(_placeholders(settings.KOOGALLERY_FRONTEND_URL_TEMPLATE) & TENANT_PLACEHOLDERS)


@lru_cache(maxsize=16)
def _placeholders(template: str) -> frozenset[str]:
    """The names a `str.format` template uses (`{tenant_id}`, `{tenant_id!r}` → tenant_id)."""
    try:
        fields = [name for _, name, _, _ in Formatter().parse(template) if name]
    except ValueError:
        return TENANT_PLACEHOLDERS  # malformed: formatting fails the same way with any values
    return frozenset(re.split(r"[.\[]", name, maxsplit=1)[0] for name in fields)


def front_end_url(
    *, instance: Instance | QueriedInstance, tenant: Tenant | BoundTenant | None
) -> str:
    values = {
        "instance_id": instance.instance_id,
        "tenant_id": tenant.tenant_id if tenant else "",
        "tenant_code": tenant.tenant_code if tenant else "",
    }
    template = settings.KOOGALLERY_FRONTEND_URL_TEMPLATE
    return template.format_map({k: quote(v, safe="") for k, v in values.items()})


def app_info(
    *, instance: Instance | QueriedInstance, tenant: Tenant | BoundTenant | None
) -> dict[str, str]:
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


def usage_info_of(*, found: list[QueriedInstance]) -> dict[str, list[dict]]:
    """`usage_info` of queried instances: the metered ones (if any) are read as models for the
    usage provider, as `usage_info` would have them."""
    metered = [row.pk for row in found if row.is_metered]
    if not metered or _usage_provider is None:
        return {}
    rows = Instance.objects.filter(pk__in=metered).order_by().defer("order_info", "extend_params")
    by_pk = {instance.pk: instance for instance in rows}
    return usage_info(instances=[by_pk[pk] for pk in metered if pk in by_pk])


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
