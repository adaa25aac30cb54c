"""bench/big_calls.py measures real calls that are accepted: its building blocks, at tiny sizes,
through the whole stack (Django's test client, as its --profile does; the bench itself sends the
same requests over HTTP). Each call is signed as KooGallery signs it and does what the bench
says it does; a call the service skips as stale voids its figure; the floor writes the linked
adjacency list it claims to (PostgreSQL)."""

import random

import psycopg
import pytest
from django.db import connection

from bench import _harness as harness
from bench import big_calls
from bench import org_sync as org_bench
from koogallery.inbound.journal import InboundCall
from metering.models import UsageEvent
from orgsync.models import Department
from tenants.models import TenantUser

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def bench_keys(settings):
    """The service as the bench configures it: its kit key, its metering token."""
    settings.KOOGALLERY_KIT_KEY = [harness.KIT_KEY]
    settings.METERING_API_TOKEN = [big_calls.METERING_TOKEN]


def send(request) -> tuple[int, bytes]:
    return big_calls.timed(big_calls.InProcess(), request)[1:]


def test_the_all_org_sync_rows_write_what_they_measure():
    items = big_calls.org_tree(200)
    tenant = "tiny"
    org_bench.add_waiting_users(tenant, items)

    first = send(big_calls.all_org_sync(tenant, items))
    assert big_calls.accepted_kit(*first, endpoint="allOrgSync", tenant_id=tenant) > 0
    assert Department.objects.filter(tenant__tenant_id=tenant).count() == 200
    linked = TenantUser.objects.filter(tenant__tenant_id=tenant, department__isnull=False)
    assert linked.count() == 40  # one user per fifth department waited for it

    stamps = dict(Department.objects.values_list("org_code", "updated_at"))
    again = send(big_calls.all_org_sync(tenant, items))
    big_calls.accepted_kit(*again, endpoint="allOrgSync", tenant_id=tenant)
    assert dict(Department.objects.values_list("org_code", "updated_at")) == stamps

    changed, moved, target = org_bench.renamed_and_moved(items, random.Random(18))
    change = send(big_calls.all_org_sync(tenant, changed))
    big_calls.accepted_kit(*change, endpoint="allOrgSync", tenant_id=tenant)
    assert Department.objects.get(org_code=moved).parent_code == target
    assert Department.objects.filter(org_name__endswith=" (新)").count() == 20


def test_a_call_skipped_as_stale_voids_its_figure():
    items = big_calls.org_tree(50)
    late = org_bench.all_org_sync_body("late", items)
    send(big_calls.all_org_sync("late", items))  # a newer call wrote the tenant's tree

    answer = send(harness.kit_request("allOrgSync", late))  # answered 000000, wrote nothing

    with pytest.raises(big_calls.Void, match="stale"):
        big_calls.accepted_kit(*answer, endpoint="allOrgSync", tenant_id="late")
    assert InboundCall.objects.filter(stale_entities=50).count() == 1


def test_a_refused_call_voids_its_figure():
    request = big_calls.all_org_sync("refused", [{"orgCode": "A", "parentCode": ""}])
    with pytest.raises(big_calls.Void, match="000002"):
        big_calls.accepted_kit(*send(request), endpoint="allOrgSync", tenant_id="refused")


def test_the_auth_sync_row_stores_every_user():
    status, data = send(big_calls.auth_sync("tiny-auth", 20))
    big_calls.accepted_kit(status, data, endpoint="authSync", tenant_id="tiny-auth")
    assert TenantUser.objects.filter(tenant__tenant_id="tiny-auth").count() == 20


def test_the_usage_row_records_every_event():
    instances = big_calls.add_instances(3)
    requests = big_calls.usage_requests(instances, 100, 50, random.Random(1))
    assert len(requests) == 2

    for request in requests:
        big_calls.accepted_usage(*send(request), 50)
    assert UsageEvent.objects.count() == 100

    with pytest.raises(big_calls.Void, match="200"):  # the same events again: duplicates
        big_calls.accepted_usage(*send(requests[0]), 50)


def test_the_floor_writes_the_linked_adjacency_list(postgres_only):
    items = big_calls.org_tree(200)
    params = connection.settings_dict
    conninfo = {
        "dbname": params["NAME"],
        "user": params["USER"],
        "host": params["HOST"],
        "port": params["PORT"],
        "password": params["PASSWORD"],
    }
    with psycopg.connect(**{k: v for k, v in conninfo.items() if v}) as conn:
        try:
            assert big_calls.floor_seconds(conn, items) > 0
            rows = conn.execute(
                f"SELECT c.org_code, p.org_code FROM {big_calls.FLOOR_TABLE} c "
                f"LEFT JOIN {big_calls.FLOOR_TABLE} p ON p.id = c.parent_id"
            ).fetchall()
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {big_calls.FLOOR_TABLE}")
            conn.commit()
    assert dict(rows) == {i["orgCode"]: i["parentCode"] or None for i in items}
