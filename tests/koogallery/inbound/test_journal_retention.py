"""Journal retention (koogallery/inbound/retention.py): old bodies are cleared, expired rows
deleted, the instance's own trail kept."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from instances.models import Instance, InstanceTransition
from koogallery.inbound.journal import InboundCall
from koogallery.inbound.retention import purge_journal
from tests.support.kgclient import envelope, fixture_json

pytestmark = pytest.mark.django_db

AUTH_SYNC = {
    "instanceId": "inst-ret",
    "tenantId": "tenant-ret",
    "appId": "APP",
    "userList": [
        {
            "userName": "zhangsan",
            "name": "张三",
            "orgCode": "1",
            "role": "user",
            "enable": "true",
            "mobile": "18600001234",
            "email": "zs@example.com",
        }
    ],
    "currentSyncTime": "20220413093539534",
    "flag": 1,
    "testFlag": 0,
    "timeStamp": "20220413093539534",
}


def days_ago(days: int, **filters) -> None:
    InboundCall.objects.filter(**filters).update(received_at=timezone.now() - timedelta(days=days))


def test_bodies_are_cleared_after_their_retention_and_the_metadata_stays(kg, settings):
    settings.KOOGALLERY_JOURNAL_BODY_RETENTION_DAYS = 90
    assert envelope(kg.kit("authSync", AUTH_SYNC))["resultCode"] == "000000"
    assert (
        envelope(kg.kit("authSync", {**AUTH_SYNC, "tenantId": "tenant-new"}))["resultCode"]
        == "000000"
    )
    days_ago(91, tenant_id="tenant-ret")

    assert purge_journal() == {"bodies_cleared": 1, "rows_deleted": 0, "v1_answers_deleted": 0}

    old = InboundCall.objects.get(tenant_id="tenant-ret")
    assert (old.request_body, old.response_body, old.query_string) == ("", "", "")
    assert (old.endpoint, old.result_code, old.request_size) == (
        "authSync",
        "000000",
        old.request_size,
    )
    assert old.request_size > 0 and len(old.request_sha256) == 64 and old.nonce
    recent = InboundCall.objects.get(tenant_id="tenant-new")
    assert "18600001234" in recent.request_body
    assert purge_journal() == {
        "bodies_cleared": 0,
        "rows_deleted": 0,
        "v1_answers_deleted": 0,
    }  # nothing left to do


def test_rows_are_kept_by_default_and_deleted_past_their_retention(kg, settings):
    body = envelope(kg.basic(fixture_json("newInstance__huawei")))
    assert body["resultCode"] == "000000"
    days_ago(4000)
    assert purge_journal()["rows_deleted"] == 0  # KOOGALLERY_JOURNAL_RETENTION_DAYS=0: never

    settings.KOOGALLERY_JOURNAL_RETENTION_DAYS = 365
    assert purge_journal()["rows_deleted"] == 1

    assert not InboundCall.objects.exists()
    instance = Instance.objects.get()
    trail = InstanceTransition.objects.filter(instance=instance)
    assert trail.count() == 2 and not trail.filter(inbound_call__isnull=False).exists()


def test_the_command_counts_on_a_dry_run_and_changes_nothing(kg, settings):
    settings.KOOGALLERY_JOURNAL_BODY_RETENTION_DAYS = 30
    assert envelope(kg.kit("authSync", AUTH_SYNC))["resultCode"] == "000000"
    days_ago(31)
    out = StringIO()

    call_command("koogallery_purge_journal", "--dry-run", stdout=out)

    assert "1 row(s) would be cleared of bodies, 0 row(s) would be deleted." in out.getvalue()
    assert "18600001234" in InboundCall.objects.get().request_body
    call_command("koogallery_purge_journal", stdout=StringIO())
    assert InboundCall.objects.get().request_body == ""
