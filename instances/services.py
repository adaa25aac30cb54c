"""Writes of the SaaS instance lifecycle (spec §2.7, §4.2, §4.4): every change goes through here.

KooGallery drives a purchased instance with basic-interface calls; handlers, the Query Order task
and admin actions all call these services (STYLE.md §2). Each service is atomic, takes keyword
arguments only, returns the model, and is idempotent on the natural key of its call (STYLE.md §3):
a repeat finds what the first call stored and changes nothing.

State machine: provisioning → active ⇄ frozen → released. Every change of an instance — state,
expiry, product — writes one `InstanceTransition` row naming the call that caused it.
"""

import logging
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from instances import sql as lifecycle_sql
from instances.models import (
    ON_DEMAND_MODES,
    ChargingMode,
    Instance,
    InstanceOrder,
    InstanceState,
    InstanceTransition,
    OrderEvent,
    RefreshScene,
)
from instances.selectors import named_instance
from koogallery.inbound.journal import Family, InboundCall
from koogallery.outbound import jobs
from koogallery.outbound.client import (
    OrderDetails,
    OutboundResult,
    TransientOutboundError,
    parse_order,
    query_order,
)
from koogallery.protocol.resultcodes import InvalidParam, KooGalleryError, ResultCode
from koogallery.protocol.secret_store import secret_box

logger = logging.getLogger(__name__)

# The states each state may move to. A freeze may arrive before activation completes, and
# KooGallery may release from any state (§1.3); nothing leaves `released`.
ALLOWED_MOVES: dict[str, frozenset[str]] = {
    "": frozenset({InstanceState.PROVISIONING}),
    InstanceState.PROVISIONING: frozenset(
        {InstanceState.ACTIVE, InstanceState.FROZEN, InstanceState.RELEASED}
    ),
    InstanceState.ACTIVE: frozenset({InstanceState.FROZEN, InstanceState.RELEASED}),
    InstanceState.FROZEN: frozenset({InstanceState.ACTIVE, InstanceState.RELEASED}),
    InstanceState.RELEASED: frozenset(),
}

# Causes written by callers that are not KooGallery calls.
CAUSE_QUERY_ORDER = "queryOrder"
CAUSE_ADMIN = "admin"


class IllegalTransition(ValueError):
    pass


@dataclass(frozen=True)
class Purchase:
    """What a newInstance call tells about the purchase beyond its keys (V1 only; V2 sends
    nothing and Query Order fills these later)."""

    customer_id: str = ""
    customer_name: str = ""
    product_id: str = ""
    sku_code: str = ""
    charging_mode: str = ""
    expire_at: datetime | None = None
    is_trial: bool = False
    period_type: str = ""
    period_number: int | None = None
    extend_params: list = field(default_factory=list)
    buyer_email: str = ""
    buyer_mobile_masked: str = ""


# --- helpers ----------------------------------------------------------------------------------


def mask_mobile(number: str | None) -> str:
    """Only the first 3 and last 4 digits of a buyer's phone number are ever stored."""
    number = (number or "").strip()
    if len(number) <= 7:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 7) + number[-4:]


def _journal(inbound_call: InboundCall | None) -> InboundCall | None:
    """The call's journal row, saved now if the pipeline has not saved it yet.

    The pipeline saves it again (with the result) in the same transaction, and re-inserts it if
    the call is rolled back, so saving early only lets the audit rows point at it.
    """
    if inbound_call is not None and inbound_call.pk is None:
        inbound_call.write()
    return inbound_call


def _audit(
    instance: Instance,
    *,
    from_state: str,
    cause: str,
    detail: str = "",
    inbound_call: InboundCall | None = None,
) -> InstanceTransition:
    return InstanceTransition.objects.create(
        instance=instance,
        from_state=from_state,
        to_state=instance.state,
        cause=cause[:64],
        detail=detail[:255],
        inbound_call=_journal(inbound_call),
    )


