"""/healthz, /readyz and /metrics (docs/operations.md, "Reading the metrics")."""

import re

import pytest
from django.contrib.auth import get_user_model

from config.celery import app as celery_app
from licensing import tokens
from tests.support.kgclient import envelope, fixture, fixture_json

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-5a9c1e7b3d"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        metric, _, value = line.rpartition(" ")
        if "{" in metric:
            base, _, raw_labels = metric.partition("{")
            found = dict(re.findall(r'(\w+)="([^"]*)"', raw_labels))
        else:
            base, found = metric, {}
        if base == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


@pytest.fixture
def scrape(settings, client):
    settings.METRICS_TOKEN = TOKEN

    def get() -> str:
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain")
        return response.content.decode()

    return get


# --- health ------------------------------------------------------------------------------------
def test_healthz_answers_without_touching_dependencies(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_database_cache_and_broker(client, settings):
    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["cache"]["status"] == "ok"
    expected_broker = "in-process" if settings.CELERY_TASK_ALWAYS_EAGER else "ok"
    assert body["checks"]["broker"]["status"] == expected_broker


def test_readyz_is_503_when_the_cache_is_down(client, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
            "OPTIONS": {"socket_connect_timeout": 0.5},
        }
    }

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["cache"]["status"].startswith("error: ")
    assert body["checks"]["database"]["status"] == "ok"
    assert "127.0.0.1" not in response.content.decode()  # no connection details leak


def test_readyz_is_503_when_the_broker_is_down(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    old = celery_app.conf.broker_url
    celery_app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        response = client.get("/readyz")
    finally:
        celery_app.conf.broker_url = old

    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["status"].startswith("error: ")


# --- access to /metrics ------------------------------------------------------------------------
def test_metrics_refuse_anonymous_and_wrong_tokens(client, settings):
    settings.METRICS_TOKEN = TOKEN

    anonymous = client.get("/metrics")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    basic = client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})

    assert anonymous.status_code == wrong.status_code == basic.status_code == 401
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"koogallery_calls_total" not in anonymous.content


def test_metrics_without_a_configured_token_accept_no_bearer(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


def test_metrics_refuse_signed_in_non_staff(client):
    client.force_login(get_user_model().objects.create_user("buyer", password="pw-Buyer-1"))
    assert client.get("/metrics").status_code == 403


def test_metrics_for_staff_and_token(admin_client, scrape):
    assert admin_client.get("/metrics").status_code == 200
    assert "koogallery_call_duration_seconds" in scrape()


# --- what they count ---------------------------------------------------------------------------
def test_calls_are_counted_by_endpoint_and_result_code(kg, scrape):
    before = scrape()

    kg.kit("tenantSync", fixture("tenantSync__huawei_example"))
    kg.kit("tenantSync", fixture("tenantSync__huawei_example"), sign="0" * 64)
    kg.basic(fixture("newInstance__huawei"))
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    ok = {"family": "kit_v2", "endpoint": "tenantSync"}
    assert delta("koogallery_calls_total", **ok, result_code="000000") == 1
    assert delta("koogallery_calls_total", **ok, result_code="000001") == 1
    assert (
        delta(
            "koogallery_calls_total",
            family="basic_v2",
            endpoint="newInstance",
            result_code="000000",
        )
        == 1
    )
    assert delta("koogallery_call_duration_seconds_count", **ok) == 2
    assert delta("koogallery_call_duration_seconds_bucket", **ok, le="+Inf") == 2
    # Only the accepted one is a sync.
    assert delta("koogallery_sync_duration_seconds_count", interface="tenantSync") == 1


def test_an_unknown_activity_does_not_create_a_series(kg, scrape):
    before = scrape()

    answer = envelope(kg.basic({"activity": "doesNotExist-a1b2c3", "testFlag": "1"}))
    after = scrape()

    assert answer["resultCode"] == "000002"
    assert "doesNotExist-a1b2c3" not in after
    labels = {"family": "basic_v2", "endpoint": "other", "result_code": "000002"}
    assert (
        sample(after, "koogallery_calls_total", **labels)
        - sample(before, "koogallery_calls_total", **labels)
        == 1
    )


def test_the_licence_backlog_counts_undelivered_requests(kg, scrape, settings):
    settings.LICENSE_SIGNING_KEY = tokens.private_key_pem(tokens.generate_private_key())
    assert sample(scrape(), "koogallery_license_backlog_scrape_ok") == 1
    pending = sum(
        sample(scrape(), "koogallery_license_delivery_backlog", state=state, test="true")
        for state in ("received", "issued", "uploading")
    )
    instance_id = envelope(kg.basic(fixture("newInstance__huawei")))["instanceId"]

    answer = envelope(
        kg.basic(fixture_json("getLicenseAsync__iso_times_debug", instanceId=instance_id))
    )
    text = scrape()

    assert answer["resultCode"] == "000004"
    # The test transaction never commits, so the delivery job never runs: still pending.
    now_pending = sum(
        sample(text, "koogallery_license_delivery_backlog", state=state, test="true")
        for state in ("received", "issued", "uploading")
    )
    assert now_pending == pending + 1
    assert sample(text, "koogallery_license_delivery_backlog", state="failed", test="false") == 0
    assert sample(text, "koogallery_license_delivery_oldest_seconds", test="true") >= 0


def test_http_metrics_come_from_django_prometheus(client, scrape):
    client.get("/healthz")
    assert "django_http_requests_total_by_view_transport_method_total" in scrape()
