"""On-demand instances (issue 8 items 1 and 4; spec §5.5, §4.2.2) through KooGallery's calls.

One instance per billing item, keyed (orderId, productId): V1 names the product in newInstance,
V2 learns it from Query Order (run after commit, here eagerly against the fake host). Packages
are related to their billing items. queryInstance reports usage in `usageInfo`.
"""

import copy
import logging
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from instances import services as lifecycle
from instances.models import ChargingMode, Instance
from metering import selectors, services
from tests.support.fakes.koogallery_server import CAPTURED_MOCK_ANSWER
from tests.support.kgclient import envelope
from tests.support.metering_kit import hour, make_instance, usage

pytestmark = pytest.mark.django_db


def order(order_id: str, *lines: tuple, customer: str = "cust-od") -> dict:
    """A Query Order answer (§5.1 shape): lines (lineId, chargingMode, products[(id, sku)])."""
    answer = copy.deepcopy(CAPTURED_MOCK_ANSWER)
    info = answer["orderInfo"]
    info["orderId"] = order_id
    template = info["orderLine"][0]
    info["orderLine"] = []
    for line_id, mode, products in lines:
        line = copy.deepcopy(template)
        line.update(orderLineId=line_id, chargingMode=mode)
        line.pop("expireTime", None)
        line["productInfo"] = [
            {"productId": pid, "skuCode": sku, "linearValue": 1, "productName": f"item {pid}"}
            for pid, sku in products
        ]
        info["orderLine"].append(line)
    info["buyerInfo"]["customerId"] = customer
    return answer


def new_v2(call, order_id: str, line_id: str, business_id: str) -> Instance:
    body = call(
        "newInstance__mock_period", orderId=order_id, orderLineId=line_id, businessId=business_id
    )
    assert body["resultCode"] == "000000"
    return Instance.objects.get(instance_id=body["instanceId"])


# --- item 1: one instance per billing item ------------------------------------------------------


def test_v2_on_demand_instance_learns_its_product_from_query_order(call):
    instance = new_v2(call, "MOCKONDEMAND", "MOCKONDEMAND-000001", "od-mock")
    assert instance.charging_mode == ChargingMode.ON_DEMAND and instance.is_metered
    assert (instance.product_id, instance.sku_code) == (
        "OFFI846204237451911168",
        "0a4d1578-5295-46a7-92d4-7c803dccc51d",
    )


def test_v2_each_billing_item_of_an_order_is_its_own_instance(call, fake_koogallery):
    fake_koogallery.register_order(
        "CSOD1",
        order(
            "CSOD1",
            ("CSOD1-1", "ON_DEMAND", [("P-CPU", "sku-cpu")]),
            ("CSOD1-2", "ON_DEMAND", [("P-DISK", "sku-disk")]),
        ),
    )
    cpu = new_v2(call, "CSOD1", "CSOD1-1", "od-cpu")
    disk = new_v2(call, "CSOD1", "CSOD1-2", "od-disk")
    retry = new_v2(call, "CSOD1", "CSOD1-1", "od-cpu-retry")  # KooGallery's retry: new businessId

    assert retry == cpu
    assert (cpu.product_id, cpu.sku_code) == ("P-CPU", "sku-cpu")
    assert (disk.product_id, disk.sku_code) == ("P-DISK", "sku-disk")
    assert Instance.objects.filter(order_id="CSOD1").count() == 2


def test_v2_a_billing_item_sent_twice_is_kept_apart_and_alerted(call, fake_koogallery, caplog):
    fake_koogallery.register_order(
        "CSOD2",
        order(
            "CSOD2",
            ("CSOD2-1", "ON_DEMAND", [("P-CPU", "sku-cpu")]),
            ("CSOD2-2", "ON_DEMAND", [("P-CPU", "sku-cpu")]),
        ),
    )
    first = new_v2(call, "CSOD2", "CSOD2-1", "od-1")
    with caplog.at_level(logging.ERROR):
        second = new_v2(call, "CSOD2", "CSOD2-2", "od-2")

    assert first.charging_mode == ChargingMode.ON_DEMAND and first.product_id == "P-CPU"
    # (orderId, productId) already belongs to od-1: od-2 is not made a second billing item.
    assert (second.charging_mode, second.product_id) == (ChargingMode.UNKNOWN, "")
    assert "duplicate billing item" in second.transitions.last().detail
    assert any(
        r.getMessage().startswith("ALERT") and "od-1" in r.getMessage() for r in caplog.records
    )