def _change(
    instance: Instance,
    values: dict[str, Any],
    *,
    from_state: str,
    cause: str,
    detail: str = "",
    inbound_call: InboundCall | None = None,
) -> Instance:
    """Save `values` (only these columns, not the ~35 others as this object read them) and
    write the transition that names the call: one statement on PostgreSQL."""
    values["updated_at"] = timezone.now()
    if lifecycle_sql.enabled():
        lifecycle_sql.update_instance(
            instance,
            values=values,
            trail=(from_state, values.get("state", instance.state), cause, detail),
            journal=inbound_call,
            at=values["updated_at"],
        )
        for name, value in values.items():
            setattr(instance, name, value)
        return instance
    for name, value in values.items():
        setattr(instance, name, value)
    instance.save(update_fields=list(values))
    _audit(instance, from_state=from_state, cause=cause, detail=detail, inbound_call=inbound_call)
    return instance


def _move(
    instance: Instance,
    to_state: InstanceState,
    *,
    cause: str,
    detail: str = "",
    inbound_call: InboundCall | None = None,
) -> Instance:
    from_state = instance.state
    if to_state not in ALLOWED_MOVES[from_state]:
        raise IllegalTransition(f"instance {instance.instance_id}: {from_state} → {to_state}")
    now = timezone.now()
    values: dict[str, Any] = {
        "state": to_state,
        "frozen_at": instance.frozen_at,
        "released_at": instance.released_at,
    }
    if to_state == InstanceState.FROZEN:
        values["frozen_at"] = now
    elif to_state == InstanceState.ACTIVE:
        values["frozen_at"] = None
    elif to_state == InstanceState.RELEASED:
        values["released_at"] = now
    return _change(
        instance,
        values,
        from_state=from_state,
        cause=cause,
        detail=detail,
        inbound_call=inbound_call,
    )


def _locked_instance(*, instance_id: str, is_test: bool) -> Instance:
    """The instance a call names, locked for the call; unknown → 000003 (§2.7).

    A debug call cannot touch a production instance (§2.5); a call without testFlag is served
    on the debug instance it names (§2.7: the console's probes), so what it records is debug
    data: callers take the data set from `instance.is_test`, not from the call's flag.
    """
    instance = (
        named_instance(instance_id=instance_id, is_test=is_test)
        .select_for_update()
        # The Query Order answer and extendParams (JSON, KBs) are read by no call's service.
        .defer("order_info", "extend_params")
        .first()
    )
    if instance is None:
        raise KooGalleryError(ResultCode.INSTANCE_NOT_FOUND, f"instanceId {instance_id!r} unknown")
    return instance


def _ignored_on_released(instance: Instance, cause: str) -> bool:
    """Calls on a released instance answer 000000 and change nothing, so replayed debug probes
    stay green (§2.7); the warning tells an operator something odd was sent."""
    if instance.is_released:
        logger.warning(
            "%s on released instance %s: answered success, nothing changed (§2.7)",
            cause,
            instance.instance_id,
        )
        return True
    return False


def _strong_password(length: int = 16) -> str:
    alphabet = string.ascii_letters + string.digits
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        if (
            any(c.islower() for c in password)
            and any(c.isupper() for c in password)
            and any(c.isdigit() for c in password)
        ):
            return password


# The jobs this module queues, by name (koogallery/outbound/jobs.py): instances/tasks.py imports
# this module, never the other way round.
FETCH_ORDER_DETAILS = "instances.tasks.fetch_order_details"
FETCH_ORDER_EVENT = "instances.tasks.fetch_order_event"


def _after_commit(task_name: str, pk: int) -> None:
    """Have a task run on this row once the call's transaction commits
    (koogallery/outbound/jobs.py).

    Queueing never fails the call: the job is an outbox row committed with the call, or a
    publish after the commit whose failure is logged (the order sweep queues it again, an
    operator can re-fetch from the admin).
    """
    jobs.enqueue(task_name, pk)


# --- newInstance --------------------------------------------------------------------------------


