"""Concurrent duplicates on PostgreSQL (STYLE.md §3, spec §2.7): KooGallery retries newInstance
while the first call is still running, so twins race. Real parallel HTTP requests against the
service under gunicorn (several worker processes and threads, each with its own database
connection) on the test database, released together by a barrier.
"""

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import requests
from django.conf import settings

from instances.models import Instance, InstanceOrder, InstanceTransition, OrderEvent
from koogallery.inbound.journal import InboundCall
from koogallery.protocol import signing
from tests.support.kgclient import fixture_json, now_ms
from tests.support.live_server import _server, server  # noqa: F401 (fixtures)

TWINS = 50








def signed_post(url: str, body: dict) -> requests.Response:
    key = settings.KOOGALLERY_BASIC_KEY[0]
    raw = json.dumps(body).encode("utf-8")
    nonce, timestamp = uuid.uuid4().hex.upper(), now_ms()
    query = urlencode(
        {
            "signature": signing.basic_sign(key, nonce, timestamp, raw).upper(),
            "timestamp": timestamp,
            "nonce": nonce,
        }
    )
    return requests.post(
        f"{url}/koogallery?{query}",
        data=raw,
        headers={"Content-Type": "application/json;charset=utf8"},
        timeout=60,
    )


def race(url: str, bodies: list[dict]) -> list[dict]:
    """Send all bodies at once (each thread waits at the barrier after signing)."""
    barrier = threading.Barrier(len(bodies))

    def one(body: dict) -> dict:
        barrier.wait()
        response = signed_post(url, body)
        assert response.status_code == 200
        return response.json()

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(one, bodies))


def test_concurrent_duplicate_new_instance_creates_one_instance(server):  # noqa: F811
    bodies = [fixture_json("newInstance__huawei", businessId=f"twin-{n:02d}") for n in range(TWINS)]
    answers = race(server, bodies)
    assert {a["resultCode"] for a in answers} == {"000000"}
    instance_ids = {a["instanceId"] for a in answers}
    assert len(instance_ids) == 1
    instance = Instance.objects.get()
    assert instance_ids == {instance.instance_id}
    assert instance.instance_id.startswith("twin-")
    # Only the winner wrote the audit trail; every call has its journal row.
    assert InstanceTransition.objects.count() == 2
    assert InboundCall.objects.filter(endpoint="newInstance", result_code="000000").count() == TWINS


def test_concurrent_duplicate_upgrades_record_one_order(server):  # noqa: F811
    first = signed_post(server, fixture_json("newInstance__huawei")).json()
    bodies = [
        fixture_json("upgradeInstance__huawei", instanceId=first["instanceId"]) for _ in range(20)
    ]
    answers = race(server, bodies)
    assert {a["resultCode"] for a in answers} == {"000000"}
    assert InstanceOrder.objects.filter(event=OrderEvent.UPGRADE).count() == 1
    assert InstanceTransition.objects.filter(cause="upgradeInstance").count() == 1
