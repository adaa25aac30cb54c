"""The staff org-tree page in a real browser (issue 5): headless Chromium from Debian's packages
(installed by `.ci/run`), driven by Selenium against this server (`live_server`, which serves
the page's static files). A staff member signs in on the admin login form, follows the link
on the tenant's admin page, expands branches, loads more children, lists users, searches a user
and a department and is taken to them; another tenant with the same orgCodes never shows.
A signed-in non-staff user is refused the page and the API. Skipped without Chromium.
"""

import json
import os
import re
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from orgsync import services as org_services
from tenants.models import SyncFlag
from tests.support.org_tree_world import TENANT_ID, big_world, bulk_tree

# The session's headless Chromium (`browser`, cookies cleared per test) of the SSO tests.
pytest_plugins = ["tests.support.sso_fixtures"]

WAIT_S = 15
PASSWORD = "pw-Operator-Staff-1"


@pytest.fixture
def tenant(transactional_db, live_server):
    return big_world()


def wait(browser, condition, message: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    # Polled every 50 ms (Selenium's default is 500 ms, a wasted half second per wait).
    return WebDriverWait(browser, WAIT_S, poll_frequency=0.05).until(
        lambda _: condition(), message
    )


def css(browser, selector: str):
    return browser.find_elements("css selector", selector)


def visible(browser, selector: str):
    """The element, once present and displayed."""

    def shown():
        found = [e for e in css(browser, selector) if e.is_displayed()]
        return found[0] if found else None

    return wait(browser, shown, f"{selector} not shown")


def node(code: str) -> str:
    return f'li.org-node[data-org-code="{code}"]'


def row_text(browser, code: str) -> str:
    return visible(browser, f"{node(code)} > .org-row").text


def click(browser, selector: str) -> None:
    element = visible(browser, selector)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


def children_codes(browser, code: str) -> list[str]:
    items = css(browser, f"{node(code)} > ul.org-children > li.org-node")
    return [item.get_attribute("data-org-code") for item in items]


def sign_in_on_admin_form(browser, live_server, user_name: str, next_path: str) -> None:
    browser.get(f"{live_server.url}/admin/login/?next={next_path}")
    visible(browser, "#id_username").send_keys(user_name)
    browser.find_element("id", "id_password").send_keys(PASSWORD)
    browser.find_element("css selector", "input[type=submit]").click()


def use_session_of(browser, live_server, user) -> None:
    """Give the browser the session cookie of `user` (signed in by other means, e.g. SSO)."""
    client = Client()
    client.force_login(user)
    browser.get(f"{live_server.url}/healthz")
    browser.add_cookie(
        {
            "name": settings.SESSION_COOKIE_NAME,
            "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
            "path": "/",
        }
    )


def test_staff_browse_expand_and_search_the_tree(browser, live_server, tenant):
    operator = get_user_model().objects.create_user("operator", password=PASSWORD, is_staff=True)
    operator.user_permissions.add(Permission.objects.get(codename="view_tenant"))
    admin_page = f"/admin/tenants/tenant/{tenant.pk}/change/"
    sign_in_on_admin_form(browser, live_server, "operator", admin_page)

    # From the tenant's admin page to its tree.
    click(browser, "#org-tree-link")
    wait(browser, lambda: urlsplit(browser.current_url).path.endswith("/org-tree"))
    assert urlsplit(browser.current_url).path == f"/staff/tenants/{TENANT_ID}/org-tree"
    assert visible(browser, "#last-sync").text.startswith(
        tenant.org_synced_at.strftime("%Y-%m-%d %H:%M")
    )
    assert visible(browser, "#department-count").text == str(1 + 8 * 31 + 1 + 250 + 1)

    # Top levels: the head office opened on its divisions; the orphan highlighted at the top.
    assert "Head office" in row_text(browser, "1")
    assert "1 / 481 users" in row_text(browser, "1")  # the boss, and 480 below
    visible(browser, node("1-3"))
    assert children_codes(browser, "1") == [f"1-{d}" for d in range(1, 9)] + ["1-W"]
    assert css(browser, node("1-3-7")) == []  # not loaded until its division is expanded
    orphan = visible(browser, node("X"))
    assert "org-orphan" in orphan.get_attribute("class")
    assert "orphan: parent gone not synced" in row_text(browser, "X")

    # Expand a branch: its teams arrive from the API, with their own counts.
    click(browser, f"{node('1-3')} > .org-row > .org-toggle")
    team = visible(browser, node("1-3-7"))
    assert "Team 3.7" in team.text
    assert "2 / 2 users" in row_text(browser, "1-3-7")
    assert len(children_codes(browser, "1-3")) == 30
    click(browser, f"{node('1-3-7')} > .org-row > .org-users-toggle")
    visible(browser, f"{node('1-3-7')} tr.org-user")
    users_text = visible(browser, f"{node('1-3-7')} .org-users-table").text
    assert "user-3-7-a" in users_text
    assert "user-3-7-b" in users_text
    assert "Impostor" not in browser.page_source  # same orgCode, other tenant
    # Collapse hides the branch again.
    click(browser, f"{node('1-3')} > .org-row > .org-toggle")
    wait(browser, lambda: not css(browser, node("1-3-7"))[0].is_displayed())

    # Unassigned users: highlighted group, listed on demand.
    click(browser, "#org-unassigned-toggle")
    assert "nomad" in visible(browser, "#org-unassigned tr.org-user").text

    # Search a user by userName: the result names the path; "Show in tree" opens it.
    search = visible(browser, "#org-search-input")
    search.send_keys("user-6-20-b")
    click(browser, "#org-search-button")
    hit = visible(browser, '#org-search-users li[data-user-name="user-6-20-b"]')
    assert "Head office / Division 6 / Team 6.20" in hit.text
    assert "Member 6.20 B" in hit.text
    click(browser, '#org-search-users li[data-user-name="user-6-20-b"] .org-reveal')
    found = visible(browser, 'tr.org-user.org-found[data-user-name="user-6-20-b"]')
    assert "disabled" not in found.text
    assert "org-found" in css(browser, node("1-6-20"))[0].get_attribute("class")

    # A department beyond the first page of a wide branch is fetched and revealed.
    search.clear()
    search.send_keys("Wide team 240")
    click(browser, "#org-search-button")
    click(browser, '#org-search-departments li[data-org-code="1-W-240"] .org-reveal')
    visible(browser, f"{node('1-W-240')}.org-found")
    assert len(children_codes(browser, "1-W")) == 201  # first page + the revealed one
    more = visible(browser, f"{node('1-W')} > ul.org-children > li.org-more button")
    assert more.text == "Show more (200 of 250 shown)"
    more.click()
    wait(browser, lambda: len(children_codes(browser, "1-W")) == 250)
    assert len(set(children_codes(browser, "1-W"))) == 250
    assert css(browser, f"{node('1-W')} > ul.org-children > li.org-more") == []

    # A user matching nothing.
    search.clear()
    search.send_keys("no-such-person")
    click(browser, "#org-search-button")
    wait(browser, lambda: "No user matches." in css(browser, "#org-search-results")[0].text)
    assert css(browser, "#org-error")[0].is_displayed() is False


def test_non_staff_are_refused_the_page_and_the_api(browser, live_server, tenant):
    buyer = get_user_model().objects.create_user("buyer", password=PASSWORD)
    use_session_of(browser, live_server, buyer)

    browser.get(f"{live_server.url}/staff/tenants/{TENANT_ID}/org-tree")
    assert urlsplit(browser.current_url).path == "/admin/login/"
    assert "not authorized to access this page" in visible(browser, ".errornote").text
    assert css(browser, "#org-tree") == []

    # The admin login form does not take a non-staff account either.
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    sign_in_on_admin_form(browser, live_server, "buyer", f"/staff/tenants/{TENANT_ID}/org-tree")
    assert "staff account" in visible(browser, ".errornote").text

    use_session_of(browser, live_server, buyer)
    for path in (
        f"/api/tenants/{TENANT_ID}/org-tree",
        f"/api/tenants/{TENANT_ID}/org-tree/search?q=user",
        f"/api/tenants/{TENANT_ID}/departments/1-3-7/users",
    ):
        status = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0], {headers: {Accept: 'application/json'}})"
            ".then(async (r) => done([r.status, await r.text()]));",
            live_server.url + path,
        )
        assert status[0] == 403, path
        assert "permission" in json.loads(status[1])["detail"], path
        assert not re.search(r"user-\d", status[1])


