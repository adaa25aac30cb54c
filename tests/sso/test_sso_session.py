"""An open sign-in: token refresh before expiry, access rules re-checked on every request,
logout at the tenant's endpoint (spec §5.3, issue 7 §3), and what the admin shows."""

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from instances.models import InstanceState
from sso.models import AuditEvent, AuditOutcome, LoginAudit, Reason, SignIn, SignInEnd
from tenants.models import AuthorizationState
from tests.support.sso_support import CALLBACK, TENANT_ID, build_world, platform_login

pytest_plugins = ["tests.support.sso_fixtures"]


@pytest.fixture
def world(db, fake_oauth):
    return build_world(fake_oauth, redirect_url=CALLBACK)


@pytest.fixture
def signed_in(client, world):
    world.add_user("zhangsan01", name="张三")
    assert platform_login(client, world, "zhangsan01")["Location"] == "/sso/"
    return SignIn.objects.get()


def audits(event) -> list[LoginAudit]:
    return list(LoginAudit.objects.filter(event=event).order_by("id"))


def token_grants(fake, grant_type) -> list:
    return [r for r in fake.seen("/oauth2/token") if r.form.get("grant_type") == grant_type]


# --- tokens -----------------------------------------------------------------------------------


def test_tokens_are_stored_encrypted_and_expire_as_the_platform_said(signed_in, world):
    issued = world.fake.issued
    stored = signed_in.access_token_encrypted + signed_in.refresh_token_encrypted
    assert not any(value in stored for value in issued)
    assert signed_in.access_token() in issued
    assert signed_in.refresh_token() in issued
    expected = timezone.now() + timedelta(seconds=7200)
    assert abs((signed_in.expires_at - expected).total_seconds()) < 10


def test_a_fresh_token_is_not_refreshed(client, signed_in, world):
    assert client.get("/sso/").status_code == 200
    assert token_grants(world.fake, "refresh_token") == []


def test_a_token_within_five_minutes_of_expiry_is_refreshed(client, signed_in, world):
    SignIn.objects.filter(pk=signed_in.pk).update(
        expires_at=timezone.now() + timedelta(seconds=240)
    )
    old_access, old_refresh = signed_in.access_token(), signed_in.refresh_token()

    assert client.get("/sso/").status_code == 200

    (grant,) = token_grants(world.fake, "refresh_token")
    assert grant.form["refresh_token"] == old_refresh
    assert grant.form["client_id"] == world.application.client_id
    assert grant.form["client_secret"] == world.client_secret
    signed_in.refresh_from_db()
    assert signed_in.access_token() not in (old_access, "")
    assert signed_in.refresh_token() != old_refresh  # the platform rotated it
    assert signed_in.expires_at > timezone.now() + timedelta(seconds=7000)
    assert signed_in.refreshed_at is not None
    (audit,) = audits(AuditEvent.REFRESH)
    assert (audit.outcome, audit.user_name) == (AuditOutcome.SUCCESS, "zhangsan01")
    # The new access token works at the platform.
    status, info = world.fake.userinfo(f"Bearer {signed_in.access_token()}")
    assert (status, info["userName"]) == (200, "zhangsan01")

    # Fresh again: the next request does not refresh.
    client.get("/sso/")
    assert len(token_grants(world.fake, "refresh_token")) == 1


def test_a_short_lived_token_from_the_platform_is_refreshed_on_the_next_request(
    client, world, fake_oauth
):
    fake_oauth.expires_in = 120
    world.add_user("lisi")
    platform_login(client, world, "lisi")
    fake_oauth.expires_in = 7200
    client.get("/sso/")
    assert len(token_grants(fake_oauth, "refresh_token")) == 1


def test_a_rejected_refresh_ends_the_sign_in_and_starts_a_new_login(client, signed_in, world):
    SignIn.objects.filter(pk=signed_in.pk).update(expires_at=timezone.now() + timedelta(seconds=60))
    world.fake.refresh_tokens.clear()  # the platform forgot it (revoked, or 30 days passed)

    response = client.get("/sso/?tab=2")

    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == "/sso/login"
    assert parse_qs(location.query) == {"tenant": [TENANT_ID], "next": ["/sso/?tab=2"]}
    signed_in.refresh_from_db()
    assert signed_in.end_reason == SignInEnd.REFRESH_FAILED
    assert signed_in.access_token_encrypted == signed_in.refresh_token_encrypted == ""
    (audit,) = audits(AuditEvent.REFRESH)
    assert (audit.outcome, audit.reason, audit.detail) == (
        AuditOutcome.REFUSED,
        Reason.REFRESH_REJECTED,
        "invalid_grant",
    )
    assert client.get("/sso/").status_code == 302  # signed out locally


