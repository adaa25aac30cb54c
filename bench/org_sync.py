"""Department sync at scale (issue 5): prints timings, asserts nothing about them.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_org .venv/bin/python bench/org_sync.py

Drops and recreates the scratch database named in DATABASE_URL, migrates it, starts the service
on loopback against it as in production (bench/_harness.py; its log in a file) and sends signed
kit calls over real HTTP, as KooGallery would:

- 20 tenants of 5,000 departments (neighbours in the same tables), then one tenant of 100,000
  departments (depth up to 8) whose 20,000 users arrived first (authSync before allOrgSync);
- first allOrgSync, identical re-sync, re-sync with 1,000 renames and a 5,000-node subtree moved;
- whole-tree and 5,000-node branch reads (selectors, in this process);
- singleOrgSync add, and a move of a 5,000-node subtree.

Options: --departments N (default 100000), --tenants N (neighbours, default 20), --workers N
(default 2), --worker-class, --threads, --repeat N (first load and re-sync of N big tenants,
min/median/max), --keep (leave the db). A quick smoke run:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_org .venv/bin/python bench/org_sync.py \\
        --departments 20000 --tenants 2 --repeat 2
"""

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _harness as harness  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_org"
DIVISION = 5_000  # departments per top-level division (the subtree that is moved)
MAX_DEPTH = 8


class Kit:
    """Signs and posts kit V2 calls as KooGallery does (§3.1), each with a newer timeStamp."""

    def __init__(self, base: str):
        import requests

        self.base = base
        self.session = requests.Session()

    def call(self, name: str, body: dict) -> tuple[float, dict]:
        path, headers, raw = harness.kit_request(name, body)
        elapsed, response = harness.timed(
            self.session.post, f"{self.base}{path}", data=raw, headers=headers, timeout=60
        )
        answer = response.json()
        if answer.get("resultCode") != "000000":
            raise SystemExit(f"{name} answered {answer}")
        return elapsed, answer

    def all_org_sync(self, tenant_id: str, items: list[dict] | str) -> float:
        return self.call("allOrgSync", all_org_sync_body(tenant_id, items))[0]

    def single_org_sync(self, tenant_id: str, **fields) -> float:
        body = {
            "instanceId": "bench-instance",
            "tenantId": tenant_id,
            "testFlag": 0,
            "timeStamp": harness.kit_time(),
            **fields,
        }
        return self.call("singleOrgSync", body)[0]


def all_org_sync_body(tenant_id: str, items: list[dict] | str) -> dict:
    """An allOrgSync of `items` (a list, or Huawei's string) at a time later than any before."""
    return {
        "instanceId": "bench-instance",
        "tenantId": tenant_id,
        "orgInfoList": items,
        "testFlag": 0,
        "timeStamp": harness.kit_time(),
    }


def build_tree(prefix: str, total: int, rng: random.Random) -> list[dict]:
    """Top-level divisions of DIVISION departments each; inside one, random parents whose depth
    stays within MAX_DEPTH. Listed in random order: children often come before parents."""
    items = []
    for start in range(0, total, DIVISION):
        division = f"{prefix}{start:07d}"
        depth = {division: 1}
        codes = [division]
        items.append({"orgCode": division, "orgName": f"事业部 {start}", "parentCode": ""})
        for n in range(start + 1, min(start + DIVISION, total)):
            code = f"{prefix}{n:07d}"
            parent = rng.choice(codes)
            while depth[parent] >= MAX_DEPTH:
                parent = rng.choice(codes)
            depth[code] = depth[parent] + 1
            codes.append(code)
            items.append({"orgCode": code, "orgName": f"部门 {n}", "parentCode": parent})
    rng.shuffle(items)
    return items


def huawei_text(items: list[dict]) -> str:
    """The list as Huawei sends it: a string, keys unquoted (§4.1.5)."""
    rows = (
        f'{{orgCode:"{i["orgCode"]}", orgName:"{i["orgName"]}", parentCode:"{i["parentCode"]}" }}'
        for i in items
    )
    return "[" + ",".join(rows) + "]"


