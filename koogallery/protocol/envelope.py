"""The response envelope of spec §2.4: serialised once, signed, sent as exactly those bytes."""

import json
from typing import Any

from django.http import HttpResponse

from koogallery.protocol.resultcodes import ResultCode
from koogallery.protocol.signing import body_sign_header

CONTENT_TYPE = "application/json;charset=UTF-8"


def result_message(code: ResultCode, detail: str | None) -> str:
    """§2.4: `resultMsg` is the code's meaning of §6.1, then what exactly was wrong, if said
    (KooGallery's debugging console shows it to the merchant): "invalid request parameter:
    expireTime: must be after effectiveTime". At most 255 characters."""
    label = code.label
    if not detail or detail.startswith(label):
        return (detail or label)[:255]
    return f"{label}: {detail}"[:255]


def envelope_bytes(
    code: ResultCode, message: str | None = None, fields: dict | None = None
) -> bytes:
    body: dict[str, Any] = {"resultCode": code.value, "resultMsg": result_message(code, message)}
    for name, value in (fields or {}).items():
        if name not in body:
            body[name] = value
    return json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def envelope_response(
    code: ResultCode,
    message: str | None,
    fields: dict | None,
    sign_key: str | None,
    *,
    status: int = 200,
) -> HttpResponse:
    """The envelope, signed; HTTP 200 for everything reaching an endpoint, except a method it
    does not serve (405, §2.4)."""
    content = envelope_bytes(code, message, fields)
    response = HttpResponse(content, content_type=CONTENT_TYPE, status=status)
    if sign_key:
        response["Body-Sign"] = body_sign_header(sign_key, content)
    return response
