"""Validation of the basic-interface instance activities: V2 bodies (§4.2) and V1 GET
parameters (§4.4). Serializers only validate; the handlers call the services.
"""

import base64
import binascii
from datetime import datetime
from typing import Any

from rest_framework import serializers

from instances.models import V1_CHARGING_MODES, RefreshScene
from koogallery.inbound.serializers import BasicSerializer, KgString, LenientObjectField
from koogallery.protocol.jsonbody import BodyError, lenient_list
from koogallery.protocol.times import compact_time

MAX_QUERY_IDS = 100  # §4.2.2
INSTANCE_ID_MAX = 64


class InstanceStatus:
    FREEZE = "FREEZE"
    UNFREEZE = "UNFREEZE"
    NORMAL = "NORMAL"  # V1 `instanceStatus` for unfreeze (§4.4)


class ExpireTimeField(serializers.Field):
    """`expireTime`: UTC `yyyyMMddHHmmss`, or 17 digits with milliseconds as Huawei's example
    sends (§2.7); anything else is 000002. Optional V1 values may be blank (→ None)."""

    default_error_messages = {"format": "must be UTC yyyyMMddHHmmss (14 or 17 digits)"}

    def to_internal_value(self, data: Any) -> datetime | None:
        if not isinstance(data, str):
            self.fail("format")
        if data == "" and not self.required:
            return None
        moment = compact_time(data)
        if moment is None:
            self.fail("format")
        return moment

    def to_representation(self, value: datetime) -> str:
        return value.strftime("%Y%m%d%H%M%S")


class BlankIsAbsent:
    """V1 GET parameters arrive as strings; an empty one means "not sent" (§3.3 skips blanks)."""

    def validate_empty_values(self, data: Any):
        if data == "" and not self.required:
            return True, None
        return super().validate_empty_values(data)


class V1Integer(BlankIsAbsent, serializers.IntegerField):
    pass


class V1Decimal(BlankIsAbsent, serializers.DecimalField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 20)
        kwargs.setdefault("decimal_places", 4)
        super().__init__(**kwargs)


class V1Choice(BlankIsAbsent, serializers.ChoiceField):
    pass


class V1ChargingMode(V1Integer):
    default_error_messages = {"choice": "must be one of 0, 1, 3, 5"}

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if value not in V1_CHARGING_MODES:
            self.fail("choice")
        return V1_CHARGING_MODES[value]