def create_instance(
    *,
    order_id: str,
    order_line_id: str,
    business_id: str,
    is_test: bool,
    cause: str,
    family: Family = Family.BASIC_V2,
    v1_product_key: str = "",
    purchase: Purchase | None = None,
    provision_credentials: bool = False,
    inbound_call: InboundCall | None = None,
) -> Instance:
    """The instance of an order line, created on the first call (§2.7).

    The first call's `businessId` becomes the `instanceId`; every repeat — retried, concurrent or
    after release — gets the same instance back. Query Order runs after commit, in the background.

    The instance is written active at once; its trail still shows provisioning → active.
    """
    key = {
        "order_id": order_id,
        "order_line_id": order_line_id,
        "v1_product_key": v1_product_key,
        "is_test": is_test,
    }
    purchase = purchase or Purchase()
    instance = Instance(
        instance_id=business_id,
        state=InstanceState.ACTIVE,
        family=family,
        customer_id=purchase.customer_id,
        customer_name=purchase.customer_name,
        product_id=purchase.product_id,
        sku_code=purchase.sku_code,
        charging_mode=purchase.charging_mode,
        expire_at=purchase.expire_at,
        is_trial=purchase.is_trial,
        period_type=purchase.period_type,
        period_number=purchase.period_number,
        extend_params=purchase.extend_params,
        buyer_email=purchase.buyer_email,
        buyer_mobile_masked=purchase.buyer_mobile_masked,
        **key,
    )
    ready = "ready"
    if provision_credentials:
        instance.admin_username = f"admin-{secrets.token_hex(4)}"
        instance.admin_password_encrypted = secret_box().encrypt(_strong_password())
        ready = f"ready; admin account {instance.admin_username} created"
    trail = [
        (
            "",
            InstanceState.PROVISIONING,
            cause,
            f"order {order_id}/{order_line_id or '-'} accepted",
        ),
        (InstanceState.PROVISIONING, InstanceState.ACTIVE, cause, ready),
    ]
    # The Query Order job goes into the outbox with the instance's own statement where it can.
    in_statement = lifecycle_sql.enabled() and jobs.queued_by_statement()
    # No savepoint of its own: the only statement that may fail on a key is written not to.
    with transaction.atomic(savepoint=False):
        stored = _insert_instance(
            instance, key=key, trail=trail, inbound_call=inbound_call, queue=in_statement
        )
    if stored is None:
        raise InvalidParam(
            f"businessId: {business_id!r} is already the instanceId of another order"
        )
    if stored is instance and not in_statement:
        _after_commit(FETCH_ORDER_DETAILS, instance.pk)
    return stored


def _insert_instance(
    instance: Instance,
    *,
    key: dict[str, Any],
    trail: list[lifecycle_sql.Trail],
    inbound_call: InboundCall | None,
    queue: bool = False,
) -> Instance | None:
    """`instance` with its trail written (and, with `queue`, its Query Order job: PostgreSQL
    only), or the order line's stored instance (a repeat, or a concurrent twin that committed
    first: STYLE.md §3); None when only the id is taken."""
    if lifecycle_sql.enabled():
        if lifecycle_sql.insert_instance(
            instance,
            trail=trail,
            journal=inbound_call,
            at=timezone.now(),
            job=FETCH_ORDER_DETAILS if queue else "",
        ):
            return instance
        return Instance.objects.filter(**key).first()
    existing = Instance.objects.filter(**key).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            instance.save(force_insert=True)
    except IntegrityError:
        return Instance.objects.filter(**key).first()
    journal = _journal(inbound_call)
    InstanceTransition.objects.bulk_create(
        InstanceTransition(
            instance=instance,
            from_state=from_state,
            to_state=to_state,
            cause=cause[:64],
            detail=detail[:255],
            inbound_call=journal,
        )
        for from_state, to_state, cause, detail in trail
    )
    return instance


# --- refreshInstance, updateInstanceStatus, releaseInstance ------------------------------------


