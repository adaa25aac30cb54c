"""Late and replayed kit calls (spec §2.3 "Replays and late calls", §2.6, §4.1).

KooGallery may deliver a kit call late or twice, and a captured call may be replayed. Every
synced entity keeps the time of the call that last wrote it (authorisation: `currentSyncTime`;
tenant, application, department: `timeStamp`); an older call writes nothing to it, answers
`000000`, and its journal row counts the entities it skipped as stale. An equal time writes
again (idempotent); a newer one applies. Each rule is proven for every kit interface, V2 and
V1, through the endpoints as KooGallery calls them; the race between two calls for one entity
on PostgreSQL at the end.
"""

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.db import connection, connections
from django.test import Client

from koogallery.inbound.journal import InboundCall
from koogallery.protocol.times import kit_time
from orgsync.models import Department
from orgsync.services import single_org_sync
from tenants.models import (
    Application,
    Authorization,
    AuthorizationState,
    SyncFlag,
    Tenant,
    TenantUser,
)
from tests.support.kgclient import KooGallery, envelope, fixture_json
from tests.support.tenant_kit import (
    VERSIONS,
    domain_state,
    oaep_encrypt,
    rsa_keys,  # noqa: F401 (fixture)
    rsa_settings,  # noqa: F401 (fixture)
    send,
    stable_state,
    v1_body,
)

pytestmark = pytest.mark.django_db

# UTC+8 yyyyMMddHHmmssSSS (§4.1): T2 is one millisecond after T1.
T1, T2, T3 = "20240601120000000", "20240601120000001", "20240601130000000"
ORG_TENANT = "68cbc86abc2018ab880d92f36422fa0e"


def stale_count() -> int:
    """What the journal row of the last call says it skipped."""
    return InboundCall.objects.order_by("-id").first().stale_entities


# --- one entity per interface: how a call writes it, and what of it shows --------------------


def tenant_call(value: str, at: str, flag: int = 1) -> dict:
    body = fixture_json("tenantSync__huawei_example", flag=flag, timeStamp=at)
    body["name"] = value
    return body


def tenant_state() -> tuple:
    tenant = Tenant.objects.get()
    return tenant.name, tenant.removed_at is None


def application_call(value: str, at: str, flag: int = 1) -> dict:
    body = fixture_json("applicationSync__huawei_shape_example", flag=flag, timeStamp=at)
    body.update(clientId=value, clientSecret=_SECRET[0])
    return body


def application_state() -> tuple:
    row = Application.objects.get()
    return row.client_id, row.removed_at is None


def user_record(value: str) -> dict:
    return {"userName": "zhangsan01", "name": value, "orgCode": "", "role": "user"} | {
        "enable": "true"
    }


def auth_call(value: str, at: str, flag: int = 1) -> dict:
    return fixture_json(
        "authSync__composed_example",
        userList=[user_record(value)],
        flag=flag,
        currentSyncTime=at,
        timeStamp=at,
    )


def auth_state() -> tuple:
    grant = Authorization.objects.get()
    return TenantUser.objects.get().name, grant.state


def single_call(value: str, at: str, flag: int = 1) -> dict:
    body = fixture_json(
        "singleOrgSync__huawei",
        tenantId=ORG_TENANT,
        orgCode="100",
        orgName=value,
        parentCode="",
        flag=flag,
        timeStamp=at,
    )
    if flag == 0:
        body.pop("orgName")
    return body


def full_call(value: str, at: str, flag: int = 1) -> dict:
    """allOrgSync holding department 100 named `value`; its "delete" is a snapshot without
    100 (only 200)."""
    item = ("200", "其他", "") if flag == 0 else ("100", value, "")
    rows = [{"orgCode": item[0], "orgName": item[1], "parentCode": item[2]}]
    return fixture_json("allOrgSync__tree", tenantId=ORG_TENANT, orgInfoList=rows, timeStamp=at)


