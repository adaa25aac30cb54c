"""Sign-in through KooGallery's unified login (spec §5.3, issue 7), driven with Django's test
client against the fake platform on loopback (tests/support/fakes/oauth_provider.py): the full flow,
every access rule and every way the callback can be abused. The same flow in a real browser is
in test_sso_browser.py."""

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client

from instances.models import InstanceState
from sso import views
from sso.models import (
    AuditEvent,
    AuditOutcome,
    LoginAudit,
    Reason,
    SignIn,
    SignInEnd,
    TenantAccount,
)
from tenants.models import AuthorizationState, Role
from tests.support.sso_support import (
    APP_ID,
    CALLBACK,
    CLIENT_SECRET,
    INSTANCE_ID,
    TENANT_CODE,
    TENANT_ID,
    build_world,
    platform_login,
    start_login,
)

pytest_plugins = ["tests.support.sso_fixtures"]


@pytest.fixture
def world(db, fake_oauth):
    return build_world(fake_oauth, redirect_url=CALLBACK)


def last_audit() -> LoginAudit:
    return LoginAudit.objects.order_by("-id").first()


def assert_refused(response, reason: Reason, title: str, status: int = 403, *, signed_in=False):
    """The page for `reason`, and its audit row; nobody signed in by the attempt."""
    assert response.status_code == status, response.content
    page = response.content.decode()
    assert title in page
    assert reason.value in page
    audit = last_audit()
    assert audit.reason == reason
    assert audit.outcome in (AuditOutcome.REFUSED, AuditOutcome.ERROR)
    assert ("_auth_user_id" in response.wsgi_request.session) == signed_in
    return audit


# --- the successful flow ----------------------------------------------------------------------


def test_login_sends_the_browser_to_the_unified_login_page_of_the_tenants_app(client, world):
    response = client.get("/sso/login", {"tenant": TENANT_ID})
    location = response["Location"]
    assert location.startswith(f"{world.fake.url}/unified-login/#/portal-login?ind=UNOP")
    sent = start_login(client)
    assert sent["ind"] == "UNOP"
    assert sent["appId"] == APP_ID
    assert len(sent["state"]) >= 32
    # The callback comes from another site by a top-level redirect: the session cookie that
    # holds the state must travel with it (Lax, not Strict).
    assert client.cookies[settings.SESSION_COOKIE_NAME]["samesite"] == "Lax"
    # No request reached the platform's OAuth endpoints yet.
    assert world.fake.requests == []


def test_login_finds_the_tenant_by_code_and_by_purchased_instance(client, world):
    assert start_login(client, tenant=TENANT_CODE)["appId"] == APP_ID
    response = client.get("/sso/login", {"instance": INSTANCE_ID})
    assert response.status_code == 302
    assert f"appId={APP_ID}" in response["Location"]


def test_a_synced_user_signs_in_and_sees_who_they_are(client, world):
    world.add_departments(("1", "Head office", ""), ("12", "Sales", "1"), ("123", "East", "12"))
    world.add_user("zhangsan01", name="张三", org_code="123", email="zs@example.com")

    response = platform_login(client, world, "zhangsan01")

    assert response.status_code == 302
    assert response["Location"] == "/sso/"
    page = client.get("/sso/").content.decode()
    assert "张三" in page
    assert "zhangsan01" in page
    assert "Acme Trading Ltd (acme)" in page
    assert "Head office / Sales / East" in page
    assert ">User<" in page

    # The code went to the tenant's token endpoint with the decrypted secret as form fields.
    (token_call,) = world.fake.seen("/api/v1/oauth2/token")
    assert token_call.form["grant_type"] == "authorization_code"
    assert token_call.form["client_id"] == world.application.client_id
    assert token_call.form["client_secret"] == CLIENT_SECRET
    assert "authorization" not in token_call.headers
    (userinfo_call,) = world.fake.seen("/api/v1/oauth2/userinfo")
    assert userinfo_call.headers["authorization"].startswith("Bearer ")

    user = get_user_model().objects.get(username=f"kg:{world.tenant.pk}:zhangsan01")
    assert not user.has_usable_password()
    assert not user.is_staff
    assert user.first_name == "张三"
    assert user.email == "zs@example.com"
    assert TenantAccount.objects.get(user=user).tenant_user.user_name == "zhangsan01"
    audit = last_audit()
    assert (audit.event, audit.outcome, audit.reason) == (AuditEvent.LOGIN, "success", "")
    assert (audit.tenant, audit.user, audit.user_name) == (world.tenant, user, "zhangsan01")
    assert audit.instance_id == INSTANCE_ID


