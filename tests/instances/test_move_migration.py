"""The instance models moved from `koogallery` to `instances` (issue 16) without losing a row.

A database migrated and filled by the previous layout's migrations — instances (one the billing
item of another), their transitions and orders, journal rows they point at, outbox jobs under the
old task names, licence requests, usage events and records, an operator's permission on
instances — is upgraded by the new migrations. Every row, id and foreign key is still there and
the foreign keys in the database point at the renamed tables. Runs on SQLite and, in the
PostgreSQL pass, on PostgreSQL.
"""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from instances.models import Instance, InstanceOrder, InstanceTransition
from koogallery.models import InboundCall, QueuedJob
from licensing.models import LicenseRequest
from metering.models import UsageEvent, UsageRecord

# The previous layout: the last migration of each app the move touches, and no `instances`.
BEFORE = [
    ("koogallery", "0010_journal_stale_entities"),
    ("licensing", "0002_state_index_once"),
    ("metering", "0002_cursors"),
    ("instances", None),
]
# The models of that layout (the state after those nodes, with the apps they lean on).
BEFORE_STATE = [
    *(node for node in BEFORE if node[1]),
    ("contenttypes", "0002_remove_content_type_name"),
    ("auth", "0012_alter_user_first_name_max_length"),
]
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def _migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


def _fill_previous_layout(apps) -> dict:
    """Rows as the previous layout's models kept them (historical models of that state)."""
    Instance_ = apps.get_model("koogallery", "Instance")
    Transition = apps.get_model("koogallery", "InstanceTransition")
    Order = apps.get_model("koogallery", "InstanceOrder")
    Call = apps.get_model("koogallery", "InboundCall")
    Job = apps.get_model("koogallery", "QueuedJob")
    Request = apps.get_model("licensing", "LicenseRequest")
    Event = apps.get_model("metering", "UsageEvent")
    Record = apps.get_model("metering", "UsageRecord")
    ContentType_ = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")

    call = Call.objects.create(
        received_at=T0,
        family="basic_v2",
        endpoint="newInstance",
        method="POST",
        path="/koogallery",
        verification="verified",
        result_code="000000",
        instance_id="inst-old-1",
    )
    package = Instance_.objects.create(
        instance_id="inst-old-1", order_id="CS-old-1", charging_mode="ON_DEMAND_PKG", state="active"
    )
    item = Instance_.objects.create(
        instance_id="inst-old-2",
        order_id="CS-old-1",
        order_line_id="OL-item",
        product_id="P-item",
        charging_mode="ON_DEMAND",
        package_instance=package,
    )
    transition = Transition.objects.create(
        instance=package, to_state="active", cause="newInstance", inbound_call=call
    )
    order = Order.objects.create(
        instance=package, event="upgradeInstance", order_id="CS-old-up", inbound_call=call
    )
    jobs = [
        Job.objects.create(task="koogallery.tasks.fetch_order_details", object_id=package.pk),
        Job.objects.create(task="koogallery.tasks.fetch_order_event", object_id=order.pk),
        Job.objects.create(task="licensing.tasks.deliver_license", object_id=1),
    ]
    request = Request.objects.create(
        event_id="EV-old", fingerprint_sha256="f" * 64, instance=package, effective_at=T0
    )
    event = Event.objects.create(
        event_id="usage-old",
        instance=item,
        quantity=Decimal("2.5"),
        occurred_at=T0,
        hour_start=T0,
    )
    record = Record.objects.create(
        instance=item, hour_start=T0, begin_at=T0, end_at=T0, value=Decimal("2.5")
    )
    # An operator allowed to re-fetch orders (the admin's "refetch" permission).
    content_type, _ = ContentType_.objects.get_or_create(app_label="koogallery", model="instance")
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type, codename="change_instance", defaults={"name": "Can change"}
    )
    return {
        "call": call.pk,
        "package": package.pk,
        "item": item.pk,
        "transition": transition.pk,
        "order": order.pk,
        "jobs": [job.pk for job in jobs],
        "request": request.pk,
        "event": event.pk,
        "record": record.pk,
        "permission": permission.pk,
    }


