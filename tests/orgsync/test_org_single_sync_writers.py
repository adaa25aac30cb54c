"""singleOrgSync's two writers (orgsync/services.py): PostgreSQL's one-statement writes and the
portable ones give the tree the rules of spec §2.6 describe, in few statements, and a refusal
leaves the caller's transaction as it was. Concurrency on PostgreSQL with real transactions.
"""

import itertools
import threading

import pytest
from django.db import close_old_connections, connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from koogallery.protocol.resultcodes import KooGalleryError
from orgsync import services
from orgsync.models import Department
from tenants.models import SyncFlag, Tenant, TenantUser
from tests.support.org_kit import dangling_parents, misplaced_users, tree, user_links
from tests.support.org_model import CODES, PARENTS, Model

pytestmark = pytest.mark.django_db

WRITERS = ["portable", "postgresql"] if connection.vendor == "postgresql" else ["portable"]
_tenant_numbers = itertools.count()

upsert = st.tuples(
    st.just("upsert"),
    st.sampled_from(CODES),
    st.sampled_from(["甲", "乙"]),
    st.sampled_from([*PARENTS, None]),
    st.sampled_from([SyncFlag.ADD, SyncFlag.MODIFY]),
)
delete = st.tuples(st.just("delete"), st.sampled_from(CODES))
operations = st.lists(st.one_of(upsert, upsert, delete), min_size=1, max_size=12)


def sync(tenant_id: str, operation, writer: str) -> bool:
    try:
        if operation[0] == "upsert":
            _, code, name, parent, flag = operation
            org(code, flag, tenant_id=tenant_id, name=name, parent_code=parent, writer=writer)
        else:
            org(operation[1], SyncFlag.DELETE, tenant_id=tenant_id, writer=writer)
    except KooGalleryError as exc:
        assert exc.code == "000002"
        return False
    return True


def org(code: str, flag=SyncFlag.ADD, *, tenant_id: str = "t", name=None, **fields):
    """singleOrgSync of `code` (production data); the name defaults to the code."""
    if flag != SyncFlag.DELETE:
        fields["org_name"] = code if name is None else name
    return services.single_org_sync(
        tenant_id=tenant_id, is_test=False, org_code=code, flag=flag, **fields
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=operations)
def test_both_writers_leave_the_tree_the_rules_describe(operations):
    number = next(_tenant_numbers)
    tenants = {writer: f"writers-{writer}-{number}" for writer in WRITERS}
    for tenant_id in tenants.values():
        owner = Tenant.objects.create(tenant_id=tenant_id)
        TenantUser.objects.bulk_create(
            TenantUser(tenant=owner, user_name=f"user-{c}", org_code=c) for c in CODES
        )
    model = Model()

    for operation in operations:
        if operation[0] == "upsert":
            expected = model.upsert(*operation[1:4])
        else:
            expected = model.delete(operation[1])
        for writer, tenant_id in tenants.items():
            before = tree(tenant_id)

            assert sync(tenant_id, operation, writer) == expected, (writer, operation)

            if not expected:
                assert tree(tenant_id) == before
            assert tree(tenant_id) == model.tree(), (writer, operation)
            assert user_links(tenant_id) == model.users(), (writer, operation)
            assert dangling_parents(tenant_id) == [], (writer, operation)
            assert misplaced_users(tenant_id) == [], (writer, operation)


def test_the_service_returns_the_department_as_written():
    org("100", name="总部")

    department = org("110", name="研发部", parent_code="100").row

    stored = Department.objects.get(org_code="110")
    assert (department.pk, department.tenant_id, department.org_name) == (
        stored.pk,
        stored.tenant_id,
        "研发部",
    )
    assert (department.parent_code, department.parent_id) == ("100", stored.parent_id)
    assert department.parent_id == Department.objects.get(org_code="100").pk
    assert department.updated_at == stored.updated_at  # deferred: read on access


@pytest.mark.parametrize("writer", WRITERS)
def test_the_usual_add_costs_two_statements_on_postgresql(writer):
    Tenant.objects.create(tenant_id="t")

    with CaptureQueriesContext(connection) as queries:
        org("110", name="研发部", parent_code="100", writer=writer)

    # Lock the tenant, write (PostgreSQL: one statement; portable: read the department and
    # the parent's path, then the row, its waiting children, its waiting users, the sync time).
    assert len(queries) == (2 if writer == "postgresql" else 6), queries.captured_queries
    assert not any("SAVEPOINT" in q["sql"] for q in queries.captured_queries)


@pytest.mark.parametrize("writer", WRITERS)
def test_a_move_costs_four_statements_on_postgresql(writer):
    for code in ("100", "200", "110"):
        org(code)

    with CaptureQueriesContext(connection) as queries:
        org("110", SyncFlag.MODIFY, parent_code="200", writer=writer)

    # Lock, read, move the row, the sync time.
    assert len(queries) == 4, queries.captured_queries
    assert tree("t")["110"] == ("110", "200", "200")


@pytest.mark.parametrize("writer", WRITERS)
def test_a_refusal_leaves_the_callers_transaction_usable_and_unchanged(writer):
    for code, parent in (("100", ""), ("110", "100")):
        org(code, parent_code=parent)
    before = (tree("t"), Tenant.objects.get(tenant_id="t").org_synced_at)

    with transaction.atomic():
        with pytest.raises(KooGalleryError):
            org("100", SyncFlag.MODIFY, parent_code="110", writer=writer)
        # Still usable: no aborted transaction, nothing to roll back.
        assert (tree("t"), Tenant.objects.get(tenant_id="t").org_synced_at) == before


# --- concurrency (PostgreSQL: real parallel transactions) ------------------------------------
def _run_together(*calls) -> list:
    """Run the calls in parallel threads (own connections), started together; their outcomes
    (None or the exception raised) in order."""
    barrier = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait(10)
            call()
        except Exception as exc:  # the outcome is what the test checks
            outcomes[index] = exc
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_twins_adding_a_department_of_an_unknown_tenant_leave_one_of_each(postgres_only):
    def add():
        org("100", tenant_id="tenant-new", name="总部", parent_code="")

    assert _run_together(*[add] * 6) == [None] * 6
    assert Tenant.objects.filter(tenant_id="tenant-new").count() == 1
    assert tree("tenant-new") == {"100": ("总部", "", None)}


@pytest.mark.django_db(transaction=True)
def test_crossing_moves_cannot_make_a_cycle(postgres_only):
    for code in ("A", "B"):
        org(code)

    def move(code, parent):
        return lambda: org(code, SyncFlag.MODIFY, parent_code=parent)

    outcomes = _run_together(move("A", "B"), move("B", "A"))

    refused = [o for o in outcomes if o is not None]
    assert len(refused) == 1 and isinstance(refused[0], KooGalleryError)
    assert tree("t") in (
        {"A": ("A", "B", "B"), "B": ("B", "", None)},
        {"A": ("A", "", None), "B": ("B", "A", "A")},
    )


@pytest.mark.django_db(transaction=True)
def test_a_parent_and_its_waiting_child_arriving_together_cannot_make_a_cycle(postgres_only):
    # 111 waits for 110; 110 arrives naming 111 as its parent while 111 is re-sent naming 110.
    org("111", name="平台组", parent_code="110")

    def add(code, parent):
        return lambda: org(code, parent_code=parent)

    outcomes = _run_together(add("110", "111"), add("111", "110"))

    assert isinstance(outcomes[0], KooGalleryError) and outcomes[1] is None
    assert tree("t") == {"111": ("111", "110", None)}
    assert dangling_parents("t") == []