def test_signing_in_again_links_to_the_same_local_user(client, world):
    world.add_user("lisi")
    platform_login(client, world, "lisi")
    client.post("/sso/logout")
    platform_login(client, world, "lisi")
    assert get_user_model().objects.filter(username__startswith="kg:").count() == 1
    assert TenantAccount.objects.count() == 1
    assert SignIn.objects.count() == 2


def test_the_same_user_name_in_two_tenants_is_two_people(client, world, fake_oauth):
    other = build_world(
        fake_oauth,
        redirect_url=CALLBACK,
        tenant_id="T-OTHER",
        tenant_code="other",
        instance_id="inst-other",
        app_id="APP-OTHER",
        client_id="client-other",
    )
    world.add_user("wangwu")
    other.add_user("wangwu")
    platform_login(client, world, "wangwu")
    client.post("/sso/logout")
    platform_login(client, other, "wangwu", tenant="other")
    names = set(get_user_model().objects.values_list("username", flat=True))
    assert names == {f"kg:{world.tenant.pk}:wangwu", f"kg:{other.tenant.pk}:wangwu"}


def test_role_admin_grants_the_tenant_administrator_permission(client, world):
    world.add_user("boss", role=Role.ADMIN)
    platform_login(client, world, "boss")
    page = client.get("/sso/").content.decode()
    assert "Tenant administrator" in page
    user = get_user_model().objects.get(username__endswith=":boss")
    assert user.has_perm("sso.administer_tenant")
    assert user.groups.filter(name="tenant administrators").exists()

    # authSync demotes the user: the next request of the open session follows.
    authorization = world.authorization("boss")
    authorization.role = Role.USER
    authorization.save()
    page = client.get("/sso/").content.decode()
    assert "Tenant administrator" not in page
    user = get_user_model().objects.get(pk=user.pk)
    assert not user.has_perm("sso.administer_tenant")


def test_a_normal_user_is_not_a_tenant_administrator(client, world):
    world.add_user("clerk")
    platform_login(client, world, "clerk")
    assert ">User<" in client.get("/sso/").content.decode()
    assert (
        not get_user_model()
        .objects.get(username__endswith=":clerk")
        .has_perm("sso.administer_tenant")
    )


def test_next_url_is_kept_through_the_login_but_only_on_this_site(client, world):
    world.add_user("zhaoliu")
    assert platform_login(client, world, "zhaoliu", next="/sso/?tab=1")["Location"] == "/sso/?tab=1"
    client.post("/sso/logout")
    response = platform_login(client, world, "zhaoliu", next="https://evil.example/")
    assert response["Location"] == "/sso/"


def test_the_landing_page_needs_a_sign_in(client, world):
    response = client.get("/sso/")
    assert response.status_code == 302
    assert response["Location"] == "/sso/login?next=%2Fsso%2F"
    page = client.get(response["Location"]).content.decode()
    assert "Enterprise code" in page


def test_an_admin_session_is_not_a_tenant_sign_in(admin_client, world):
    assert admin_client.get("/sso/").status_code == 302


# --- access rules -----------------------------------------------------------------------------


def test_unknown_tenant_is_refused(client, world):
    response = client.get("/sso/login", {"tenant": "nobody"})
    audit = assert_refused(response, Reason.UNKNOWN_TENANT, "Enterprise not known")
    assert audit.tenant_ref == "nobody"
    assert audit.tenant is None


def test_a_removed_tenant_is_refused(client, world):
    world.tenant.removed_at = world.tenant.created_at
    world.tenant.save()
    assert_refused(
        client.get("/sso/login", {"tenant": TENANT_ID}),
        Reason.TENANT_REMOVED,
        "no longer subscribed",
    )


def test_a_tenant_without_application_is_refused(client, world):
    world.application.removed_at = world.application.created_at
    world.application.save()
    assert_refused(
        client.get("/sso/login", {"tenant": TENANT_ID}), Reason.NO_APPLICATION, "App not set up"
    )


