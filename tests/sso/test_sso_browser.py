"""The sign-in flow in a real browser (issue 7 acceptance): headless Chromium from Debian's
packages, driven by Selenium, against this server (`live_server`) and the fake KooGallery
platform on loopback, whose unified login page sends the browser back with a code as the real
one does. Skipped when Chromium is not installed (`.ci/run` installs it)."""

import logging
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from instances.models import InstanceState
from sso.models import AuditOutcome, LoginAudit, Reason, SignIn
from tenants.models import AuthorizationState, Role
from tests.support.sso_support import APP_ID, TENANT_CODE, TENANT_ID, build_world

pytest_plugins = ["tests.support.sso_fixtures"]

WAIT_S = 15


@pytest.fixture
def world(transactional_db, live_server, fake_oauth):
    world = build_world(fake_oauth, redirect_url=f"{live_server.url}/sso/callback")
    world.add_departments(("1", "Head office", ""), ("12", "Sales", "1"))
    return world


def wait_for(browser, element_id: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    # Polled every 50 ms (Selenium's default is 500 ms, a wasted half second per wait).
    return WebDriverWait(browser, WAIT_S, poll_frequency=0.05).until(
        expected_conditions.presence_of_element_located((By.ID, element_id))
    )


def text_of(browser, element_id: str) -> str:
    return wait_for(browser, element_id).text


def open_app(browser, live_server, tenant: str = TENANT_CODE) -> None:
    """The user opens the app: our /sso/login sends the browser to the unified login page."""
    browser.get(f"{live_server.url}/sso/login?{urlencode({'tenant': tenant})}")


def sign_in_at_platform(browser, user_name: str) -> None:
    """On the (fake) unified login page: type the account, press Sign in."""
    field = wait_for(browser, "userName")
    field.clear()
    field.send_keys(user_name)
    browser.find_element("id", "platform-sign-in").click()


def state_on_login_page(browser) -> str:
    wait_for(browser, "userName")
    fragment = urlsplit(browser.current_url).fragment
    return parse_qs(fragment.split("?", 1)[1])["state"][0]


def refusal(browser) -> tuple[str, str]:
    return text_of(browser, "refusal-title"), text_of(browser, "refusal-reason")


def last_audit() -> LoginAudit:
    return LoginAudit.objects.order_by("-id").first()


def test_a_user_signs_in_sees_the_landing_page_and_signs_out(
    browser, live_server, world, caplog, tmp_path
):
    caplog.set_level(logging.DEBUG)
    world.add_user("zhangsan01", name="张三", role=Role.ADMIN, org_code="12")

    open_app(browser, live_server)
    assert urlsplit(browser.current_url).path == "/unified-login/"
    assert f"appId={APP_ID}" in urlsplit(browser.current_url).fragment
    sign_in_at_platform(browser, "zhangsan01")

    assert text_of(browser, "user-display-name") == "张三"
    assert urlsplit(browser.current_url).path == "/sso/"
    assert text_of(browser, "user-name") == "zhangsan01"
    assert text_of(browser, "tenant-name") == "Acme Trading Ltd (acme)"
    assert text_of(browser, "department-path") == "Head office / Sales"
    assert text_of(browser, "role") == "Tenant administrator"
    browser.save_screenshot(str(tmp_path / "landing.png"))
    audit = last_audit()
    assert (audit.outcome, audit.user_name, audit.tenant_ref) == (
        "success",
        "zhangsan01",
        TENANT_ID,
    )

    # Reloading keeps the session; no second code is needed.
    browser.refresh()
    assert text_of(browser, "user-name") == "zhangsan01"
    assert len(world.fake.seen("/oauth2/token")) == 1

    browser.find_element("id", "sign-out").click()
    assert text_of(browser, "signed-out") == "You are signed out"
    assert len(world.fake.seen("/api/v1/logout")) == 1
    assert SignIn.objects.get().end_reason == "logout"
    # Signed out here and at the platform: opening the app asks for the account again.
    browser.find_element("id", "sign-in-again").click()
    assert wait_for(browser, "userName").get_attribute("value") == ""

    secrets = [world.client_secret, *world.fake.issued]
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert not [s for s in secrets if s in logged]
    audit_values = " ".join(str(v) for row in LoginAudit.objects.values() for v in row.values())
    assert not [s for s in secrets if s in audit_values]
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    for url in (
        "/admin/sso/loginaudit/",
        "/admin/sso/signin/",
        f"/admin/sso/signin/{SignIn.objects.get().pk}/change/",
    ):
        page = admin.get(url).content.decode()
        assert not [s for s in secrets if s in page], url


def test_a_user_already_signed_in_to_koogallery_opens_the_app_from_there(
    browser, live_server, world
):
    """The platform opens the app's login URL without our state: a login with a state starts
    and, the browser being signed in at the platform, completes without a form."""
    world.add_user("lisi")
    browser.get(f"{world.fake.url}/workbench?{urlencode({'appId': APP_ID, 'userName': 'lisi'})}")
    assert text_of(browser, "user-name") == "lisi"
    assert len(world.fake.seen("/oauth2/token")) == 1  # only the code that carried our state


def test_a_wrong_client_secret_shows_sign_in_unavailable(browser, live_server, world):
    world.fake.apps[APP_ID].client_secret = "rotated-at-the-platform"
    world.add_user("zhangsan01")
    open_app(browser, live_server)
    sign_in_at_platform(browser, "zhangsan01")
    assert refusal(browser) == ("Sign-in unavailable", Reason.CLIENT_REJECTED)
    assert (last_audit().outcome, last_audit().detail) == (AuditOutcome.ERROR, "invalid_client")


def test_a_user_not_authorized_for_the_app_is_refused(browser, live_server, world):
    world.add_user("outsider", state=None)
    open_app(browser, live_server)
    sign_in_at_platform(browser, "outsider")
    assert refusal(browser) == ("Not authorized", Reason.NOT_AUTHORIZED)
    assert "administrator" in text_of(browser, "refusal-message")
    browser.get(f"{live_server.url}/sso/")
    assert urlsplit(browser.current_url).path == "/sso/login"  # nobody signed in


def test_a_revoked_user_is_refused(browser, live_server, world):
    world.add_user("former", state=AuthorizationState.REVOKED)
    open_app(browser, live_server)
    sign_in_at_platform(browser, "former")
    assert refusal(browser) == ("Access revoked", Reason.AUTHORIZATION_REVOKED)
    assert last_audit().user_name == "former"


@pytest.mark.parametrize(
    ("state", "title", "reason"),
    [
        (InstanceState.FROZEN, "Subscription suspended", Reason.INSTANCE_FROZEN),
        (InstanceState.RELEASED, "Subscription ended", Reason.INSTANCE_RELEASED),
    ],
)
def test_a_frozen_or_released_subscription_is_refused(
    browser, live_server, world, state, title, reason
):
    world.add_user("zhangsan01")
    world.set_instance_state(state)
    open_app(browser, live_server)
    assert refusal(browser) == (title, reason)
    assert world.fake.requests == []


def test_a_subscription_frozen_during_the_session_ends_it(browser, live_server, world):
    world.add_user("zhangsan01")
    open_app(browser, live_server)
    sign_in_at_platform(browser, "zhangsan01")
    assert text_of(browser, "user-name") == "zhangsan01"
    world.set_instance_state(InstanceState.FROZEN)
    browser.refresh()
    assert refusal(browser) == ("Subscription suspended", Reason.INSTANCE_FROZEN)


def test_a_replayed_code_is_refused(browser, live_server, world):
    world.add_user("zhangsan01")
    open_app(browser, live_server)
    sign_in_at_platform(browser, "zhangsan01")
    assert text_of(browser, "user-name") == "zhangsan01"
    (used_code,) = world.fake.codes
    browser.find_element("id", "sign-out").click()
    wait_for(browser, "signed-out")

    open_app(browser, live_server)
    state = state_on_login_page(browser)  # a genuine login in progress in this browser
    query = urlencode({"code": used_code, "tenant": TENANT_ID, "state": state})
    browser.get(f"{live_server.url}/sso/callback?{query}")

    assert refusal(browser) == ("Sign-in link already used", Reason.CODE_REPLAYED)
    browser.find_element("id", "retry").click()
    sign_in_at_platform(browser, "zhangsan01")
    assert text_of(browser, "user-name") == "zhangsan01"


def test_a_bad_state_is_refused(browser, live_server, world):
    """Login CSRF: a code obtained elsewhere, with a state this browser never received."""
    world.add_user("zhangsan01")
    world.add_user("attacker")
    open_app(browser, live_server)
    state_on_login_page(browser)
    planted = world.fake.issue_code(app_id=APP_ID, user_name="attacker")
    query = urlencode({"code": planted, "tenant": TENANT_ID, "state": "not-the-state"})
    browser.get(f"{live_server.url}/sso/callback?{query}")

    assert refusal(browser) == ("Sign-in link not valid here", Reason.BAD_STATE)
    assert world.fake.seen("/oauth2/token") == []
    assert not SignIn.objects.exists()


def test_a_platform_that_drops_our_state_signs_in_after_a_confirmation(browser, live_server, world):
    """If the unified login page does not carry our `state` back, the person sees whom they
    are signing in as and confirms; declining signs nobody in."""
    world.fake.echo_state = False
    world.add_user("zhangsan01", name="张三")
    open_app(browser, live_server)
    sign_in_at_platform(browser, "zhangsan01")
    assert text_of(browser, "user-name") == "zhangsan01"  # the confirmation page
    browser.find_element("id", "confirm").click()
    wait_for(browser, "sign-out")
    assert text_of(browser, "user-name") == "zhangsan01"  # signed in, on the landing page
    assert urlsplit(browser.current_url).path == "/sso/"

    browser.find_element("id", "sign-out").click()
    wait_for(browser, "signed-out")
    open_app(browser, live_server)
    sign_in_at_platform(browser, "zhangsan01")
    wait_for(browser, "decline").click()
    assert refusal(browser) == ("Sign-in link not valid here", Reason.BAD_STATE)
    browser.get(f"{live_server.url}/sso/")
    assert urlsplit(browser.current_url).path == "/sso/login"  # nobody signed in
