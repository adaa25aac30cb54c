"""Replay protection (spec §2.3 step 5): a V2 call's nonce is claimed by the call's own journal
row, unique per family among verified calls, so a replay is refused with 000001 and whatever it
wrote is rolled back — with no other store (Redis) in the way.
"""

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
import requests
from django.conf import settings

from koogallery.inbound.journal import InboundCall, Verification
from koogallery.protocol import signing
from tenants.models import Tenant
from tests.support.kgclient import envelope, fixture_json, now_ms
from tests.support.live_server import _server, server  # noqa: F401 (fixtures)

TENANT = {
    "instanceId": "inst-replay",
    "orderId": "CS-REPLAY",
    "tenantId": "tenant-replay",
    "tenantCode": "replay",
    "name": "Replay Ltd",
    "domainName": "https://replay.example.com",
    "flag": 1,
    "testFlag": 0,
    "timeStamp": "20220413093539534",
}


@pytest.mark.django_db
def test_a_replay_is_refused_and_what_it_wrote_is_rolled_back(kg):
    nonce = uuid.uuid4().hex
    assert envelope(kg.kit("tenantSync", TENANT, nonce=nonce))["resultCode"] == "000000"
    Tenant.objects.all().delete()  # so a replay that wrote would show

    answer = envelope(kg.kit("tenantSync", TENANT, nonce=nonce))

    assert (answer["resultCode"], answer["resultMsg"]) == (
        "000001",
        "authentication failed: nonce already used",
    )
    assert not Tenant.objects.exists()
    rows = InboundCall.objects.order_by("id")
    assert [(r.verification, r.result_code) for r in rows] == [
        (Verification.VERIFIED, "000000"),
        (Verification.REPLAYED, "000001"),
    ]
    assert rows[0].nonce == rows[1].nonce == nonce


@pytest.mark.django_db
def test_the_replay_of_a_refused_call_is_refused_as_a_replay(kg):
    nonce = uuid.uuid4().hex
    bad = {**TENANT, "flag": 9}
    assert envelope(kg.kit("tenantSync", bad, nonce=nonce))["resultCode"] == "000002"
    assert envelope(kg.kit("tenantSync", bad, nonce=nonce))["resultCode"] == "000001"
    assert InboundCall.objects.latest("id").verification == Verification.REPLAYED


@pytest.mark.django_db
def test_a_nonce_is_claimed_per_family(kg):
    nonce = uuid.uuid4().hex
    assert envelope(kg.kit("tenantSync", TENANT, nonce=nonce))["resultCode"] == "000000"
    body = {"activity": "queryInstance", "instanceId": "nope"}
    assert envelope(kg.basic(body, nonce=nonce))["resultCode"] == "000003"


@pytest.mark.django_db
@pytest.mark.parametrize("nonce", ["N" * 65, "abc def", "abc.def", "n\u00f6nce", "a+b"])
def test_a_nonce_outside_the_spec_alphabet_is_refused_before_any_key(kg, nonce):
    """Spec §2.3: `x-nonce`/`nonce` is 1–64 of [A-Za-z0-9_-], else 000002 (a longer one was
    stored as its SHA-256; an odd character could blur where the nonce ends in the signed text)."""
    for send in (lambda: kg.kit("tenantSync", TENANT, nonce=nonce), lambda: kg.basic(
        {"activity": "queryInstance", "instanceId": "nope"}, nonce=nonce
    )):
        answer = envelope(send())
        assert answer["resultCode"] == "000002", answer
        assert InboundCall.objects.latest("id").verification == Verification.MALFORMED
    assert not Tenant.objects.exists()


def test_simultaneous_replays_are_accepted_once(server):  # noqa: F811
    """The same signed newInstance sent 20 times at once (PostgreSQL, gunicorn): one answer
    000000, every other one 000001, one instance, one accepted journal row."""
    raw = json.dumps(fixture_json("newInstance__huawei", businessId="replayed-once")).encode()
    nonce, timestamp = uuid.uuid4().hex.upper(), now_ms()
    query = urlencode(
        {
            "signature": signing.basic_sign(
                settings.KOOGALLERY_BASIC_KEY[0], nonce, timestamp, raw
            ).upper(),
            "timestamp": timestamp,
            "nonce": nonce,
        }
    )
    barrier = threading.Barrier(20)

    def one(_: int) -> str:
        barrier.wait()
        response = requests.post(
            f"{server}/koogallery?{query}",
            data=raw,
            headers={"Content-Type": "application/json;charset=utf8"},
            timeout=60,
        )
        assert response.status_code == 200
        return response.json()["resultCode"]

    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = sorted(pool.map(one, range(20)))

    assert codes == ["000000"] + ["000001"] * 19
    accepted = InboundCall.objects.filter(result_code="000000")
    assert accepted.count() == 1
    assert InboundCall.objects.filter(verification=Verification.REPLAYED).count() == 19


@pytest.mark.django_db
def test_a_replayed_read_is_refused(kg):
    instance = envelope(kg.basic(fixture_json("newInstance__huawei")))["instanceId"]
    query = {"activity": "queryInstance", "instanceId": instance, "testFlag": "1"}
    nonce = uuid.uuid4().hex
    assert envelope(kg.basic(query, nonce=nonce))["resultCode"] == "000000"
    assert envelope(kg.basic(query, nonce=nonce))["resultCode"] == "000001"


@pytest.mark.django_db(transaction=True)
def test_a_read_opens_no_transaction(kg):
    """queryInstance only reads: its journal row is its one write, in autocommit."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    instance = envelope(kg.basic(fixture_json("newInstance__huawei")))["instanceId"]
    with CaptureQueriesContext(connection) as queries:
        answer = envelope(
            kg.basic({"activity": "queryInstance", "instanceId": instance, "testFlag": "1"})
        )
    assert answer["resultCode"] == "000000"
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    assert "BEGIN" not in statements and "SAVEPOINT" not in statements, statements
    assert statements.count("INSERT") == 1