@pytest.mark.parametrize(
    ("state", "reason", "title"),
    [
        (InstanceState.FROZEN, Reason.INSTANCE_FROZEN, "Subscription suspended"),
        (InstanceState.RELEASED, Reason.INSTANCE_RELEASED, "Subscription ended"),
        (InstanceState.PROVISIONING, Reason.INSTANCE_PROVISIONING, "Subscription not ready"),
    ],
)
def test_an_instance_that_is_not_active_refuses_at_the_start(client, world, state, reason, title):
    world.set_instance_state(state)
    audit = assert_refused(client.get("/sso/login", {"tenant": TENANT_ID}), reason, title)
    assert audit.instance_id == INSTANCE_ID
    assert world.fake.requests == []  # the platform was not even asked


@pytest.mark.parametrize(
    ("state", "reason", "title"),
    [
        (InstanceState.FROZEN, Reason.INSTANCE_FROZEN, "Subscription suspended"),
        (InstanceState.RELEASED, Reason.INSTANCE_RELEASED, "Subscription ended"),
    ],
)
def test_an_instance_frozen_while_the_user_signs_in_refuses_at_the_callback(
    client, world, state, reason, title
):
    world.add_user("zhangsan01")
    sent = start_login(client)
    world.set_instance_state(state)
    code = world.fake.issue_code(app_id=APP_ID, user_name="zhangsan01")
    response = client.get(
        "/sso/callback", {"code": code, "tenant": TENANT_ID, "state": sent["state"]}
    )
    assert_refused(response, reason, title)
    assert world.fake.seen("/oauth2/token") == []


def test_an_instance_unknown_here_is_refused(client, world):
    world.instance.delete()
    assert_refused(
        client.get("/sso/login", {"tenant": TENANT_ID}), Reason.NO_INSTANCE, "No subscription"
    )


def test_with_several_applications_the_one_with_an_active_instance_is_used(
    client, world, fake_oauth
):
    world.set_instance_state(InstanceState.FROZEN)
    from instances.models import Instance
    from koogallery.protocol.secret_store import encrypt_secret
    from tenants.models import Application

    Instance.objects.create(instance_id="inst-2", order_id="o-2", state=InstanceState.ACTIVE)
    Application.objects.create(
        tenant=world.tenant,
        instance_id="inst-2",
        app_id="APP-2",
        client_id="c2",
        client_secret_encrypted=encrypt_secret("s2"),
    )
    assert start_login(client)["appId"] == "APP-2"


def test_a_user_never_synced_is_refused(client, world):
    world.fake.add_user(tenant_id=TENANT_ID, user_name="stranger")
    audit = assert_refused(
        platform_login(client, world, "stranger"), Reason.UNKNOWN_USER, "Not authorized"
    )
    assert audit.user_name == "stranger"


def test_a_user_without_authorisation_for_the_app_is_refused(client, world):
    world.add_user("outsider", state=None)
    audit = assert_refused(
        platform_login(client, world, "outsider"), Reason.NOT_AUTHORIZED, "Not authorized"
    )
    assert audit.tenant_user.user_name == "outsider"


def test_an_authorisation_for_another_instance_does_not_count(client, world):
    user = world.add_user("elsewhere", state=None)
    from tenants.models import Authorization

    Authorization.objects.create(
        tenant=world.tenant, user=user, instance_id="other-instance", app_id=APP_ID
    )
    assert_refused(
        platform_login(client, world, "elsewhere"), Reason.NOT_AUTHORIZED, "Not authorized"
    )


@pytest.mark.parametrize(
    ("state", "enabled", "reason", "title"),
    [
        (AuthorizationState.REVOKED, True, Reason.AUTHORIZATION_REVOKED, "Access revoked"),
        (AuthorizationState.REMOVED, True, Reason.AUTHORIZATION_REMOVED, "Not authorized"),
        (AuthorizationState.AUTHORIZED, False, Reason.USER_DISABLED, "Account disabled"),
    ],
)
def test_revoked_removed_and_disabled_users_are_refused(
    client, world, state, enabled, reason, title
):
    world.add_user("former", state=state, enabled=enabled)
    assert_refused(platform_login(client, world, "former"), reason, title)
    assert SignIn.objects.count() == 0


def test_a_local_account_deactivated_by_an_operator_is_refused(client, world):
    world.add_user("banned")
    platform_login(client, world, "banned")
    client.post("/sso/logout")
    get_user_model().objects.filter(username__endswith=":banned").update(is_active=False)
    assert_refused(
        platform_login(client, world, "banned"), Reason.USER_DISABLED, "Account disabled"
    )


def test_userinfo_of_another_tenant_is_refused(client, world):
    world.add_user("zhangsan01")
    world.fake.users[(TENANT_ID, "zhangsan01")]["tenant"] = "some-other-tenant"
    assert_refused(
        platform_login(client, world, "zhangsan01"), Reason.TENANT_MISMATCH, "Wrong enterprise"
    )


