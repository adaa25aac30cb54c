"""Property: any sequence of lifecycle calls leaves the instances, their audit trail and the
orders that the rules of spec §2.7/§4.2 describe, with either writer of `lifecycle_sql`
(PostgreSQL's single statements, and the ORM's portable writes), and both writers leave the same
rows, details included.

The model below restates the rules in a few lines; the code under test is the services, run as
the pipeline runs them: one transaction per call, the journal row written at its end (or after
the rollback of a refused call), and every transition pointing to its call's journal row.
"""

import contextlib
import itertools
from contextlib import contextmanager
from datetime import UTC, datetime
from unittest import mock

import pytest
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instances import services as lifecycle
from instances import sql as lifecycle_sql
from instances.models import (
    Instance,
    InstanceOrder,
    InstanceState,
    InstanceTransition,
    OrderEvent,
    RefreshScene,
)
from koogallery.inbound.journal import Family, InboundCall, Verification
from koogallery.protocol.resultcodes import KooGalleryError

pytestmark = pytest.mark.django_db

# "reserved": the statements take the journal row's id from its sequence and the row is inserted
# with it at the end of the call (`lifecycle_sql.reserves_journal_ids`).
WRITERS = (
    ["portable", "postgresql", "postgresql-reserved"]
    if connection.vendor == "postgresql"
    else ["portable"]
)
_runs = itertools.count()

ORDERS = ["O1", "O2", "O3"]
IDS = ["b1", "b2", "b3", "b4"]
PRODUCTS = ["", "P1", "P2"]
EXPIRIES = [datetime(2030, 1, 1, tzinfo=UTC), datetime(2031, 6, 1, 12, tzinfo=UTC)]
SCENES = [RefreshScene.RENEWAL, RefreshScene.TRIAL_TO_FORMAL]

flags = st.booleans()
ids = st.sampled_from(IDS)
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("new"), st.sampled_from(ORDERS), st.sampled_from(["", "-1"]), ids, flags, flags
        ),
        st.tuples(st.just("status"), ids, flags, flags),
        st.tuples(st.just("release"), ids, flags),
        st.tuples(
            st.just("refresh"),
            ids,
            flags,
            st.sampled_from(ORDERS),
            st.sampled_from(SCENES),
            st.sampled_from(EXPIRIES),
            st.sampled_from(PRODUCTS),
        ),
        st.tuples(
            st.just("upgrade"),
            ids,
            flags,
            st.sampled_from(ORDERS),
            st.sampled_from(PRODUCTS),
            st.sampled_from(PRODUCTS),
        ),
    ),
    min_size=1,
    max_size=12,
)


class Model:
    """The rules: instances by id, the natural keys of the calls, and each instance's trail as
    (from_state, to_state, number of the call)."""

    def __init__(self):
        self.instances: dict[str, dict] = {}
        self.lines: dict[tuple, str] = {}
        self.refreshes: set[tuple] = set()
        self.upgrades: set[tuple] = set()

    def _find(self, bid, is_test):
        instance = self.instances.get(bid)
        # A debug call sees debug instances only (§2.5); any other call the one it names (§2.7).
        if instance is None or (is_test and not instance["is_test"]):
            return "000003"
        return instance

    def new(self, n, order, line, bid, is_test, trial):
        key = (order, order + line if line else "", is_test)
        if key in self.lines:
            return self.lines[key]
        if bid in self.instances:
            return "000002"
        self.lines[key] = bid
        self.instances[bid] = {
            "is_test": is_test,
            "state": InstanceState.ACTIVE,
            "expire_at": None,
            "is_trial": trial,
            "product_id": "",
            "sku_code": "",
            "trail": [
                ("", InstanceState.PROVISIONING, n),
                (InstanceState.PROVISIONING, "active", n),
            ],
        }
        return bid

    def _move(self, instance, n, state):
        instance["trail"].append((instance["state"], state, n))
        instance["state"] = state

    def status(self, n, bid, is_test, frozen):
        instance = self._find(bid, is_test)
        if isinstance(instance, str):
            return instance
        target = InstanceState.FROZEN if frozen else InstanceState.ACTIVE
        if instance["state"] not in (InstanceState.RELEASED, target):
            self._move(instance, n, target)
        return bid

    def release(self, n, bid, is_test):
        instance = self._find(bid, is_test)
        if isinstance(instance, str):
            return instance
        if instance["state"] != InstanceState.RELEASED:
            self._move(instance, n, InstanceState.RELEASED)
        return bid

    def refresh(self, n, bid, is_test, order, scene, expire_at, product):
        instance = self._find(bid, is_test)
        if isinstance(instance, str):
            return instance
        key = (bid, order, scene)
        if instance["state"] == InstanceState.RELEASED or key in self.refreshes:
            return bid
        self.refreshes.add(key)
        instance["expire_at"] = expire_at
        if scene == RefreshScene.TRIAL_TO_FORMAL:
            instance["is_trial"] = False
        instance["product_id"] = product or instance["product_id"]
        self._move(instance, n, instance["state"])
        return bid

    def upgrade(self, n, bid, is_test, order, product, sku):
        instance = self._find(bid, is_test)
        if isinstance(instance, str):
            return instance
        key = (order, instance["is_test"])  # the instance's data set, not the call's flag
        if instance["state"] == InstanceState.RELEASED or key in self.upgrades:
            return bid
        self.upgrades.add(key)
        instance["product_id"] = product or instance["product_id"]
        instance["sku_code"] = sku or instance["sku_code"]
        self._move(instance, n, instance["state"])
        return bid


