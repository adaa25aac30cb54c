"""The response envelope of spec §2.4: serialised once, signed, sent as exactly those bytes."""

import json
from typing import Any

from django.http import HttpResponse

from .resultcodes import ResultCode
from .signing import body_sign_header

CONTENT_TYPE = "application/json;charset=UTF-8"


def envelope_bytes(
    code: ResultCode, message: str | None = None, fields: dict | None = None
) -> bytes:
    body: dict[str, Any] = {"resultCode": code.value, "resultMsg": (message or code.label)[:255]}
    for name, value in (fields or {}).items():
        if name not in body:
            body[name] = value
    return json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def envelope_response(
    code: ResultCode, message: str | None, fields: dict | None, sign_key: str | None
) -> HttpResponse:
    content = envelope_bytes(code, message, fields)
    response = HttpResponse(content, content_type=CONTENT_TYPE, status=200)
    if sign_key:
        response["Body-Sign"] = body_sign_header(sign_key, content)
    return response