def tree_state() -> dict:
    return dict(Department.objects.values_list("org_code", "org_name"))


@dataclass
class Entity:
    interface: str
    call: Callable[..., dict]
    state: Callable[[], object]


ENTITIES = {
    "tenantSync": Entity("tenantSync", tenant_call, tenant_state),
    "applicationSync": Entity("applicationSync", application_call, application_state),
    "authSync": Entity("authSync", auth_call, auth_state),
    "singleOrgSync": Entity("singleOrgSync", single_call, tree_state),
    "allOrgSync": Entity("allOrgSync", full_call, tree_state),
}
_SECRET = [""]  # a real ciphertext, made once the RSA settings are in place


def as_sent(interface: str, version: str, body: dict) -> dict:
    """The body as V1 sends it (§4.3): string lists, allOrgSync's `orgInfo` with `name`."""
    if version == "v2":
        return body
    if interface == "allOrgSync":
        body = dict(body)
        rows = body.pop("orgInfoList")
        body["orgInfo"] = json.dumps(
            [{("name" if k == "orgName" else k): v for k, v in row.items()} for row in rows],
            ensure_ascii=False,
        )
        return body
    return v1_body(body)


@pytest.fixture
def sync(kg, rsa_settings, rsa_keys):  # noqa: F811
    """sync(interface, version, value, at, flag=1) → the call's envelope."""
    _SECRET[0] = oaep_encrypt(rsa_keys[1], "s3cr3t-client-secret")

    def call(interface: str, version: str, value: str, at: str, flag: int = 1) -> dict:
        body = ENTITIES[interface].call(value, at, flag)
        return send(kg, version, interface, as_sent(interface, version, body))

    return call


@pytest.fixture(params=list(ENTITIES))
def entity(request) -> Entity:
    return ENTITIES[request.param]


# --- the rule, on every interface -------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_a_late_call_changes_nothing_and_is_counted_stale(sync, entity, version):
    sync(entity.interface, version, "新", T2)
    after_newer = entity.state()
    before = stable_state()

    answer = sync(entity.interface, version, "旧", T1)

    assert answer["resultCode"] == "000000"
    assert entity.state() == after_newer
    assert stable_state() == before
    assert stale_count() == 1


def written_state() -> dict:
    """The rows, without what differs each time a call is applied: the times of the write
    and the secret's fresh encryption."""
    return domain_state(ignore=("updated_at", "org_synced_at", "client_secret_encrypted"))


@pytest.mark.parametrize("version", VERSIONS)
def test_the_same_call_at_an_equal_time_writes_the_same_again(sync, entity, version):
    sync(entity.interface, version, "新", T2)
    before = written_state()

    answer = sync(entity.interface, version, "新", T2)

    assert answer["resultCode"] == "000000"
    assert written_state() == before
    assert stale_count() == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_a_newer_call_applies(sync, entity, version):
    sync(entity.interface, version, "旧", T1)
    sync(entity.interface, version, "中", T2)
    after_newer = entity.state()

    answer = sync(entity.interface, version, "新", T3)

    assert answer["resultCode"] == "000000"
    assert entity.state() != after_newer
    assert "新" in json.dumps(entity.state(), ensure_ascii=False)
    assert stale_count() == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_an_older_delete_does_not_remove_a_newer_add(sync, entity, version):
    sync(entity.interface, version, "新", T2)
    after_add = entity.state()

    answer = sync(entity.interface, version, "新", T1, flag=0)

    assert answer["resultCode"] == "000000"
    assert entity.state() == after_add
    assert stale_count() == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_an_older_add_does_not_undo_a_newer_delete(sync, entity, version):
    sync(entity.interface, version, "旧", T1)
    sync(entity.interface, version, "旧", T3, flag=0)
    after_delete = entity.state()

    answer = sync(entity.interface, version, "中", T2)

    assert answer["resultCode"] == "000000"
    assert entity.state() == after_delete
    assert stale_count() == 1


