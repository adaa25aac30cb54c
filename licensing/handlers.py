"""Basic-interface activity handlers for licences (spec §4.2.8, §4.5): one service call each."""

from koogallery.inbound.endpoint import Call, Reply
from koogallery.protocol.resultcodes import ResultCode

from . import license_codes, services
from .models import LicenseCodeScene, LicenseCodeStatusChange, RequestState


def get_license_async(data: dict, call: Call) -> Reply:
    """`000000` when this licence was already delivered, else `000004` (§2.8)."""
    request = services.request_license(
        instance_id=data["instanceId"],
        event_id=data["eventId"],
        effective_at=data["effectiveTime"],
        expire_at=data.get("expireTime"),
        fingerprint=data["deviceFingerprint"],
        is_test=data["is_test"],
    )
    if request.state == RequestState.DELIVERED:
        return Reply(ResultCode.SUCCESS)
    return Reply(ResultCode.PROCESSING)


def refresh_license_code(data: dict, call: Call) -> None:
    license_codes.refresh_license_code(
        code=data["license"],
        scene=LicenseCodeScene(data["scene"]),
        order_id=data["orderId"],
        order_line_id=data["orderLineId"],
        product_id=data.get("productId") or "",
        expire_at=data["expireTime"],
        is_test=data["is_test"],
    )


def update_license_code_status(data: dict, call: Call) -> None:
    license_codes.set_license_code_status(
        code=data["license"],
        change=LicenseCodeStatusChange(data["status"]),
        is_test=data["is_test"],
    )


def release_license_code(data: dict, call: Call) -> None:
    license_codes.release_license_code(
        code=data["license"],
        order_id=data.get("orderId") or "",
        order_line_id=data.get("orderLineId") or "",
        is_test=data["is_test"],
    )
