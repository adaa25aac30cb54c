"""Production security: `check --deploy`, HTTPS-only cookies and HSTS, no redirect for
KooGallery, admin login throttling, staff-only pages and APIs (SECURITY.md)."""

import json
import subprocess
import sys

import pytest
from django.contrib.admin import site
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver

from tests.support import ROOT
from tests.support.kgclient import KooGallery, envelope, fixture
from tests.support.procs import production_env

PROXY_HTTPS = {"X-Forwarded-Proto": "https"}
PRODUCTION_TLS = {
    "SECURE_SSL_REDIRECT": True,
    "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
    "SECURE_HSTS_SECONDS": 31536000,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    "SECURE_HSTS_PRELOAD": True,
}




def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- check --deploy ----------------------------------------------------------------------------
def test_check_deploy_reports_no_issue_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_does_complain_about_a_weak_production_setup():
    # The check above is not vacuous: the same command flags what an operator got wrong.
    env = production_env(SECRET_KEY="short", SECURE_HSTS_SECONDS="0", SECURE_SSL_REDIRECT="false")
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W009"):
        assert warning in result.stderr + result.stdout


# --- HTTPS, HSTS, cookies ----------------------------------------------------------------------
@pytest.mark.django_db
def test_plain_http_is_redirected_but_a_tls_proxy_request_gets_hsts():
    with override_settings(**PRODUCTION_TLS):
        client = Client()
        plain = client.get("/admin/login/")
        behind_proxy = client.get("/admin/login/", headers=PROXY_HTTPS)

    assert plain.status_code == 301
    assert plain["Location"] == "https://testserver/admin/login/"
    assert behind_proxy.status_code == 200
    assert behind_proxy["Strict-Transport-Security"] == (
        "max-age=31536000; includeSubDomains; preload"
    )
    assert behind_proxy["X-Frame-Options"] == "DENY"
    assert behind_proxy["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
def test_koogallery_calls_and_probes_are_never_redirected():
    # A redirected POST is a failed call (spec §2.4): even without the proxy header, the
    # endpoints answer the envelope, and probes answer plain HTTP.
    body = fixture("tenantSync__huawei_example")
    with override_settings(**PRODUCTION_TLS):
        kg = KooGallery(Client())
        kit = kg.kit("tenantSync", body)
        basic = kg.basic(fixture("newInstance__huawei"))
        health = kg.client.get("/healthz")
        ready = kg.client.get("/readyz")

    assert envelope(kit)["resultCode"] == "000000"
    assert envelope(basic)["resultCode"] == "000000"
    assert (health.status_code, ready.status_code) == (200, 200)


@pytest.mark.django_db
def test_session_and_csrf_cookies_are_https_only_outside_debug(client):
    # tests.settings runs with DEBUG off: the production cookie flags are in force.
    get_user_model().objects.create_superuser("boss", password="pw-Correct-horse-1")

    page = client.get("/admin/login/")
    login = client.post(
        "/admin/login/?next=/admin/",
        {"username": "boss", "password": "pw-Correct-horse-1"},
        headers={"X-Forwarded-Proto": "https"},
    )

    assert page.cookies["csrftoken"]["secure"] is True
    assert login.status_code == 302
    session = login.cookies["sessionid"]
    assert session["secure"] is True
    assert session["httponly"] is True


# --- admin login throttling -------------------------------------------------------------------
def admin_login(client: Client, username: str, password: str, ip: str = "203.0.113.7"):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password},
        REMOTE_ADDR=ip,
    )