def test_v1_on_demand_and_package_orders_are_keyed_by_product(call, fake_koogallery):
    fake_koogallery.register_order(
        "CS1906666666ABCDE",
        order(
            "CS1906666666ABCDE",
            ("CS1906666666ABCDE-1", "ON_DEMAND", [("p-1", "sku-1")]),
            ("CS1906666666ABCDE-2", "ON_DEMAND", [("p-2", "sku-2"), ("p-3", "sku-3")]),
        ),
    )
    one = call(
        "v1_newInstance__huawei", v1=True, chargingMode="0", productId="p-1", businessId="v1-1"
    )
    three = call(
        "v1_newInstance__huawei", v1=True, chargingMode="0", productId="p-3", businessId="v1-3"
    )
    again = call(
        "v1_newInstance__huawei", v1=True, chargingMode="0", productId="p-3", businessId="v1-3b"
    )
    assert (one["instanceId"], three["instanceId"], again["instanceId"]) == ("v1-1", "v1-3", "v1-3")
    # Query Order read each item's own line and product entry, not the order's first.
    p3 = Instance.objects.get(instance_id="v1-3")
    assert (p3.product_id, p3.sku_code, p3.product_name) == ("p-3", "sku-3", "item p-3")
    assert p3.order_fetch_error == ""

    pkg_a = call(
        "v1_newInstance__huawei",
        v1=True,
        chargingMode="5",
        productId="pk-1",
        businessId="v1-pkg",
        orderId="CSPKG1",
    )
    pkg_b = call(
        "v1_newInstance__huawei",
        v1=True,
        chargingMode="5",
        productId="pk-1",
        businessId="v1-pkg-b",
        orderId="CSPKG1",
    )
    pkg_c = call(
        "v1_newInstance__huawei",
        v1=True,
        chargingMode="5",
        productId="pk-2",
        businessId="v1-pkg-c",
        orderId="CSPKG1",
    )
    assert pkg_a["instanceId"] == pkg_b["instanceId"] == "v1-pkg"
    assert pkg_c["instanceId"] == "v1-pkg-c"


def test_packages_are_related_to_their_billing_items_when_determinable(call, fake_koogallery):
    fake_koogallery.register_order(
        "CSPK", order("CSPK", ("CSPK-1", "ON_DEMAND_PKG", [("P-API", "sku-pkg")]))
    )
    fake_koogallery.register_order(
        "CSIT", order("CSIT", ("CSIT-1", "ON_DEMAND", [("P-API", "sku-od")]))
    )
    fake_koogallery.register_order(
        "CSOT",
        order("CSOT", ("CSOT-1", "ON_DEMAND", [("P-API", "sku-od")]), customer="someone-else"),
    )
    item = new_v2(call, "CSIT", "CSIT-1", "od-item")  # the item may come first
    other = new_v2(call, "CSOT", "CSOT-1", "od-other")
    package = new_v2(call, "CSPK", "CSPK-1", "pkg-1")

    item.refresh_from_db()
    assert item.package_instance == package
    assert list(package.billing_items.all()) == [item]
    assert other.package_instance is None  # another customer's usage is not this package's
    assert "package pkg-1 linked" in item.transitions.last().detail


def test_link_package_service_refuses_what_cannot_be_related():
    package = make_instance("pkg-1", mode=ChargingMode.ON_DEMAND_PKG)
    item = make_instance("od-1")
    period = make_instance("per-1", mode=ChargingMode.PERIOD)
    debug = make_instance("od-debug", is_test=True)
    for instance, target, message in (
        (package, package, "itself a package"),
        (item, period, "not an on-demand package"),
        (debug, package, "debug instance and a production"),
    ):
        with pytest.raises(ValueError, match=message):
            lifecycle.link_package(instance=instance, package=target)
    lifecycle.link_package(instance=item, package=package)
    assert Instance.objects.get(pk=item.pk).package_instance == package
    lifecycle.link_package(instance=item, package=None)
    assert Instance.objects.get(pk=item.pk).package_instance is None
    assert item.transitions.last().detail == "package pkg-1 → -"


# --- item 4: usageInfo in queryInstance ----------------------------------------------------------


