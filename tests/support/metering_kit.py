"""Helpers of the metering tests: on-demand instances, usage events, hours in the past.

Instances are created directly (their lifecycle is tested in tests/test_instance_*.py and the
KooGallery path in tests/metering/test_metering_instances.py); their start is moved into the past so
that tests can report usage for hours that have ended, as a product reporting late would.
"""

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from instances.models import ChargingMode, Instance, InstanceState
from metering import services
from metering.models import UsageRecord

TOKEN = "metering-test-token-0123456789abcdef"
_serial = itertools.count(1)


def hour(hours_ago: int) -> datetime:
    """The start of the UTC hour `hours_ago` hours before the current one."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(hours=hours_ago)


def make_instance(
    instance_id: str | None = None,
    *,
    mode: str = ChargingMode.ON_DEMAND,
    started: datetime | None = None,
    is_test: bool = False,
    **fields,
) -> Instance:
    n = next(_serial)
    instance_id = instance_id or f"od-{n}"
    defaults = {
        "order_id": f"CS-{instance_id}",
        "order_line_id": f"CS-{instance_id}-000001",
        "charging_mode": mode,
        "state": InstanceState.ACTIVE,
        "product_id": f"P-{instance_id}",
        "sku_code": f"SKU-{instance_id}",
        "customer_id": "cust-1",
    }
    instance = Instance.objects.create(
        instance_id=instance_id, is_test=is_test, **{**defaults, **fields}
    )
    started = started or hour(24 * 30)
    Instance.objects.filter(pk=instance.pk).update(created_at=started)
    instance.refresh_from_db()
    return instance


def usage(
    instance: Instance | str, quantity, at: datetime, event_id: str | None = None
) -> services.UsageInput:
    instance_id = instance if isinstance(instance, str) else instance.instance_id
    return services.UsageInput(
        event_id=event_id or f"evt-{next(_serial)}",
        instance_id=instance_id,
        quantity=Decimal(str(quantity)),
        occurred_at=at,
    )


def record(*events: services.UsageInput, now: datetime | None = None):
    return services.record_usage(events=list(events), now=now)


def records_of(instance: Instance) -> list[UsageRecord]:
    return list(UsageRecord.objects.filter(instance=instance).order_by("hour_start"))
