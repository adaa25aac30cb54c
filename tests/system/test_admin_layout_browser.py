"""Every admin page fits a 1366×768 laptop screen (issue 15 item 4), in headless Chromium.

The data is what a first day gives an operator: the simulator's buyer journey (debug data: an
instance, a tenant with a department tree, users, a licence request with its licence, the call
journal, Query Order attempts) sent to this server, next to production data (a tenant, metered
instances with usage records, events and push batches with their HTTP attempts, a licence code,
sign-in audit rows). Every changelist, the change page of its first and last rows, the index
and app pages are opened in one browser session; the test fails on a page that answers an
error or whose content runs past the right edge of the window (outside an element that scrolls
on its own). Skipped when Chromium is not installed (`.ci/run` installs it).

Set ADMIN_SCREENSHOTS=<dir> to keep a full-page screenshot of every page opened.
"""

import base64
import os
import re
from io import StringIO
from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import reverse

from instances.models import ChargingMode
from koogallery.outbound.jobs import dispatch_queued_jobs
from licensing import tokens
from licensing.models import LicenseCode
from metering import services as metering
from orgsync.models import Department
from sso.models import LoginAudit
from tenants.models import Tenant, TenantUser
from tests.support.metering_kit import hour, make_instance, usage
from tests.support.tenant_kit import rsa_keys  # noqa: F401 (fixture)

pytest_plugins = ["tests.support.sso_fixtures"]

WIDTH, HEIGHT = 1366, 768
PASSWORD = "layout-test-password-1"

# Outermost elements whose right edge passes the viewport, unless inside an element that
# scrolls (or clips) on its own; html and body are the page itself. A changelist's table must
# fit too: Django lets it scroll in its box (div.results), hiding the columns on the right.
OVERFLOW_JS = """
const vw = window.innerWidth;
const found = [];
if (document.documentElement.scrollWidth > vw) {
  found.push(`page is ${document.documentElement.scrollWidth}px wide`);
}
for (const box of document.querySelectorAll('#changelist .results')) {
  if (box.scrollWidth > box.clientWidth + 1) {
    const columns = [...box.querySelectorAll('thead th')]
      .map(th => [Math.round(th.getBoundingClientRect().width),
                  th.innerText.trim() || th.className])
      .sort((x, y) => y[0] - x[0]).slice(0, 4).map(([w, name]) => `${name} ${w}px`);
    found.push(`the list is ${box.scrollWidth}px wide in a ${box.clientWidth}px box `
               + `(widest columns: ${columns.join(', ')})`);
  }
}
function contained(el) {
  for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
    if (['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(p).overflowX)) return true;
  }
  return false;
}
function passes(el) {
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) return false;
  if (getComputedStyle(el).visibility === 'hidden') return false;
  return r.right > vw + 1 && !contained(el);
}
function describe(el) {
  let name = el.tagName.toLowerCase();
  if (el.id) name += '#' + el.id;
  if (el.className && typeof el.className === 'string') {
    name += '.' + el.className.trim().split(/\\s+/).join('.');
  }
  const text = (el.innerText || '').trim().replace(/\\s+/g, ' ').slice(0, 40);
  return `${name} right=${Math.round(el.getBoundingClientRect().right)}px "${text}"`;
}
for (const el of document.querySelectorAll('body *')) {
  if (passes(el) && !(el.parentElement && el.parentElement !== document.body
                      && passes(el.parentElement))) {
    found.push(describe(el));
  }
}
return found.slice(0, 5);
"""