@transaction.atomic(savepoint=False)
def refresh_instance(
    *,
    instance_id: str,
    is_test: bool,
    order_id: str,
    order_line_id: str,
    scene: RefreshScene,
    expire_at: datetime,
    product_id: str = "",
    params: dict | None = None,
    cause: str,
    inbound_call: InboundCall | None = None,
) -> Instance:
    """Renewal, trial to formal, unsubscribed renewal or change at renewal (§4.2.3).

    Every scene sets the new expiry (an unsubscribed renewal shortens it); trial to formal ends
    the trial. Idempotent on (instanceId, orderId, orderLineId, scene).
    """
    instance = _locked_instance(instance_id=instance_id, is_test=is_test)
    if _ignored_on_released(instance, cause):
        return instance
    key = {
        "instance": instance,
        "event": OrderEvent.REFRESH,
        "order_id": order_id,
        "order_line_id": order_line_id,
        "scene": scene,
    }
    values: dict[str, Any] = {"expire_at": expire_at}
    changes = [f"expiry {_when(instance.expire_at)} → {_when(expire_at)}"]
    if scene == RefreshScene.TRIAL_TO_FORMAL and instance.is_trial:
        values["is_trial"] = False
        changes.append("trial ended")
    if product_id and product_id != instance.product_id:
        changes.append(f"product {instance.product_id or '-'} → {product_id}")
        values["product_id"] = product_id
    order = InstanceOrder(
        **key,
        is_test=instance.is_test,
        product_id=product_id,
        expire_at=expire_at,
        params=params or {},
    )
    _record_order(
        instance,
        order,
        key=key,
        values=values,
        detail=f"{scene} order {order_id}: " + ", ".join(changes),
        cause=cause,
        inbound_call=inbound_call,
    )
    return instance


def _record_order(
    instance: Instance,
    order: InstanceOrder,
    *,
    key: dict[str, Any],
    values: dict[str, Any],
    detail: str,
    cause: str,
    inbound_call: InboundCall | None,
) -> bool:
    """Record the order a call brings, once per natural `key`, and only then save `values` of
    the (locked) instance with one transition: one statement on PostgreSQL. False: a repeat,
    nothing written (STYLE.md §3)."""
    values["updated_at"] = timezone.now()
    if lifecycle_sql.enabled():
        if not lifecycle_sql.insert_order(
            order,
            instance=instance,
            values=values,
            trail=(instance.state, instance.state, cause, detail),
            journal=inbound_call,
            at=values["updated_at"],
        ):
            return False
        for name, value in values.items():
            setattr(instance, name, value)
        return True
    if InstanceOrder.objects.filter(**key).exists():
        return False
    journal = order.inbound_call = _journal(inbound_call)
    try:
        with transaction.atomic():
            order.save(force_insert=True)
    except IntegrityError:
        return False  # a concurrent twin recorded it first
    for name, value in values.items():
        setattr(instance, name, value)
    instance.save(update_fields=list(values))
    _audit(instance, from_state=instance.state, cause=cause, detail=detail, inbound_call=journal)
    return True


@transaction.atomic(savepoint=False)
def set_instance_status(
    *,
    instance_id: str,
    is_test: bool,
    frozen: bool,
    cause: str,
    detail: str = "",
    inbound_call: InboundCall | None = None,
) -> Instance:
    """FREEZE / UNFREEZE (§4.2.4): an absolute state, so a repeat changes nothing."""
    instance = _locked_instance(instance_id=instance_id, is_test=is_test)
    if _ignored_on_released(instance, cause):
        return instance
    target = InstanceState.FROZEN if frozen else InstanceState.ACTIVE
    if instance.state == target:
        return instance
    return _move(instance, target, cause=cause, detail=detail, inbound_call=inbound_call)


@transaction.atomic(savepoint=False)
def release_instance(
    *,
    instance_id: str,
    is_test: bool,
    order_id: str = "",
    order_line_id: str = "",
    cause: str,
    inbound_call: InboundCall | None = None,
) -> Instance:
    """Release (§4.2.5): final; a repeat answers success. Data is not deleted here."""
    instance = _locked_instance(instance_id=instance_id, is_test=is_test)
    if instance.is_released:
        return instance
    detail = f"unsubscribe order {order_id}/{order_line_id or '-'}" if order_id else ""
    return _move(
        instance, InstanceState.RELEASED, cause=cause, detail=detail, inbound_call=inbound_call
    )


# --- upgradeInstance, orderNotify ---------------------------------------------------------------


