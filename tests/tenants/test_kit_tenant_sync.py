"""tenantSync (企业同步), V2 and V1 (spec §4.1.1, §4.3, §2.5, §2.6)."""

import pytest

from koogallery.inbound.journal import InboundCall
from orgsync.models import Department
from tenants.models import Authorization, Tenant, TenantBinding
from tests.support.kgclient import fixture
from tests.support.tenant_kit import (
    VERSIONS,
    assert_rejected,
    body_of,
    domain_state,
    send,
    stable_state,
)

pytestmark = pytest.mark.django_db

TENANT_ID = "68cbc86****************880d92f36422fa0e"
EXAMPLE = "tenantSync__huawei_example"


def tenant(is_test: bool = False) -> Tenant:
    return Tenant.objects.get(tenant_id=TENANT_ID, is_test=is_test)


@pytest.mark.parametrize("version", VERSIONS)
def test_huawei_example_creates_the_tenant_and_its_binding(kg, version):
    answer = send(kg, version, "tenantSync", fixture(EXAMPLE))

    assert answer["resultCode"] == "000000"
    row = tenant()
    assert (row.tenant_code, row.name, row.domain_name) == (
        "huawei",
        "huaiweitest",
        "https://example.tenantaccount.com",
    )
    assert row.active
    binding = row.bindings.get()
    assert (binding.instance_id, binding.order_id, binding.removed_at) == (
        "huaiweitest123456",
        "CS1906666666ABCDE",
        None,
    )
    call = InboundCall.objects.get()
    assert (call.endpoint, call.tenant_id, call.result_code) == ("tenantSync", TENANT_ID, "000000")


def test_modify_changes_name_and_domain(kg):
    send(kg, "v2", "tenantSync", fixture(EXAMPLE))

    answer = send(
        kg,
        "v2",
        "tenantSync",
        body_of(EXAMPLE, flag=2, name="华为新名", domainName="https://new.example.com"),
    )

    assert answer["resultCode"] == "000000"
    assert (tenant().name, tenant().domain_name) == ("华为新名", "https://new.example.com")
    assert Tenant.objects.count() == 1 and TenantBinding.objects.count() == 1


def test_modify_of_an_unknown_tenant_creates_it(kg):
    answer = send(kg, "v2", "tenantSync", body_of(EXAMPLE, flag="2"))

    assert answer["resultCode"] == "000000"
    assert tenant().name == "huaiweitest"


@pytest.mark.parametrize("version", VERSIONS)
def test_delete_marks_removed_and_blocks_sign_in_until_added_again(kg, version):
    send(kg, version, "tenantSync", fixture(EXAMPLE))
    send(kg, "v2", "authSync", fixture("authSync__composed_example"))
    assert Authorization.objects.get().can_sign_in

    answer = send(kg, version, "tenantSync", fixture("tenantSync__delete"))

    assert answer["resultCode"] == "000000"
    assert not tenant().active
    assert tenant().bindings.get().removed_at is not None
    authorization = Authorization.objects.get()  # kept ...
    assert not authorization.can_sign_in  # ... but deactivated

    # Added again: a new call (a V1 call sent again is answered as its replay, §2.3).
    send(kg, version, "tenantSync", body_of(EXAMPLE, timeStamp="20220413093540000"))

    assert tenant().active
    assert tenant().bindings.get().removed_at is None
    assert Authorization.objects.get().can_sign_in


@pytest.mark.parametrize("version", VERSIONS)
def test_delete_of_an_unknown_tenant_succeeds_and_creates_nothing(kg, version):
    answer = send(kg, version, "tenantSync", fixture("tenantSync__delete"))

    assert answer["resultCode"] == "000000"
    assert Tenant.objects.count() == 0 and TenantBinding.objects.count() == 0


# V1 has no modify (§4.3).
@pytest.mark.parametrize(
    ("version", "flag"), [("v2", 1), ("v2", 2), ("v2", 0), ("v1", 1), ("v1", 0)]
)
def test_each_flag_repeated_three_times_leaves_the_same_state(kg, version, flag):
    send(kg, version, "tenantSync", fixture(EXAMPLE))
    body = body_of(EXAMPLE, flag=flag, name="renamed")

    answers, states = [], []
    for _ in range(3):
        answers.append(send(kg, version, "tenantSync", body)["resultCode"])
        states.append(stable_state())

    assert answers == ["000000"] * 3
    assert states[0] == states[1] == states[2]
    assert Tenant.objects.count() == 1 and TenantBinding.objects.count() == 1


def test_v1_refuses_modify(kg):
    before, journal = domain_state(), InboundCall.objects.count()

    answer = send(kg, "v1", "tenantSync", body_of(EXAMPLE, flag=2))

    assert_rejected(before, answer, "flag", journal)


def test_seller_credential_and_second_instance_bind_the_same_tenant(kg):
    send(kg, "v2", "tenantSync", body_of(EXAMPLE, instanceId="", orderId=""))
    send(kg, "v2", "tenantSync", fixture(EXAMPLE))

    assert Tenant.objects.count() == 1
    assert sorted(tenant().bindings.values_list("instance_id", flat=True)) == [
        "",
        "huaiweitest123456",
    ]


def test_a_call_before_tenant_sync_is_completed_by_it(kg):
    send(kg, "v2", "authSync", fixture("authSync__composed_example"))
    assert tenant().name == ""

    send(kg, "v2", "tenantSync", fixture(EXAMPLE))

    assert Tenant.objects.count() == 1
    assert tenant().name == "huaiweitest"
    assert tenant().users.count() == 1