def write_with_reserved_id(journal: InboundCall) -> None:
    """InboundCall.write as `reserves_journal_ids` needs it (for journals that lack it)."""
    if journal._state.adding and journal.pk is not None:
        journal.save(force_insert=True)
    else:
        WRITE(journal)


WRITE = InboundCall.write


@contextmanager
def writer_in_use(writer: str):
    sql = writer.startswith("postgresql")
    reserved = writer.endswith("reserved")
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(lifecycle_sql, "enabled", lambda: sql))
        if reserved and not lifecycle_sql.reserves_journal_ids():
            stack.enter_context(
                mock.patch.object(InboundCall, "WRITES_RESERVED_ID", True, create=True)
            )
            stack.enter_context(mock.patch.object(InboundCall, "write", write_with_reserved_id))
        elif not reserved:
            stack.enter_context(
                mock.patch.object(InboundCall, "WRITES_RESERVED_ID", False, create=True)
            )
        yield


def journal_row(endpoint: str) -> InboundCall:
    """The call's journal row as the pipeline hands it to a handler: not saved yet."""
    return InboundCall(
        received_at=timezone.now(),
        family=Family.BASIC_V2,
        endpoint=endpoint,
        method="POST",
        path="/koogallery",
        verification=Verification.VERIFIED,
    )


def call(prefix: str, operation, journal: InboundCall):
    """One call as the pipeline runs it; the instanceId answered, or the refusal's code."""
    kind, bid, *rest = operation[0], *operation[1:]
    common = {"cause": kind, "inbound_call": journal}
    if kind == "new":
        order, line, bid, is_test, trial = operation[1:]
        instance = lifecycle.create_instance(
            order_id=prefix + order,
            order_line_id=prefix + order + line if line else "",
            business_id=prefix + bid,
            is_test=is_test,
            purchase=lifecycle.Purchase(is_trial=trial),
            **common,
        )
    elif kind == "status":
        instance = lifecycle.set_instance_status(
            instance_id=prefix + bid, is_test=rest[0], frozen=rest[1], **common
        )
    elif kind == "release":
        instance = lifecycle.release_instance(
            instance_id=prefix + bid, is_test=rest[0], order_id=prefix + "R", **common
        )
    elif kind == "refresh":
        is_test, order, scene, expire_at, product = rest
        instance = lifecycle.refresh_instance(
            instance_id=prefix + bid,
            is_test=is_test,
            order_id=prefix + order,
            order_line_id="",
            scene=scene,
            expire_at=expire_at,
            product_id=product,
            **common,
        )
    else:
        is_test, order, product, sku = rest
        instance = lifecycle.upgrade_instance(
            instance_id=prefix + bid,
            is_test=is_test,
            order_id=prefix + order,
            order_line_id="",
            product_id=product,
            sku_code=sku,
            **common,
        )
    return instance


def run(prefix: str, operations, writer: str) -> tuple[list, list[int]]:
    answers, journals = [], []
    with writer_in_use(writer):
        for operation in operations:
            journal = journal_row(operation[0])
            with transaction.atomic():
                try:
                    instance = call(prefix, operation, journal)
                    answers.append(instance.instance_id.removeprefix(prefix))
                    journal.result_code = "000000"
                    journal.write()
                except KooGalleryError as exc:
                    answers.append(str(exc.code.value))
                    transaction.set_rollback(True)
            if journal.result_code != "000000":
                journal.result_code = answers[-1]
                journal.write()  # as the pipeline journals a refused call
            journals.append(journal.pk)
    return answers, journals