@transaction.atomic(savepoint=False)
def upgrade_instance(
    *,
    instance_id: str,
    is_test: bool,
    order_id: str,
    order_line_id: str,
    product_id: str = "",
    sku_code: str = "",
    params: dict | None = None,
    cause: str,
    inbound_call: InboundCall | None = None,
) -> Instance:
    """An upgrade order (§4.2.6, V1 `upgrade`): recorded once per (orderId, orderLineId), then
    Query Order fills the new product. V1 sends the new product and SKU itself."""
    instance = _locked_instance(instance_id=instance_id, is_test=is_test)
    if _ignored_on_released(instance, cause):
        return instance
    key = {
        "event": OrderEvent.UPGRADE,
        "order_id": order_id,
        "order_line_id": order_line_id,
        "is_test": instance.is_test,
    }
    values: dict[str, Any] = {}
    changes = [f"upgrade order {order_id}/{order_line_id or '-'}"]
    if product_id and product_id != instance.product_id:
        changes.append(f"product {instance.product_id or '-'} → {product_id}")
        values["product_id"] = product_id
    if sku_code and sku_code != instance.sku_code:
        changes.append(f"SKU {instance.sku_code or '-'} → {sku_code}")
        values["sku_code"] = sku_code
    order = InstanceOrder(
        **key, instance=instance, product_id=product_id, sku_code=sku_code, params=params or {}
    )
    if not _record_order(
        instance,
        order,
        key=key,
        values=values,
        detail=", ".join(changes),
        cause=cause,
        inbound_call=inbound_call,
    ):
        known = InstanceOrder.objects.filter(**key).first()
        if known is not None and known.instance_id != instance.pk:
            logger.warning(
                "upgrade order %s/%s repeated for instance %s, recorded for another instance",
                order_id,
                order_line_id,
                instance_id,
            )
        return instance
    _after_commit(FETCH_ORDER_EVENT, order.pk)
    return instance


@transaction.atomic(savepoint=False)
def record_order_notice(
    *,
    order_id: str,
    order_line_id: str,
    is_test: bool,
    inbound_call: InboundCall | None = None,
) -> InstanceOrder:
    """orderNotify (§4.2.9): remember the order once, then fetch it with Query Order."""
    key = {
        "event": OrderEvent.NOTIFY,
        "order_id": order_id,
        "order_line_id": order_line_id,
        "is_test": is_test,
    }
    known = InstanceOrder.objects.filter(**key).first()
    if known is not None:
        return known
    # The notice may be about an instance's purchase order; other orders stand alone.
    instance = Instance.objects.filter(
        order_id=order_id, order_line_id=order_line_id, is_test=is_test
    ).first()
    try:
        with transaction.atomic():
            order = InstanceOrder.objects.create(
                **key, instance=instance, inbound_call=_journal(inbound_call)
            )
    except IntegrityError:
        return InstanceOrder.objects.get(**key)
    _after_commit(FETCH_ORDER_EVENT, order.pk)
    return order


# --- Query Order (§5.1), run by tasks and admin actions -----------------------------------------


def refresh_order_details(*, instance: Instance) -> Instance:
    """Fetch the instance's purchase order and fill product, period and buyer (§2.7, §5.1).

    The call runs outside any transaction (its attempt rows must outlive a rollback); the
    write is atomic. A transient failure is recorded and raised as `TransientOutboundError`
    for the caller to retry; a business error is only recorded (§2.7).
    """
    result = query_order(order_id=instance.order_id, order_line_id=instance.order_line_id or None)
    # A V1 on-demand instance is one billing item of its order, keyed by product (§4.4, §5.5):
    # read the line and product it names, not the order's first.
    details = _order_details(result, instance.order_line_id, product_id=instance.v1_product_key)
    if isinstance(details, str):
        instance = _record_instance_fetch_error(instance=instance, error=details, result=result)
        if result.retryable:
            raise TransientOutboundError(result)
        return instance
    return _apply_purchase_order(instance=instance, details=details, data=result.data or {})


def refresh_order_event(*, order: InstanceOrder) -> InstanceOrder:
    """Fetch an upgrade or notified order (§4.2.6, §4.2.9) and apply what it changes."""
    result = query_order(order_id=order.order_id, order_line_id=order.order_line_id or None)
    details = _order_details(result, order.order_line_id)
    if isinstance(details, str):
        order = _record_order_fetch_error(order=order, error=details, result=result)
        if result.retryable:
            raise TransientOutboundError(result)
        return order
    return _apply_event_order(order=order, details=details, data=result.data or {})


