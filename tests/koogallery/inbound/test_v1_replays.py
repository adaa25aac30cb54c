"""V1 replays (spec §2.3, "Replays and late calls"): V1 has no nonce, so a captured call verifies
as often as it is sent. A V1 call whose authToken was accepted before for the same endpoint, within
KOOGALLERY_V1_MAX_AGE_S, gets the first call's answer byte for byte and changes nothing; the
journal marks it "replayed (answered from the first call)".
"""

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import requests
from django.conf import settings
from django.utils import timezone

from instances.models import Instance, InstanceState
from koogallery.inbound.journal import InboundCall, Verification
from koogallery.inbound.retention import purge_journal
from koogallery.inbound.v1_answers import V1Answer
from koogallery.protocol import signing
from tenants.models import Authorization, AuthorizationState, Tenant
from tests.support.kgclient import envelope, fixture_json, v1_time_stamp
from tests.support.live_server import _server, server  # noqa: F401 (fixtures)
from tests.support.tenant_kit import domain_state

KIT_KEY = settings.KOOGALLERY_KIT_KEY[0]
BASIC_KEY = settings.KOOGALLERY_BASIC_KEY[0]


def authorise(**overrides) -> dict:
    return fixture_json("authSync__v1_string_user_list", **overrides)


def grant() -> Authorization:
    return Authorization.objects.get()


def journal_marks() -> list[str]:
    return list(InboundCall.objects.order_by("id").values_list("verification", flat=True))


@pytest.mark.django_db
def test_v1_kit_replay_of_an_authorisation_after_its_removal_changes_nothing(kg):
    first = kg.kit_v1("authSync", authorise())
    assert envelope(first)["resultCode"] == "000000"
    removal = authorise(flag=0, timeStamp="20220413093540000")
    assert envelope(kg.kit_v1("authSync", removal))["resultCode"] == "000000"
    assert grant().state == AuthorizationState.REMOVED
    state = domain_state()

    replay = kg.kit_v1("authSync", authorise())

    assert replay.content == first.content
    assert replay["Body-Sign"] == signing.body_sign_header(KIT_KEY, replay.content)
    assert domain_state() == state
    assert grant().state == AuthorizationState.REMOVED
    assert journal_marks() == ["verified", "verified", "answered_again"]
    row = InboundCall.objects.latest("id")
    assert row.get_verification_display() == "replayed (answered from the first call)"
    assert (row.result_code, row.endpoint) == ("000000", "authSync")


@pytest.mark.django_db
def test_the_token_is_claimed_per_endpoint(kg):
    """The same signed body sent to another interface is that interface's call (here refused
    there on its own merits), not a replay of the first."""
    body = fixture_json("tenantSync__huawei_example")
    assert envelope(kg.kit_v1("tenantSync", body))["resultCode"] == "000000"
    answer = envelope(kg.kit_v1("applicationSync", body))
    assert answer["resultCode"] == "000002"
    assert journal_marks() == ["verified", "verified"]


@pytest.mark.django_db
def test_a_refused_first_call_is_not_kept(kg):
    """Only an accepted call claims its token (a refused one changed nothing): its repeat is
    served again, and refused again."""
    body = fixture_json("tenantSync__huawei_example", flag=2)  # V1 has no modify (§4.3)
    assert envelope(kg.kit_v1("tenantSync", body))["resultCode"] == "000002"
    assert not V1Answer.objects.exists()
    assert envelope(kg.kit_v1("tenantSync", body))["resultCode"] == "000002"
    assert journal_marks() == ["verified", "verified"]


@pytest.mark.django_db
def test_past_the_max_age_a_v1_kit_call_is_served_again(kg, settings):
    body = fixture_json("tenantSync__huawei_example")
    assert envelope(kg.kit_v1("tenantSync", body))["resultCode"] == "000000"
    V1Answer.objects.update(answered_at=timezone.now() - timedelta(hours=25))

    assert envelope(kg.kit_v1("tenantSync", body))["resultCode"] == "000000"

    assert journal_marks() == ["verified", "verified"]
    assert V1Answer.objects.count() == 1  # the stale claim gave way to the new one
    assert V1Answer.objects.get().answered_at > timezone.now() - timedelta(minutes=5)


