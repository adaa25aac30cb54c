"""Validation of POST /api/usage (serializers only validate; the view calls the service)."""

import re
from datetime import UTC
from decimal import Context, Decimal

from django.utils.dateparse import parse_datetime
from rest_framework import serializers


class UsageEventSerializer(serializers.Serializer):
    """One usage event as our product reports it."""

    instanceId = serializers.CharField(max_length=64, trim_whitespace=False)
    quantity = serializers.DecimalField(
        max_digits=19,
        decimal_places=4,
        help_text="> 0, at most 4 decimals (§5.5 usage_value); a JSON number or a string",
    )
    occurredAt = serializers.DateTimeField(
        default_timezone=UTC,
        help_text="ISO-8601; without an offset it is taken as UTC (§5.5: all times UTC)",
    )
    eventId = serializers.CharField(
        max_length=128,
        trim_whitespace=False,
        help_text="the reporter's unique id: a repeat with the same content is a duplicate",
    )

    def validate_quantity(self, value):
        if value <= 0:
            raise serializers.ValidationError("must be greater than 0", code="not_positive")
        return value


# --- the same validation, fast, for plainly valid events ------------------------------------------

# A quantity DRF's DecimalField(19, 4) takes as it is: up to 15 whole digits, up to 4 decimals
# (ASCII digits only: Decimal also reads other scripts' digits, and those go to DRF).
_PLAIN_QUANTITY = re.compile(r"[0-9]{1,15}(?:\.[0-9]{0,4})?")
_FOUR_PLACES = Decimal(".1") ** 4
_NINETEEN_DIGITS = Context(prec=19)  # DRF quantizes in the current context with prec=max_digits


def _plain_id(value: object, max_length: int) -> bool:
    """What CharField(max_length, trim_whitespace=False) takes unchanged: a non-empty str, not
    too long, with no NUL and no surrogate (an ASCII string has none)."""
    return (
        type(value) is str
        and 0 < len(value) <= max_length
        and value.isascii()
        and "\x00" not in value
    )


def fast_validated_event(item: dict) -> dict | None:
    """`UsageEventSerializer(data=item).validated_data` for an event whose values are plainly
    valid (ASCII ids, a plain positive decimal, an ISO-8601 time), without DRF's per-field
    machinery; None for anything else: then the serializer decides, and names the problem.
    tests/metering/test_metering_fast_path.py holds it to the serializer's answer."""
    instance_id = item.get("instanceId")
    event_id = item.get("eventId")
    if not (_plain_id(instance_id, 64) and _plain_id(event_id, 128)):
        return None
    quantity = item.get("quantity")
    if type(quantity) is int or type(quantity) is float:
        quantity = str(quantity)  # DecimalField reads smart_str(value)
    if type(quantity) is not str or not _PLAIN_QUANTITY.fullmatch(quantity):
        return None
    amount = Decimal(quantity).quantize(_FOUR_PLACES, context=_NINETEEN_DIGITS)
    if not amount > 0:
        return None  # validate_quantity refuses it
    occurred = item.get("occurredAt")
    if type(occurred) is not str:
        return None
    try:
        moment = parse_datetime(occurred)  # DateTimeField's ISO-8601 reading
        if moment is None:
            return None
        # enforce_timezone(default_timezone=UTC): aware times converted, naive ones taken as UTC.
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, TypeError, OverflowError):
        return None
    return {
        "instanceId": instance_id,
        "quantity": amount,
        "occurredAt": moment,
        "eventId": event_id,
    }


# --- answers (documentation of the schema; the view builds plain dicts) -------------------------


class RecordedEventSerializer(serializers.Serializer):
    eventId = serializers.CharField()
    instanceId = serializers.CharField()
    status = serializers.ChoiceField(choices=["recorded", "duplicate"])


class UsageReceiptSerializer(serializers.Serializer):
    recorded = serializers.IntegerField(help_text="events stored by this request")
    duplicates = serializers.IntegerField(help_text="events already stored (same content)")
    events = RecordedEventSerializer(many=True, help_text="in request order")


class UsageProblemSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="position in the request (0 for an object)")
    eventId = serializers.CharField(allow_null=True)
    field = serializers.CharField(help_text="the offending field, '' for the whole event")
    code = serializers.CharField(
        help_text="e.g. required, invalid, not_positive, max_decimal_places, unknown_instance, "
        "package_instance, not_on_demand, released_instance, frozen_instance, in_future, "
        "before_start, period_closed, event_id_conflict"
    )
    message = serializers.CharField()


class UsageErrorSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="rejected, malformed_json, empty, invalid_body, too_many_events, "
        "unauthorized, unsupported_media_type"
    )
    message = serializers.CharField()
    errors = UsageProblemSerializer(many=True, required=False)
