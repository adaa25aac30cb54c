"""Validation of the licence activities (spec §4.2.8, §4.5): types, lengths, time formats.

Everything a serializer rejects is `000002` with the field named; the business checks that need
the instance (`000003`, `000900`–`000903`) are the service's.
"""

import re
from datetime import UTC, datetime
from typing import Any

from rest_framework import serializers

from koogallery.inbound.serializers import BasicSerializer, KgString
from koogallery.protocol.times import compact_time

from .models import LicenseCodeScene, LicenseCodeStatusChange

# §2.8: UTC `yyyy-MM-dd HH:mm:ss` with an optional ` z`/` Z` (Huawei's example), or ISO-8601.
_HUAWEI_TIME = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?: [zZ])?")
# ISO-8601 / RFC 3339 shapes: date, optional time (T or space), optional Z or ±hh[:mm].
_ISO_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:[zZ]|[+-]\d{2}(?::?\d{2})?)?)?"
)


def parse_license_time(text: str) -> datetime:
    """An aware UTC datetime (seconds precision) or ValueError."""
    match = _HUAWEI_TIME.fullmatch(text)
    if match:
        return datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC)
    if not _ISO_TIME.fullmatch(text):
        raise ValueError(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


def parse_compact_time(text: str) -> datetime:
    """`yyyyMMddHHmmss` (14 digits, or 17 with milliseconds), UTC, as in §4.5 / §2.7."""
    moment = compact_time(text, millis=False)
    if moment is None:
        raise ValueError(text)
    return moment


class _TimeText(KgString):
    """A String(n) holding a time: the length is checked on the text, before parsing (the
    field's validators would otherwise see the parsed datetime)."""

    def __init__(self, max_length: int, **kwargs):
        self.text_max_length = max_length
        super().__init__(None, **kwargs)

    def text(self, data: Any) -> str:
        text = super().to_internal_value(data)
        if len(text) > self.text_max_length:
            self.fail("max_length", max_length=self.text_max_length)
        return text


class LicenseTimeField(_TimeText):
    default_error_messages = {
        "bad_time": "must be UTC 'yyyy-MM-dd HH:mm:ss' (optionally followed by ' Z') or ISO-8601"
    }

    def to_internal_value(self, data: Any) -> datetime | None:
        text = self.text(data)
        if text == "":
            return None
        try:
            return parse_license_time(text)
        except ValueError:
            self.fail("bad_time")


class CompactTimeField(_TimeText):
    default_error_messages = {"bad_time": "must be UTC yyyyMMddHHmmss"}

    def to_internal_value(self, data: Any) -> datetime:
        try:
            return parse_compact_time(self.text(data))
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


class GetLicenseAsyncSerializer(BasicSerializer):
    instanceId = KgString(64)
    effectiveTime = LicenseTimeField(32)
    expireTime = LicenseTimeField(32, required=False, allow_null=True)
    eventId = KgString(64)
    deviceFingerprint = KgString(1024, required=False, allow_null=True)

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        if attrs["effectiveTime"] is None:
            raise serializers.ValidationError({"effectiveTime": "This field may not be blank."})
        # "" (allowed: the field is optional) means no expiry, as absent and null do.
        expire = attrs["expireTime"] = attrs.get("expireTime") or None
        if expire is not None and expire <= attrs["effectiveTime"]:
            raise serializers.ValidationError({"expireTime": "must be after effectiveTime"})
        attrs["deviceFingerprint"] = attrs.get("deviceFingerprint") or ""
        return attrs


class RefreshLicenseCodeSerializer(BasicSerializer):
    scene = KgChoice(64, LicenseCodeScene.values)
    orderId = KgString(64)
    orderLineId = KgString(64)
    license = KgString(64)
    productId = KgString(64, required=False, allow_null=True)
    expireTime = CompactTimeField(20)


class UpdateLicenseCodeStatusSerializer(BasicSerializer):
    license = KgString(64)
    status = KgChoice(32, LicenseCodeStatusChange.values)


class ReleaseLicenseCodeSerializer(BasicSerializer):
    license = KgString(64)
    orderId = KgString(64, required=False, allow_null=True)
    orderLineId = KgString(64, required=False, allow_null=True)
