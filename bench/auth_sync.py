"""authSync at 500 users per call (issue 2): prints timings, asserts nothing about them.

    .venv/bin/python bench/auth_sync.py                       # SQLite (in memory)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench .venv/bin/python bench/auth_sync.py

Creates a scratch test database next to the one DATABASE_URL names (`test_<name>`, dropped at
the end), migrates it, then sends signed kit V2 calls through the whole Django stack (URL
routing, verification, nonce store, journal, one transaction) with Django's test client, as
KooGallery would send them. Network time is not included; KooGallery's timeout is 5 s (§1.3).

For each round a fresh tenant gets: the first load of 500 users (flag 1), an identical re-sync
(flag 2), a re-sync with 10 % of the users changed, a cancel (flag 3) and a delete (flag 0) of
all of them. Finally one call carries 5,000 users (Huawei's 500 cap is not enforced, §2.6).

Options: --rounds N (default 5), --users N (default 500), --big N (default 5000, 0 to skip).
A quick smoke run: `.venv/bin/python bench/auth_sync.py --rounds 2 --users 50 --big 200`.
"""

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _harness as harness  # noqa: E402

APP_ID = "BENCHAPP0001"


def users(count: int, *, changed_every: int = 0) -> list[dict]:
    """`count` users shaped like Huawei's (extension included); every `changed_every`-th one
    renamed and moved, to model a modify that changes some of the list."""
    records = []
    for i in range(count):
        changed = changed_every and i % changed_every == 0
        records.append(
            {
                "userName": f"user{i:06d}",
                "name": f"用户{i}" + ("（改）" if changed else ""),
                "orgCode": f"D{(i + (7 if changed else 0)) % 50:03d}",
                "position": "工程师",
                "employeeCode": f"E{i:06d}",
                "role": "admin" if i % 100 == 0 else "user",
                "enable": "true",
                "mobile": f"138{i:08d}",
                "email": f"user{i}@example.com",
                "extension": {"entryDate": "2022-11-9", "employeeType": "1", "workPlace": "南京"},
            }
        )
    return records


def auth_sync(tenant_id: str, user_list: list[dict], flag: int) -> dict:
    """The authSync body, at a time (currentSyncTime and timeStamp) later than any before."""
    return {
        "instanceId": "bench-instance",
        "tenantId": tenant_id,
        "appId": APP_ID,
        "userList": user_list,
        "currentSyncTime": (stamp := harness.kit_time()),
        "flag": flag,
        "testFlag": 0,
        "timeStamp": stamp,
    }


def timed(kg, body: dict) -> tuple[float, int]:
    """(milliseconds, SQL statements) of one signed authSync call; the call must succeed."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        seconds, response = harness.timed(kg.kit, "authSync", body)
    answer = response.json()
    if answer["resultCode"] != "000000":
        raise SystemExit(f"authSync failed: {answer}")
    return seconds * 1000, len(queries)


def run(rounds: int, count: int, big: int) -> None:
    from django.conf import settings
    from django.db import connection
    from django.test import Client

    from tests.support.kgclient import KooGallery

    kg = KooGallery(Client())
    operations = {
        f"first load of {count} users (flag 1)": lambda t: auth_sync(t, users(count), 1),
        "identical re-sync (flag 2)": lambda t: auth_sync(t, users(count), 2),
        "re-sync, 10% changed (flag 2)": lambda t: auth_sync(t, users(count, changed_every=10), 2),
        "cancel all (flag 3)": lambda t: auth_sync(t, users(count), 3),
        "delete all (flag 0)": lambda t: auth_sync(t, users(count), 0),
    }
    figures: dict[str, list[tuple[float, int]]] = {name: [] for name in operations}
    load_before = os.getloadavg()
    kg.kit("authSync", auth_sync("warm-up", users(10), 1))  # imports, first connection
    for number in range(rounds):
        tenant_id = f"bench-tenant-{number:03d}"
        for name, make in operations.items():
            figures[name].append(timed(kg, make(tenant_id)))

    vendor = connection.vendor
    cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(f"authSync benchmark: {vendor} ({connection.settings_dict['NAME']}), nonce cache {cache}")
    print(f"{rounds} rounds, a fresh tenant each; Django test client (no network)\n")
    print(row("operation", "median ms", "min", "max", "queries"))
    for name, samples in figures.items():
        low, median, high = harness.spread([ms for ms, _ in samples])
        print(row(name, median, low, high, samples[0][1]))
    if big:
        ms, queries = timed(kg, auth_sync("bench-big", users(big), 1))
        print(row(f"one call of {big} users (flag 1)", ms, "", "", queries))
        ms, queries = timed(kg, auth_sync("bench-big", users(big), 2))
        print(row("  its identical re-sync (flag 2)", ms, "", "", queries))
    print(harness.load_averages(load_before, os.getloadavg()))


def row(name, median, low, high, queries) -> str:
    def cell(value, width: int) -> str:
        return f"{value:>{width}.1f}" if isinstance(value, float) else f"{value:>{width}}"

    return f"{name:<40} {cell(median, 10)} {cell(low, 8)} {cell(high, 8)} {cell(queries, 8)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--big", type=int, default=5000)
    args = parser.parse_args()

    # Imported by bench/big_calls.py for its bodies: Django is set up here, not on import.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        run(args.rounds, args.users, args.big)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