class ExtendParamsField(serializers.CharField):
    """`saasExtendParams`: base64 of a JSON array of {name, value} (§4.4)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list:
        text = super().to_internal_value(data)
        if not text:
            return []
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
            return lenient_list(raw.decode("utf-8"))
        except (binascii.Error, ValueError, BodyError) as exc:
            raise serializers.ValidationError(
                "must be base64 of a JSON array of {name, value}"
            ) from exc


def split_instance_ids(value: str) -> list[str]:
    """Comma-separated ids (§2.7): blanks around commas ignored, 1 to 100 ids of ≤ 64."""
    ids = [part.strip() for part in value.split(",") if part.strip()]
    if not ids:
        raise serializers.ValidationError("no instance id given")
    if len(ids) > MAX_QUERY_IDS:
        raise serializers.ValidationError(f"at most {MAX_QUERY_IDS} ids, got {len(ids)}")
    too_long = next((i for i in ids if len(i) > INSTANCE_ID_MAX), None)
    if too_long is not None:
        raise serializers.ValidationError(f"id longer than {INSTANCE_ID_MAX}: {too_long[:70]!r}")
    return ids


# --- V2 (§4.2) ---------------------------------------------------------------------------------


class NewInstanceSerializer(BasicSerializer):
    orderId = KgString(64)
    orderLineId = KgString(64)
    businessId = KgString(64)


class QueryInstanceSerializer(BasicSerializer):
    # Stated String(100), yet it carries up to 100 ids: the id count is the limit (§2.7).
    instanceId = KgString()

    def validate_instanceId(self, value: str) -> list[str]:
        return split_instance_ids(value)


class RefreshInstanceSerializer(BasicSerializer):
    scene = serializers.ChoiceField(choices=RefreshScene.choices)
    orderId = KgString(64)
    orderLineId = KgString(64)
    instanceId = KgString(64)
    productId = KgString(64, required=False)
    expireTime = ExpireTimeField()


class UpdateInstanceStatusSerializer(BasicSerializer):
    instanceId = KgString(64)
    status = serializers.ChoiceField(choices=[InstanceStatus.FREEZE, InstanceStatus.UNFREEZE])


class ReleaseInstanceSerializer(BasicSerializer):
    instanceId = KgString(64)
    orderId = KgString(64, required=False)
    orderLineId = KgString(64, required=False)


class UpgradeInstanceSerializer(BasicSerializer):
    instanceId = KgString(64)
    orderId = KgString(64)
    orderLineId = KgString(64)


class ChangeInstanceCheckSerializer(BasicSerializer):
    instanceId = KgString(64)
    # Fields undocumented (§4.2.7); an object or a string holding one. The table says M, but
    # Huawei's page illustrates the call with the upgrade body, which has none: a probe replaying
    # that example must not fail (5 failing days freeze the product, §1.3), and we do no
    # capacity check that would need it (§2.7). A value that is present is still validated.
    productInfo = LenientObjectField(required=False)


class OrderNotifySerializer(BasicSerializer):
    orderId = KgString(64)
    orderLineId = KgString(64, required=False)  # M/O unstated (§4.2.9)


# --- V1 GET (§4.4): every value is a string of the query ---------------------------------------


class V1Serializer(BasicSerializer):
    """`activity` and `testFlag` ("1" debug) as in V2; `timeStamp`/`authToken` were verified."""


class V1NewInstanceSerializer(V1Serializer):
    customerId = KgString(100)
    customerName = KgString(64, required=False)
    userId = KgString(64, required=False)
    userName = KgString(64, required=False)
    # AES ciphertext (§3.5): the handler decrypts with the key that verified the call.
    mobilePhone = KgString(256, required=False)
    email = KgString(512, required=False)
    businessId = KgString(64)
    orderId = KgString(64)
    skuCode = KgString(64, required=False)
    productId = KgString(64, required=False)
    trialFlag = V1Choice(choices=["0", "1"], required=False)
    expireTime = ExpireTimeField(required=False)
    chargingMode = V1ChargingMode(required=False)
    saasExtendParams = ExtendParamsField()
    amount = V1Integer(required=False)
    diskSize = V1Integer(required=False)
    bandWidth = V1Integer(required=False)
    periodType = V1Choice(choices=["year", "month"], required=False)
    periodNumber = V1Integer(required=False, min_value=0)
    orderAmount = V1Decimal(required=False)


class V1RefreshInstanceSerializer(V1Serializer):
    orderId = KgString(64)
    instanceId = KgString(64)
    productId = KgString(64, required=False)
    expireTime = ExpireTimeField()
    trialToFormal = V1Choice(choices=["0", "1"], required=False)
    periodType = V1Choice(choices=["year", "month"], required=False)
    periodNumber = V1Integer(required=False, min_value=0)
    orderAmount = V1Decimal(required=False)


class V1ExpireInstanceSerializer(V1Serializer):
    instanceId = KgString(64)
    orderId = KgString(64)


class V1ReleaseInstanceSerializer(V1Serializer):
    instanceId = KgString(64)
    orderId = KgString(64)
    orderAmount = V1Decimal(required=False)


class V1UpgradeSerializer(V1Serializer):
    instanceId = KgString(64)
    orderId = KgString(64)
    skuCode = KgString(64)
    productId = KgString(64)
    amount = V1Integer(required=False)
    diskSize = V1Integer(required=False)
    bandWidth = V1Integer(required=False)
    saasExtendParams = ExtendParamsField()


class V1InstanceStatusSerializer(V1Serializer):
    instanceId = KgString(64)
    instanceStatus = serializers.ChoiceField(choices=[InstanceStatus.FREEZE, InstanceStatus.NORMAL])


class V1QueryInstanceSerializer(V1Serializer):
    instanceId = KgString()

    def validate_instanceId(self, value: str) -> list[str]:
        return split_instance_ids(value)
