"""Validation of the licence activities (spec §4.2.8, §4.5): types, lengths, time formats.

Everything a serializer rejects is `000002` with the field named; the business checks that need
the instance (`000003`, `000900`–`000903`) are the service's.
"""

import re
from datetime import UTC, datetime
from typing import Any

from rest_framework import serializers

from koogallery.serializers import BasicSerializer, KgString

from .models import LicenseCodeScene, LicenseCodeStatusChange

# §2.8: UTC `yyyy-MM-dd HH:mm:ss` with an optional ` z`/` Z` (Huawei's example), or ISO-8601.
_HUAWEI_TIME = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?: [zZ])?")
_DIGITS_TIME = re.compile(r"\d{14}(?:\d{3})?")


def parse_license_time(text: str) -> datetime:
    """An aware UTC datetime (seconds precision) or ValueError."""
    match = _HUAWEI_TIME.fullmatch(text)
    if match:
        return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    if not text[:4].isdigit() or len(text) < 10:
        raise ValueError(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


def parse_compact_time(text: str) -> datetime:
    """`yyyyMMddHHmmss` (14 digits, or 17 with milliseconds), UTC, as in §4.5 / §2.7."""
    if not _DIGITS_TIME.fullmatch(text):
        raise ValueError(text)
    return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)


class LicenseTimeField(KgString):
    default_error_messages = {
        "bad_time": "must be UTC 'yyyy-MM-dd HH:mm:ss' (optionally followed by ' Z') or ISO-8601"
    }

    def to_internal_value(self, data: Any) -> datetime | None:
        text = super().to_internal_value(data)
        if text == "":
            return None
        try:
            return parse_license_time(text)
        except ValueError:
            self.fail("bad_time")


class CompactTimeField(KgString):
    default_error_messages = {"bad_time": "must be UTC yyyyMMddHHmmss"}

    def to_internal_value(self, data: Any) -> datetime:
        text = super().to_internal_value(data)
        try:
            return parse_compact_time(text)
        except ValueError:
            self.fail("bad_time")


class KgChoice(KgString):
    """A String enumeration; anything else is `000002` naming the allowed values."""

    default_error_messages = {"not_in_choices": "{value!r} is not one of {choices}."}

    def __init__(self, max_length: int, choices, **kwargs):
        self.allowed = tuple(str(c) for c in choices)
        super().__init__(max_length, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        if text not in self.allowed:
            self.fail("not_in_choices", value=text, choices=", ".join(self.allowed))
        return text


def optional(field: serializers.Field) -> serializers.Field:
    """Huawei sends absent optional fields as null too; null means absent."""
    field.required = False
    field.allow_null = True
    return field


class GetLicenseAsyncSerializer(BasicSerializer):
    instanceId = KgString(64)
    effectiveTime = LicenseTimeField(32)
    expireTime = optional(LicenseTimeField(32, required=False))
    eventId = KgString(64)
    deviceFingerprint = optional(KgString(1024, required=False))

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        if attrs["effectiveTime"] is None:
            raise serializers.ValidationError({"effectiveTime": "This field may not be blank."})
        expire = attrs.get("expireTime")
        if expire is not None and expire <= attrs["effectiveTime"]:
            raise serializers.ValidationError({"expireTime": "must be after effectiveTime"})
        attrs["deviceFingerprint"] = attrs.get("deviceFingerprint") or ""
        return attrs


class RefreshLicenseCodeSerializer(BasicSerializer):
    scene = KgChoice(64, LicenseCodeScene.values)
    orderId = KgString(64)
    orderLineId = KgString(64)
    license = KgString(64)
    productId = optional(KgString(64, required=False))
    expireTime = CompactTimeField(20)


class UpdateLicenseCodeStatusSerializer(BasicSerializer):
    license = KgString(64)
    status = KgChoice(32, LicenseCodeStatusChange.values)


class ReleaseLicenseCodeSerializer(BasicSerializer):
    license = KgString(64)
    orderId = optional(KgString(64, required=False))
    orderLineId = optional(KgString(64, required=False))
