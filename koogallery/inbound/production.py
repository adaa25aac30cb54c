"""The single production address `/koogallery` (spec §2.1): basic V2 POST and V1 GET."""

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from koogallery.inbound import activities
from koogallery.inbound.endpoint import (
    Call,
    InboundEndpoint,
    Rejected,
    Reply,
    check_v1_token,
    check_v2_headers,
    check_v2_signature,
    validate,
)
from koogallery.inbound.journal import Family, Verification
from koogallery.protocol import signing
from koogallery.protocol.resultcodes import ResultCode
from koogallery.protocol.times import compact_time

# Parameters carrying base64 whose `+` the URL decoding turned into a space (§4.4).
V1_BASE64_PARAMS = ("authToken", "saasExtendParams", "mobilePhone", "email")


def v1_params(request: HttpRequest) -> dict[str, str]:
    """The GET parameters, URL-decoded; a repeated one keeps its last value (and is refused:
    `v1_pairs`)."""
    params = {name: request.GET.get(name, "") for name in request.GET}
    for name in V1_BASE64_PARAMS:
        if name in params:
            params[name] = params[name].replace(" ", "+")
    return params


def v1_pairs(request: HttpRequest) -> list[tuple[str, str]]:
    """Every GET parameter as received, repeats included."""
    return [(name, value) for name, values in request.GET.lists() for value in values]


def parse_v1_timestamp(value: str) -> datetime | None:
    return compact_time(value, millis=False)


class ProductionInterfaceView(InboundEndpoint):
    http_method_names = ["get", "post"]
    family = Family.BASIC_V2
    endpoint_name = "basic"

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        self.family = Family.BASIC_V2
        return self.serve(request)

    def get(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if "activity" not in request.GET:
            return self.http_method_not_allowed(request, *args, **kwargs)
        self.family = Family.BASIC_V1
        return self.serve(request, has_body=False)

    def parse(self, request: HttpRequest, raw: bytes) -> tuple[Any, str | None]:
        if self.family == Family.BASIC_V1:
            return v1_params(request), None
        return super().parse(request, raw)

    def endpoint_for(self, body: Any) -> str:
        if isinstance(body, dict) and isinstance(body.get("activity"), str):
            return body["activity"][:64] or self.endpoint_name
        return self.endpoint_name

    def read_only(self, body: dict) -> bool:
        name = body.get("activity")
        activity = activities.lookup(self.family, name) if isinstance(name, str) else None
        return activity is not None and activity.read_only

    def nonce(self, request: HttpRequest) -> str:
        return "" if self.family == Family.BASIC_V1 else request.GET.get("nonce") or ""

    def check_credentials(self, request: HttpRequest) -> None:
        if self.family == Family.BASIC_V2:
            check_v2_headers(
                request.GET.get("signature"), request.GET.get("timestamp"), request.GET.get("nonce")
            )

    def v1_token(self, request: HttpRequest, parsed: Any) -> str:
        return signing.clean_v1_token(parsed.get("authToken") or "")

    def authenticate(self, request: HttpRequest, raw: bytes, parsed: Any) -> str:
        if self.family == Family.BASIC_V1:
            token = parsed.get("authToken")
            key = check_v1_token(
                self.family, token, parsed, v1_pairs(request), token_in_params=True
            )
            stamp = parse_v1_timestamp(parsed.get("timeStamp", ""))
            if stamp is None:
                raise Rejected(ResultCode.INVALID_PARAM, "timeStamp must be yyyyMMddHHmmssSSS")
            age = abs((datetime.now(UTC) - stamp).total_seconds())
            if age > settings.KOOGALLERY_V1_MAX_AGE_S:
                raise Rejected(
                    ResultCode.INVALID_PARAM,
                    "timeStamp outside the accepted window",
                    Verification.STALE,
                )
            return key
        return check_v2_signature(
            self.family,
            signing.basic_sign,
            request.GET.get("signature"),
            request.GET.get("timestamp"),
            request.GET.get("nonce"),
            raw,
            parsed,
        )

    def handle(self, call: Call) -> Reply:
        name = call.body.get("activity")
        if not isinstance(name, str) or not name:
            raise Rejected(ResultCode.INVALID_PARAM, "activity: This field is required.")
        activity = activities.lookup(self.family, name)
        if activity is None:
            raise Rejected(ResultCode.INVALID_PARAM, f"activity: unknown activity {name!r}")
        data = validate(activity.serializer_class, call.body, v1=call.is_v1)
        reply = activity.handler(data, call)
        return reply if isinstance(reply, Reply) else Reply()
