"""Staff org-tree page and API at scale (issue 5): prints timings, asserts nothing about them.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_org_tree \\
        .venv/bin/python bench/org_tree.py --browser

Drops and recreates the scratch database named in DATABASE_URL, migrates it and loads, through
the sync services, one tenant of 100,000 departments (one head office, 20 divisions of random
depth up to 8, a department with 10,000 direct children, 1,000 orphans at the top) with 20,000
users, and a neighbour tenant with the same orgCodes. Then:

- each API read a page makes, in this process through Django's test client (server time plus
  JSON rendering), min/median/max over --repeat runs, with the answer's size;
- with --browser (Debian's chromium and chromium-driver), the page itself in headless Chromium
  against `runserver --insecure` on loopback: time until the tree shows, to expand a division,
  to search a user and to reveal a department seven levels down.

Options: --departments N (default 100000), --users N (20000), --repeat N (5), --browser, --keep.
A quick smoke run (with --shapes too: `--departments 2000 --repeat 2`):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_org_tree \\
        .venv/bin/python bench/org_tree.py --departments 20000 --users 2000 --repeat 2

With --shapes (issue 14: budgets on every staff read), instead: two hostile tenants of N
departments each, bulk-inserted, on PostgreSQL (a scratch database, as above) or SQLite
(DATABASE_URL=sqlite:////tmp/org_shapes.sqlite3, a scratch file): a chain (every department
the only child of the previous one) and a flat tree (one head with N-1 children), a user in
every fifth department. For every staff read (top level, children of a deep node, a depth
read, search, ancestor expansion, the tree page, the tenant's admin page) it prints the
answer's size and time next to a floor: as many rows read in one indexed range.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/h3 .venv/bin/python bench/org_tree.py --shapes
"""

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

from tests.support import ROOT

sys.path.insert(0, str(ROOT))

from bench import _harness as harness

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_org_tree"
TENANT_ID = "bench-tree-tenant"
NEIGHBOUR_ID = "bench-tree-neighbour"
DIVISIONS = 20
MAX_DEPTH = 8
WIDE = 10_000
ORPHANS = 1_000


