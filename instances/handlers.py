"""Thin handlers of the instance activities, V2 (§4.2) and V1 GET (§4.4).

Each takes validated data and the `Call`, calls one service or selector and shapes the answer.
V1 activities map onto the same services; only V1's answer rules (encrypted credentials) and
its parameter names differ. Registered in `KooGalleryConfig.ready()` via `register_all()`.
"""

import logging

from django.conf import settings

from instances import selectors as instance_selectors
from instances import services as lifecycle
from instances.models import ON_DEMAND_MODES, Instance, RefreshScene
from instances.serializers import (
    ChangeInstanceCheckSerializer,
    InstanceStatus,
    NewInstanceSerializer,
    OrderNotifySerializer,
    QueryInstanceSerializer,
    RefreshInstanceSerializer,
    ReleaseInstanceSerializer,
    UpdateInstanceStatusSerializer,
    UpgradeInstanceSerializer,
    V1ExpireInstanceSerializer,
    V1InstanceStatusSerializer,
    V1NewInstanceSerializer,
    V1QueryInstanceSerializer,
    V1RefreshInstanceSerializer,
    V1ReleaseInstanceSerializer,
    V1UpgradeSerializer,
)
from koogallery.inbound import activities
from koogallery.inbound.endpoint import Call, Reply
from koogallery.inbound.journal import Family
from koogallery.protocol.crypto import CryptoError, EncryptType, aes_decrypt, aes_encrypt
from koogallery.protocol.resultcodes import InvalidParam, KooGalleryError, ResultCode

logger = logging.getLogger(__name__)


def _note_instance(call: Call, instance: Instance) -> None:
    # newInstance names no instanceId; the journal row should still be searchable by it.
    call.journal.instance_id = instance.instance_id


# --- V2 ---------------------------------------------------------------------------------------


def new_instance(data: dict, call: Call) -> Reply:
    instance = lifecycle.create_instance(
        order_id=data["orderId"],
        order_line_id=data["orderLineId"],
        business_id=data["businessId"],
        is_test=data["is_test"],
        cause=call.endpoint,
        inbound_call=call.journal,
    )
    _note_instance(call, instance)
    return Reply(fields={"instanceId": instance.instance_id})


def query_instance(data: dict, call: Call) -> Reply:
    found = instance_selectors.instances_for_query(
        instance_ids=data["instanceId"], is_test=data["is_test"]
    )
    if not found:
        raise KooGalleryError(ResultCode.INSTANCE_NOT_FOUND, "none of the instanceIds is known")
    usage = instance_selectors.usage_info_of(found=[instance for instance, _ in found])
    info = []
    for instance, tenant in found:
        item = {
            "instanceId": instance.instance_id,
            "appInfo": instance_selectors.app_info(instance=instance, tenant=tenant),
        }
        # On-demand and package instances report their usage (§4.2.2, §5.5).
        if instance.instance_id in usage:
            item["usageInfo"] = usage[instance.instance_id]
        info.append(item)
    return Reply(fields={"info": info})


def refresh_instance(data: dict, call: Call) -> None:
    lifecycle.refresh_instance(
        instance_id=data["instanceId"],
        is_test=data["is_test"],
        order_id=data["orderId"],
        order_line_id=data["orderLineId"],
        scene=RefreshScene(data["scene"]),
        expire_at=data["expireTime"],
        product_id=data.get("productId", ""),
        cause=call.endpoint,
        inbound_call=call.journal,
    )


def update_instance_status(data: dict, call: Call) -> None:
    lifecycle.set_instance_status(
        instance_id=data["instanceId"],
        is_test=data["is_test"],
        frozen=data["status"] == InstanceStatus.FREEZE,
        cause=call.endpoint,
        inbound_call=call.journal,
    )


def release_instance(data: dict, call: Call) -> None:
    lifecycle.release_instance(
        instance_id=data["instanceId"],
        is_test=data["is_test"],
        order_id=data.get("orderId", ""),
        order_line_id=data.get("orderLineId", ""),
        cause=call.endpoint,
        inbound_call=call.journal,
    )