def test_a_late_full_snapshot_counts_every_department_it_lists(sync, kg):
    sync("allOrgSync", "v2", "新", T2)
    body = fixture_json("allOrgSync__tree", tenantId=ORG_TENANT, timeStamp=T1)
    before = stable_state()

    assert send(kg, "v2", "allOrgSync", body)["resultCode"] == "000000"

    assert stable_state() == before
    assert stale_count() == len(body["orgInfoList"])


# --- department calls order each other --------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_a_department_change_older_than_the_last_full_snapshot_is_skipped(sync, version):
    sync("singleOrgSync", version, "新", T1)
    sync("allOrgSync", version, "全量", T3)

    answer = sync("singleOrgSync", version, "旧", T2)

    assert answer["resultCode"] == "000000"
    assert tree_state() == {"100": "全量"}
    assert stale_count() == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_departments_of_a_first_load_take_its_time(sync, version):
    """A first load writes no time on its rows (the tenant's snapshot time stands for them):
    a change older than the load is still skipped, a newer one applied, and kept against an
    older one after it."""
    sync("allOrgSync", version, "全量", T2)

    assert sync("singleOrgSync", version, "旧", T1)["resultCode"] == "000000"
    assert tree_state() == {"100": "全量"}
    assert stale_count() == 1

    sync("singleOrgSync", version, "新", T3)
    sync("singleOrgSync", version, "中", T2)
    assert tree_state() == {"100": "新"}


@pytest.mark.parametrize("version", VERSIONS)
def test_a_full_snapshot_older_than_the_last_department_change_is_skipped(sync, version):
    sync("allOrgSync", version, "全量", T1)
    sync("singleOrgSync", version, "新", T3)

    answer = sync("allOrgSync", version, "旧全量", T2)

    assert answer["resultCode"] == "000000"
    assert tree_state() == {"100": "新"}
    assert stale_count() == 1


def test_other_departments_take_changes_in_any_order(sync, kg):
    """The time is per department: a late change of one does not block another."""
    send(kg, "v2", "singleOrgSync", single_call("甲", T3) | {"orgCode": "A"})
    answer = send(kg, "v2", "singleOrgSync", single_call("乙", T1) | {"orgCode": "B"})

    assert answer["resultCode"] == "000000"
    assert tree_state() == {"A": "甲", "B": "乙"}
    assert stale_count() == 0


# PostgreSQL's writer speaks PostgreSQL only.
WRITERS = ["portable", "postgresql"] if connection.vendor == "postgresql" else ["portable"]


@pytest.mark.parametrize("writer", WRITERS)
def test_both_department_writers_order_changes_by_call_time(writer):
    """singleOrgSync's two writers (orgsync/services.py) apply the same rule."""

    def org(code: str, flag: SyncFlag, name: str, at: str) -> int:
        return single_org_sync(
            tenant_id=ORG_TENANT,
            is_test=False,
            org_code=code,
            flag=flag,
            org_name=name,
            parent_code="",
            writer=writer,
            call_time=kit_time(at),
        ).stale

    assert org("A", SyncFlag.ADD, "新", T2) == 0
    assert org("A", SyncFlag.MODIFY, "旧", T1) == 1
    assert org("A", SyncFlag.DELETE, "", T1) == 1
    assert tree_state() == {"A": "新"}
    assert org("A", SyncFlag.MODIFY, "新", T3) == 0  # unchanged, but the newer time is kept
    assert org("A", SyncFlag.MODIFY, "中", T2) == 1
    assert org("A", SyncFlag.DELETE, "", T3) == 0
    assert org("A", SyncFlag.ADD, "旧", T2) == 1  # the delete is remembered
    assert org("B", SyncFlag.DELETE, "", T3) == 0  # a code never seen
    assert org("B", SyncFlag.ADD, "旧", T2) == 1
    assert tree_state() == {}
    assert org("A", SyncFlag.ADD, "再", T3) == 0  # an equal time applies
    assert tree_state() == {"A": "再"}