def snapshot(prefix: str, journals: list[int]) -> dict:
    """Every row the calls wrote, ids and moments replaced by what they stand for."""
    call_number = {pk: n for n, pk in enumerate(journals)}
    instances = Instance.objects.filter(instance_id__startswith=prefix).order_by("instance_id")
    answer = {}
    for instance in instances:
        trail = [
            (
                t.from_state,
                t.to_state,
                t.cause,
                t.detail.replace(prefix, ""),
                call_number[t.inbound_call_id],
            )
            for t in InstanceTransition.objects.filter(instance=instance).order_by("at", "id")
        ]
        orders = sorted(
            (o.event, o.order_id.removeprefix(prefix), o.scene, call_number[o.inbound_call_id])
            for o in InstanceOrder.objects.filter(instance=instance)
        )
        answer[instance.instance_id.removeprefix(prefix)] = {
            "key": (
                instance.order_id.removeprefix(prefix),
                instance.order_line_id.removeprefix(prefix),
                instance.is_test,
            ),
            "state": instance.state,
            "frozen": instance.frozen_at is not None,
            "released": instance.released_at is not None,
            "expire_at": instance.expire_at,
            "is_trial": instance.is_trial,
            "product_id": instance.product_id,
            "sku_code": instance.sku_code,
            "trail": trail,
            "orders": orders,
        }
    return answer


def expected(model: Model) -> dict:
    return {
        bid: {
            "state": m["state"],
            "expire_at": m["expire_at"],
            "is_trial": m["is_trial"],
            "product_id": m["product_id"],
            "sku_code": m["sku_code"],
            "trail": [(f, t, n) for f, t, n in m["trail"]],
        }
        for bid, m in model.instances.items()
    }


def modelled(rows: dict) -> dict:
    return {
        bid: {
            "state": row["state"],
            "expire_at": row["expire_at"],
            "is_trial": row["is_trial"],
            "product_id": row["product_id"],
            "sku_code": row["sku_code"],
            "trail": [(f, t, n) for f, t, _, _, n in row["trail"]],
        }
        for bid, row in rows.items()
    }


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=operations)
def test_any_sequence_of_calls_leaves_what_the_rules_describe_with_either_writer(operations):
    model = Model()
    wanted = [getattr(model, op[0])(n, *op[1:]) for n, op in enumerate(operations)]
    snapshots = []
    for writer in WRITERS:
        prefix = f"w{next(_runs)}-"
        answers, journals = run(prefix, operations, writer)
        assert answers == wanted, writer
        rows = snapshot(prefix, journals)
        assert modelled(rows) == expected(model), writer
        for row in rows.values():
            # The trail is a chain ending in the state, each step a move the rules allow.
            states = [row["trail"][0][0]] + [to for _, to, *_ in row["trail"]]
            assert states[-1] == row["state"]
            assert all(f == s for (f, *_), s in zip(row["trail"], states, strict=False))
            # frozen_at is the freeze in force; a release from frozen keeps it, since metering
            # stops billing at the freeze (metering/aggregation.py), not at the release.
            released_frozen = (
                row["state"] == InstanceState.RELEASED
                and row["trail"][-1][0] == InstanceState.FROZEN
            )
            assert row["frozen"] == (row["state"] == InstanceState.FROZEN or released_frozen)
            assert row["released"] == (row["state"] == InstanceState.RELEASED)
        # Every call has its journal row, refused ones included.
        assert InboundCall.objects.filter(pk__in=journals).count() == len(operations)
        snapshots.append(rows)
    assert all(s == snapshots[0] for s in snapshots), "the writers differ"


@pytest.mark.parametrize("writer", WRITERS)
def test_new_instance_trail_and_journal(writer):
    journal = journal_row("newInstance")
    with writer_in_use(writer), transaction.atomic():
        instance = lifecycle.create_instance(
            order_id="CS-T",
            order_line_id="CS-T-1",
            business_id=f"trail-{writer}",
            is_test=False,
            cause="newInstance",
            inbound_call=journal,
        )
        journal.write()
    stored = Instance.objects.get(pk=instance.pk)
    assert stored.state == instance.state == InstanceState.ACTIVE
    assert (stored.created_at, stored.updated_at) == (instance.created_at, instance.updated_at)
    trail = list(stored.transitions.values_list("from_state", "to_state", "detail", "inbound_call"))
    assert trail == [
        ("", InstanceState.PROVISIONING, "order CS-T/CS-T-1 accepted", journal.pk),
        (InstanceState.PROVISIONING, InstanceState.ACTIVE, "ready", journal.pk),
    ]
    assert InboundCall.objects.filter(pk=journal.pk).exists()


