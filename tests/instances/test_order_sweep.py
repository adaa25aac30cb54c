"""Query Order jobs lost with the broker are queued again by the sweep (instances/sweep.py):
an accepted newInstance or upgrade is never left without its order details for want of a
message. The lost job is a call whose after-commit work never ran; the sweep's jobs run eagerly
against the fake KooGallery on loopback.
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from instances import tasks
from instances.models import Instance, InstanceOrder, OrderEvent
from instances.sweep import SWEPT, sweep_order_fetches
from tests.support.fakes.koogallery_server import MOCK_PRODUCT_ID
from tests.support.kgclient import envelope, fixture_json

pytestmark = pytest.mark.django_db


def accept_without_its_job(kg, name: str, **overrides) -> dict:
    """The call commits; its Query Order job is never queued (on-commit work not run)."""
    body = envelope(kg.basic(fixture_json(name, **overrides)))
    assert body["resultCode"] == "000000"
    return body


def new_instance(kg, order_id="MOCKPERIODYEARNEW") -> Instance:
    body = accept_without_its_job(
        kg,
        "newInstance__mock_period",
        businessId=f"inst-{order_id}",
        orderId=order_id,
        orderLineId=f"{order_id}-000001",
    )
    return Instance.objects.get(instance_id=body["instanceId"])


def age(minutes: int) -> None:
    """Everything happened `minutes` ago."""
    then = timezone.now() - timedelta(minutes=minutes)
    Instance.objects.update(created_at=then, updated_at=then)
    InstanceOrder.objects.update(created_at=then)


def test_an_instance_whose_job_was_lost_is_fetched_by_the_sweep(kg, fake_koogallery, eager_tasks):
    instance = new_instance(kg)
    age(40)

    assert sweep_order_fetches() == {"instances": 1, "orders": 0}

    instance.refresh_from_db()
    assert instance.order_fetched_at is not None
    assert (instance.product_id, instance.order_fetch_error) == (MOCK_PRODUCT_ID, "")
    assert len(fake_koogallery.requests_for("query_order")) == 1


def test_a_lost_upgrade_order_is_fetched_by_the_sweep(kg, fake_koogallery, eager_tasks):
    instance = new_instance(kg)
    accept_without_its_job(
        kg,
        "upgradeInstance__huawei",
        instanceId=instance.instance_id,
        orderId="MOCKMONTYCHANGE",
        orderLineId="MOCKMONTYCHANGE-000001",
    )
    age(40)

    assert sweep_order_fetches() == {"instances": 1, "orders": 1}

    order = InstanceOrder.objects.get(event=OrderEvent.UPGRADE)
    assert order.order_fetched_at is not None
    instance.refresh_from_db()
    assert instance.linear_value == 100


def test_what_the_sweep_leaves_alone(kg, fake_koogallery, eager_tasks):
    new_instance(kg, "MOCKPERIODYEARNEW")
    age(10)  # its job may still be waiting in a backoff: not doubled
    assert sweep_order_fetches() == {"instances": 0, "orders": 0}

    age(4 * 24 * 60)  # too old: left to the admin's re-fetch
    assert sweep_order_fetches() == {"instances": 0, "orders": 0}

    Instance.objects.update(order_fetch_error="MKT.0101: no such order")  # a business error
    age(40)
    assert sweep_order_fetches() == {"instances": 0, "orders": 0}
    assert fake_koogallery.requests_for("query_order") == []


def test_retries_that_ran_out_get_a_new_round(kg, fake_koogallery, eager_tasks):
    instance = new_instance(kg)
    Instance.objects.update(order_fetch_error="retrying: MKT.0999: busy")
    age(40)

    assert sweep_order_fetches()["instances"] == 1
    instance.refresh_from_db()
    assert instance.order_fetched_at is not None


def test_a_row_is_queued_again_once_and_again_only_if_the_broker_refused(
    kg, fake_koogallery, monkeypatch
):
    instance = new_instance(kg)
    age(40)

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.fetch_order_details, "apply_async", broker_down)
    assert sweep_order_fetches() == {"instances": 0, "orders": 0}
    instance.refresh_from_db()
    assert instance.order_fetch_error == ""  # still lost: the next sweep tries again

    sent = []
    monkeypatch.setattr(
        tasks.fetch_order_details, "apply_async", lambda args, **kw: sent.append(args)
    )
    age(40)
    assert sweep_order_fetches() == {"instances": 1, "orders": 0}
    instance.refresh_from_db()
    assert instance.order_fetch_error == SWEPT  # marked: not queued at every sweep
    assert sweep_order_fetches() == {"instances": 0, "orders": 0}
    assert sent == [(instance.pk,)]