def test_a_platform_hiccup_during_refresh_is_tolerated_while_the_token_is_valid(
    client, signed_in, world
):
    SignIn.objects.filter(pk=signed_in.pk).update(
        expires_at=timezone.now() + timedelta(seconds=200)
    )
    world.fake.fail_next("token", 503)

    assert client.get("/sso/").status_code == 200
    (audit,) = audits(AuditEvent.REFRESH)
    assert (audit.outcome, audit.reason, audit.detail) == (
        AuditOutcome.ERROR,
        Reason.PROVIDER_ERROR,
        "HTTP 503",
    )
    # The next request tries again and succeeds.
    assert client.get("/sso/").status_code == 200
    assert [a.outcome for a in audits(AuditEvent.REFRESH)] == ["error", "success"]


def test_an_expired_token_without_refresh_token_ends_the_sign_in(client, world, fake_oauth):
    fake_oauth.issue_refresh_token = False  # §5.3: refresh tokens only "if enabled"
    world.add_user("lisi")
    platform_login(client, world, "lisi")
    sign_in = SignIn.objects.get()
    assert not sign_in.has_refresh_token

    SignIn.objects.filter(pk=sign_in.pk).update(expires_at=timezone.now() + timedelta(seconds=200))
    assert client.get("/sso/").status_code == 200  # not expired yet: nothing to do

    SignIn.objects.filter(pk=sign_in.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get("/sso/")
    assert response["Location"].startswith("/sso/login?tenant=")
    assert audits(AuditEvent.REFRESH)[-1].reason == Reason.TOKEN_EXPIRED


# --- access re-checked on every request -------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason", "title"),
    [
        ("revoke", Reason.AUTHORIZATION_REVOKED, "Access revoked"),
        ("disable", Reason.USER_DISABLED, "Account disabled"),
        ("freeze", Reason.INSTANCE_FROZEN, "Subscription suspended"),
        ("release", Reason.INSTANCE_RELEASED, "Subscription ended"),
        ("remove_tenant", Reason.TENANT_REMOVED, "no longer subscribed"),
    ],
)
def test_a_change_synced_during_the_session_ends_it(
    client, signed_in, world, change, reason, title
):
    assert client.get("/sso/").status_code == 200
    authorization = world.authorization("zhangsan01")
    if change == "revoke":
        authorization.state = AuthorizationState.REVOKED
        authorization.save()
    elif change == "disable":
        authorization.enabled = False
        authorization.save()
    elif change == "freeze":
        world.set_instance_state(InstanceState.FROZEN)
    elif change == "release":
        world.set_instance_state(InstanceState.RELEASED)
    else:
        world.tenant.removed_at = timezone.now()
        world.tenant.save()

    response = client.get("/sso/")

    assert response.status_code == 403
    assert title in response.content.decode()
    signed_in.refresh_from_db()
    assert signed_in.end_reason == SignInEnd.ACCESS_LOST
    (audit,) = audits(AuditEvent.RECHECK)
    assert (audit.outcome, audit.reason, audit.user_name) == ("refused", reason, "zhangsan01")
    # Signed out: even after the rule is satisfied again, a new login is needed.
    world.set_instance_state(InstanceState.ACTIVE)
    assert client.get("/sso/").status_code == 302


def test_a_sign_in_ended_elsewhere_signs_this_browser_out(client, signed_in):
    SignIn.objects.filter(pk=signed_in.pk).update(ended_at=timezone.now())
    response = client.get("/sso/")
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


# --- logout -----------------------------------------------------------------------------------