def tree(count: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """(orgCode, orgName, parentCode): head office, divisions of random depth ≤ MAX_DEPTH, one
    department with WIDE children, ORPHANS whose parent never arrives."""
    items = [("HQ", "Head office", "")]
    wide_parent = "D01-00001"
    budget = count - 1 - DIVISIONS - WIDE - ORPHANS
    per_division = budget // DIVISIONS
    for d in range(1, DIVISIONS + 1):
        division = f"D{d:02d}"
        items.append((division, f"Division {d}", "HQ"))
        nodes = [(division, 1)]
        for n in range(1, per_division + 1):
            parent, depth = rng.choice(nodes)
            while depth >= MAX_DEPTH:
                parent, depth = rng.choice(nodes)
            code = f"{division}-{n:05d}"
            items.append((code, f"Team {d}.{n}", parent))
            nodes.append((code, depth + 1))
    items += [(f"W{n:05d}", f"Wide team {n}", wide_parent) for n in range(1, WIDE + 1)]
    items += [(f"O{n:04d}", f"Orphan {n}", f"GONE{n}") for n in range(1, ORPHANS + 1)]
    return items


def load(departments: int, users: int, rng: random.Random) -> dict:
    from orgsync import services as org_services
    from orgsync.models import Department
    from tenants import services as tenant_services
    from tenants.models import Role, SyncFlag

    items = tree(departments, rng)
    started = time.perf_counter()
    org_services.all_org_sync(tenant_id=TENANT_ID, is_test=False, departments=items)
    org_services.all_org_sync(
        tenant_id=NEIGHBOUR_ID,
        is_test=False,
        departments=[(c, f"Neighbour {n}", p) for c, n, p in items[:20_000]],
    )
    codes = [code for code, _, _ in items]
    for start in range(0, users, 5_000):
        records = [
            {
                "user_name": f"user{n:06d}",
                "name": f"Person {n}",
                "org_code": rng.choice(codes) if n % 100 else "NOT-SYNCED",
                "role": Role.ADMIN if n % 50 == 0 else Role.USER,
                "enabled": n % 17 != 0,
                "position": "",
                "employee_code": "",
                "employee_type": None,
                "mobile": "",
                "email": "",
                "work_place": "",
                "entry_date": "",
                "extension": {},
            }
            for n in range(start, min(start + 5_000, users))
        ]
        tenant_services.auth_sync(
            tenant_id=TENANT_ID,
            is_test=False,
            instance_id="bench",
            app_id="BENCHAPP",
            users=records,
            current_sync_time="20240101000000000",
            flag=SyncFlag.ADD,
        )
    print(
        f"loaded {len(items):,} departments and {users:,} users in "
        f"{time.perf_counter() - started:.1f} s"
    )
    deepest = (
        Department.objects.filter(tenant__tenant_id=TENANT_ID, org_code__startswith="D07-")
        .order_by("-org_code")
        .values_list("org_code", flat=True)
    )
    return {"items": items, "deep_candidates": list(deepest[:2000])}


def deep_department(candidates: list[str]) -> tuple[str, int]:
    from orgsync.selectors import path_to_root
    from tenants.models import Tenant

    tenant = Tenant.objects.get(tenant_id=TENANT_ID, is_test=False)
    best = ("", 0)
    for code in candidates:
        depth = len(path_to_root(tenant=tenant, org_code=code))
        if depth > best[1]:
            best = (code, depth)
        if depth >= MAX_DEPTH:
            break
    return best


def measure_api(repeat: int, deep_code: str) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    staff = get_user_model().objects.create_user("bench-staff", is_staff=True)
    client = Client()
    client.force_login(staff)
    base = f"/api/tenants/{TENANT_ID}"
    reads = [
        ("page shell (summary counts)", f"/staff/tenants/{TENANT_ID}/org-tree"),
        ("top levels (depth 1, page of 200)", f"{base}/org-tree?depth=1"),
        ("expand a division (~3,900 below)", f"{base}/org-tree?root=D05&depth=1"),
        ("expand the 10,000-child department", f"{base}/org-tree?root=D01-00001&depth=1"),
        ("  its last page", f"{base}/org-tree?root=D01-00001&depth=1&offset=9800"),
        ("expand a deep department", f"{base}/org-tree?root={deep_code}&depth=1"),
        ("branch of a division, depth 8", f"{base}/org-tree?root=D05&depth=8"),
        ("search department name", f"{base}/org-tree/search?q=Team%2012.34"),
        ("search user name", f"{base}/org-tree/search?q=Person%201234"),
        ("search, many matches", f"{base}/org-tree/search?q=Team"),
        ("users of a department", f"{base}/departments/HQ/users"),
        ("unassigned users (page of 100)", f"{base}/unassigned-users"),
    ]
    print(f"\nAPI reads, in process, {repeat} runs each: min / median / max ms, answer size")
    for label, url in reads:
        timings, response = harness.repeat_ms(partial(client.get, url), repeat)
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}")
        print(
            f"  {label:<38} {harness.spread_text(timings)}   "
            f"{len(response.content) / 1024:7.1f} KiB"
        )


def measure_browser(deep_code: str) -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    port = harness.free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "runserver",
            f"127.0.0.1:{port}",
            "--noreload",
            "--insecure",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    profile = tempfile.mkdtemp(prefix="bench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        base = f"http://localhost:{port}"
        harness.wait_until_listening(port)
        user = get_user_model().objects.create_user("bench-browser", is_staff=True)
        client = Client()
        client.force_login(user)
        driver.get(f"{base}/healthz")
        driver.add_cookie(
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "path": "/",
            }
        )

        def until(script: str) -> None:
            wait = WebDriverWait(driver, 120, poll_frequency=0.01)
            wait.until(lambda d: d.execute_script(script))

        def node(code: str) -> str:
            return f"document.querySelector('li.org-node[data-org-code={code}]')"

        def timed(label: str, script: str, done: str) -> None:
            started = time.perf_counter()
            driver.execute_script(script)
            until(done)
            print(f"  {label:<44} {(time.perf_counter() - started) * 1e3:7.0f} ms")

        def in_dom(label: str) -> None:
            count = driver.execute_script("return document.querySelectorAll('li.org-node').length")
            print(f"  {label:<44} {count:7d}")

        # Codes here are plain ASCII: no quoting needed inside the selectors.
        hit = f"#org-search-departments li[data-org-code={deep_code}] .org-reveal"
        print("\nPage in headless Chromium (runserver on loopback)")
        timed(
            "open the page until the divisions show",
            f"window.location.assign('{base}/staff/tenants/{TENANT_ID}/org-tree')",
            f"return {node('D20')} !== null && {node('D20')}.offsetParent !== null",
        )
        in_dom("departments in the DOM")
        timed(
            "expand a division",
            f"{node('D05')}.querySelector('.org-toggle').click()",
            f"return {node('D05')}.querySelectorAll('li.org-node').length > 0",
        )
        timed(
            "expand the department of 10,000 children",
            f"{node('D01')}.querySelector('.org-toggle').click();",
            f"return {node('D01-00001')} !== null",
        )
        timed(
            "  (its first page of children)",
            f"{node('D01-00001')}.querySelector('.org-toggle').click()",
            f"return {node('D01-00001')}.querySelectorAll('li.org-node').length >= 200",
        )
        timed(
            "search a user until the result shows",
            "document.getElementById('org-search-input').value = 'user012345';"
            "document.getElementById('org-search-button').click();",
            "return document.querySelector('#org-search-users li') !== null",
        )
        timed(
            "search a department by orgCode",
            f"document.getElementById('org-search-input').value = '{deep_code}';"
            "document.getElementById('org-search-button').click();",
            f"return document.querySelector('{hit}') !== null",
        )
        timed(
            f"reveal it, {MAX_DEPTH} levels down",
            f"document.querySelector('{hit}').click()",
            f"const n = {node(deep_code)}; return n !== null && n.classList.contains('org-found')",
        )
        in_dom("departments in the DOM at the end")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        harness.stop(server, timeout=10)