def test_show_in_tree_opens_every_level_of_an_eight_deep_tree(browser, live_server, tenant):
    """Issue 17: a hit eight levels down (a search path elides four of them) is shown in its
    real place, every level above it opened, not under a placeholder for the levels left out."""
    deep = [(f"1-1-1-{'1-' * n}1", f"Deep {n}", f"1-1-1{'-1' * n}") for n in range(5)]
    for code, name, parent in deep:
        org_services.single_org_sync(
            tenant_id=TENANT_ID, is_test=False, org_code=code, org_name=name,
            parent_code=parent, flag=SyncFlag.ADD,
        )
    staff_user = get_user_model().objects.create_user("operator", is_staff=True)
    use_session_of(browser, live_server, staff_user)
    browser.get(f"{live_server.url}/staff/tenants/{TENANT_ID}/org-tree")
    visible(browser, node("1-1"))

    hit_code = deep[-1][0]
    visible(browser, "#org-search-input").send_keys("Deep 4")
    click(browser, "#org-search-button")
    hit = visible(browser, f'#org-search-departments li[data-org-code="{hit_code}"]')
    assert "… 4 more …" in hit.text
    click(browser, f'#org-search-departments li[data-org-code="{hit_code}"] .org-reveal')
    found = visible(browser, f"{node(hit_code)}.org-found")
    assert "Deep 4" in found.text
    assert css(browser, "li.org-gap") == []
    # Under its real parent, each level under the one above it, from the top.
    chain = ["1", "1-1", "1-1-1", *[code for code, _, _ in deep]]
    selector = " > ul.org-children > ".join(node(code) for code in chain)
    assert css(browser, f"#org-tree > {selector}.org-found")
    assert css(browser, "#org-error")[0].is_displayed() is False


