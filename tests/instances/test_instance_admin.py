"""Admin: instances with tenants, state, dates and audit trail; the journal and outbound attempts,
read-only and without secrets; the re-fetch action."""

import time

import pytest
from django.urls import reverse

from config.celery import app as celery_app
from instances.models import Instance, InstanceState
from koogallery.inbound.journal import InboundCall
from koogallery.outbound.attempts import OutboundAttempt
from koogallery.protocol import signing
from koogallery.protocol.crypto import aes_decrypt
from tenants.models import Tenant, TenantBinding
from tests.support.fakes.koogallery_server import MOCK_PRODUCT_ID
from tests.support.kgclient import envelope, fixture, fixture_json

pytestmark = pytest.mark.django_db

DEBUG_ID = "87b94795-0603-4e24-8ae5-69420d60e3c8"
PRODUCTION_ID = "5b0f3c8e-2f7e-4c1e-9d55-3c2a1f0e9b11"


@pytest.fixture
def instances(kg) -> tuple[Instance, Instance]:
    envelope(kg.basic(fixture("newInstance__huawei")))
    envelope(kg.basic(fixture("newInstance__production")))
    envelope(
        kg.basic(fixture_json("updateInstanceStatus__huawei", instanceId=DEBUG_ID, testFlag="1"))
    )
    return Instance.objects.get(instance_id=DEBUG_ID), Instance.objects.get(
        instance_id=PRODUCTION_ID
    )


def page(admin_client, url: str) -> str:
    response = admin_client.get(url)
    assert response.status_code == 200
    return response.content.decode()


CHANGELIST = "/admin/instances/instance/"


def test_instance_list_shows_test_data_marked_and_filters_it(admin_client, instances):
    html = page(admin_client, CHANGELIST)
    assert PRODUCTION_ID in html and DEBUG_ID in html and html.count('class="kg-debug"') == 1
    html = page(admin_client, CHANGELIST + "?data=production")
    assert PRODUCTION_ID in html and DEBUG_ID not in html
    html = page(admin_client, CHANGELIST + "?data=test")
    assert DEBUG_ID in html and PRODUCTION_ID not in html
    html = page(admin_client, CHANGELIST + "?data=all")
    assert DEBUG_ID in html and PRODUCTION_ID in html


def test_instance_list_filters_by_state_and_charging_mode(admin_client, instances):
    html = page(admin_client, CHANGELIST + "?data=all&state=frozen")
    assert DEBUG_ID in html and PRODUCTION_ID not in html
    Instance.objects.filter(instance_id=PRODUCTION_ID).update(charging_mode="ON_DEMAND")
    html = page(admin_client, CHANGELIST + "?data=all&charging_mode=ON_DEMAND")
    assert PRODUCTION_ID in html and DEBUG_ID not in html


def test_instance_page_shows_tenants_and_audit_trail(admin_client, instances):
    debug, _ = instances
    tenant = Tenant.objects.create(tenant_id="t-42", name="Acme Debug", is_test=True)
    TenantBinding.objects.create(tenant=tenant, instance_id=DEBUG_ID)
    html = page(admin_client, reverse("admin:instances_instance_change", args=[debug.pk]))
    assert "Acme Debug" in html and "t-42" in html
    assert "updateInstanceStatus" in html  # the freeze, by which call
    assert "provisioning" in html and "frozen" in html
    journal_url = reverse(
        "admin:koogallery_inboundcall_change",
        args=[debug.transitions.last().inbound_call_id],
    )
    assert journal_url in html
    assert page(admin_client, CHANGELIST + "?data=test").count("Acme Debug") == 1


def test_instances_are_read_only(admin_client, instances):
    debug, _ = instances
    assert admin_client.get(CHANGELIST + "add/").status_code == 403
    url = reverse("admin:instances_instance_change", args=[debug.pk])
    admin_client.post(url, {"state": InstanceState.RELEASED})
    assert Instance.objects.get(pk=debug.pk).state == InstanceState.FROZEN
    delete = reverse("admin:instances_instance_delete", args=[debug.pk])
    assert admin_client.get(delete).status_code == 403


