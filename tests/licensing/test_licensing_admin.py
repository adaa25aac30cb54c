"""Admin of licences: what an operator sees and the actions they can take."""

import pytest
from django.urls import reverse

from licensing import services
from licensing.models import License, LicenseCode, LicenseCodeStatus, LicenseRequest, RequestState
from tests.support import licensing_kit as support
from tests.support.fakes import CLOSE
from tests.support.licensing_kit import (
    PRIVATE_PEM,
    license_body,
    make_instance,
    request_for,
    wait_for,
    wait_for_state,
)

# Fixtures shared by the licensing tests.
license_settings = support.license_settings
delivery = support.delivery

CHANGELIST = "admin:licensing_licenserequest_changelist"


def changelist(admin_client, **params) -> str:
    response = admin_client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return response.content.decode()


def accept(kg, instance=None, **overrides) -> dict:
    body = license_body(instance or make_instance(), **overrides)
    assert support.answer_code(kg.basic(body)) == "000004"
    return body


@pytest.mark.django_db
def test_changelist_shows_debug_requests_marked_and_filters(admin_client, kg):
    production = accept(kg)
    debug = accept(kg, make_instance(is_test=True))
    page = changelist(admin_client)
    assert production["eventId"] in page and debug["eventId"] in page
    assert page.count('class="kg-debug"') == 1
    only_production = changelist(admin_client, data="production")
    assert production["eventId"] in only_production and debug["eventId"] not in only_production
    only_debug = changelist(admin_client, data="test")
    assert debug["eventId"] in only_debug and production["eventId"] not in only_debug

    LicenseRequest.objects.filter(event_id=production["eventId"]).update(state=RequestState.FAILED)
    assert production["eventId"] in changelist(admin_client, state="failed")
    assert production["eventId"] not in changelist(admin_client, state="received")
    instance = request_for(production).instance
    assert production["eventId"] in changelist(admin_client, instance__id__exact=instance.pk)
    assert production["eventId"] in changelist(admin_client, q=instance.instance_id)


def test_detail_shows_state_payload_and_attempts_never_the_private_key(
    admin_client, kg, delivery, fake_koogallery
):
    fake_koogallery.script("market_event", 503)
    fake_koogallery.fallback.script("market_event", CLOSE)
    body = accept(kg)
    request = wait_for_state(body, RequestState.DELIVERED, sweep=support.uses_worker() is False)
    url = reverse("admin:licensing_licenserequest_change", args=[request.pk])
    page = admin_client.get(url).content.decode()
    license = License.objects.get()
    assert str(license.id) in page and body["eventId"] in page
    assert "MKT.0999" in page  # the failed attempt, with its answer
    assert page.count("<tr><td>") >= 3  # three attempts: 503, dropped, success
    secret = "".join(PRIVATE_PEM.strip().splitlines()[1:-1])
    assert secret[:40] not in page and "PRIVATE KEY" not in page


def action(admin_client, name: str, *requests: LicenseRequest):
    return admin_client.post(
        reverse(CHANGELIST),
        {"action": name, "_selected_action": [r.pk for r in requests]},
        follow=True,
    )


def test_retry_action_delivers_a_failed_request(admin_client, kg, delivery, fake_koogallery):
    fake_koogallery.script("market_event", (200, {"error_code": "91381036", "error_msg": "x"}))
    body = accept(kg)
    request = wait_for_state(body, RequestState.FAILED)
    response = action(admin_client, "retry_delivery", request)
    assert "re-armed for 1" in response.content.decode()
    wait_for_state(body, RequestState.DELIVERED)
    assert License.objects.count() == 1


def test_revoke_then_reissue_mints_a_new_licence(admin_client, kg, delivery, fake_koogallery):
    body = accept(kg)
    request = wait_for_state(body, RequestState.DELIVERED)
    first = License.objects.get()

    response = action(admin_client, "reissue", request)
    assert "revoke a licence before re-issuing" in response.content.decode()
    assert License.objects.count() == 1

    action(admin_client, "revoke", request)
    first.refresh_from_db()
    assert request_for(body).state == RequestState.REVOKED and first.revoked_at
    assert "admin" in first.revoke_reason

    action(admin_client, "reissue", request)
    wait_for_state(body, RequestState.DELIVERED)
    second = License.objects.get(revoked_at__isnull=True)
    assert second.id != first.id and second.token != first.token
    assert [u.token for u in fake_koogallery.upload_history] == [first.token, second.token]


def test_revoked_licence_is_not_redelivered_on_repeat(kg, delivery, fake_koogallery):
    body = accept(kg)
    request = wait_for_state(body, RequestState.DELIVERED)
    services.revoke_license(request_id=request.pk, reason="fraud")
    assert support.answer_code(kg.basic(body)) == "000004"
    support.pump()
    assert request_for(body).state == RequestState.REVOKED
    assert len(fake_koogallery.upload_history) == 1


def test_adding_a_licence_code_in_admin_activates_it(
    admin_client, transactional_db, fake_koogallery
):
    response = admin_client.post(
        reverse("admin:licensing_licensecode_add"), {"code": "PLADMIN1"}, follow=True
    )
    assert response.status_code == 200
    code = wait_for(
        lambda: LicenseCode.objects.filter(code="PLADMIN1", activated_at__isnull=False).first()
    )
    assert code.status == LicenseCodeStatus.ALIVE

    query = admin_client.post(
        reverse("admin:licensing_licensecode_changelist"),
        {"action": "query", "_selected_action": [code.pk]},
        follow=True,
    )
    assert "1 code(s) queried" in query.content.decode()
    assert fake_koogallery.requests_for("v1/license/heartbeat")