@pytest.mark.parametrize("writer", WRITERS)
def test_new_instance_provisions_credentials_in_the_same_write(writer):
    with writer_in_use(writer):
        instance = lifecycle.create_instance(
            order_id="CS-C",
            order_line_id="",
            business_id=f"creds-{writer}",
            is_test=True,
            cause="newInstance",
            family=Family.BASIC_V1,
            provision_credentials=True,
        )
    stored = Instance.objects.get(pk=instance.pk)
    assert stored.has_credentials and stored.admin_username == instance.admin_username
    assert stored.family == Family.BASIC_V1
    assert stored.transitions.last().detail == (
        f"ready; admin account {stored.admin_username} created"
    )
    assert stored.transitions.first().inbound_call is None


@pytest.mark.parametrize("writer", WRITERS)
def test_a_repeated_refresh_returns_the_instance_as_stored(writer):
    with writer_in_use(writer):
        instance = lifecycle.create_instance(
            order_id="CS-R",
            order_line_id="CS-R-1",
            business_id=f"refresh-{writer}",
            is_test=False,
            cause="newInstance",
        )
        first = lifecycle.refresh_instance(
            instance_id=instance.instance_id,
            is_test=False,
            order_id="CS-R2",
            order_line_id="CS-R2-1",
            scene=RefreshScene.RENEWAL,
            expire_at=EXPIRIES[0],
            cause="refreshInstance",
        )
        again = lifecycle.refresh_instance(
            instance_id=instance.instance_id,
            is_test=False,
            order_id="CS-R2",
            order_line_id="CS-R2-1",
            scene=RefreshScene.RENEWAL,
            expire_at=EXPIRIES[1],
            cause="refreshInstance",
        )
    assert first.expire_at == again.expire_at == EXPIRIES[0]
    assert Instance.objects.get(pk=instance.pk).expire_at == EXPIRIES[0]
    assert InstanceOrder.objects.filter(instance=instance, event=OrderEvent.REFRESH).count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("writer", [w for w in WRITERS if w != "portable"])
def test_the_calls_rows_point_to_its_journal_row_once_committed(writer, postgres_only):
    """Real commits: a reserved journal id is inserted before the foreign keys are checked."""
    journals = [journal_row("newInstance"), journal_row("upgradeInstance")]
    with writer_in_use(writer):
        for journal, operation in zip(
            journals,
            [
                ("new", "CM", "-1", "commit", False, False),
                ("upgrade", "commit", False, "CU", "P", "S"),
            ],
            strict=True,
        ):
            with transaction.atomic():
                call(f"{writer}-", operation, journal)
                journal.write()
    instance = Instance.objects.get(instance_id=f"{writer}-commit")
    assert [t.inbound_call_id for t in instance.transitions.all()] == [
        journals[0].pk,
        journals[0].pk,
        journals[1].pk,
    ]
    assert InstanceOrder.objects.get(instance=instance).inbound_call_id == journals[1].pk
    assert InboundCall.objects.filter(pk__in=[j.pk for j in journals]).count() == 2


def test_the_query_order_job_is_queued_on_commit_with_celerys_own_reprs(
    monkeypatch, django_capture_on_commit_callbacks, settings
):
    from celery.utils.saferepr import saferepr

    from instances import tasks

    settings.KOOGALLERY_JOB_DISPATCH = "on_commit"

    sent = []
    monkeypatch.setattr(
        tasks.fetch_order_details,
        "apply_async",
        lambda args, **options: sent.append((args, options)),
    )
    with django_capture_on_commit_callbacks(execute=True):
        instance = lifecycle.create_instance(
            order_id="CS-Q", order_line_id="CS-Q-1", business_id="queued", is_test=False, cause="t"
        )
        assert sent == []  # not before the commit
    ((args, options),) = sent
    assert args == (instance.pk,)
    assert options["argsrepr"] == saferepr(args) and options["kwargsrepr"] == saferepr({})