def upgrade_instance(data: dict, call: Call) -> None:
    lifecycle.upgrade_instance(
        instance_id=data["instanceId"],
        is_test=data["is_test"],
        order_id=data["orderId"],
        order_line_id=data["orderLineId"],
        cause=call.endpoint,
        inbound_call=call.journal,
    )


def change_instance_check(data: dict, call: Call) -> None:
    """Any change at renewal is possible: we have no capacity limit to check (§2.7)."""
    instance = instance_selectors.instance_for_call(
        instance_id=data["instanceId"], is_test=data["is_test"]
    )
    if instance.is_released:
        logger.warning(
            "changeInstanceCheck on released instance %s: answered success (§2.7)",
            instance.instance_id,
        )


def order_notify(data: dict, call: Call) -> None:
    lifecycle.record_order_notice(
        order_id=data["orderId"],
        order_line_id=data.get("orderLineId", ""),
        is_test=data["is_test"],
        inbound_call=call.journal,
    )


# --- V1 GET (§4.4) ----------------------------------------------------------------------------


def _decrypt(data: dict, name: str, key: str | None) -> str:
    """A V1 AES-256 value (§3.5) in clear; never logged."""
    value = data.get(name) or ""
    if not value:
        return ""
    try:
        return aes_decrypt(value, key or "", EncryptType.AES_256_CBC)
    except CryptoError as exc:
        raise InvalidParam(f"{name}: cannot be decrypted with the access key ({exc})") from None


def v1_new_instance(data: dict, call: Call) -> Reply:
    charging_mode = data.get("chargingMode") or ""
    purchase = lifecycle.Purchase(
        customer_id=data["customerId"],
        customer_name=data.get("customerName", ""),
        product_id=data.get("productId", ""),
        sku_code=data.get("skuCode", ""),
        charging_mode=charging_mode,
        expire_at=data.get("expireTime") or None,
        is_trial=data.get("trialFlag") == "1",
        period_type=data.get("periodType") or "",
        period_number=data.get("periodNumber"),
        extend_params=data.get("saasExtendParams") or [],
        buyer_email=_decrypt(data, "email", call.key)[:255],
        buyer_mobile_masked=lifecycle.mask_mobile(_decrypt(data, "mobilePhone", call.key)),
    )
    instance = lifecycle.create_instance(
        order_id=data["orderId"],
        order_line_id="",
        business_id=data["businessId"],
        is_test=data["is_test"],
        cause=call.endpoint,
        family=Family.BASIC_V1,
        # On-demand (package) orders may carry several products, one instance per billing
        # item: keyed (orderId, productId) (§4.4, §5.5).
        v1_product_key=data.get("productId", "") if charging_mode in ON_DEMAND_MODES else "",
        purchase=purchase,
        provision_credentials=settings.KOOGALLERY_PROVISION_CREDENTIALS,
        inbound_call=call.journal,
    )
    _note_instance(call, instance)
    tenant = (
        instance_selectors.bound_tenants(instances=[instance]).get(instance.instance_id)
        if instance_selectors.front_end_url_needs_tenant()
        else None  # appInfo shows none
    )
    app_info = instance_selectors.app_info(instance=instance, tenant=tenant)
    fields: dict = {"instanceId": instance.instance_id}
    credentials = instance_selectors.instance_credentials(instance=instance)
    if credentials is not None:
        # Encrypted with the key that verified this call, as KooGallery decrypts with it (§3.5);
        # the buyer's resource page re-calls newInstance and gets the same account.
        user_name, password = credentials
        fields["encryptType"] = EncryptType.AES_256_CBC.value
        app_info["userName"] = aes_encrypt(user_name, call.key or "", EncryptType.AES_256_CBC)
        app_info["password"] = aes_encrypt(password, call.key or "", EncryptType.AES_256_CBC)
    fields["appInfo"] = app_info
    return Reply(fields=fields)


