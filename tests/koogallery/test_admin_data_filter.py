"""Every admin list shows production and debug (testFlag 1, spec §2.5) rows by default, debug
rows marked "debug", and "production only" / "debug only" one click away (issue 15: after the
simulator's buyer journey, which writes debug data only, an operator saw "0 results (1 total)"
and took the data for missing)."""

import re
from datetime import UTC, datetime

import pytest

from instances.models import Instance, InstanceOrder
from licensing.models import LicenseCode, LicenseRequest
from metering.models import UsageEvent
from orgsync.models import Department
from sso.models import LoginAudit, SignIn
from tenants.models import Application, Authorization, Tenant, TenantUser

pytestmark = pytest.mark.django_db

BADGE = 'class="kg-debug"'
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def rows(html: str) -> list[str]:
    """The list's rows (HTML of each <tr> of the results table)."""
    if 'id="result_list"' not in html:
        return []
    body = html.split('id="result_list"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [row for row in re.split(r"<tr\b", body) if row.strip()]


def listed(admin_client, url: str) -> dict[str, bool]:
    """{label: marked debug} of the rows that mention prodrow / debugrow."""
    response = admin_client.get(url)
    assert response.status_code == 200, url
    found = {}
    for row in rows(response.content.decode()):
        for label in ("prodrow", "debugrow"):
            if label in row:
                found[label] = BADGE in row
    return found


@pytest.fixture
def rows_of_both_kinds(django_user_model):
    """One production and one debug row of every model whose list has the data filter."""
    user = django_user_model.objects.create_user("someone")
    for is_test, label in ((False, "prodrow"), (True, "debugrow")):
        tenant = Tenant.objects.create(tenant_id=f"t-{label}", is_test=is_test, name=label)
        Department.objects.create(tenant=tenant, org_code=f"d-{label}", org_name=label)
        member = TenantUser.objects.create(tenant=tenant, user_name=f"u-{label}", name=label)
        Authorization.objects.create(tenant=tenant, user=member, app_id=f"app-{label}")
        application = Application.objects.create(tenant=tenant, app_id=f"app-{label}")
        instance = Instance.objects.create(
            instance_id=f"i-{label}", order_id=f"o-{label}", is_test=is_test,
            customer_name=label, charging_mode="ON_DEMAND", state="active",
        )  # fmt: skip
        InstanceOrder.objects.create(
            instance=instance, order_id=f"o2-{label}", is_test=is_test, event="upgrade"
        )
        LicenseRequest.objects.create(
            event_id=f"e-{label}", instance=instance, is_test=is_test, device_fingerprint=label,
            effective_at=NOW, expire_at=NOW,
        )  # fmt: skip
        LicenseCode.objects.create(code=f"c-{label}", is_test=is_test)
        UsageEvent.objects.create(
            event_id=f"ev-{label}", instance=instance, quantity=1, occurred_at=NOW, hour_start=NOW
        )
        LoginAudit.objects.create(tenant=tenant, user_name=label, outcome="success")
        SignIn.objects.create(
            user=user, tenant=tenant, tenant_user=member, application=application, expires_at=NOW
        )


LISTS = [
    "/admin/tenants/tenant/",
    "/admin/tenants/tenantuser/",
    "/admin/tenants/authorization/",
    "/admin/tenants/application/",
    "/admin/orgsync/department/",
    "/admin/instances/instance/",
    "/admin/instances/instanceorder/",
    "/admin/licensing/licenserequest/",
    "/admin/licensing/licensecode/",
    "/admin/metering/usageevent/",
    "/admin/metering/meteredinstance/",
    "/admin/sso/loginaudit/",
    "/admin/sso/signin/",
]


@pytest.mark.parametrize("url", LISTS)
def test_every_row_by_default_debug_rows_marked_production_one_click_away(
    admin_client, rows_of_both_kinds, url
):
    assert listed(admin_client, url) == {"prodrow": False, "debugrow": True}
    page = admin_client.get(url).content.decode()
    # The filter offers both views; the default (all) is the selected choice.
    assert "?data=production" in page and "?data=test" in page
    assert re.search(r'<li class="selected">\s*<a href="\?data=all"', page)
    assert listed(admin_client, url + "?data=production") == {"prodrow": False}
    assert listed(admin_client, url + "?data=test") == {"debugrow": True}
    assert listed(admin_client, url + "?data=all") == {"prodrow": False, "debugrow": True}


def test_the_count_is_of_every_row(admin_client, rows_of_both_kinds):
    """The default list counts what it shows: no "0 results (1 total)"."""
    page = admin_client.get("/admin/tenants/tenant/").content.decode()
    assert "2 tenants" in page and "total)" not in page
    production = admin_client.get("/admin/tenants/tenant/?data=production").content.decode()
    assert "1 result (" in production and "2 total" in production


def test_the_journal_marks_debug_calls(admin_client):
    from django.utils import timezone

    from koogallery.inbound.journal import InboundCall

    for flag, label in ((None, "no-flag"), (False, "flag-0"), (True, "flag-1")):
        InboundCall.objects.create(
            received_at=timezone.now(), family="basic_v2", endpoint="newInstance", method="POST",
            path="/koogallery", order_id=label, test_flag=flag, verification="verified",
            result_code="000000",
        )  # fmt: skip
    found = {}
    for row in rows(admin_client.get("/admin/koogallery/inboundcall/").content.decode()):
        label = re.search(r">(no-flag|flag-0|flag-1)<", row).group(1)
        found[label] = BADGE in row
    assert found == {"no-flag": False, "flag-0": False, "flag-1": True}


def test_sign_in_attempts_naming_no_tenant_count_as_production(admin_client, rows_of_both_kinds):
    fields = {f.name for f in LoginAudit._meta.fields}
    audit = {"reason": "unknown_tenant"} if "reason" in fields else {}
    LoginAudit.objects.create(tenant=None, user_name="stranger-attempt", **audit)
    page = admin_client.get("/admin/sso/loginaudit/?data=production").content.decode()
    assert "stranger-attempt" in page
    assert (
        "stranger-attempt"
        not in admin_client.get("/admin/sso/loginaudit/?data=test").content.decode()
    )