# --- the attack of the security review --------------------------------------------------------


def cancel(kg, at: str) -> dict:
    return send(kg, "v2", "authSync", auth_call("张三", at, flag=3))


def test_a_replayed_v2_authorisation_does_not_undo_a_later_cancel(kg):
    """Authorise, cancel, then the captured authorisation again (a fresh nonce: the signature
    covers the body, not the nonce's novelty): the user stays cancelled."""
    authorise = auth_call("张三", T1)
    send(kg, "v2", "authSync", authorise)
    cancel(kg, T2)

    answer = send(kg, "v2", "authSync", authorise)

    assert answer["resultCode"] == "000000"
    assert Authorization.objects.get().state == AuthorizationState.REVOKED
    assert not Authorization.objects.get().can_sign_in
    assert stale_count() == 1


def test_a_replayed_v1_authorisation_does_not_undo_a_later_cancel(kg):
    """The same with V1, which has no nonce: the captured request is sent again byte for byte
    (same body, same authToken)."""
    authorise = v1_body(auth_call("张三", T1))
    send(kg, "v1", "authSync", authorise)
    cancel(kg, T2)

    answer = send(kg, "v1", "authSync", authorise)

    assert answer["resultCode"] == "000000"
    assert Authorization.objects.get().state == AuthorizationState.REVOKED


@pytest.mark.parametrize("version", VERSIONS)
def test_an_authorisation_with_an_older_sync_time_does_not_undo_a_later_cancel(kg, version):
    """A new call (fresh `timeStamp`) whose `currentSyncTime` is older than the cancel's."""
    send(kg, version, "authSync", as_sent("authSync", version, auth_call("张三", T1)))
    cancel(kg, T2)
    late = auth_call("李四", T1) | {"timeStamp": T3}

    answer = send(kg, version, "authSync", as_sent("authSync", version, late))

    assert answer["resultCode"] == "000000"
    assert auth_state() == ("张三", AuthorizationState.REVOKED)
    assert stale_count() == 1


def test_only_the_stale_users_of_a_call_are_skipped(kg):
    send(kg, "v2", "authSync", auth_call("张三", T1))
    cancel(kg, T2)
    late = auth_call("张三", T1)
    late["userList"] = [user_record("张三"), user_record("李四") | {"userName": "lisi"}]

    assert send(kg, "v2", "authSync", late)["resultCode"] == "000000"

    states = dict(Authorization.objects.values_list("user__user_name", "state"))
    assert states == {"zhangsan01": "revoked", "lisi": "authorized"}
    assert stale_count() == 1


# --- the time itself --------------------------------------------------------------------------