def test_logout_ends_the_session_and_signs_out_at_the_tenant(client, signed_in, world):
    assert "Sign out?" in client.get("/sso/logout").content.decode()  # GET only asks

    response = client.post("/sso/logout")

    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}" == world.fake.url
    assert location.path == "/api/v1/logout"
    back = parse_qs(location.query)["redirect_url"]
    assert back == [f"http://testserver/sso/signed-out?tenant={TENANT_ID}"]
    assert "_auth_user_id" not in client.session
    signed_in.refresh_from_db()
    assert signed_in.end_reason == SignInEnd.LOGOUT
    assert signed_in.access_token_encrypted == ""
    (audit,) = audits(AuditEvent.LOGOUT)
    assert (audit.outcome, audit.user_name) == (AuditOutcome.SUCCESS, "zhangsan01")
    assert client.get("/sso/").status_code == 302

    page = client.get(f"/sso/signed-out?tenant={TENANT_ID}").content.decode()
    assert "You are signed out" in page
    assert f'href="/sso/login?tenant={TENANT_ID}"' in page


def test_logout_without_sign_in_just_lands_on_the_signed_out_page(client, world):
    assert client.post("/sso/logout")["Location"] == "/sso/signed-out"
    assert client.get("/sso/logout")["Location"] == "/sso/signed-out"
    assert not LoginAudit.objects.exists()


def test_logout_needs_the_csrf_token(signed_in, world, client):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.cookies = client.cookies
    assert strict.post("/sso/logout").status_code == 403
    signed_in.refresh_from_db()
    assert signed_in.ended_at is None


def test_signing_in_again_in_the_same_browser_replaces_the_previous_sign_in(
    client, signed_in, world
):
    platform_login(client, world, "zhangsan01")
    signed_in.refresh_from_db()
    assert signed_in.end_reason == SignInEnd.REPLACED
    assert SignIn.objects.filter(ended_at__isnull=True).count() == 1


# --- nothing secret in the admin --------------------------------------------------------------


def test_the_admin_shows_audit_and_sign_ins_without_any_secret(admin_client, client, world):
    world.add_user("zhangsan01")
    world.add_user("refused", state=AuthorizationState.REVOKED)
    platform_login(client, world, "zhangsan01")
    SignIn.objects.update(expires_at=timezone.now() + timedelta(seconds=30))
    client.get("/sso/")  # refresh
    platform_login(client, world, "refused")
    sign_in = SignIn.objects.order_by("id").first()
    audit = LoginAudit.objects.order_by("id").first()

    pages = [
        "/admin/sso/loginaudit/",
        f"/admin/sso/loginaudit/{audit.pk}/change/",
        "/admin/sso/signin/",
        f"/admin/sso/signin/{sign_in.pk}/change/",
        "/admin/sso/tenantaccount/",
    ]
    secrets = [*world.fake.issued, world.client_secret]
    stored = [sign_in.access_token_encrypted, sign_in.refresh_token_encrypted]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        page = response.content.decode()
        for secret in secrets + [s for s in stored if s]:
            assert secret not in page, url
    assert "zhangsan01" in admin_client.get("/admin/sso/loginaudit/").content.decode()
    assert admin_client.get("/admin/sso/loginaudit/add/").status_code == 403
    rows = [str(v) for row in LoginAudit.objects.values() for v in row.values()]
    assert not [s for s in secrets if any(s in v for v in rows)]


def test_the_audit_list_shows_every_attempt_and_filters_production_or_test_tenants(
    admin_client, client, world, fake_oauth, settings
):
    settings.SSO_ALLOW_TEST_TENANTS = True
    debug = build_world(
        fake_oauth,
        redirect_url=CALLBACK,
        tenant_id="T-DEBUG",
        tenant_code="debug",
        is_test=True,
        instance_id="",
        instance_state=None,
        app_id="APP-DEBUG",
        client_id="client-debug",
    )
    world.add_user("realperson")
    debug.add_user("tester")
    platform_login(client, world, "realperson")
    client.post("/sso/logout")
    platform_login(client, debug, "tester", tenant="debug")
    client.get("/sso/login", {"tenant": "nobody"})

    def listed(query: str = "") -> str:
        return admin_client.get(f"/admin/sso/loginaudit/{query}").content.decode()

    assert "realperson" in listed() and "nobody" in listed() and "tester" in listed()
    assert "tester" not in listed("?data=production")
    assert "realperson" in listed("?data=production") and "nobody" in listed("?data=production")
    assert "tester" in listed("?data=test") and "realperson" not in listed("?data=test")
    assert "tester" in listed("?data=all") and "realperson" in listed("?data=all")