def test_refetch_action_fills_the_order(admin_client, kg, fake_koogallery):
    envelope(kg.basic(fixture("newInstance__mock_period")))  # not committed: no fetch yet
    instance = Instance.objects.get()
    assert instance.product_id == ""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        response = admin_client.post(
            CHANGELIST + "?data=test",
            {"action": "refetch_order_details", "_selected_action": [instance.pk]},
            follow=True,
        )
    finally:
        celery_app.conf.task_always_eager = previous
    assert "Query Order queued for 1 instance" in response.content.decode()
    instance.refresh_from_db()
    assert instance.product_id == MOCK_PRODUCT_ID
    assert instance.transitions.last().cause == "queryOrder"
    # The attempt is visible, read-only.
    html = page(admin_client, "/admin/koogallery/outboundattempt/")
    assert "MOCKPERIODYEARNEW" in html
    attempt = OutboundAttempt.objects.get()
    url = reverse("admin:koogallery_outboundattempt_change", args=[attempt.pk])
    assert "MOCKPERIODYEARNEW" in page(admin_client, url)
    assert admin_client.get("/admin/koogallery/outboundattempt/add/").status_code == 403


# --- the journal ---------------------------------------------------------------------------------

JOURNAL = "/admin/koogallery/inboundcall/"


def test_journal_list_filters_and_search(admin_client, instances):
    html = page(admin_client, JOURNAL)
    for column in ("endpoint", "family", "verification", "result code", "duration"):
        assert column in html.lower()
    assert "updateInstanceStatus" in html
    html = page(admin_client, JOURNAL + f"?q={DEBUG_ID}")
    assert html.count(f'title="{DEBUG_ID}"') >= 2  # newInstance and the freeze
    html = page(admin_client, JOURNAL + "?endpoint=updateInstanceStatus")
    rows = html.split("<tbody>")[1].split("</tbody>")[0]
    assert "updateInstanceStatus" in rows and "newInstance" not in rows
    for query in (
        "?result_code=000000",
        "?family=basic_v2",
        "?test_flag__exact=1",
        "?verification=verified",
        "?received_at__year=2000",
    ):
        page(admin_client, JOURNAL + query)


def test_journal_is_read_only(admin_client, instances):
    call = InboundCall.objects.first()
    assert admin_client.get(JOURNAL + "add/").status_code == 403
    delete = reverse("admin:koogallery_inboundcall_delete", args=[call.pk])
    assert admin_client.get(delete).status_code == 403
    change = reverse("admin:koogallery_inboundcall_change", args=[call.pk])
    admin_client.post(change, {"result_code": "999999"})
    assert InboundCall.objects.get(pk=call.pk).result_code == call.result_code


def test_journal_and_instance_pages_hide_secrets(admin_client, kg, settings):
    settings.KOOGALLERY_PROVISION_CREDENTIALS = True
    params = {
        **fixture_json("v1_newInstance__huawei"),
        "timeStamp": time.strftime("%Y%m%d%H%M%S000", time.gmtime()),
    }
    token = signing.v1_auth_token(settings.KOOGALLERY_BASIC_KEY[0], params)
    body = envelope(kg.basic_v1(params, token=token))
    key = settings.KOOGALLERY_BASIC_KEY[0]
    password = aes_decrypt(body["appInfo"]["password"], key, "1")
    instance = Instance.objects.get()
    call = InboundCall.objects.get()
    secrets = (token, password, body["appInfo"]["password"], instance.admin_password_encrypted)
    urls = [
        JOURNAL,
        reverse("admin:koogallery_inboundcall_change", args=[call.pk]),
        CHANGELIST + "?data=test",
        reverse("admin:instances_instance_change", args=[instance.pk]),
    ]
    for url in urls:
        html = page(admin_client, url)
        for secret in secrets:
            assert secret not in html, (url, "secret shown")
    assert "***" in page(admin_client, urls[1])