# --- test-data tenants (spec §2.5) -----------------------------------------------------------


@pytest.fixture
def test_world(db, fake_oauth):
    """A debug tenant: testFlag 1 rows, app from the seller's credential (no instance)."""
    return build_world(
        fake_oauth, redirect_url=CALLBACK, is_test=True, instance_id="", instance_state=None
    )


def test_test_tenants_are_refused_unless_enabled(client, test_world):
    test_world.add_user("tester")
    assert_refused(
        client.get("/sso/login", {"tenant": TENANT_ID}), Reason.TEST_TENANT, "Test enterprise"
    )


def test_test_tenants_sign_in_when_enabled_even_without_instance(client, test_world, settings):
    settings.SSO_ALLOW_TEST_TENANTS = True
    test_world.add_user("tester")
    assert platform_login(client, test_world, "tester")["Location"] == "/sso/"
    assert "tester" in client.get("/sso/").content.decode()


def test_a_production_app_without_instance_is_refused_even_with_test_tenants_on(
    client, db, fake_oauth, settings
):
    settings.SSO_ALLOW_TEST_TENANTS = True
    build_world(fake_oauth, redirect_url=CALLBACK, instance_id="", instance_state=None)
    assert_refused(
        client.get("/sso/login", {"tenant": TENANT_ID}), Reason.NO_INSTANCE, "No subscription"
    )


def test_the_production_tenant_wins_over_its_test_twin(client, world, fake_oauth, settings):
    settings.SSO_ALLOW_TEST_TENANTS = True
    from tenants.models import Application, Tenant

    twin = Tenant.objects.create(tenant_id=TENANT_ID, is_test=True, domain_name=fake_oauth.url)
    Application.objects.create(
        tenant=twin, app_id="APP-TEST", client_id="x", client_secret_encrypted="x"
    )
    assert start_login(client)["appId"] == APP_ID


# --- the platform says no ---------------------------------------------------------------------


def test_a_wrong_client_secret_is_an_error_for_the_operator(client, db, fake_oauth):
    world = build_world(fake_oauth, redirect_url=CALLBACK, platform_secret="the-real-secret")
    world.add_user("zhangsan01")
    response = platform_login(client, world, "zhangsan01")
    audit = assert_refused(response, Reason.CLIENT_REJECTED, "Sign-in unavailable", 502)
    assert audit.outcome == AuditOutcome.ERROR
    assert audit.detail == "invalid_client"
    assert SignIn.objects.count() == 0


def test_an_unreadable_stored_secret_is_an_error(client, world):
    from tenants.models import Application

    Application.objects.filter(pk=world.application.pk).update(client_secret_encrypted="garbage")
    world.add_user("zhangsan01")
    assert_refused(
        platform_login(client, world, "zhangsan01"),
        Reason.SECRET_UNREADABLE,
        "Sign-in unavailable",
        500,
    )
    assert world.fake.seen("/oauth2/token") == []


@pytest.mark.parametrize(
    ("route", "status", "body", "detail"),
    [
        ("token", 503, None, "HTTP 503"),
        ("token", 200, {"token_type": "Bearer"}, "token answer without access_token"),
        ("userinfo", 401, {"error": "unauthorized"}, "userinfo HTTP 401"),
        ("userinfo", 200, {"name": "no userName"}, "userinfo without userName"),
    ],
)
def test_platform_failures_are_errors_with_a_retry(client, world, route, status, body, detail):
    world.add_user("zhangsan01")
    world.fake.fail_next(route, status, body)
    response = platform_login(client, world, "zhangsan01")
    audit = assert_refused(response, Reason.PROVIDER_ERROR, "KooGallery not reachable", 502)
    assert audit.detail == detail
    assert f'href="/sso/login?tenant={TENANT_ID}"' in response.content.decode()


def test_an_unreachable_platform_is_an_error(client, world):
    world.add_user("zhangsan01")
    world.tenant.domain_name = "http://127.0.0.1:9"  # discard port: connection refused
    world.tenant.save()
    response = platform_login(client, world, "zhangsan01")
    assert_refused(response, Reason.PROVIDER_ERROR, "KooGallery not reachable", 502)


# --- state and codes --------------------------------------------------------------------------


