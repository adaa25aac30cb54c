"""Signed calls to a service running in its own process (`procs.Service`), and the bodies the
fault and never-wait tests send."""

import json
import time
import uuid
from urllib.parse import urlencode

from django.conf import settings

from koogallery.protocol import signing
from tests.support.procs import (
    Service,
)


# --- calls, signed as KooGallery signs them -------------------------------------------------------
def _raw(body: dict) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def _now_ms() -> str:
    return str(time.time_ns() // 1_000_000)


def kit_v2(service: Service, name: str, body: dict):
    raw, nonce, stamp = _raw(body), uuid.uuid4().hex, _now_ms()
    key = settings.KOOGALLERY_KIT_KEY[0]
    headers = {
        "x-sign": signing.kit_sign(key, nonce, stamp, raw),
        "x-timestamp": stamp,
        "x-nonce": nonce,
    }
    return service.post_json(f"/koogallery/produceAPI/v2/{name}", raw, headers)


def kit_v1(service: Service, name: str, body: dict):
    token = signing.v1_auth_token(settings.KOOGALLERY_KIT_KEY[0], body)
    return service.post_json(f"/koogallery/produceAPI/{name}", _raw(body), {"authToken": token})


def basic_v2(service: Service, body: dict):
    raw, nonce, stamp = _raw(body), uuid.uuid4().hex, _now_ms()
    signature = signing.basic_sign(settings.KOOGALLERY_BASIC_KEY[0], nonce, stamp, raw)
    query = urlencode({"signature": signature, "timestamp": stamp, "nonce": nonce})
    return service.post_json(f"/koogallery?{query}", raw)


def basic_v1(service: Service, params: dict):
    params = {**params, "timeStamp": time.strftime("%Y%m%d%H%M%S000", time.gmtime())}
    params["authToken"] = signing.v1_auth_token(settings.KOOGALLERY_BASIC_KEY[0], params)
    status, body, seconds = service.get(f"/koogallery?{urlencode(params)}")
    return status, (json.loads(body) if status == 200 else body), seconds


def tenant_body(tenant: str, flag: int = 1) -> dict:
    return {
        "instanceId": f"inst-{tenant}",
        "orderId": f"CS-{tenant}",
        "tenantId": tenant,
        "tenantCode": tenant,
        "name": f"Enterprise {tenant}",
        "domainName": "https://faults.example.com",
        "flag": flag,
        "testFlag": 0,
        "timeStamp": "20240601120000000",
    }


def org_body(tenant: str, code: str) -> dict:
    return {
        "instanceId": f"inst-{tenant}",
        "tenantId": tenant,
        "orgCode": code,
        "orgName": "研发部",
        "parentCode": "",
        "flag": 1,
        "testFlag": 0,
        "timeStamp": "20240601120000000",
    }


def new_instance_body(order: str) -> dict:
    return {
        "activity": "newInstance",
        "businessId": str(uuid.uuid4()),
        "orderId": order,
        "orderLineId": f"{order}-000001",
    }


def licence_body(instance_id: str, event: str) -> dict:
    return {
        "activity": "getLicenseAsync",
        "instanceId": instance_id,
        "eventId": event,
        "effectiveTime": time.strftime("%Y-%m-%d %H:%M:%S z", time.gmtime()),
        "expireTime": time.strftime("%Y-%m-%d %H:%M:%S z", time.gmtime(time.time() + 86400)),
        "deviceFingerprint": f"04:7C:16:5E:E3:5D|{event}|BOARD|CPU",
    }