def _foreign_key_targets(table: str) -> set[str]:
    """The tables the foreign keys of `table` point at, as the database has them."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"PRAGMA foreign_key_list({table})")
            return {row[2] for row in cursor.fetchall()}
        cursor.execute(
            "SELECT confrelid::regclass::text FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'f'",
            [table],
        )
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.django_db(transaction=True)
def test_the_previous_layouts_rows_survive_the_move_with_their_keys():
    executor = _migrate(BEFORE)
    ids = _fill_previous_layout(executor.loader.project_state(BEFORE_STATE).apps)
    operator = User.objects.create_user("operator", password="x", is_staff=True)
    operator.user_permissions.add(ids["permission"])

    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    ContentType.objects.clear_cache()

    package = Instance.objects.get(pk=ids["package"])
    item = Instance.objects.get(pk=ids["item"])
    assert (package.instance_id, package.state, package.charging_mode) == (
        "inst-old-1",
        "active",
        "ON_DEMAND_PKG",
    )
    assert item.package_instance_id == package.pk
    transition = InstanceTransition.objects.get(pk=ids["transition"])
    assert (transition.instance_id, transition.inbound_call_id) == (package.pk, ids["call"])
    order = InstanceOrder.objects.get(pk=ids["order"])
    assert (order.instance_id, order.inbound_call_id, order.order_id) == (
        package.pk,
        ids["call"],
        "CS-old-up",
    )
    assert InboundCall.objects.get(pk=ids["call"]).instance_id == "inst-old-1"
    assert LicenseRequest.objects.get(pk=ids["request"]).instance_id == package.pk
    assert UsageEvent.objects.get(pk=ids["event"]).instance_id == item.pk
    assert UsageRecord.objects.get(pk=ids["record"]).instance_id == item.pk
    # Jobs waiting under the old task names run under the new ones.
    assert list(QueuedJob.objects.order_by("pk").values_list("pk", "task")) == [
        (ids["jobs"][0], "instances.tasks.fetch_order_details"),
        (ids["jobs"][1], "instances.tasks.fetch_order_event"),
        (ids["jobs"][2], "licensing.tasks.deliver_license"),
    ]
    # The operator's permission followed the model.
    operator = User.objects.get(pk=operator.pk)
    assert operator.has_perm("instances.change_instance")
    assert not ContentType.objects.filter(app_label="koogallery", model="instance").exists()

    # The tables carry the new names, and the database's foreign keys point at them.
    assert Instance._meta.db_table == "instances_instance"
    assert _foreign_key_targets("licensing_licenserequest") == {"instances_instance"}
    assert "instances_instance" in _foreign_key_targets("metering_usageevent")
    assert _foreign_key_targets("instances_instancetransition") == {
        "instances_instance",
        "koogallery_inboundcall",
    }
    connection.check_constraints()
    with pytest.raises(IntegrityError), transaction.atomic():
        LicenseRequest.objects.create(
            event_id="EV-orphan", fingerprint_sha256="0" * 64, instance_id=999_999, effective_at=T0
        )
        connection.check_constraints()
    # New rows take ids after the old ones.
    newer = Instance.objects.create(instance_id="inst-new", order_id="CS-new")
    assert newer.pk > item.pk


@pytest.mark.django_db(transaction=True)
def test_the_move_can_be_undone_to_the_previous_layout():
    executor = _migrate(BEFORE)
    ids = _fill_previous_layout(executor.loader.project_state(BEFORE_STATE).apps)
    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    executor = _migrate(BEFORE)

    old = executor.loader.project_state(BEFORE_STATE).apps
    assert old.get_model("koogallery", "Instance").objects.get(pk=ids["package"]).instance_id == (
        "inst-old-1"
    )
    tasks = old.get_model("koogallery", "QueuedJob").objects.values_list("task", flat=True)
    assert sorted(tasks) == [
        "koogallery.tasks.fetch_order_details",
        "koogallery.tasks.fetch_order_event",
        "licensing.tasks.deliver_license",
    ]
    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