def test_a_callback_with_a_state_never_issued_here_is_refused(client, world):
    world.add_user("zhangsan01")
    start_login(client)
    code = world.fake.issue_code(app_id=APP_ID, user_name="zhangsan01")
    response = client.get(
        "/sso/callback", {"code": code, "tenant": TENANT_ID, "state": "forged-state"}
    )
    assert_refused(response, Reason.BAD_STATE, "not valid here", 400)
    assert world.fake.seen("/oauth2/token") == []  # the code was not redeemed


def test_a_state_from_another_browser_is_refused(client, world, django_user_model):
    from django.test import Client

    world.add_user("victim")
    attacker = Client()
    sent = start_login(attacker)
    code = world.fake.issue_code(app_id=APP_ID, user_name="attacker")
    response = client.get(
        "/sso/callback", {"code": code, "tenant": TENANT_ID, "state": sent["state"]}
    )
    assert_refused(response, Reason.BAD_STATE, "not valid here", 400)


def test_a_state_is_single_use(client, world):
    world.add_user("zhangsan01")
    sent = start_login(client)
    code = world.fake.issue_code(app_id=APP_ID, user_name="zhangsan01")
    params = {"code": code, "tenant": TENANT_ID, "state": sent["state"]}
    assert client.get("/sso/callback", params)["Location"] == "/sso/"
    # Still signed in from the first use: a refused callback does not touch that session.
    assert_refused(
        client.get("/sso/callback", params), Reason.BAD_STATE, "not valid here", 400, signed_in=True
    )


def test_a_state_for_another_tenant_is_refused(client, world):
    sent = start_login(client)
    code = world.fake.issue_code(app_id=APP_ID, user_name="zhangsan01")
    response = client.get(
        "/sso/callback", {"code": code, "tenant": "other-tenant", "state": sent["state"]}
    )
    assert_refused(response, Reason.BAD_STATE, "not valid here", 400)


def test_a_callback_without_code_is_refused(client, world):
    sent = start_login(client)
    response = client.get("/sso/callback", {"tenant": TENANT_ID, "state": sent["state"]})
    assert_refused(response, Reason.MISSING_CODE, "Sign-in incomplete", 400)


def test_a_replayed_code_is_refused_before_the_platform_is_asked(client, world):
    world.add_user("zhangsan01")
    sent = start_login(client)
    code = world.fake.issue_code(app_id=APP_ID, user_name="zhangsan01")
    client.get("/sso/callback", {"code": code, "tenant": TENANT_ID, "state": sent["state"]})
    client.post("/sso/logout")

    again = start_login(client)
    response = client.get(
        "/sso/callback", {"code": code, "tenant": TENANT_ID, "state": again["state"]}
    )
    assert_refused(response, Reason.CODE_REPLAYED, "already been used", 400)
    assert len(world.fake.seen("/oauth2/token")) == 1


def test_a_code_already_spent_at_the_platform_is_refused(client, world):
    """Our replay guard forgot the code (e.g. another server of the app redeemed it): the
    platform's single-use rule still holds, and its error text (which echoes the code) is not
    copied into the audit."""
    world.add_user("zhangsan01")
    sent = start_login(client)
    code = world.fake.issue_code(app_id=APP_ID, user_name="zhangsan01")
    client.get("/sso/callback", {"code": code, "tenant": TENANT_ID, "state": sent["state"]})
    client.post("/sso/logout")
    cache.clear()

    again = start_login(client)
    response = client.get(
        "/sso/callback", {"code": code, "tenant": TENANT_ID, "state": again["state"]}
    )
    audit = assert_refused(response, Reason.CODE_REJECTED, "Sign-in link expired", 400)
    assert audit.detail == "invalid_grant"
    assert code not in response.content.decode()
    assert len(world.fake.seen("/oauth2/token")) == 2


def test_a_login_opened_from_koogallery_restarts_with_a_state(client, world):
    """The platform may open the app's login URL itself (no `state`): the code is not redeemed,
    a login of our own starts instead, and completes."""
    world.add_user("zhangsan01")
    code = world.fake.issue_code(app_id=APP_ID, user_name="zhangsan01")
    response = client.get("/sso/callback", {"code": code, "tenant": TENANT_ID})
    assert response.status_code == 302
    assert response["Location"] == f"/sso/login?tenant={TENANT_ID}"
    assert world.fake.seen("/oauth2/token") == []
    sent = start_login(client)
    code = world.fake.issue_code(app_id=APP_ID, user_name="zhangsan01")
    response = client.get(
        "/sso/callback", {"code": code, "tenant": TENANT_ID, "state": sent["state"]}
    )
    assert response["Location"] == "/sso/"