BAD_TIMES = [
    None,  # missing
    "",
    "2024-06-01 12:00:00",
    "20240601120000",  # no milliseconds
    "202406011200000000",
    "20241301120000000",  # month 13
    "2024060112000000x",
    "２０２４０６０１１２００００００",  # full-width digits
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("interface", list(ENTITIES))
@pytest.mark.parametrize("bad", BAD_TIMES)
def test_a_missing_or_unreadable_time_is_refused(sync, kg, interface, version, bad):
    body = ENTITIES[interface].call("新", T1, 1)
    if bad is None:
        body.pop("timeStamp")
    else:
        body["timeStamp"] = bad
    before, journal = domain_state(), InboundCall.objects.count()

    answer = send(kg, version, interface, as_sent(interface, version, body))

    assert answer["resultCode"] == "000002", answer
    assert "timeStamp" in answer["resultMsg"]
    assert domain_state() == before
    assert InboundCall.objects.count() == journal + 1


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("bad", [value for value in BAD_TIMES if value])
def test_an_unreadable_current_sync_time_is_refused(kg, version, bad):
    body = auth_call("新", T1) | {"currentSyncTime": bad}

    answer = send(kg, version, "authSync", as_sent("authSync", version, body))

    assert answer["resultCode"] == "000002", answer
    assert "currentSyncTime" in answer["resultMsg"]
    assert not TenantUser.objects.exists()


def test_the_journal_admin_shows_the_stale_count(sync, admin_client):
    sync("tenantSync", "v2", "新", T2)
    sync("tenantSync", "v2", "旧", T1)

    page = admin_client.get("/admin/koogallery/inboundcall/")

    assert page.status_code == 200
    assert "stale entities" in page.content.decode().lower()
    call = InboundCall.objects.order_by("-id").first()
    detail = admin_client.get(f"/admin/koogallery/inboundcall/{call.pk}/change/")
    assert "entities skipped" in detail.content.decode()
    stale = admin_client.get("/admin/koogallery/inboundcall/?stale=yes")
    assert [row.pk for row in stale.context["cl"].result_list] == [call.pk]
    fresh = admin_client.get("/admin/koogallery/inboundcall/?stale=no")
    assert call.pk not in [row.pk for row in fresh.context["cl"].result_list]


# --- races (PostgreSQL) -----------------------------------------------------------------------


def waiting_backends() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def wait_for(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the calls never queued on the lock"
        time.sleep(0.02)


# interface[-variant] → (first write, the two racing calls as (value, time, flag), the lock to
# hold, what the newer call leaves)
RACES = {
    "authSync": (
        auth_call("张三", T1),
        [("张三", T2, 1), ("张三", T3, 3)],
        "SELECT 1 FROM tenants_authorization FOR UPDATE",
        ("张三", AuthorizationState.REVOKED),
    ),
    "authSync-late-cancel": (
        auth_call("张三", T1),
        [("张三", T2, 3), ("新", T3, 1)],
        "SELECT 1 FROM tenants_authorization FOR UPDATE",
        ("新", AuthorizationState.AUTHORIZED),
    ),
    "tenantSync": (
        tenant_call("初", T1),
        [("旧", T2, 1), ("新", T3, 1)],
        "SELECT 1 FROM tenants_tenant FOR UPDATE",
        ("新", True),
    ),
    "singleOrgSync": (
        single_call("初", T1),
        [("旧", T2, 1), ("新", T3, 0)],
        "SELECT 1 FROM tenants_tenant FOR UPDATE",
        {},
    ),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("newer_first", [False, True], ids=["older-first", "newer-first"])
@pytest.mark.parametrize("race", list(RACES))
def test_two_racing_calls_leave_the_newer_state(postgres_only, race, newer_first):
    """Two calls for one entity from two workers: both read the entity before either writes
    (a third transaction holds its row lock until both wait on it), then they go in a chosen
    order. Whatever the order, the newer call's state is left."""
    first, racing, lock, expected = RACES[race]
    interface = race.split("-")[0]
    kg = KooGallery(Client())
    assert send(kg, "v2", interface, first)["resultCode"] == "000000"
    calls = [ENTITIES[interface].call(*args) for args in racing]
    if newer_first:
        calls.reverse()
    answers: list[str] = []

    def post(body: dict) -> None:
        try:
            answers.append(envelope(KooGallery(Client()).kit(interface, body))["resultCode"])
        finally:
            connection.close()

    holder = connections.create_connection("default")
    try:
        with holder.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(lock)
            threads = []
            for count, body in enumerate(calls, start=1):
                thread = threading.Thread(target=post, args=(body,))
                thread.start()
                threads.append(thread)
                wait_for(lambda count=count: waiting_backends() >= count)
            cursor.execute("ROLLBACK")
        for thread in threads:
            thread.join(30)
    finally:
        holder.close()

    assert answers == ["000000", "000000"]
    assert ENTITIES[interface].state() == expected
    # The older call was skipped (and counted) only when it came second.
    stale = InboundCall.objects.order_by("id").values_list("stale_entities", flat=True)
    assert sum(stale) == (1 if newer_first else 0)