def query(kg, ids: str, test_flag: str = "1") -> dict:
    body = envelope(
        kg.basic({"activity": "queryInstance", "instanceId": ids, "testFlag": test_flag})
    )
    assert body["resultCode"] == "000000"
    return {item["instanceId"]: item for item in body["info"]}


def test_query_instance_reports_cumulative_usage_of_on_demand_instances(kg, settings):
    settings.KOOGALLERY_USAGE_DASHBOARD_URL = "https://usage.example.com/d/{instance_id}"
    od = make_instance("od 1", is_test=True)
    period = make_instance("per-1", mode=ChargingMode.PERIOD, is_test=True)
    fresh = make_instance("od-2", is_test=True)
    services.record_usage(
        events=[usage(od, "1.25", hour(30)), usage(od, "2.0001", hour(2)), usage(od, 3, hour(0))]
    )
    before = datetime.now(UTC)

    info = query(kg, "od 1,per-1,od-2")

    (usage_info,) = info["od 1"]["usageInfo"]
    assert usage_info["usageValue"] == 6.2501
    stamp = usage_info["statisticalTime"]
    assert len(stamp) == 17 and stamp.isdigit()
    moment = datetime.strptime(stamp[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= moment <= datetime.now(UTC)
    assert usage_info["dashboardUrl"] == "https://usage.example.com/d/od%201"
    assert "relatedInstanceId" not in usage_info
    assert "usageInfo" not in info["per-1"]
    assert info["od-2"]["usageInfo"][0]["usageValue"] == 0
    assert fresh.is_metered and period.is_metered is False


def test_query_instance_reports_used_amount_per_billing_item_of_a_package(kg):
    package = make_instance(
        "pkg-1", mode=ChargingMode.ON_DEMAND_PKG, is_test=True, started=hour(10)
    )
    cpu = make_instance("od-cpu", is_test=True)
    disk = make_instance("od-disk", is_test=True)
    lifecycle.link_package(instance=cpu, package=package)
    lifecycle.link_package(instance=disk, package=package)
    services.record_usage(
        events=[
            usage(cpu, 100, hour(20)),  # before the package: not taken from it
            usage(cpu, 5, hour(3)),
            usage(cpu, "0.5", hour(1)),
            usage(disk, 7, hour(2)),
        ]
    )

    entries = query(kg, "pkg-1")["pkg-1"]["usageInfo"]

    assert [(e["relatedInstanceId"], e["usageValue"]) for e in entries] == [
        ("od-cpu", 5.5),
        ("od-disk", 7.0),
    ]
    assert all(len(e["statisticalTime"]) == 17 for e in entries)
    assert all("dashboardUrl" not in e for e in entries)  # none configured


def test_usage_values_keep_four_decimals(kg):
    od = make_instance("od-1", is_test=True)
    services.record_usage(events=[usage(od, Decimal("0.0001"), hour(1)) for _ in range(3)])
    assert query(kg, "od-1")["od-1"]["usageInfo"][0]["usageValue"] == 0.0003


def test_usage_totals_are_exact_whether_hours_are_closed_or_not(fake_koogallery):
    """Closed hours count by their record, the rest by events: the sum is the same."""
    rng = random.Random(5)
    a, b = make_instance("od-a", started=hour(60)), make_instance("od-b", started=hour(60))
    events = [
        usage(
            rng.choice([a, b]),
            Decimal(rng.randint(1, 10_000)) / 100,
            hour(rng.randint(1, 50)) + timedelta(seconds=rng.randint(0, 3599)),
        )
        for _ in range(300)
    ]
    services.record_usage(events=events)
    services.run_metering(now=hour(10) + timedelta(minutes=5))  # closes hours before hour(10)
    windows = [(None, None)] + [
        tuple(
            sorted(
                hour(rng.randint(0, 55)) + timedelta(seconds=rng.randint(0, 7199)) for _ in range(2)
            )
        )
        for _ in range(20)
    ]
    for start, end in windows:
        expected = {
            x.instance_id: sum(
                (
                    e.quantity
                    for e in events
                    if e.instance_id == x.instance_id
                    and (start is None or e.occurred_at >= start)
                    and (end is None or e.occurred_at < end)
                ),
                Decimal(0),
            )
            for x in (a, b)
        }
        totals = selectors.usage_totals(instances=[a, b], start=start, end=end)
        assert {"od-a": totals[a.pk], "od-b": totals[b.pk]} == expected, (start, end)
