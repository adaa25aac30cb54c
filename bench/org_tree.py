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

With --http (issue 17), instead: the service under gunicorn as in production (`-c
python:ops.gunicorn`, threaded workers; --workers, --threads) on a scratch database (--pg-url,
--db, dropped at the end) and Redis (--redis-url); --neighbours tenants of 5,000 departments
(default 20) and the 100k 8-way tenant of bench/org_sync.py's tree (5,000-department divisions,
depth up to 8; as bench/big_calls.py's `first`, its 20,000 users waiting) loaded by signed
allOrgSync calls over HTTP. Then every staff read of it (top level, a division's children
page and a depth read of it, searches, the page shell, the tenant's admin page), as a
signed-in superuser over one keep-alive connection, --repeat runs interleaved (default 20),
best / median / worst next to GET /healthz in the same run, with the load average. With
--screenshots DIR, the page in headless Chromium (runserver --insecure on the same database
for the static files): it opens, a division and a department are expanded, a name searched,
a hit eight levels down shown in the tree; a screenshot after each step.

    .venv/bin/python bench/org_tree.py --http --screenshots /tmp/org-tree-shots
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
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _harness as harness  # noqa: E402

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
    with chromium_on_runserver(wait_s=120) as (driver, base, until):

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


# --- the 100k 8-way tenant over HTTP (issue 17) -------------------------------------------------
HTTP_TENANT = "bench-staff-100k"
STAFF_GOAL_MS = 100  # issue 17: each staff read of a 100k tenant within 100 ms on a quiet machine


class Getter:
    """GETs on one keep-alive connection to the service, as a signed-in staff member."""

    def __init__(self, port: int, cookie: str):
        import http.client

        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Cookie": cookie, "Accept": "application/json, text/html"}

    def get(self, path: str) -> tuple[float, int, bytes]:
        """(seconds from sending to the answer read, status, answer)"""
        started = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - started
        if response.will_close:
            self.conn.close()
        return elapsed, response.status, data

    def close(self) -> None:
        self.conn.close()


def staff_cookie(username: str = "bench-staff-http") -> str:
    """A superuser's session (in the service's database), as a Cookie header."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_superuser(username, password=None)
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def load_http(args, port: int) -> tuple[list[dict], int]:
    """--neighbours tenants of 5,000 departments, then the 100k 8-way tenant (bench/org_sync.py's
    tree, as bench/big_calls.py's `first`), each by a signed allOrgSync over HTTP; the big one
    after its 20,000 users (authSync before allOrgSync). Then VACUUM ANALYZE, as autovacuum
    would do after such a load. Returns the items and the tenant's primary key."""
    from bench import org_sync as org_bench
    from orgsync.models import Department
    from tenants.models import TenantUser

    kit = harness.Connection("127.0.0.1", port, timeout=120)
    rng = random.Random(17)
    started = time.perf_counter()
    for t in range(args.neighbours):
        tree_items = org_bench.build_tree(f"N{t:02d}-", org_bench.DIVISION, rng)
        body = org_bench.all_org_sync_body(f"neighbour-{t:02d}", tree_items)
        kit.connect()  # the service closes a connection idle for its keep-alive
        answer = kit.send(harness.kit_request("allOrgSync", body))
        if answer.get("resultCode") != "000000":
            raise SystemExit(f"neighbour allOrgSync answered {answer}")
    items = org_bench.build_tree("D", args.departments, random.Random(5))
    tenant = org_bench.add_waiting_users(HTTP_TENANT, items)
    kit.connect()
    answer = kit.send(
        harness.kit_request("allOrgSync", org_bench.all_org_sync_body(HTTP_TENANT, items))
    )
    kit.close()
    if answer.get("resultCode") != "000000":
        raise SystemExit(f"allOrgSync answered {str(answer)[:300]}")
    stored = Department.objects.filter(tenant=tenant).count()
    linked = TenantUser.objects.filter(tenant=tenant, department__isnull=False).count()
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    print(
        f"loaded {args.neighbours} neighbour tenants of {org_bench.DIVISION:,} and "
        f"{stored:,} departments ({linked:,} users linked) in "
        f"{time.perf_counter() - started:.1f} s, all by allOrgSync over HTTP",
        flush=True,
    )
    return items, tenant.pk


def http_reads(items: list[dict], tenant_pk: int) -> list[tuple[str, str, bool]]:
    """(label, path, judged against STAFF_GOAL_MS) for every staff read of the big tenant."""
    from urllib.parse import quote

    divisions = sorted(i["orgCode"] for i in items if not i["parentCode"])
    division = divisions[len(divisions) // 2]
    code = f"D{len(items) * 54321 // 100_000 + 1:07d}"  # a department, not a division
    name = next(i["orgName"] for i in items if i["orgCode"] == code)
    api = f"/api/tenants/{HTTP_TENANT}"
    return [
        ("reference: GET /healthz (bare view)", "/healthz", False),
        ("top level (depth 1)", f"{api}/org-tree?depth=1", True),
        (f"5,000-node branch {division}: children", f"{api}/org-tree?root={division}&depth=1",
         True),
        ("  depth read (depth 32, 501 nodes)", f"{api}/org-tree?root={division}&depth=32", True),
        (f"search by name ({name})", f"{api}/org-tree/search?q={quote(name)}", True),
        ("search by orgCode", f"{api}/org-tree/search?q={code}", True),
        ("search by name, 11 matches", f"{api}/org-tree/search?q={quote(name[:-1])}", True),
        ("search, every department matches", f"{api}/org-tree/search?q={quote(name[:2])}",
         True),
        ("search, nothing matches", f"{api}/org-tree/search?q=nothing-here", True),
        ("search a user by userName", f"{api}/org-tree/search?q=user12345", True),
        ("the tree page (HTML shell, counts)", f"/staff/tenants/{HTTP_TENANT}/org-tree", True),
        ("the tenant's admin page (HTML)", f"/admin/tenants/tenant/{tenant_pk}/change/", False),
    ]


def measure_http(args, port: int, items: list[dict], tenant_pk: int) -> None:
    reads = http_reads(items, tenant_pk)
    getter = Getter(port, staff_cookie())
    for _ in range(3):  # the worker thread's first requests import, connect and fill caches
        for label, path, _judged in reads:
            _, status, data = getter.get(path)
            if status != 200:
                raise SystemExit(f"{label}: {path} answered {status} {data[:300]!r}")
    timings: dict[str, list[float]] = {label: [] for label, _, _ in reads}
    sizes: dict[str, int] = {}
    loads = []
    for _ in range(args.repeat):  # interleaved: a change of load hits every row alike
        loads.append(os.getloadavg()[0])
        for label, path, _judged in reads:
            seconds, status, data = getter.get(path)
            if status != 200:
                raise SystemExit(f"{label}: {path} answered {status}")
            timings[label].append(seconds * 1000)
            sizes[label] = len(data)
    getter.close()
    reference = statistics.median(timings[reads[0][0]])
    print(
        f"\nStaff reads of {HTTP_TENANT} over HTTP, {args.repeat} interleaved runs: best / "
        f"median / worst ms, median x the bare view, answer size; goal <= {STAFF_GOAL_MS} ms "
        f"(median); load average during the runs {min(loads):.2f}-{max(loads):.2f}"
    )
    for label, _path, judged in reads:
        values = sorted(timings[label])
        median = statistics.median(values)
        verdict = ("met" if median <= STAFF_GOAL_MS else "missed") if judged else ""
        print(
            f"  {label:<42} {values[0]:7.1f} {median:7.1f} {values[-1]:7.1f}  "
            f"{median / reference:6.1f} x  {sizes[label] / 1024:7.1f} KiB  {verdict}",
            flush=True,
        )


def main_http(args) -> None:
    args.database_url = f"{args.pg_url}/{args.db}"
    env = harness.service_env(
        args.database_url, args.redis_url, scrub=("SECURE_",), SECURE_SSL_REDIRECT="false"
    )
    harness.recreate_database(args.database_url)
    harness.migrate(env)
    harness.configure_environment(
        args.database_url,
        unset=(*harness.SERVICE_PREFIXES, "SECURE_"),
        encryption_keys=env["FIELD_ENCRYPTION_KEYS"],
        REDIS_URL=args.redis_url,
        SECURE_SSL_REDIRECT="false",
    )
    import django

    django.setup()
    from django.db import connections

    port = harness.free_port()
    log_path = Path(tempfile.gettempdir()) / f"bench-org-tree-http-{os.getpid()}.log"
    log = log_path.open("w")
    gunicorn = harness.start_service(args, port, env, log)
    try:
        harness.wait_until_up(port)
        with psycopg.connect(args.database_url) as conn:
            version = conn.info.server_version
        print(
            f"{harness.describe_service(args)}; PostgreSQL {version} ({args.db}); "
            f"{os.cpu_count()} CPUs; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
            f"; service log {log_path}",
            flush=True,
        )
        items, tenant_pk = load_http(args, port)
        measure_http(args, port, items, tenant_pk)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if args.screenshots:
            look_in_chromium(Path(args.screenshots), items)
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=30)
        log.close()
        connections.close_all()
        if not args.keep:
            harness.drop_database(args.database_url)


def look_in_chromium(directory: Path, items: list[dict]) -> None:
    """The org-tree page of the big tenant in headless Chromium (runserver --insecure for the
    static files, same database): screenshots after it opens, after a division and a
    department below it are expanded, after a search, after a hit is revealed."""
    print(f"\nthe page in headless Chromium; screenshots in {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    division = sorted(i["orgCode"] for i in items if not i["parentCode"])[-1]
    child = min(i["orgCode"] for i in items if i["parentCode"] == division)
    deep = _deepest_code(items)
    with chromium_on_runserver() as (driver, base, until):
        def node(code: str) -> str:
            return f"document.querySelector('li.org-node[data-org-code=\"{code}\"]')"

        def step(label: str, script: str | None, done: str, shot: str, show: str = "") -> None:
            started = time.perf_counter()
            if script:
                driver.execute_script(script)
            until(done)
            elapsed = (time.perf_counter() - started) * 1e3
            if show:
                driver.execute_script(f"document.querySelector('{show}').scrollIntoView()")
            driver.save_screenshot(str(directory / shot))
            nodes = driver.execute_script("return document.querySelectorAll('li.org-node').length")
            print(f"  {label:<46} {elapsed:7.0f} ms  {nodes:6d} nodes in the DOM  {shot}")

        driver.get(f"{base}/staff/tenants/{HTTP_TENANT}/org-tree")
        step("open the page until the divisions show", None,
             f"return {node(division)} !== null", "1-open.png")
        step(f"expand division {division}",
             f"{node(division)}.querySelector('.org-toggle').click()",
             f"return {node(child)} !== null", "2-division.png")
        step(f"expand {child} below it",
             f"{node(child)}.querySelector('.org-toggle').click()",
             f"return {node(child)}.querySelectorAll('li.org-node').length > 0",
             "3-department.png")
        name = next(i["orgName"] for i in items if i["orgCode"] == deep)
        hit = f"#org-search-departments li[data-org-code=\"{deep}\"] .org-reveal"
        step(f"search the name {name!r}",
             f"document.getElementById('org-search-input').value = {name!r};"
             "document.getElementById('org-search-button').click();",
             f"return document.querySelector('{hit}') !== null", "4-search.png", "#org-search")
        step(f"reveal {deep} ({len(_path_of(items, deep))} levels down)",
             f"document.querySelector('{hit}').click()",
             f"const n = {node(deep)}; return n !== null && n.classList.contains('org-found')",
             "5-revealed.png")
        step("search matching every department", (
             f"document.getElementById('org-search-input').value = {name[:2]!r};"
             "document.getElementById('org-search-button').click();"),
             "const first = document.querySelector('#org-search-departments li');"
             f"return first !== null && first.dataset.orgCode !== {deep!r}",
             "6-many.png", "#org-search")


def _path_of(items: list[dict], code: str) -> list[str]:
    parent = {i["orgCode"]: i["parentCode"] for i in items}
    path = [code]
    while parent[path[-1]]:
        path.append(parent[path[-1]])
    return path


def _deepest_code(items: list[dict]) -> str:
    parent = {i["orgCode"]: i["parentCode"] for i in items}
    depth: dict[str, int] = {"": 0}

    def depth_of(code: str) -> int:
        if code not in depth:
            depth[code] = depth_of(parent[code]) + 1
        return depth[code]

    return max(sorted(parent), key=depth_of)


@contextmanager
def chromium_on_runserver(wait_s: float = 60):
    """(driver signed in as staff, base URL, until(script): waits up to `wait_s`) with
    runserver --insecure on loopback against the database this process uses."""
    from django.conf import settings
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    port = harness.free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload",
         "--insecure"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    profile = tempfile.mkdtemp(prefix="bench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    from tests.support.sso_fixtures import CHROMIUM_FLAGS  # the tests' browser, as they run it

    for flag in (*CHROMIUM_FLAGS, "--window-size=1366,768", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        base = f"http://localhost:{port}"
        harness.wait_until_listening(port)
        driver.get(f"{base}/healthz")
        name, _, value = staff_cookie("bench-staff-browser").partition("=")
        driver.add_cookie({"name": name, "value": value, "path": "/"})

        def until(script: str) -> None:
            WebDriverWait(driver, wait_s, poll_frequency=0.01).until(
                lambda d: d.execute_script(script)
            )

        assert settings.configured
        yield driver, base, until
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--departments", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, help="runs of each read (5; --http: 20)")
    parser.add_argument("--browser", action="store_true")
    parser.add_argument("--keep", action="store_true", help="leave the scratch database")
    parser.add_argument("--shapes", action="store_true", help="chain and flat tree (issue 14)")
    parser.add_argument(
        "--http", action="store_true", help="the 100k 8-way tenant over HTTP (issue 17)"
    )
    parser.add_argument("--neighbours", type=int, default=20, help="--http: 5,000-dept tenants")
    parser.add_argument("--screenshots", help="--http: look at the page in Chromium, shots here")
    harness.add_service_arguments(parser)
    harness.add_scratch_arguments(parser, db="bench_org_tree_http", redis_db=13, keep=False)
    args = parser.parse_args()
    load_before = os.getloadavg()
    if args.repeat is None:
        args.repeat = 20 if args.http else 5
    if args.http:
        main_http(args)
        return
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