def dropped_state_callback(client, world, user_name: str = "zhangsan01"):
    """A login started here whose callback comes back without our state (a platform that
    does not carry it)."""
    start_login(client)
    code = world.fake.issue_code(app_id=APP_ID, user_name=user_name)
    return client.get("/sso/callback", {"code": code, "tenant": TENANT_ID})


def signed_in(client) -> bool:
    return client.get("/sso/").status_code == 200


def test_a_platform_that_drops_our_state_signs_in_once_the_person_confirms(world):
    world.add_user("zhangsan01", name="张三")
    client = Client(enforce_csrf_checks=True)
    response = dropped_state_callback(client, world)
    assert response["Location"] == "/sso/confirm"
    assert world.fake.seen("/oauth2/token")  # the code is redeemed at once (it is short-lived)
    assert not signed_in(client)

    page = client.get("/sso/confirm")
    assert page.status_code == 200
    assert "张三" in page.content.decode() and "zhangsan01" in page.content.decode()
    assert not signed_in(client)
    # A planted link cannot confirm: the POST needs the page's CSRF token.
    assert client.post("/sso/confirm", {"decision": "confirm"}).status_code == 403
    assert not signed_in(client)

    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    response = client.post("/sso/confirm", {"decision": "confirm", "csrfmiddlewaretoken": token})
    assert response["Location"] == "/sso/"
    assert signed_in(client)
    audit = last_audit()
    assert (audit.event, audit.outcome, audit.user_name) == (
        AuditEvent.LOGIN,
        AuditOutcome.SUCCESS,
        "zhangsan01",
    )
    # Confirmed once: the held sign-in is gone from the session.
    assert_refused(
        client.get("/sso/confirm"), Reason.BAD_STATE, "not valid here", 400, signed_in=True
    )


def test_a_sign_in_declined_at_confirmation_is_ended(client, world):
    world.add_user("attacker")
    dropped_state_callback(client, world, "attacker")
    response = client.post("/sso/confirm", {"decision": "decline"})
    audit = assert_refused(response, Reason.BAD_STATE, "not valid here", 400)
    assert audit.detail == "sign-in declined in the browser"
    assert audit.user_name == "attacker"
    assert SignIn.objects.get().end_reason == SignInEnd.DECLINED
    assert not signed_in(client)


def test_a_confirmation_left_too_long_is_refused_and_ends_the_sign_in(client, world, monkeypatch):
    world.add_user("zhangsan01")
    dropped_state_callback(client, world)
    monkeypatch.setattr(views, "CONFIRM_TTL_S", -1)
    response = client.post("/sso/confirm", {"decision": "confirm"})
    audit = assert_refused(response, Reason.BAD_STATE, "not valid here", 400)
    assert audit.detail == "nothing to confirm"
    assert SignIn.objects.get().end_reason == SignInEnd.DECLINED


def test_a_stateless_callback_answering_no_login_of_ours_restarts_with_a_state(client, world):
    """Without a login started here moments ago, a stateless callback is not redeemed: a login
    of our own starts (the platform may carry our state), however often it comes."""
    world.add_user("zhangsan01")
    code = world.fake.issue_code(app_id=APP_ID, user_name="zhangsan01")
    for _ in range(2):
        response = client.get("/sso/callback", {"code": code, "tenant": TENANT_ID})
        assert response["Location"] == f"/sso/login?tenant={TENANT_ID}"
    assert world.fake.seen("/oauth2/token") == []
    assert_refused(client.get("/sso/confirm"), Reason.BAD_STATE, "not valid here", 400)


def test_redirect_uri_is_sent_when_configured(client, world, settings):
    settings.SSO_REDIRECT_URI = CALLBACK
    world.add_user("zhangsan01")
    sent = start_login(client)
    assert sent["redirect_uri"] == CALLBACK
    code = world.fake.issue_code(app_id=APP_ID, user_name="zhangsan01")
    client.get("/sso/callback", {"code": code, "tenant": TENANT_ID, "state": sent["state"]})
    assert world.fake.seen("/oauth2/token")[0].form["redirect_uri"] == CALLBACK


def test_without_redirect_uri_setting_none_is_sent(client, world):
    world.add_user("zhangsan01")
    platform_login(client, world, "zhangsan01")
    assert "redirect_uri" not in world.fake.seen("/oauth2/token")[0].form