def _order_details(
    result: OutboundResult, order_line_id: str, product_id: str = ""
) -> OrderDetails | str:
    """The parsed order line, or the error to record.

    With `product_id` (an on-demand billing item, §5.5) and no line id, the line holding that
    product is read, and the product fields come from its entry, not the line's first.
    """
    if not result.ok:
        return f"{result.result_code or result.status_code or 'no answer'}: {result.result_msg}"
    data = result.data or {}
    if product_id and not order_line_id:
        order_line_id = _line_of_product(data, product_id)
    details = parse_order(data, order_line_id or None)
    if not details.order_line_id:
        return f"order line {order_line_id or '(first)'} not in the Query Order answer"
    if product_id:
        _use_product_entry(details, product_id)
    return details


def _product_entries(line: Any) -> list[dict]:
    products = line.get("productInfo") if isinstance(line, dict) else None
    return [p for p in products or [] if isinstance(p, dict)] if isinstance(products, list) else []


def _line_of_product(data: dict, product_id: str) -> str:
    """The id of the order line listing `product_id`, '' when none does."""
    info = data.get("orderInfo") if isinstance(data.get("orderInfo"), dict) else {}
    lines = info.get("orderLine") if isinstance(info.get("orderLine"), list) else []
    for line in lines:
        if any(str(p.get("productId") or "") == product_id for p in _product_entries(line)):
            return str(line.get("orderLineId") or "")
    return ""


def _use_product_entry(details: OrderDetails, product_id: str) -> None:
    """Read product, SKU, name and quantity from the line's entry for `product_id` (§5.5)."""
    entry = next(
        (p for p in _product_entries(details.line) if str(p.get("productId")) == product_id),
        None,
    )
    if entry is None:
        return
    product = parse_order(
        {"orderInfo": {"orderLine": [{**details.line, "productInfo": [entry]}]}}, None
    )
    details.product_id = product.product_id
    details.sku_code = product.sku_code
    details.product_name = product.product_name
    details.linear_value = product.linear_value


def _fetch_error_text(error: str, result: OutboundResult) -> str:
    return ("retrying: " if result.retryable else "") + error[:1000]


@transaction.atomic
def _record_instance_fetch_error(
    *, instance: Instance, error: str, result: OutboundResult
) -> Instance:
    Instance.objects.filter(pk=instance.pk).update(
        order_fetch_error=_fetch_error_text(error, result), updated_at=timezone.now()
    )
    instance.refresh_from_db()
    logger.warning("Query Order for instance %s failed: %s", instance.instance_id, error)
    return instance


@transaction.atomic
def _record_order_fetch_error(
    *, order: InstanceOrder, error: str, result: OutboundResult
) -> InstanceOrder:
    InstanceOrder.objects.filter(pk=order.pk).update(
        order_fetch_error=_fetch_error_text(error, result)
    )
    order.refresh_from_db()
    logger.warning("Query Order for %s failed: %s", order, error)
    return order


def _masked_answer(data: dict) -> dict:
    """The Query Order answer as stored: the buyer's phone number masked."""
    info = data.get("orderInfo")
    if isinstance(info, dict) and isinstance(info.get("buyerInfo"), dict):
        buyer = dict(info["buyerInfo"])
        if buyer.get("mobilePhone"):
            buyer["mobilePhone"] = mask_mobile(str(buyer["mobilePhone"]))
        data = {**data, "orderInfo": {**info, "buyerInfo": buyer}}
    return data


