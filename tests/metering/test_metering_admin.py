"""Metering admin (issue 8 item 5): records per instance and hour with their state and attempts,
filters, the re-push action, push batches with their HTTP attempts, and per metered instance
its package and a 30-day hourly usage chart (inline SVG, rendered on the server)."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse

from instances.models import ChargingMode, Instance
from metering import services
from metering.models import PushBatch, RecordState, UsageRecord
from tests.support.fakes.koogallery_server import Reply, handle_usage_data
from tests.support.metering_kit import hour, make_instance, usage

pytestmark = pytest.mark.django_db

RECORDS = "/admin/metering/usagerecord/"


def page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


@pytest.fixture
def history(fake_koogallery, settings):
    """od-a: 3 accepted hours; od-b: 1 failed hour; od-debug (testFlag 1): 1 accepted hour."""
    settings.METERING_BATCH_SIZE = 1
    a, b = make_instance("od-a"), make_instance("od-b")
    debug = make_instance("od-debug", is_test=True)
    services.record_usage(
        events=[
            usage(a, 1, hour(50)),
            usage(a, "2.5", hour(26)),
            usage(a, 4, hour(3)),
            usage(debug, 9, hour(3)),
            usage(b, 7, hour(2)),  # the last hour pushed (oldest first); hour(2) is closed
        ]
    )

    def refuse_od_b(fake, request, match):
        if request.json["usage_records"][0]["instance_id"] == "od-b":
            return Reply(400, {"error_code": "MKT.0101", "error_msg": "bad"})
        return handle_usage_data(fake, request, match)

    fake_koogallery.set_default("usage_data", refuse_od_b)
    services.run_metering()
    fake_koogallery.set_default("usage_data", handle_usage_data)
    return a, b, debug


def test_records_list_shows_state_attempts_and_filters(admin_client, history):
    html = page(admin_client, RECORDS)
    assert html.count("od-a</a>") == 3 and "od-b</a>" in html
    assert "od-debug</a>" in html and html.count('class="kg-debug"') == 1  # marked (§2.5)
    assert "od-debug</a>" not in page(admin_client, RECORDS + "?data=production")
    assert "MKT.0101" in html

    failed = page(admin_client, RECORDS + "?state=failed")
    assert "od-b</a>" in failed and "od-a</a>" not in failed
    a = Instance.objects.get(instance_id="od-a")
    only_a = page(admin_client, RECORDS + f"?instance__id__exact={a.pk}")
    assert only_a.count("od-a</a>") == 3 and "od-b</a>" not in only_a
    day = hour(26)
    dated = page(
        admin_client,
        RECORDS
        + f"?hour_start__year={day.year}&hour_start__month={day.month}&hour_start__day={day.day}",
    )
    assert day.strftime("%Y-%m-%d %H:00") in dated
    assert "od-debug</a>" in page(admin_client, RECORDS + "?data=test")


@pytest.mark.usefixtures("eager_tasks")
def test_re_push_action_sends_failed_records_again(
    admin_client, history, fake_koogallery, django_capture_on_commit_callbacks
):
    failed = UsageRecord.objects.get(state=RecordState.FAILED)
    sn = failed.metering_sn

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            RECORDS + "?data=all",
            {
                "action": "repush_failed",
                "_selected_action": [r.pk for r in UsageRecord.objects.all()],
            },
            follow=True,
        )

    assert response.status_code == 200
    assert "1 record(s) queued" in response.content.decode()
    failed.refresh_from_db()
    assert (failed.state, failed.attempts, failed.metering_sn) == (RecordState.ACCEPTED, 2, sn)
    # Accepted records were selected too, and not sent again.
    sent = [r["metering_sn"] for r in fake_koogallery.usage_records]
    assert len(sent) == len(set(sent)) == 5


def test_staff_without_change_permission_cannot_re_push(client, django_user_model, history):
    viewer = django_user_model.objects.create_user(
        "viewer", password="pw-viewer-123", is_staff=True
    )
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_usagerecord"))
    client.force_login(viewer)
    html = page(client, RECORDS)
    assert "repush_failed" not in html


def test_record_page_is_read_only(admin_client, history):
    record = UsageRecord.objects.filter(state=RecordState.ACCEPTED).first()
    html = page(admin_client, reverse("admin:metering_usagerecord_change", args=[record.pk]))
    assert record.metering_sn in html and 'name="value"' not in html
    assert (
        admin_client.post(
            reverse("admin:metering_usagerecord_delete", args=[record.pk])
        ).status_code
        == 403
    )


def test_batch_page_lists_its_http_attempts(admin_client, history):
    batch = PushBatch.objects.filter(result_code="MKT.0101").get()
    html = page(admin_client, reverse("admin:metering_pushbatch_change", args=[batch.pk]))
    assert "/api/mkp-openapi-public/global/v1/isv/usage-data" in html and "MKT.0101" in html
    records = page(admin_client, RECORDS + f"?data=all&batch={batch.pk}")
    assert "od-b</a>" in records and "od-a</a>" not in records


def test_metered_instance_page_has_an_hourly_chart(admin_client, history):
    a = Instance.objects.get(instance_id="od-a")
    services.record_usage(events=[usage(a, 3, hour(0) + timedelta(seconds=1))])
    html = page(admin_client, reverse("admin:metering_meteredinstance_change", args=[a.pk]))

    svg = re.search(r'<svg [^>]*aria-label="hourly usage.*?</svg>', html, re.S).group(0)
    tooltips = re.findall(r"<title>([^<]*)</title>", svg)
    assert f"{hour(26):%Y-%m-%d %H:00Z}: 2.5, accepted by KooGallery" in tooltips
    assert f"{hour(3):%Y-%m-%d %H:00Z}: 4, accepted by KooGallery" in tooltips
    assert f"{hour(0):%Y-%m-%d %H:00Z}: 3, open (hour still running)" in tooltips
    assert tooltips[0].startswith("hourly usage") and "total 10.5" in tooltips[0]
    assert svg.count('fill="#2e9d57"><title>') == 3  # one bar per accepted hour
    assert "3 accepted" in html  # record counts by state, linked to the list


def test_chart_covers_30_days_and_no_more(admin_client):
    a = make_instance("od-a", started=hour(24 * 40))
    services.record_usage(events=[usage(a, 1, hour(24 * 31)), usage(a, 2, hour(24 * 29))])
    html = page(admin_client, reverse("admin:metering_meteredinstance_change", args=[a.pk]))
    assert f"{hour(24 * 29):%Y-%m-%d %H:00Z}: 2" in html
    assert f"{hour(24 * 31):%Y-%m-%d %H:00Z}" not in html


def test_operator_relates_an_instance_to_its_package(admin_client):
    package = make_instance("pkg-1", mode=ChargingMode.ON_DEMAND_PKG, product_name="API calls")
    make_instance("pkg-debug", mode=ChargingMode.ON_DEMAND_PKG, is_test=True)
    item = make_instance("od-a")
    url = reverse("admin:metering_meteredinstance_change", args=[item.pk])
    html = page(admin_client, url)
    assert "pkg-1 (API calls)" in html and "pkg-debug" not in html  # same data set only

    response = admin_client.post(url, {"package_instance": package.pk})

    assert response.status_code == 302
    item.refresh_from_db()
    assert item.package_instance == package
    assert item.transitions.last().detail == "package - → pkg-1"
    package_page = page(
        admin_client, reverse("admin:metering_meteredinstance_change", args=[package.pk])
    )
    assert "od-a</a>" in package_page  # its billing items


def test_list_of_metered_instances(admin_client):
    make_instance("od-a")
    make_instance("per-1", mode=ChargingMode.PERIOD)
    make_instance("pkg-1", mode=ChargingMode.ON_DEMAND_PKG)
    html = page(admin_client, "/admin/metering/meteredinstance/")
    assert "od-a" in html and "pkg-1" in html and "per-1" not in html