def test_debug_tenant_is_kept_apart_from_the_production_tenant(kg):
    send(kg, "v2", "tenantSync", fixture(EXAMPLE))

    answer = send(kg, "v2", "tenantSync", fixture("tenantSync__debug"))
    send(kg, "v2", "tenantSync", body_of("tenantSync__debug", flag=0))

    assert answer["resultCode"] == "000000"
    assert Tenant.objects.count() == 2
    assert not tenant(is_test=True).active
    assert tenant(is_test=True).bindings.get().instance_id == ""
    production = tenant()
    assert production.active and production.domain_name == "https://example.tenantaccount.com"


INVALID = [
    ({"tenantId": None}, "tenantId"),
    ({"tenantId": ""}, "tenantId"),
    ({"tenantId": "t" * 65}, "tenantId"),
    ({"instanceId": "i" * 65}, "instanceId"),
    ({"orderId": ["CS1"]}, "orderId"),
    ({"tenantCode": "c" * 65}, "tenantCode"),
    ({"name": "n" * 256}, "name"),
    ({"domainName": {"url": "x"}}, "domainName"),
    ({"flag": 3}, "flag"),
    ({"flag": "one"}, "flag"),
    ({"flag": 1.0}, "flag"),
    ({"testFlag": 2}, "testFlag"),
    ({"timeStamp": None}, "timeStamp"),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("change", "field"), INVALID)
def test_invalid_field_answers_000002_naming_it_and_writes_nothing(kg, version, change, field):
    send(kg, version, "tenantSync", body_of(EXAMPLE, name="before"))
    body = body_of(EXAMPLE, name="after")
    for name, value in change.items():
        if value is None:
            del body[name]
        else:
            body[name] = value
    before, journal = domain_state(), InboundCall.objects.count()

    answer = send(kg, version, "tenantSync", body)

    assert_rejected(before, answer, field, journal)
    assert tenant().name == "before"


# --- admin -------------------------------------------------------------------------------------


def _tree_tenant(kg) -> Tenant:
    send(kg, "v2", "tenantSync", fixture(EXAMPLE))
    send(kg, "v2", "tenantSync", fixture("tenantSync__debug"))
    row = tenant()
    root = Department.objects.create(tenant=row, org_code="100", org_name="总部")
    Department.objects.create(
        tenant=row, org_code="123456789", org_name="开发部", parent=root, parent_code="100"
    )
    Department.objects.create(tenant=row, org_code="7", org_name="<孤儿>", parent_code="gone")
    send(kg, "v2", "authSync", fixture("authSync__composed_example"))  # orgCode 123456789
    return row


def test_tenant_changelist_shows_every_tenant_by_default_and_finds_users(kg, admin_client):
    _tree_tenant(kg)

    def listed(query: str = "") -> list[str]:
        response = admin_client.get(f"/admin/tenants/tenant/{query}")
        assert response.status_code == 200
        return [(t.tenant_id, t.is_test) for t in response.context["cl"].result_list]

    assert sorted(listed()) == [(TENANT_ID, False), (TENANT_ID, True)]
    assert listed("?data=production") == [(TENANT_ID, False)]
    assert listed("?data=test") == [(TENANT_ID, True)]
    assert len(listed("?data=all")) == 2
    assert listed("?data=all&q=zhangsan01") == [(TENANT_ID, False)]
    assert listed("?removed=yes") == []
    page = admin_client.get("/admin/tenants/tenant/").content.decode()
    assert "production only" in page  # the filter that hides debug tenants is visible


def test_tenant_page_shows_bindings_users_and_the_department_tree(kg, admin_client):
    row = _tree_tenant(kg)

    response = admin_client.get(f"/admin/tenants/tenant/{row.pk}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "huaiweitest123456" in page and "CS1906666666ABCDE" in page
    assert f"tenant__id__exact={row.pk}" in page and "1 user<" in page
    try:
        from orgsync.selectors import department_forest  # noqa: F401
    except ImportError:
        assert "tree unavailable" in page
        return
    # 开发部 is nested inside 总部; the orphan is a root with its note, escaped.
    assert page.index("总部") < page.index("<ul><li>", page.index("总部")) < page.index("开发部")
    assert "&lt;孤儿&gt;" in page and "(parent gone not synced)" in page
    assert "1 user</a>, 1 with sub-departments" in page


def test_tenant_tree_is_capped(kg, admin_client):
    send(kg, "v2", "tenantSync", fixture(EXAMPLE))
    row = tenant()
    Department.objects.bulk_create(
        Department(tenant=row, org_code=f"{i:05d}", org_name=f"部门{i}") for i in range(2050)
    )

    response = admin_client.get(f"/admin/tenants/tenant/{row.pk}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    if "tree unavailable" not in page:
        # A page of the top level (admin.TREE_PAGE), the rest counted and linked.
        assert "Showing 50 of 2050 departments; 2000 more are not shown" in page
        assert "… 2000 more top-level departments" in page
        assert "部门49<" in page and "部门50<" not in page


def test_synced_rows_cannot_be_added_changed_or_deleted_in_the_admin(kg, admin_client):
    row = _tree_tenant(kg)

    assert admin_client.get("/admin/tenants/tenant/add/").status_code == 403
    assert admin_client.get(f"/admin/tenants/tenant/{row.pk}/delete/").status_code == 403
    response = admin_client.post(f"/admin/tenants/tenant/{row.pk}/change/", {"name": "hacked"})
    assert response.status_code == 403
    assert tenant().name == "huaiweitest"
