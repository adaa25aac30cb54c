"""POST /api/usage: our product reports usage (issue 8; spec §5.5 for what becomes of it).

Authenticated by `Authorization: Bearer <METERING_API_TOKEN>` (constant-time comparison, any of
the configured tokens). The body is one event `{"instanceId", "quantity", "occurredAt",
"eventId"}` or a list of them (at most METERING_API_MAX_EVENTS). All or nothing: one refused
event refuses the request and every problem is listed.

Answers (JSON):
- 201 `{"recorded": n, "duplicates": m, "events": [{"eventId", "instanceId", "status"}]}`
  (`status` "recorded" or "duplicate"); 200 when every event was a duplicate;
- 400 `{"code": "rejected", "message", "errors": [{"index", "eventId", "field", "code",
  "message"}]}`, or `{"code": "malformed_json" | "empty" | "too_many_events" | "invalid_body",
  "message"}`;
- 401 `{"code": "unauthorized", "message"}`; 415 `{"code": "unsupported_media_type", …}`.
"""

import hmac
import logging

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import services
from .serializers import (
    UsageErrorSerializer,
    UsageEventSerializer,
    UsageReceiptSerializer,
    fast_validated_event,
)

logger = logging.getLogger(__name__)


class MeteringClient:
    """The product holding a metering token (no user account behind it)."""

    is_authenticated = True
    is_staff = False

    def __str__(self) -> str:
        return "metering client"


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request):
        scheme, _, token = get_authorization_header(request).partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            raise exceptions.NotAuthenticated("Authorization: Bearer <token> required")
        tokens = [t.encode() for t in settings.METERING_API_TOKEN if t]
        if not tokens:
            logger.warning("POST /api/usage refused: METERING_API_TOKEN is not set")
        # Compare with every token (no early exit), each in constant time.
        matches = [hmac.compare_digest(token, candidate) for candidate in tokens]
        if not any(matches):
            raise exceptions.AuthenticationFailed("invalid token")
        return MeteringClient(), None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="metering"'


ERROR_CODES = {
    exceptions.ParseError: "malformed_json",
    exceptions.NotAuthenticated: "unauthorized",
    exceptions.AuthenticationFailed: "unauthorized",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.MethodNotAllowed: "method_not_allowed",
}


def error_response(code: str, message: str, http_status: int, **extra) -> Response:
    return Response({"code": code, "message": message, **extra}, status=http_status)


def _field_problems(index: int, item: object, errors: dict) -> list[dict]:
    event_id = item.get("eventId") if isinstance(item, dict) else None
    problems = []
    for name, details in errors.items():
        for detail in details:
            field = "" if name == "non_field_errors" else name
            problems.append(
                {
                    "index": index,
                    "eventId": event_id if isinstance(event_id, str) else None,
                    "field": field,
                    "code": getattr(detail, "code", "invalid"),
                    "message": f"{field}: {detail}" if field else str(detail),
                }
            )
    return problems


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "meteringToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "a token of METERING_API_TOKEN",
        }


class UsageJSONParser(JSONParser):
    """DRF's JSON parser; JSON nested deeper than Python's json can read is malformed (400),
    not a RecursionError (500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError("JSON parse error - nested too deeply") from exc


class UsageView(APIView):
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [UsageJSONParser]

    def get_exception_handler(self):
        def handler(exc, context):
            for kind, code in ERROR_CODES.items():
                if isinstance(exc, kind):
                    response = error_response(code, str(exc.detail), exc.status_code)
                    if isinstance(
                        exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed
                    ):
                        response["WWW-Authenticate"] = self.get_authenticate_header(self.request)
                    return response
            return None

        return handler

    @extend_schema(
        summary="Report usage of on-demand instances",
        description=__doc__,
        request=PolymorphicProxySerializer(
            component_name="UsageEventOrList",
            serializers=[UsageEventSerializer, UsageEventSerializer(many=True)],
            resource_type_field_name=None,
            many=False,
        ),
        responses={
            201: UsageReceiptSerializer,
            200: UsageReceiptSerializer,
            400: UsageErrorSerializer,
            401: UsageErrorSerializer,
            415: UsageErrorSerializer,
        },
    )
    def post(self, request: Request) -> Response:
        body = request.data
        items = body if isinstance(body, list) else [body]
        if not isinstance(body, list | dict):
            return error_response(
                "invalid_body",
                "a usage event object or a list of them",
                status.HTTP_400_BAD_REQUEST,
            )
        if not items:
            return error_response("empty", "no usage events", status.HTTP_400_BAD_REQUEST)
        limit = settings.METERING_API_MAX_EVENTS
        if len(items) > limit:
            return error_response(
                "too_many_events",
                f"at most {limit} events per request, got {len(items)}",
                status.HTTP_400_BAD_REQUEST,
            )
        problems, events = [], []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                problems.append(
                    {
                        "index": index,
                        "eventId": None,
                        "field": "",
                        "code": "invalid",
                        "message": "each event must be a JSON object",
                    }
                )
                continue
            data = fast_validated_event(item)
            if data is None:
                serializer = UsageEventSerializer(data=item)
                if not serializer.is_valid():
                    problems.extend(_field_problems(index, item, serializer.errors))
                    continue
                data = serializer.validated_data
            events.append(
                services.UsageInput(
                    event_id=data["eventId"],
                    instance_id=data["instanceId"],
                    quantity=data["quantity"],
                    occurred_at=data["occurredAt"],
                )
            )
        if problems:
            return self._rejected(problems, len(items))
        try:
            receipt = services.record_usage(events=events)
        except services.UsageRejected as exc:
            return self._rejected([p.as_json() for p in exc.problems], len(items))
        answer = {
            "recorded": receipt.created,
            "duplicates": receipt.duplicates,
            "events": [
                {
                    "eventId": event.event_id,
                    "instanceId": event.instance_id,
                    "status": "recorded" if new else "duplicate",
                }
                for event, new in receipt.results
            ],
        }
        return Response(answer, status=status.HTTP_201_CREATED if receipt.created else 200)

    def _rejected(self, problems: list[dict], total: int) -> Response:
        refused = len({p["index"] for p in problems})
        return error_response(
            "rejected",
            f"{refused} of {total} event(s) refused; nothing was recorded",
            status.HTTP_400_BAD_REQUEST,
            errors=problems,
        )