def _apply_product(instance: Instance, details: OrderDetails) -> list[str]:
    """Copy the product of an order line onto the instance; the changes as text."""
    changes = []
    values: dict[str, Any] = {
        "product_id": details.product_id,
        "sku_code": details.sku_code[:64],
        "product_name": details.product_name[:255],
        "linear_value": details.linear_value,
        "period_type": details.period_type[:16],
        "period_number": details.period_number,
    }
    if details.charging_mode in ChargingMode.values:
        values["charging_mode"] = details.charging_mode
    elif details.charging_mode:
        logger.warning(
            "unknown chargingMode %r in order %s", details.charging_mode, details.order_id
        )
    before = (instance.product_id, instance.charging_mode)
    for name, value in values.items():
        if value in (None, "") or getattr(instance, name) == value:
            continue
        changes.append(f"{name} {getattr(instance, name) or '-'} → {value}")
        setattr(instance, name, value)
    holder = _billing_item_holder(instance)
    if holder is not None:
        # On-demand billing items are keyed (orderId, productId) (§5.5). A V2 newInstance names
        # no product, so a second order line for an item we already serve is only recognised
        # here: keep this instance apart (mode and product as before) rather than bill twice.
        instance.product_id, instance.charging_mode = before
        changes.append(
            f"duplicate billing item: order {instance.order_id} product {details.product_id} "
            f"belongs to instance {holder.instance_id}; product and charging mode not applied"
        )
        logger.error(
            "ALERT instance %s: order %s product %s (%s) is already instance %s's billing item "
            "(§5.5): not applied, usage must be reported on %s",
            instance.instance_id,
            instance.order_id,
            details.product_id,
            details.charging_mode,
            holder.instance_id,
            holder.instance_id,
        )
    return changes


def _billing_item_holder(instance: Instance) -> Instance | None:
    """Another instance that is already this on-demand billing item (orderId, productId)."""
    if not (instance.is_metered and instance.product_id):
        return None
    return (
        Instance.objects.filter(
            order_id=instance.order_id,
            product_id=instance.product_id,
            is_test=instance.is_test,
            charging_mode__in=ON_DEMAND_MODES,
        )
        .exclude(pk=instance.pk)
        .first()
    )


@transaction.atomic
def _apply_purchase_order(*, instance: Instance, details: OrderDetails, data: dict) -> Instance:
    instance = Instance.objects.select_for_update().get(pk=instance.pk)
    changes = _apply_product(instance, details)
    info = data.get("orderInfo") if isinstance(data.get("orderInfo"), dict) else {}
    buyer = info.get("buyerInfo") if isinstance(info.get("buyerInfo"), dict) else {}
    if details.customer_id:
        instance.customer_id = details.customer_id[:100]
    if details.customer_name:
        instance.customer_name = details.customer_name[:255]
    if buyer.get("email"):
        instance.buyer_email = str(buyer["email"])[:255]
    if buyer.get("mobilePhone"):
        instance.buyer_mobile_masked = mask_mobile(str(buyer["mobilePhone"]))[:32]
    if details.order_type:
        instance.order_type = details.order_type[:32]
        instance.is_trial = (
            details.order_type == "TRIAL"
            and not instance.orders.filter(
                event=OrderEvent.REFRESH, scene=RefreshScene.TRIAL_TO_FORMAL
            ).exists()
        )
    instance.order_created_at = details.created_at
    # A refreshInstance that already arrived knows the newer expiry; the order knows the first.
    if details.expire_at and not instance.orders.filter(event=OrderEvent.REFRESH).exists():
        if instance.expire_at != details.expire_at:
            changes.append(f"expiry {_when(instance.expire_at)} → {_when(details.expire_at)}")
        instance.expire_at = details.expire_at
    extend = details.line.get("extendParams") or info.get("extendParams")
    if isinstance(extend, list) and extend:
        instance.extend_params = extend
    instance.order_info = _masked_answer(data)
    instance.order_fetched_at = timezone.now()
    instance.order_fetch_error = ""
    instance.save()
    changes.extend(_link_packages(instance))
    _audit(
        instance,
        from_state=instance.state,
        cause=CAUSE_QUERY_ORDER,
        detail=f"order {details.order_type or '?'} {details.order_id}: "
        + (", ".join(changes) or "no change"),
    )
    return instance