# --- shapes (issue 14) ---------------------------------------------------------------------------
CHAIN_ID = "bench-chain"
FLAT_ID = "bench-flat"


def bulk_tenant(tenant_id: str, items: list[tuple[str, str, str]]) -> int:
    """Departments inserted in bulk and linked to their parents by one UPDATE; a user in every
    fifth department. Returns the tenant's primary key."""
    from django.db import connection

    from orgsync.models import Department
    from tenants.models import Tenant, TenantUser

    tenant = Tenant.objects.create(tenant_id=tenant_id)
    Department.objects.bulk_create(
        (Department(tenant=tenant, org_code=c, org_name=n, parent_code=p) for c, n, p in items),
        batch_size=5000,
    )
    table = Department._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {table} d SET parent_id = p.id FROM {table} p "
                "WHERE d.tenant_id = %s AND p.tenant_id = d.tenant_id "
                "AND p.org_code = d.parent_code",
                [tenant.pk],
            )
        else:
            cursor.execute(
                f"UPDATE {table} SET parent_id = (SELECT p.id FROM {table} p "
                f"WHERE p.tenant_id = {table}.tenant_id AND p.org_code = {table}.parent_code) "
                "WHERE tenant_id = %s AND parent_code <> ''",
                [tenant.pk],
            )
    ids = dict(Department.objects.filter(tenant=tenant).values_list("org_code", "pk"))
    TenantUser.objects.bulk_create(
        (
            TenantUser(tenant=tenant, user_name=f"u{i}", name=f"Person {i}", org_code=code,
                       department_id=ids[code])
            for i, (code, _, _) in enumerate(items[::5])
        ),
        batch_size=5000,
    )
    return tenant.pk


def floor_ms(tenant_pk: int, rows: int, repeat: int) -> float:
    """The bare database floor: `rows` departments of the tenant read in one indexed range
    (the unique (tenant, org_code) index)."""
    from django.db import connection

    from orgsync.models import Department

    table = Department._meta.db_table

    def read() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, org_code, org_name, parent_code, parent_id FROM {table} "
                "WHERE tenant_id = %s ORDER BY org_code LIMIT %s",
                [tenant_pk, max(rows, 1)],
            )
            cursor.fetchall()

    return statistics.median(harness.repeat_ms(read, repeat)[0])


def answer_rows(body: bytes) -> int:
    """Departments (or steps) an answer names: its orgCode keys."""
    return body.count(b'"orgCode"') or body.count(b"data-org-code") or 1


