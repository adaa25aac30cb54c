"""Helpers of the department-sync tests: send singleOrgSync/allOrgSync as KooGallery does (V2
or V1), read a tenant's tree back, and snapshot every row a rejected call must not touch."""

import json

from koogallery.inbound.journal import InboundCall
from orgsync.models import Department
from tenants.models import Tenant, TenantUser
from tests.support.kgclient import KooGallery, envelope, fixture_json, kit_timestamp

VERSIONS = ("v2", "v1")
TENANT_ID = "68cbc86abc2018ab880d92f36422fa0e"


def send(kg: KooGallery, version: str, interface: str, body, **kwargs) -> dict:
    """Post a kit call in V2 (x-sign) or V1 (authToken) form; return the checked envelope."""
    if version == "v2":
        response = kg.kit(interface, body, **kwargs)
    else:
        response = kg.kit_v1(interface, body, **kwargs)
        assert response.has_header("Body-Sign")  # V1 answers must carry it (§4.3)
    return envelope(response)


def single(
    kg: KooGallery,
    code: str,
    name: str | None = None,
    parent: str | None = "",
    *,
    flag: int = 1,
    tenant_id: str = TENANT_ID,
    test_flag: int = 0,
    version: str = "v2",
    **extra,
) -> dict:
    """singleOrgSync built on Huawei's example, at a time later than any call before (unless
    `timeStamp` is given); `parent=None` leaves `parentCode` out, and an `extra` field set to
    None is left out too."""
    body = fixture_json(
        "singleOrgSync__huawei",
        timeStamp=kit_timestamp(),
        tenantId=tenant_id,
        orgCode=code,
        orgName=name if name is not None else f"部门 {code}",
        parentCode=parent,
        flag=flag,
        testFlag=test_flag,
    )
    body.update(extra)
    body = {k: v for k, v in body.items() if v is not None}
    return send(kg, version, "singleOrgSync", body)


def full(
    kg: KooGallery,
    items: list,
    *,
    tenant_id: str = TENANT_ID,
    test_flag: int = 0,
    version: str = "v2",
    time_stamp: str | None = None,
) -> dict:
    """allOrgSync of `items`: (code, name, parent) tuples or raw values, at `time_stamp` (by
    default later than any call before). V1 sends `orgInfo` as a String with `name` for
    `orgName` in each item (§4.3)."""
    body = fixture_json(
        "allOrgSync__tree",
        tenantId=tenant_id,
        testFlag=test_flag,
        timeStamp=time_stamp or kit_timestamp(),
    )
    rows = [
        {"orgCode": item[0], "orgName": item[1], "parentCode": item[2]}
        if isinstance(item, tuple)
        else item
        for item in items
    ]
    if version == "v1":
        body.pop("orgInfoList")
        v1_rows = [
            {("name" if k == "orgName" else k): v for k, v in row.items()}
            if isinstance(row, dict)
            else row
            for row in rows
        ]
        body["orgInfo"] = json.dumps(v1_rows, ensure_ascii=False)
    else:
        body["orgInfoList"] = rows
    return send(kg, version, "allOrgSync", body)


def tenant(tenant_id: str = TENANT_ID, is_test: bool = False) -> Tenant:
    return Tenant.objects.get(tenant_id=tenant_id, is_test=is_test)


def tree(tenant_id: str = TENANT_ID, is_test: bool = False) -> dict:
    """code → (name, parent_code as received, code of the linked parent or None)."""
    rows = Department.objects.filter(tenant__tenant_id=tenant_id, tenant__is_test=is_test)
    return {
        d.org_code: (d.org_name, d.parent_code, d.parent.org_code if d.parent else None)
        for d in rows.select_related("parent")
    }


def dangling_parents(tenant_id: str = TENANT_ID, is_test: bool = False) -> list[str]:
    """Codes whose `parent_id` names no department of their tenant. The self-reference has no
    database constraint (bulk writes, issue 5), so the services must never leave one."""
    rows = Department.objects.filter(tenant__tenant_id=tenant_id, tenant__is_test=is_test)
    return list(
        rows.filter(parent__isnull=False)
        .exclude(parent_id__in=rows.values("id"))
        .values_list("org_code", flat=True)
    )


def misplaced_users(tenant_id: str = TENANT_ID, is_test: bool = False) -> list[str]:
    """Users whose `department_id` is not the department of their org_code in their tenant
    (unset while it exists, or naming another or a missing department). The link has no
    database constraint (issue 17): the services must keep it so."""
    users = TenantUser.objects.filter(tenant__tenant_id=tenant_id, tenant__is_test=is_test)
    departments = Department.objects.filter(tenant__tenant_id=tenant_id, tenant__is_test=is_test)
    id_of = dict(departments.values_list("org_code", "id"))
    return sorted(
        name
        for name, code, linked in users.values_list("user_name", "org_code", "department_id")
        if linked != id_of.get(code)
    )


def user_links(tenant_id: str = TENANT_ID, is_test: bool = False) -> dict:
    """user_name → (org_code as received, code of the linked department or None)."""
    users = TenantUser.objects.filter(tenant__tenant_id=tenant_id, tenant__is_test=is_test)
    return {
        u.user_name: (u.org_code, u.department.org_code if u.department else None)
        for u in users.select_related("department")
    }


def add_user(user_name: str, org_code: str, tenant_id: str = TENANT_ID, is_test=False):
    """A user as authSync stores it, linked if the department is already known (written with
    the ORM: authSync belongs to the tenants app)."""
    owner, _ = Tenant.objects.get_or_create(tenant_id=tenant_id, is_test=is_test)
    department = Department.objects.filter(tenant=owner, org_code=org_code).first()
    return TenantUser.objects.create(
        tenant=owner, user_name=user_name, org_code=org_code, department=department
    )


def rows() -> dict:
    """Every department and user row, every column (ids and timestamps included)."""
    return {
        "departments": list(Department.objects.order_by("pk").values()),
        "users": list(TenantUser.objects.order_by("pk").values()),
    }


def assert_rejected(before: dict, answer: dict, text: str) -> None:
    """000002 whose message contains `text`; no row changed; the journal kept the call."""
    assert answer["resultCode"] == "000002", answer
    assert text in answer["resultMsg"], answer
    assert rows() == before
    assert InboundCall.objects.order_by("-id").first().result_code == "000002"