@transaction.atomic
def _apply_event_order(*, order: InstanceOrder, details: OrderDetails, data: dict) -> InstanceOrder:
    order = InstanceOrder.objects.select_for_update().get(pk=order.pk)
    order.order_type = details.order_type[:32]
    order.order_info = _masked_answer(data)
    order.order_fetched_at = timezone.now()
    order.order_fetch_error = ""
    order.save()
    instance = order.instance
    if instance is None:
        return order
    instance = Instance.objects.select_for_update().get(pk=instance.pk)
    if instance.is_released:
        return order
    is_purchase_order = (instance.order_id, instance.order_line_id) == (
        order.order_id,
        order.order_line_id,
    )
    if is_purchase_order:
        # orderNotify about the instance's own order: the same as the newInstance fetch.
        _apply_purchase_order(instance=instance, details=details, data=data)
        return order
    changes = _apply_product(instance, details)
    if not changes:
        return order
    instance.save()
    _audit(
        instance,
        from_state=instance.state,
        cause=CAUSE_QUERY_ORDER,
        detail=f"{order.event} order {order.order_id}: " + ", ".join(changes),
    )
    return order


# --- on-demand packages (§5.5) -----------------------------------------------------------------


def _live_packages(*, customer_id: str, product_id: str, is_test: bool):
    return Instance.objects.filter(
        charging_mode=ChargingMode.ON_DEMAND_PKG,
        customer_id=customer_id,
        product_id=product_id,
        is_test=is_test,
    ).exclude(state=InstanceState.RELEASED)


def _link_packages(instance: Instance) -> list[str]:
    """Link on-demand instances to their package where Query Order makes it determinable.

    Huawei's order names no relation (§5.1, §5.5), so we link only the unambiguous case: the
    same customer bought a package of the same product, and exactly one live one. Anything else
    is left to an operator (metering admin, `link_package`). The changes as text.
    """
    if not (instance.customer_id and instance.product_id) or instance.is_released:
        return []
    scope = {
        "customer_id": instance.customer_id,
        "product_id": instance.product_id,
        "is_test": instance.is_test,
    }
    if instance.charging_mode == ChargingMode.ON_DEMAND and instance.package_instance_id is None:
        packages = list(_live_packages(**scope)[:2])
        if len(packages) != 1:
            return []
        instance.package_instance = packages[0]
        instance.save(update_fields=["package_instance", "updated_at"])
        return [f"package {packages[0].instance_id} linked"]
    if instance.charging_mode != ChargingMode.ON_DEMAND_PKG:
        return []
    if _live_packages(**scope).exclude(pk=instance.pk).exists():
        return []  # several packages: which one an item uses is not determinable
    items = (
        Instance.objects.select_for_update()
        .filter(charging_mode=ChargingMode.ON_DEMAND, package_instance__isnull=True, **scope)
        .exclude(state=InstanceState.RELEASED)
    )
    linked = []
    for item in items:
        item.package_instance = instance
        item.save(update_fields=["package_instance", "updated_at"])
        _audit(
            item,
            from_state=item.state,
            cause=CAUSE_QUERY_ORDER,
            detail=f"package {instance.instance_id} linked",
        )
        linked.append(item.instance_id)
    return [f"billing items {', '.join(linked)} linked"] if linked else []


@transaction.atomic
def link_package(
    *, instance: Instance, package: Instance | None, cause: str = CAUSE_ADMIN
) -> Instance:
    """Relate an on-demand instance to the package whose quota it uses (None: unlink) (§5.5).

    Raises ValueError when the instances cannot be related: the item must not be a package,
    the package must be an ON_DEMAND_PKG instance of the same data set (§2.5), not released.
    """
    instance = Instance.objects.select_for_update().get(pk=instance.pk)
    if package is not None:
        if instance.charging_mode == ChargingMode.ON_DEMAND_PKG:
            raise ValueError(f"{instance.instance_id} is itself a package")
        if package.charging_mode != ChargingMode.ON_DEMAND_PKG:
            raise ValueError(f"{package.instance_id} is not an on-demand package (ON_DEMAND_PKG)")
        if package.is_test != instance.is_test:
            raise ValueError("a debug instance and a production instance cannot be related")
        if package.is_released:
            raise ValueError(f"package {package.instance_id} is released")
    if instance.package_instance_id == (package.pk if package else None):
        return instance
    old = instance.package_instance.instance_id if instance.package_instance else "-"
    instance.package_instance = package
    instance.save(update_fields=["package_instance", "updated_at"])
    _audit(
        instance,
        from_state=instance.state,
        cause=cause,
        detail=f"package {old} → {package.instance_id if package else '-'}",
    )
    return instance


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"