def add_waiting_users(tenant_id: str, items: list[dict], *, prefix: str = "user"):
    """Creates the tenant with up to 20,000 users (one per fifth department) that arrived
    before their departments (authSync before allOrgSync): the first load links them."""
    from tenants.models import Tenant, TenantUser

    tenant = Tenant.objects.create(tenant_id=tenant_id, name=f"Bench {tenant_id}")
    TenantUser.objects.bulk_create(
        TenantUser(tenant=tenant, user_name=f"{prefix}{i:05d}", org_code=items[i * 5]["orgCode"])
        for i in range(min(20_000, len(items) // 5))
    )
    return tenant


def renamed_and_moved(items: list[dict], rng: random.Random) -> tuple[list[dict], str, str]:
    """The list with 1,000 departments renamed (a tenth of a small tree) and the first top-level
    division (DIVISION departments) moved under the second (with one division, a department
    moved to the top level): (items, moved code, new parent)."""
    items = list(items)
    for i in rng.sample(range(len(items)), min(1_000, len(items) // 10)):
        items[i] = {**items[i], "orgName": items[i]["orgName"] + " (新)"}
    divisions = [i for i, item in enumerate(items) if not item["parentCode"]]
    if len(divisions) > 1:
        moved, target = divisions[0], items[divisions[1]]["orgCode"]
    else:  # a tree of one division (small trees of tests): a department moves to the top
        moved, target = next(i for i, item in enumerate(items) if item["parentCode"]), ""
    items[moved] = {**items[moved], "parentCode": target}
    return items, items[moved]["orgCode"], target


def figure(label: str, seconds: float, note: str = "") -> None:
    print(f"  {label:<58} {seconds * 1000:9.0f} ms  {note}", flush=True)


def server_ms() -> str:
    from koogallery.inbound.journal import InboundCall

    call = InboundCall.objects.order_by("-id").first()
    return f"(server {call.duration_ms:.0f} ms)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--departments", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=20)
    harness.add_service_arguments(parser, workers=2)
    parser.add_argument("--keep", action="store_true", help="leave the scratch database")
    parser.add_argument(
        "--repeat", type=int, default=1, help="first load and re-sync of N tenants in all"
    )
    args = parser.parse_args()

    database_url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    if not database_url.startswith("postgres"):
        raise SystemExit("DATABASE_URL must name a scratch PostgreSQL database")
    harness.configure_environment(
        database_url, encryption_keys=os.environ.get("FIELD_ENCRYPTION_KEYS")
    )
    env = dict(os.environ)
    with (
        harness.scratch_database(database_url, keep=args.keep, env=env),
        harness.service(args, env, "org-sync", "--timeout", "300") as service,
    ):
        harness.setup_django(migrate=False)
        run(args, Kit(service.url))
        print(f"service log: {service.log_path}")


def run(args, kit: Kit) -> None:
    from django.db import connection

    from orgsync import selectors
    from orgsync.models import Department
    from tenants.models import Tenant, TenantUser

    rng = random.Random(5)
    load_before = os.getloadavg()
    print(
        f"PostgreSQL {connection.cursor().connection.info.server_version}, "
        f"{harness.describe_service(args)}, {os.cpu_count()} CPUs"
    )
    started = time.perf_counter()
    for t in range(args.tenants):
        kit.all_org_sync(f"neighbour-{t:02d}", build_tree(f"N{t:02d}-", DIVISION, rng))
    figure(
        f"setup: {args.tenants} neighbour tenants x {DIVISION} departments",
        time.perf_counter() - started,
    )
    # Steady state before measuring: otherwise autovacuum's pass over the rows just
    # inserted competes with the first measured call for this machine's two cores.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE orgsync_department")
        cursor.execute("VACUUM ANALYZE tenants_tenantuser")

    big = "bench-tenant-100k"
    items = build_tree("D", args.departments, rng)
    tenant = add_waiting_users(big, items)
    size = len(json.dumps(items, ensure_ascii=False).encode()) / 1e6
    print(
        f"allOrgSync of {len(items)} departments ({size:.1f} MB of JSON), "
        f"{TenantUser.objects.filter(tenant=tenant).count()} users waiting:"
    )

    elapsed = kit.all_org_sync(big, items)
    figure("first allOrgSync (HTTP, end to end)", elapsed, server_ms())
    linked = TenantUser.objects.filter(tenant=tenant, department__isnull=False).count()
    print(f"  {'':<58} {linked} users linked")
    ids = dict(Department.objects.filter(tenant=tenant).values_list("org_code", "id"))

    def resync(label: str, items: list[dict]) -> None:
        """An allOrgSync of the big tenant, with the rows it wrote."""
        mark = time.time()
        time.sleep(0.01)
        elapsed = kit.all_org_sync(big, items)
        written = _touched_since(tenant, mark)
        figure(label, elapsed, f"{server_ms()} rows written: {written}")

    resync("identical re-sync", items)
    items, _, _ = renamed_and_moved(items, rng)
    divisions = [i for i, item in enumerate(items) if not item["parentCode"]]
    resync("re-sync: 1,000 renames + a 5,000-node subtree moved", items)
    same = dict(Department.objects.filter(tenant=tenant).values_list("org_code", "id"))
    print(f"  {'':<58} primary keys stable: {same == ids}")

    owner = Tenant.objects.create(tenant_id=f"{big}-text")
    elapsed = kit.all_org_sync(owner.tenant_id, huawei_text(items))
    figure("first allOrgSync, list as Huawei's bare-key string", elapsed, server_ms())
    elapsed = kit.all_org_sync(owner.tenant_id, huawei_text(items))
    figure("identical re-sync, bare-key string", elapsed, server_ms())

    if args.repeat > 1:
        # This machine may be shared: more tenants of the same size give a spread.
        firsts, resyncs = [], []
        for n in range(args.repeat - 1):
            other = f"{big}-again-{n}"
            add_waiting_users(other, items, prefix="u")
            firsts.append(kit.all_org_sync(other, items) * 1000)
            resyncs.append(kit.all_org_sync(other, items) * 1000)
        print(f"  {args.repeat - 1} more tenants of the same size (min / median / max ms):")
        for label, values in (("first allOrgSync", firsts), ("identical re-sync", resyncs)):
            print(f"  {label:<58} {harness.spread_text(values, '9.0f', ' / ')}")

    seconds, forest = harness.timed(selectors.department_forest, tenant=tenant)
    nodes = sum(1 for root in forest for _ in root.walk())
    figure(
        "whole-tree read (department_forest)",
        seconds,
        f"{nodes} nodes, {len(forest)} roots, {sum(r.total_users for r in forest)} users",
    )
    # With fewer than four divisions (--departments below 20,000) read and move the last one.
    division = items[divisions[min(2, len(divisions) - 1)]]["orgCode"]
    new_parent = items[divisions[3]]["orgCode"] if len(divisions) > 3 else ""
    seconds, node = harness.timed(selectors.branch, tenant=tenant, org_code=division)
    figure("branch read (5,000-node division)", seconds, f"{sum(1 for _ in node.walk())} nodes")
    figure("user_counts", harness.timed(selectors.user_counts, tenant=tenant)[0])

    leaf = items[-1]["orgCode"]
    elapsed = kit.single_org_sync(big, orgCode="NEW-1", orgName="新部门", parentCode=leaf, flag=1)
    figure("singleOrgSync add", elapsed, server_ms())
    elapsed = kit.single_org_sync(
        big,
        orgCode=division,
        orgName="事业部 moved",
        parentCode=new_parent,
        flag=2,
    )
    figure("singleOrgSync move of a 5,000-node subtree", elapsed, server_ms())
    elapsed = kit.single_org_sync(big, orgCode="NEW-1", orgName="新部门", flag=0)
    figure("singleOrgSync delete", elapsed, server_ms())
    print(harness.load_averages(load_before, os.getloadavg()), "(other processes share the CPUs)")


def _touched_since(tenant, mark: float) -> int:
    from datetime import UTC, datetime

    from orgsync.models import Department

    return Department.objects.filter(
        tenant=tenant, updated_at__gt=datetime.fromtimestamp(mark, tz=UTC)
    ).count()


if __name__ == "__main__":
    main()