@pytest.fixture
def journey_data(transactional_db, live_server, settings, rsa_keys, fake_koogallery):  # noqa: F811
    """The buyer journey (debug data) sent to the live server, plus production rows."""
    from config.celery import app as celery_app

    settings.KOOGALLERY_RSA_PRIVATE_KEY = rsa_keys[0]
    settings.LICENSE_SIGNING_KEY = tokens.private_key_pem(tokens.generate_private_key())
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        out = StringIO()
        url = f"{live_server.url}/koogallery"
        call_command("koogallery_call", "--scenario", "buyer-journey", "--url", url, stdout=out)
        assert "11/11 steps passed" in out.getvalue(), out.getvalue()
        dispatch_queued_jobs()  # Query Order, as beat does (koogallery/outbound/jobs.py)

        tenant = Tenant.objects.create(
            tenant_id="68cbc86f0e8e4c1e9d553c2a1f0e9b11a0e9d553", tenant_code="northwind",
            name="Northwind Trading Co., Ltd. (华东区域运营中心)",
            domain_name="northwind.example.com",
        )  # fmt: skip
        head = Department.objects.create(tenant=tenant, org_code="1", org_name="Head office")
        Department.objects.create(tenant=tenant, org_code="12", org_name="Sales", parent=head,
                                  parent_code="1")  # fmt: skip
        TenantUser.objects.create(tenant=tenant, user_name="wangwu", name="王五", org_code="12")
        metered = make_instance("8c7a6b5d-4e3f-4a2b-9c1d-0e9f8a7b6c5d-ondemand")
        package = make_instance(
            "pkg-3f2e1d0c-9b8a-4765-8321-0fedcba98765", mode=ChargingMode.ON_DEMAND_PKG
        )
        metered.package_instance = package
        metered.save(update_fields=["package_instance"])
        metering.record_usage(
            events=[usage(metered, 3, hour(30)), usage(metered, "2.5", hour(5)),
                    usage(metered, 7, hour(2))]
        )  # fmt: skip
        metering.run_metering()
        LicenseCode.objects.create(
            code="LC-7F3A-99B2-C0DE-4E1F-8A6B-2D9C-5E0F", product_id="00301-666666-0--0",
            order_id="CS2601011200000001", tenant=tenant,
        )  # fmt: skip
        LoginAudit.objects.create(
            event="login", outcome="refused", reason="unknown_tenant", tenant_ref="nobody-here",
            user_name="stranger", remote_addr="203.0.113.7",
            user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36",
        )  # fmt: skip
    finally:
        celery_app.conf.task_always_eager = eager


def admin_pages(user) -> list[str]:
    """The index, every app page, every changelist, and the change pages of the first and last
    row of each (up to every row of a model with three or fewer)."""
    request = RequestFactory().get("/admin/")
    request.user = user
    urls = [reverse("admin:index")]
    apps = sorted({model._meta.app_label for model in admin.site._registry})
    urls += [reverse("admin:app_list", args=[label]) for label in apps]
    for model, model_admin in sorted(admin.site._registry.items(), key=lambda m: m[0]._meta.label):
        opts = model._meta
        urls.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        rows = model_admin.get_queryset(request).order_by("pk")
        pks = list(rows.values_list("pk", flat=True))
        chosen = pks if len(pks) <= 3 else [pks[0], pks[-1]]
        urls += [
            reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[pk]) for pk in chosen
        ]
    return urls


def sign_in(browser, base: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{base}/admin/login/?next=/admin/")
    browser.find_element(By.ID, "id_username").send_keys("operator")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    assert browser.find_element(By.ID, "site-name")


def screenshot(browser, directory: Path, url: str) -> None:
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
    )
    name = re.sub(r"[^a-z0-9]+", "_", url.lower()).strip("_") or "index"
    (directory / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


def test_every_admin_page_renders_and_fits_1366_px(browser, live_server, journey_data, tmp_path):
    user = get_user_model().objects.create_superuser("operator", "op@example.com", PASSWORD)
    urls = admin_pages(user)
    assert len(urls) > 40, urls  # every registered model, with rows to show

    # Status codes through the test client: a 500 names its page (and its traceback is logged).
    client = Client(raise_request_exception=False)
    client.login(username="operator", password=PASSWORD)
    errors = [f"{url}: HTTP {code}" for url in urls if (code := client.get(url).status_code) != 200]

    shots = Path(os.environ.get("ADMIN_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    overflowing = []
    try:
        sign_in(browser, live_server.url)
        assert browser.execute_script("return window.innerWidth") == WIDTH
        for url in urls:
            browser.get(live_server.url + url)
            found = browser.execute_script(OVERFLOW_JS)
            if found or os.environ.get("ADMIN_SCREENSHOTS"):
                screenshot(browser, shots, url)
            if found:
                overflowing.append(f"{url}: " + "; ".join(found))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    assert not (errors or overflowing), "\n".join(
        [*errors, f"pages wider than {WIDTH} px (screenshots in {shots}):", *overflowing]
    )