def measure_shapes(departments: int, repeat: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    n = departments
    started = time.perf_counter()
    chain = [(f"C{i:06d}", f"Level {i}", f"C{i - 1:06d}" if i else "") for i in range(n)]
    flat = [("HEAD", "Head", "")] + [(f"F{i:06d}", f"Flat {i}", "HEAD") for i in range(n - 1)]
    pks = {CHAIN_ID: bulk_tenant(CHAIN_ID, chain), FLAT_ID: bulk_tenant(FLAT_ID, flat)}
    if connection.vendor == "postgresql":
        # What autovacuum does after a big insert: statistics, and the visibility map that
        # lets counts be answered from an index alone.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    print(f"built a {n:,}-deep chain and a {n:,}-wide flat tree in "
          f"{time.perf_counter() - started:.1f} s ({connection.vendor})")

    staff = get_user_model().objects.create_superuser("bench-shapes", password="x")
    client = Client()
    client.force_login(staff)
    mid, last = f"C{n // 2:06d}", f"C{n - 1:06d}"
    reads = {
        CHAIN_ID: [
            ("top level (depth 1)", "/org-tree?depth=1"),
            ("children of a deep node", f"/org-tree?root={mid}&depth=1"),
            ("depth read (32 levels, the most)", f"/org-tree?root={mid}&depth=32"),
            ("search, limit 100 (the most)", "/org-tree/search?q=Level%201&limit=100"),
            ("search, limit 200 (refused: 400)", "/org-tree/search?q=Level%201&limit=200"),
            ("search the deepest", f"/org-tree/search?q={last}"),
            ("ancestor expansion (100)", f"/departments/{last}/ancestors?limit=100"),
            ("users of a department", f"/departments/{mid}/users"),
        ],
        FLAT_ID: [
            ("top level (depth 1)", "/org-tree?depth=1"),
            ("children page (500, the most)", "/org-tree?root=HEAD&depth=1&limit=500"),
            ("  its last page (offset)", f"/org-tree?root=HEAD&depth=1&limit=500&offset={n - 500}"),
            ("  its last page (cursor)",
             f"/org-tree?root=HEAD&depth=1&limit=500&after=F{n - 502:06d}"),
            ("depth read (32 levels, the most)", "/org-tree?root=HEAD&depth=32&limit=500"),
            ("search, limit 100 (the most)", "/org-tree/search?q=Flat%201&limit=100"),
            ("search the last", f"/org-tree/search?q=F{n - 2:06d}"),
            ("ancestor expansion", f"/departments/F{n - 2:06d}/ancestors?limit=100"),
        ],
    }
    print(f"\nStaff reads, in process, {repeat} runs each: min / median / max ms, size, "
          "rows named, floor ms (as many rows in one indexed range)")
    for tenant_id, urls in reads.items():
        print(f"  {tenant_id}")
        pages = [
            ("the tree page (HTML)", f"/staff/tenants/{tenant_id}/org-tree"),
            ("the tenant's admin page (HTML)", f"/admin/tenants/tenant/{pks[tenant_id]}/change/"),
        ]
        for label, url in [(lbl, f"/api/tenants/{tenant_id}{u}") for lbl, u in urls] + pages:
            timings, response = harness.repeat_ms(partial(client.get, url), repeat)
            body, status = response.content, response.status_code
            rows = answer_rows(body)
            note = "" if status == 200 else f"  [{status}]"
            print(
                f"    {label:<36} {harness.spread_text(timings)}  {len(body) / 1024:8.1f} KiB  "
                f"{rows:5d}  {floor_ms(pks[tenant_id], rows, repeat):6.1f}{note}"
            )


def main_shapes(args) -> None:
    database_url = os.environ.get("DATABASE_URL", DEFAULT_URL)
    if not database_url.startswith(("sqlite", "postgres")):
        raise SystemExit("DATABASE_URL must name a scratch PostgreSQL database or SQLite file")
    harness.configure_environment(database_url, unset=("REDIS_URL",), SECURE_SSL_REDIRECT="false")
    if database_url.startswith("sqlite"):
        Path(database_url.split(":///", 1)[1]).unlink(missing_ok=True)
        scratch = nullcontext()
    else:
        scratch = harness.scratch_database(database_url, keep=args.keep, empty_at_end=True)
    with scratch:
        harness.setup_django()
        try:
            measure_shapes(args.departments, args.repeat)
        finally:
            harness.close_django_connections()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--departments", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--browser", action="store_true")
    parser.add_argument("--keep", action="store_true", help="leave the scratch database")
    parser.add_argument("--shapes", action="store_true", help="chain and flat tree (issue 14)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    if args.shapes:
        main_shapes(args)
        print(harness.load_averages(load_before, os.getloadavg()))
        return

    database_url = os.environ.get("DATABASE_URL", DEFAULT_URL)
    if not database_url.startswith("postgres"):
        raise SystemExit("DATABASE_URL must name a scratch PostgreSQL database")
    harness.configure_environment(
        database_url,
        unset=("REDIS_URL",),
        encryption_keys=os.environ.get("FIELD_ENCRYPTION_KEYS"),
        SECURE_SSL_REDIRECT="false",
    )
    # Left empty at the end, not dropped.
    with harness.scratch_database(database_url, keep=args.keep, empty_at_end=True):
        harness.setup_django()
        from django.db import connection

        rng = random.Random(5)
        loaded = load(args.departments, args.users, rng)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        deep_code, depth = deep_department(loaded["deep_candidates"])
        print(f"deep department {deep_code}: {depth} levels from the top")
        measure_api(args.repeat, deep_code)
        if args.browser:
            measure_browser(deep_code)
    print(harness.load_averages(load_before, os.getloadavg()))


if __name__ == "__main__":
    main()
