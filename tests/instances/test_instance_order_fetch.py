"""Query Order after newInstance, upgradeInstance and orderNotify (spec §2.7, §5.1), end to end:
the call commits, the task runs (eagerly here), the real HTTP client asks the fake KooGallery on
loopback (tests/support/fakes/koogallery_server.py), and the instance is filled in. Failures are
only
recorded: the KooGallery call has long been answered.
"""

from datetime import UTC, datetime

import pytest
from celery.exceptions import Retry

from instances.models import ChargingMode, Instance, InstanceOrder, OrderEvent
from instances.tasks import MAX_RETRIES, fetch_order_details
from koogallery.outbound.attempts import AttemptOutcome, OutboundAttempt, OutboundPurpose
from koogallery.outbound.client import TransientOutboundError
from tests.support.fakes.koogallery_server import MOCK_ORDERS, MOCK_PRODUCT_ID, MOCK_SKU

pytestmark = pytest.mark.django_db


def new_mock_instance(
    call, order_id: str = "MOCKPERIODYEARNEW", business_id: str | None = None
) -> Instance:
    body = call(
        "newInstance__mock_period",
        businessId=business_id or f"inst-{order_id}",
        orderId=order_id,
        orderLineId=f"{order_id}-000001",
    )
    assert body["resultCode"] == "000000"
    return Instance.objects.get(instance_id=body["instanceId"])


def test_new_instance_fills_product_period_and_buyer(call, fake_koogallery):
    instance = new_mock_instance(call)
    assert instance.product_id == MOCK_PRODUCT_ID
    assert instance.sku_code == MOCK_SKU
    assert instance.product_name == "MOCK测试商品,测试规格,基础版,包周期"
    assert instance.linear_value == 50
    assert instance.charging_mode == ChargingMode.PERIOD
    assert (instance.period_type, instance.period_number) == ("year", 1)
    assert instance.expire_at == datetime(2025, 11, 21, 23, 59, 59, tzinfo=UTC)
    assert instance.order_type == "NEW"
    assert instance.order_created_at == datetime(2024, 11, 21, 9, 8, 46, tzinfo=UTC)
    assert instance.customer_id == "459bbbec25d24749b2eb83be37b602a8"
    assert instance.customer_name == "mock_user_01"
    assert instance.buyer_mobile_masked == "186****8888"
    assert instance.extend_params[0] == {"name": "emailDomainName", "value": "test.xxxx.com"}
    assert instance.order_fetched_at is not None
    assert instance.order_fetch_error == ""
    # The stored answer keeps no plain phone number.
    assert instance.order_info["orderInfo"]["buyerInfo"]["mobilePhone"] == "186****8888"
    last = instance.transitions.last()
    assert last.cause == "queryOrder"
    assert "linear_value - → 50" in last.detail
    # The request was the signed Query Order of §5.1, recorded as an attempt.
    (request,) = fake_koogallery.requests_for("query_order")
    assert request.verified is True
    assert request.query == {
        "orderId": "MOCKPERIODYEARNEW",
        "orderLineId": "MOCKPERIODYEARNEW-000001",
    }
    attempt = OutboundAttempt.objects.get()
    assert (attempt.purpose, attempt.subject, attempt.outcome) == (
        OutboundPurpose.QUERY_ORDER,
        "MOCKPERIODYEARNEW",
        AttemptOutcome.SUCCESS,
    )


@pytest.mark.parametrize("order_id", sorted(MOCK_ORDERS))
def test_mock_orders_work_in_debug_mode(call, order_id):
    order_type, mode, period_type, period_number, _, linear = MOCK_ORDERS[order_id]
    instance = new_mock_instance(call, order_id)
    assert instance.is_test is True
    assert (instance.order_type, instance.charging_mode) == (order_type, mode)
    assert instance.period_type == (period_type or "")
    assert instance.period_number == period_number
    assert instance.linear_value == linear
    assert instance.is_trial is (order_type == "TRIAL")


def test_repeated_new_instance_does_not_fetch_again(call, fake_koogallery):
    new_mock_instance(call)
    new_mock_instance(call, business_id="a-retry")  # same order line
    assert len(fake_koogallery.requests_for("query_order")) == 1


def test_business_error_is_only_recorded(call, fake_koogallery):
    # Huawei's example order is not a real order: Query Order answers 400 MKT.0101.
    body = call("newInstance__huawei")
    assert body["resultCode"] == "000000"
    instance = Instance.objects.get()
    assert instance.order_fetch_error.startswith("MKT.0101")
    assert instance.order_fetched_at is None
    assert instance.product_id == ""
    # Not retried: one attempt, no fallback host for a 4xx (§2.9).
    assert list(OutboundAttempt.objects.values_list("outcome", flat=True)) == [AttemptOutcome.FATAL]
    assert instance.transitions.count() == 2


