"""Validation of POST /api/usage (serializers only validate; the view calls the service)."""

from datetime import UTC

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
