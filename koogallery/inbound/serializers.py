"""Serializer building blocks shared by every KooGallery interface (spec §2.3 step 6, §4).

Types follow the spec tables: `String(n)` → `KgString(n)`; `Integer` fields accept decimal
strings; a value longer than we can store is `000002`, never a truncation.
"""

from typing import Any

from rest_framework import serializers

from koogallery.protocol.jsonbody import BodyError, lenient_list, lenient_object
from koogallery.protocol.times import KIT_TIME_FORMAT, kit_time


class KgString(serializers.CharField):
    """A String(n) of the spec: no trimming (signatures cover the value as sent)."""

    def __init__(self, max_length: int | None = None, *, required: bool = True, **kwargs):
        kwargs.setdefault("allow_blank", not required)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(max_length=max_length, required=required, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        # CharField would turn numbers and booleans into strings; the spec's String is a string
        # (§2.3 step 6: a mistyped field is 000002).
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class KgChoiceInteger(serializers.IntegerField):
    """An Integer enumeration (`flag`, kit `testFlag`); "1" is accepted as 1 (§2.3)."""

    default_error_messages = {"not_in_choices": "{value} is not one of {choices}."}

    def __init__(self, choices, **kwargs):
        self.allowed = tuple(int(c) for c in choices)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        # "1.0" or True would pass IntegerField; the spec's integers are whole decimal numbers.
        text = data.strip().lstrip("-") if isinstance(data, str) else None
        if isinstance(data, (bool, float)) or (text is not None and not text.isdigit()):
            self.fail("invalid")
        value = super().to_internal_value(data)
        if value not in self.allowed:
            self.fail("not_in_choices", value=value, choices=list(self.allowed))
        return value


class LenientListField(serializers.ListField):
    """A JSON array or a string holding one, bare keys tolerated (§2.6)."""

    def to_internal_value(self, data: Any) -> list:
        try:
            data = lenient_list(data)
        except BodyError as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return super().to_internal_value(data)


class LenientObjectField(serializers.DictField):
    """A JSON object or a string holding one (e.g. changeInstanceCheck `productInfo`)."""

    def to_internal_value(self, data: Any) -> dict:
        try:
            data = lenient_object(data)
        except BodyError as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return super().to_internal_value(data)


def call_time(attrs: dict, name: str):
    """The kit time in `attrs[name]` as a datetime (§2.3: it orders the changes of an entity);
    one that does not read is 000002."""
    moment = kit_time(attrs[name])
    if moment is None:
        raise serializers.ValidationError({name: f"must be a time {KIT_TIME_FORMAT}"})
    return moment


class KitSerializer(serializers.Serializer):
    """The fields every kit call carries (§4.1 common): instanceId may be empty (debugging).

    `call_time` is the call's `timeStamp` read as a time: a change older than the one that last
    wrote an entity is skipped (§2.3 "Replays and late calls")."""

    instanceId = KgString(64, required=True, allow_blank=True)
    testFlag = KgChoiceInteger(choices=(0, 1))
    timeStamp = KgString(32)

    def validate(self, attrs: dict) -> dict:
        attrs["is_test"] = attrs["testFlag"] == 1
        attrs["call_time"] = call_time(attrs, "timeStamp")
        return attrs


class BasicTestFlag(serializers.CharField):
    """Basic-interface `testFlag`: "1" debug, absent or "0" production, else 000002 (§2.5)."""

    default_error_messages = {"blank": 'must be "1" (debug) or "0"'}

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, bool) or str(data) not in ("0", "1"):
            raise serializers.ValidationError('must be "1" (debug) or "0"')
        return str(data)


class BasicSerializer(serializers.Serializer):
    """Fields common to every basic activity: `activity` and the optional `testFlag`."""

    activity = KgString(32)
    testFlag = BasicTestFlag()

    def validate(self, attrs: dict) -> dict:
        attrs["is_test"] = attrs.get("testFlag") == "1"
        return attrs
