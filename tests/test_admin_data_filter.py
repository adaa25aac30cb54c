"""Every admin list hides debug (testFlag 1) rows by default and shows them on request (§2.5)."""

import pytest

from orgsync.models import Department
from sso.models import LoginAudit
from tenants.models import Tenant, TenantUser

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows():
    for is_test, label in ((False, "prodrow"), (True, "debugrow")):
        tenant = Tenant.objects.create(tenant_id=f"t-{label}", is_test=is_test, name=label)
        Department.objects.create(tenant=tenant, org_code=f"d-{label}", org_name=label)
        TenantUser.objects.create(tenant=tenant, user_name=f"u-{label}", name=label)


LISTS = [
    "/admin/tenants/tenant/",
    "/admin/tenants/tenantuser/",
    "/admin/orgsync/department/",
]


@pytest.mark.parametrize("url", LISTS)
def test_production_by_default_debug_on_request(admin_client, rows, url):
    default = admin_client.get(url).content.decode()
    assert "prodrow" in default and "debugrow" not in default
    debug = admin_client.get(url + "?data=test").content.decode()
    assert "debugrow" in debug and "prodrow" not in debug
    both = admin_client.get(url + "?data=all").content.decode()
    assert "debugrow" in both and "prodrow" in both


def test_sign_in_attempts_naming_no_tenant_count_as_production(admin_client, rows):
    fields = {f.name for f in LoginAudit._meta.fields}
    audit = {"reason": "unknown_tenant"} if "reason" in fields else {}
    LoginAudit.objects.create(tenant=None, user_name="stranger-attempt", **audit)
    page = admin_client.get("/admin/sso/loginaudit/").content.decode()
    assert "stranger-attempt" in page
    assert (
        "stranger-attempt"
        not in admin_client.get("/admin/sso/loginaudit/?data=test").content.decode()
    )