def v1_refresh_instance(data: dict, call: Call) -> None:
    amount = data.get("orderAmount")
    if data.get("trialToFormal") == "1":
        scene = RefreshScene.TRIAL_TO_FORMAL
    elif amount is not None and amount < 0:
        # V1 marks an unsubscribed renewal by a negative amount (§4.4).
        scene = RefreshScene.UNSUBSCRIBE_RENEWAL_PERIOD
    else:
        scene = RefreshScene.RENEWAL
    params = {k: str(data[k]) for k in ("periodType", "periodNumber", "orderAmount") if data.get(k)}
    lifecycle.refresh_instance(
        instance_id=data["instanceId"],
        is_test=data["is_test"],
        order_id=data["orderId"],
        order_line_id="",
        scene=scene,
        expire_at=data["expireTime"],
        product_id=data.get("productId", ""),
        params=params,
        cause=call.endpoint,
        inbound_call=call.journal,
    )


def v1_expire_instance(data: dict, call: Call) -> None:
    """V1 expiry = freeze; data is kept through the freeze period (§4.4, §1.3)."""
    lifecycle.set_instance_status(
        instance_id=data["instanceId"],
        is_test=data["is_test"],
        frozen=True,
        cause=call.endpoint,
        detail=f"expired (order {data['orderId']})",
        inbound_call=call.journal,
    )


def v1_release_instance(data: dict, call: Call) -> None:
    lifecycle.release_instance(
        instance_id=data["instanceId"],
        is_test=data["is_test"],
        order_id=data["orderId"],
        cause=call.endpoint,
        inbound_call=call.journal,
    )


def v1_upgrade(data: dict, call: Call) -> None:
    params = {k: data[k] for k in ("amount", "diskSize", "bandWidth") if data.get(k) is not None}
    if data.get("saasExtendParams"):
        params["saasExtendParams"] = data["saasExtendParams"]
    lifecycle.upgrade_instance(
        instance_id=data["instanceId"],
        is_test=data["is_test"],
        order_id=data["orderId"],
        order_line_id="",
        product_id=data["productId"],
        sku_code=data["skuCode"],
        params=params,
        cause=call.endpoint,
        inbound_call=call.journal,
    )


def v1_instance_status(data: dict, call: Call) -> None:
    lifecycle.set_instance_status(
        instance_id=data["instanceId"],
        is_test=data["is_test"],
        frozen=data["instanceStatus"] == InstanceStatus.FREEZE,
        cause=call.endpoint,
        inbound_call=call.journal,
    )


V2_ACTIVITIES = {
    "newInstance": (NewInstanceSerializer, new_instance),
    "queryInstance": (QueryInstanceSerializer, query_instance),
    "refreshInstance": (RefreshInstanceSerializer, refresh_instance),
    "updateInstanceStatus": (UpdateInstanceStatusSerializer, update_instance_status),
    "releaseInstance": (ReleaseInstanceSerializer, release_instance),
    "upgradeInstance": (UpgradeInstanceSerializer, upgrade_instance),
    "changeInstanceCheck": (ChangeInstanceCheckSerializer, change_instance_check),
    "orderNotify": (OrderNotifySerializer, order_notify),
}

V1_ACTIVITIES = {
    "newInstance": (V1NewInstanceSerializer, v1_new_instance),
    "refreshInstance": (V1RefreshInstanceSerializer, v1_refresh_instance),
    "expireInstance": (V1ExpireInstanceSerializer, v1_expire_instance),
    "releaseInstance": (V1ReleaseInstanceSerializer, v1_release_instance),
    "upgrade": (V1UpgradeSerializer, v1_upgrade),
    "instanceStatus": (V1InstanceStatusSerializer, v1_instance_status),
    "queryInstance": (V1QueryInstanceSerializer, query_instance),
}


# Activities that only read (see activities.Activity.read_only).
READ_ONLY = frozenset({"queryInstance", "changeInstanceCheck"})


def register_all() -> None:
    for family, registered in ((Family.BASIC_V2, V2_ACTIVITIES), (Family.BASIC_V1, V1_ACTIVITIES)):
        for name, (serializer_class, handler) in registered.items():
            activities.register(
                name, serializer_class, handler, family=family, read_only=name in READ_ONLY
            )