CHAIN_ID = "chain-tenant-in-browser"


def test_a_deep_chain_stays_usable(browser, live_server, transactional_db):
    """Issue 14: on a chain deeper than a search path's walk, a hit names its nearest steps
    and how many are left out; the gap is read on demand; "Show in tree" opens the hit's last
    levels under a placeholder instead of every level above it."""
    chain = [(f"C{n:04d}", f"Level {n}", f"C{n - 1:04d}" if n else "") for n in range(300)]
    bulk_tree(CHAIN_ID, chain)
    staff_user = get_user_model().objects.create_user("operator", is_staff=True)
    use_session_of(browser, live_server, staff_user)
    browser.get(f"{live_server.url}/staff/tenants/{CHAIN_ID}/org-tree")

    # The top opens on its only child; nothing deeper is loaded.
    visible(browser, node("C0001"))
    assert len(css(browser, "li.org-node")) == 2

    search = visible(browser, "#org-search-input")
    search.send_keys("Level 250")
    click(browser, "#org-search-button")
    hit = visible(browser, '#org-search-departments li[data-org-code="C0250"]')
    assert "… at least 62 more … / Level 248 / Level 249 / Level 250" in hit.text

    # The gap reads 50 more ancestors per click.
    click(browser, '#org-search-departments li[data-org-code="C0250"] .org-elided')
    results = css(browser, "#org-search-departments")[0]
    wait(browser, lambda: "Level 198 / Level 199" in results.text)
    assert "… at least 12 more … / Level 198" in results.text

    # Show in tree: the hit under a placeholder, a handful of nodes in the page.
    click(browser, '#org-search-departments li[data-org-code="C0250"] .org-reveal')
    found = visible(browser, f"{node('C0250')}.org-found")
    assert "Level 250" in found.text
    gap = visible(browser, "li.org-gap > .org-gap-row")
    assert "levels not shown" in gap.text
    # The two opened at the top, and the steps known from the path (Level 198 to 250).
    assert len(css(browser, "li.org-node")) == 2 + 53
    assert css(browser, "#org-error")[0].is_displayed() is False
    if os.environ.get("ORG_TREE_SCREENSHOT"):
        browser.set_window_size(1280, 900)
        browser.save_screenshot(os.environ["ORG_TREE_SCREENSHOT"])
