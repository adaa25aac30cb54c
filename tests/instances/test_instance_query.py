"""queryInstance's one-statement read (instance_selectors.instances_for_query) answers what the
model-based selectors answer: the known instances in the order asked, each with the tenant
`bound_tenants` finds, whatever the bindings (removed, of a removed tenant, of the other data
set, several in any order).
"""

import itertools
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from instances import selectors as instance_selectors
from instances.models import Instance
from instances.selectors import (
    BoundTenant,
    front_end_url_needs_tenant,
    instances_for_query,
)
from tenants.models import Tenant, TenantBinding
from tests.support.kgclient import envelope, fixture_json

pytestmark = pytest.mark.django_db

WITH_TENANT = "https://app.example.com/{tenant_code}/login?tenant={tenant_id}&i={instance_id}"
_runs = itertools.count()

binding = st.tuples(
    st.integers(0, 2),  # instance
    st.integers(0, 3),  # tenant
    st.booleans(),  # binding removed
    st.integers(0, 5),  # created, minutes after the start
)
tenant = st.tuples(st.booleans(), st.booleans())  # (is_test, removed)


@examples(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    tenants=st.lists(tenant, min_size=4, max_size=4),
    bindings=st.lists(binding, max_size=8, unique_by=lambda b: (b[0], b[1])),
    is_test=st.booleans(),
    asked=st.lists(st.integers(0, 3), min_size=1, max_size=6),
)
def test_the_bound_tenant_is_the_one_bound_tenants_finds(
    tenants, bindings, is_test, asked, settings
):
    settings.KOOGALLERY_FRONTEND_URL_TEMPLATE = WITH_TENANT
    run = next(_runs)
    start = timezone.now()
    instances = [
        Instance.objects.create(
            instance_id=f"q{run}-{n}", order_id=f"q{run}-{n}", is_test=is_test or n == 2
        )
        for n in range(3)
    ]
    tenant_rows = [
        Tenant.objects.create(
            tenant_id=f"t{run}-{n}",
            tenant_code=f"code {n}",
            is_test=flag,
            removed_at=start if removed else None,
        )
        for n, (flag, removed) in enumerate(tenants)
    ]
    for i, t, removed, minutes in bindings:
        row = TenantBinding.objects.create(
            tenant=tenant_rows[t],
            instance_id=instances[i].instance_id,
            removed_at=start if removed else None,
        )
        # Several bindings at the same moment: the first created (lowest id) counts.
        TenantBinding.objects.filter(pk=row.pk).update(
            created_at=start + timedelta(minutes=minutes)
        )
    ids = [f"q{run}-{n}" for n in asked]  # q…-3 is unknown

    found = instances_for_query(instance_ids=ids, is_test=is_test)

    # A debug call sees debug instances; any other call the instances it names (§2.7).
    known = [i for i in instances if i.is_test or not is_test]
    wanted = [i for i in dict.fromkeys(ids) if i in {k.instance_id for k in known}]
    assert [row.instance_id for row, _ in found] == wanted
    expected = instance_selectors.bound_tenants(instances=known)
    for row, bound in found:
        model = expected.get(row.instance_id)
        assert bound == (BoundTenant(model.tenant_id, model.tenant_code) if model else None)
        instance = Instance.objects.get(instance_id=row.instance_id)
        assert row.pk == instance.pk and row.charging_mode == instance.charging_mode
        assert instance_selectors.app_info(instance=row, tenant=bound) == (
            instance_selectors.app_info(instance=instance, tenant=model)
        )


def test_no_tenant_is_read_when_the_answer_shows_none(settings):
    Instance.objects.create(instance_id="plain", order_id="O")
    settings.KOOGALLERY_FRONTEND_URL_TEMPLATE = "https://app.example.com/sso?i={instance_id}"
    with CaptureQueriesContext(connection) as queries:
        found = instances_for_query(instance_ids=["plain"], is_test=False)
    assert found[0][1] is None
    assert len(queries) == 1 and "tenantbinding" not in queries[0]["sql"]


@pytest.mark.parametrize(
    "template, needs",
    [
        ("https://x/sso/login?instance={instance_id}", False),
        ("https://x/{tenant_code}/", True),
        ("https://x/?t={tenant_id!s}&i={instance_id}", True),
        ("https://x/?t={tenant_id:>10}", True),
        ("https://x/{{tenant_id}}", False),  # an escaped brace is text
        ("https://x/{tenant_id", True),  # malformed: formats as it did (and fails)
    ],
)
def test_which_templates_need_the_tenant(settings, template, needs):
    settings.KOOGALLERY_FRONTEND_URL_TEMPLATE = template
    assert front_end_url_needs_tenant() is needs


@pytest.mark.parametrize("template", [WITH_TENANT, "https://app.example.com/sso?i={instance_id}"])
def test_v1_new_instance_app_info_names_the_bound_tenant_when_the_template_does(
    kg, settings, template
):
    settings.KOOGALLERY_FRONTEND_URL_TEMPLATE = template
    params = {k: v for k, v in fixture_json("v1_newInstance__huawei").items() if v is not None}
    instance_id = envelope(kg.basic_v1(params))["instanceId"]
    instance = Instance.objects.get(instance_id=instance_id)
    tenant = Tenant.objects.create(tenant_id="t-v1", tenant_code="v1 co", is_test=instance.is_test)
    TenantBinding.objects.create(tenant=tenant, instance_id=instance_id)
    with CaptureQueriesContext(connection) as queries:
        body = envelope(kg.basic_v1(params))  # the buyer's resource page calls it again
    assert body["appInfo"]["frontEndUrl"] == instance_selectors.front_end_url(
        instance=instance, tenant=tenant if template == WITH_TENANT else None
    )
    read_bindings = any("tenantbinding" in q["sql"] for q in queries.captured_queries)
    assert read_bindings is (template == WITH_TENANT)