@pytest.mark.django_db
def test_admin_login_is_locked_after_repeated_failures(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    get_user_model().objects.create_superuser("boss", password="pw-Correct-horse-1")

    failures = [admin_login(client, "boss", f"wrong-{n}").status_code for n in range(3)]
    locked = admin_login(client, "boss", "pw-Correct-horse-1")

    assert failures[:2] == [200, 200]  # the form again, with an error
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # still not signed in


@pytest.mark.django_db
def test_the_lockout_is_per_user_and_address(client, settings):
    settings.AXES_FAILURE_LIMIT = 2
    get_user_model().objects.create_superuser("boss", password="pw-Correct-horse-1")
    for n in range(2):
        admin_login(client, "boss", f"wrong-{n}")

    elsewhere = admin_login(Client(), "boss", "pw-Correct-horse-1", ip="198.51.100.9")

    assert admin_login(client, "boss", "pw-Correct-horse-1").status_code == 429
    assert elsewhere.status_code == 302  # the real admin, from another address, gets in


@pytest.mark.django_db
def test_a_successful_login_before_the_limit_resets_the_count(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    get_user_model().objects.create_superuser("boss", password="pw-Correct-horse-1")
    admin_login(client, "boss", "wrong-1")
    admin_login(client, "boss", "wrong-2")
    assert admin_login(client, "boss", "pw-Correct-horse-1").status_code == 302
    client.logout()

    admin_login(client, "boss", "wrong-3")
    admin_login(client, "boss", "wrong-4")

    assert admin_login(client, "boss", "pw-Correct-horse-1").status_code == 302


@pytest.mark.django_db
def test_behind_a_trusted_proxy_the_forwarded_client_address_is_counted(client, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.TRUSTED_PROXY_COUNT = 1
    get_user_model().objects.create_superuser("boss", password="pw-Correct-horse-1")
    proxy = "10.0.0.2"

    def via_proxy(client, password, forwarded):
        return client.post(
            "/admin/login/?next=/admin/",
            {"username": "boss", "password": password},
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=forwarded,
        )

    # The attacker forges a left-most entry; the proxy appends the address it saw.
    for n in range(2):
        via_proxy(client, f"wrong-{n}", f"1.2.3.{n}, 203.0.113.7")

    assert via_proxy(client, "pw-Correct-horse-1", "203.0.113.7").status_code == 429
    assert via_proxy(Client(), "pw-Correct-horse-1", "198.51.100.9").status_code == 302


# --- staff only --------------------------------------------------------------------------------
# Public by design: KooGallery's endpoints (signed calls), single sign-on pages (OAuth flow),
# probes, and the admin's own login/logout pages.
PUBLIC_PREFIXES = ("koogallery", "sso/", "healthz", "readyz", "admin/login/", "admin/logout/")


def url_paths() -> list[str]:
    """Every routed path, converters filled with a sample value."""
    paths: list[str] = []

    def walk(patterns, prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                paths.append(prefix + str(entry.pattern))

    walk(get_resolver().url_patterns, "")
    samples = []
    for raw in paths:
        path = raw.lstrip("^").rstrip("$").replace("\\Z", "").replace("\\", "")
        for converter in ("<int:", "<str:", "<path:", "<slug:", "<uuid:", "<"):
            while converter in path:
                start = path.index(converter)
                end = path.index(">", start)
                path = path[:start] + "1" + path[end + 1 :]
        if any(c in path for c in "|*^()?"):
            continue  # a regex route (the admin's app index): added below per app
        samples.append("/" + path)
    samples += [f"/admin/{label}/" for label in {m._meta.app_label for m in site._registry}]
    return sorted(set(samples))


def test_the_url_walk_sees_admin_metrics_and_koogallery():
    paths = url_paths()
    assert "/admin/" in paths
    assert "/metrics" in paths
    assert "/koogallery" in paths
    assert len(paths) > 30


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["anonymous", "signed-in non-staff"])
def test_every_non_public_page_and_api_requires_staff(who):
    client = Client()
    if who != "anonymous":
        user = get_user_model().objects.create_user("buyer", password="pw-Buyer-1")
        client.force_login(user)
    open_pages = []
    for path in url_paths():
        if path.lstrip("/").startswith(PUBLIC_PREFIXES):
            continue
        response = client.get(path)
        refused = response.status_code in (401, 403, 404, 405) or (
            response.status_code == 302 and "/admin/login/" in response["Location"]
        )
        if not refused:
            open_pages.append((path, response.status_code))

    assert open_pages == []


@pytest.mark.django_db
def test_staff_do_reach_the_admin_and_metrics(admin_client):
    assert admin_client.get("/admin/").status_code == 200
    assert admin_client.get("/metrics").status_code == 200


# --- log format ----------------------------------------------------------------------------------
@pytest.mark.parametrize("log_format", ["json", "plain"])
def test_log_format_is_chosen_by_environment(log_format):
    code = "import logging; logging.getLogger('probe').warning('hello %s', 'operator')"
    result = manage("shell", "-c", code, env=production_env(LOG_FORMAT=log_format))

    assert result.returncode == 0, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    if log_format == "json":
        assert json.loads(line)["message"] == "hello operator"
    else:
        assert line.endswith("WARNING probe [-] hello operator")


def test_an_unknown_log_format_stops_the_start():
    result = manage("check", env=production_env(LOG_FORMAT="xml"))
    assert result.returncode != 0
    assert "LOG_FORMAT must be json or plain" in result.stderr