@pytest.mark.django_db
def test_stored_answers_are_encrypted_and_purged_past_the_max_age(kg, settings):
    settings.KOOGALLERY_PROVISION_CREDENTIALS = True
    params = {k: str(v) for k, v in fixture_json("v1_newInstance__huawei").items()}
    first = kg.basic_v1(params)
    answer = envelope(first)
    assert answer["resultCode"] == "000000" and "password" in answer["appInfo"]

    stored = V1Answer.objects.get()
    assert answer["appInfo"]["password"] not in stored.answer_encrypted
    # The journal keeps no credential, not even encrypted (journal.redact).
    assert answer["appInfo"]["password"] not in InboundCall.objects.get().response_body

    assert purge_journal()["v1_answers_deleted"] == 0
    V1Answer.objects.update(answered_at=timezone.now() - timedelta(days=2))
    assert purge_journal()["v1_answers_deleted"] == 1
    assert not V1Answer.objects.exists()


def v1_get(kg, params: dict):
    query = dict(params)
    query["authToken"] = signing.v1_auth_token(BASIC_KEY, params)
    return kg.client.get(f"/koogallery?{urlencode(query)}")


@pytest.mark.django_db
def test_v1_get_replay_of_a_freeze_after_the_unfreeze_changes_nothing(kg, settings):
    settings.KOOGALLERY_PROVISION_CREDENTIALS = True
    new = {k: str(v) for k, v in fixture_json("v1_newInstance__huawei").items()}
    new["timeStamp"] = v1_time_stamp()
    created = v1_get(kg, new)
    assert envelope(created)["resultCode"] == "000000"
    freeze = fixture_json("v1_instanceStatus__freeze", timeStamp=v1_time_stamp())
    first = v1_get(kg, freeze)
    assert envelope(first)["resultCode"] == "000000"
    normal = fixture_json("v1_instanceStatus__normal", timeStamp=v1_time_stamp())
    assert envelope(v1_get(kg, normal))["resultCode"] == "000000"
    assert Instance.objects.get().state == InstanceState.ACTIVE
    state = domain_state()

    replay = v1_get(kg, freeze)

    assert replay.content == first.content
    assert replay["Body-Sign"] == signing.body_sign_header(BASIC_KEY, replay.content)
    assert Instance.objects.get().state == InstanceState.ACTIVE
    assert domain_state() == state
    # The newInstance replay answers the first answer's very bytes, credentials included (the
    # same IVs): it was stored, not made again.
    again = v1_get(kg, new)
    assert again.content == created.content
    assert journal_marks()[-2:] == [Verification.ANSWERED_AGAIN] * 2


def test_simultaneous_v1_twins_apply_once(server):  # noqa: F811
    """The same V1 authSync sent 20 times at once (PostgreSQL, gunicorn): one applies, every
    other one waits on its claim and answers the same bytes from it."""
    body = authorise()
    raw = json.dumps(body, ensure_ascii=False).encode()
    token = signing.v1_auth_token(KIT_KEY, body)
    barrier = threading.Barrier(20)

    def one(_: int) -> bytes:
        barrier.wait()
        response = requests.post(
            f"{server}/koogallery/produceAPI/authSync",
            data=raw,
            headers={"Content-Type": "application/json;charset=utf8", "authToken": token},
            timeout=60,
        )
        assert response.status_code == 200
        return response.content

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(one, range(20)))

    assert len(set(answers)) == 1 and json.loads(answers[0])["resultCode"] == "000000"
    marks = sorted(journal_marks())
    assert marks == ["answered_again"] * 19 + ["verified"], marks
    assert V1Answer.objects.count() == 1
    assert Tenant.objects.count() == 1 and Authorization.objects.count() == 1