def test_transient_failure_is_recorded_and_raised_for_retry(call, fake_koogallery):
    fake_koogallery.script("query_order", 503)
    fake_koogallery.fallback.script("query_order", (500, {"resultCode": "MKT.0999"}))
    instance = new_mock_instance(call)
    # Without a broker the task does not retry back to back: the failure waits for an operator.
    assert instance.order_fetch_error.startswith("retrying: MKT.0999")
    assert instance.product_id == ""
    # The next attempt (a retry or the admin action) succeeds and clears the error.
    fetch_order_details.apply((instance.pk,))
    instance.refresh_from_db()
    assert (instance.order_fetch_error, instance.product_id) == ("", MOCK_PRODUCT_ID)


def test_task_retries_transient_failures_with_backoff(call, fake_koogallery):
    fake_koogallery.script("query_order", 503, 503)
    fake_koogallery.fallback.script("query_order", 503, 503)
    instance = new_mock_instance(call)  # the eager run used up one 503 pair
    fetch_order_details.push_request(
        id="t-1", args=[instance.pk], kwargs={}, retries=3, is_eager=False, called_directly=False
    )
    try:
        with pytest.raises(Retry) as retry:
            fetch_order_details.run(instance.pk)
    finally:
        fetch_order_details.pop_request()
    # Exponential backoff with full jitter: at most 5 s × 2^3 before the 4th retry.
    assert 0 <= retry.value.when <= 40
    fake_koogallery.script("query_order", 503)
    fake_koogallery.fallback.script("query_order", 503)
    fetch_order_details.push_request(
        id="t-2",
        args=[instance.pk],
        kwargs={},
        retries=MAX_RETRIES,
        is_eager=False,
        called_directly=False,
    )
    try:
        with pytest.raises(TransientOutboundError):
            fetch_order_details.run(instance.pk)
    finally:
        fetch_order_details.pop_request()


def test_refresh_before_fetch_keeps_the_newer_expiry(call, kg, fake_koogallery):
    # Query Order down while newInstance and a renewal arrive; the late fetch must not undo it.
    fake_koogallery.script("query_order", 503)
    fake_koogallery.fallback.script("query_order", 503)
    instance = new_mock_instance(call)
    call(
        "refreshInstance__huawei",
        instanceId=instance.instance_id,
        expireTime="20261121235959",
    )
    fetch_order_details.apply((instance.pk,))
    instance.refresh_from_db()
    assert instance.product_id == MOCK_PRODUCT_ID
    assert instance.expire_at == datetime(2026, 11, 21, 23, 59, 59, tzinfo=UTC)


def test_upgrade_fetches_the_upgrade_order(call):
    instance = new_mock_instance(call)
    body = call(
        "upgradeInstance__huawei",
        instanceId=instance.instance_id,
        orderId="MOCKMONTYCHANGE",
        orderLineId="MOCKMONTYCHANGE-000001",
    )
    assert body["resultCode"] == "000000"
    order = InstanceOrder.objects.get(event=OrderEvent.UPGRADE)
    assert order.order_type == "CHANGE"
    assert order.order_fetched_at is not None
    instance.refresh_from_db()
    assert instance.linear_value == 100
    assert (instance.period_type, instance.period_number) == ("month", 1)
    last = instance.transitions.last()
    assert last.cause == "queryOrder"
    assert "linear_value 50 → 100" in last.detail


def test_order_notify_fetches_the_order(call):
    body = call("orderNotify__without_line")
    assert body["resultCode"] == "000000"
    notice = InstanceOrder.objects.get()
    assert notice.order_type == "RENEW"
    assert notice.order_info["orderInfo"]["orderId"] == "MOCKMONTYRENEW"


def test_order_notify_about_the_purchase_order_fills_the_instance(call, fake_koogallery):
    fake_koogallery.script("query_order", (400, {"resultCode": "MKT.0101", "resultMsg": "x"}))
    instance = new_mock_instance(call)
    assert instance.product_id == ""
    call("orderNotify__huawei", orderId="MOCKPERIODYEARNEW", orderLineId="MOCKPERIODYEARNEW-000001")
    instance.refresh_from_db()
    assert instance.product_id == MOCK_PRODUCT_ID
    assert InstanceOrder.objects.get().instance == instance


def test_v1_new_instance_fetches_by_order_id(call, fake_koogallery):
    body = call(
        "v1_newInstance__huawei",
        v1=True,
        orderId="MOCKONETIMENEW",
        businessId="v1-mock",
    )
    assert body["resultCode"] == "000000"
    instance = Instance.objects.get()
    (request,) = fake_koogallery.requests_for("query_order")
    assert request.query == {"orderId": "MOCKONETIMENEW"}  # V1 has no order line
    assert instance.charging_mode == ChargingMode.ONE_TIME
