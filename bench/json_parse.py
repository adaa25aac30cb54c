"""JSON parsing of the biggest kit bodies (issue 17): prints timings, asserts nothing about them.

    .venv/bin/python bench/json_parse.py

In this process, no database: `jsonbody.parse_json` (orjson first) against `parse_json_stdlib`
(the stdlib path alone, the reference for every value and message), and their parts, on an
allOrgSync body of 100,000 departments (bench/org_sync.py's tree) and an authSync body of 5,000
users (bench/auth_sync.py's), compact UTF-8 as KooGallery sends them. The candidates take turns
within each round; best of --repeat rounds (default 5), so other work on the machine weighs less.

Options: --departments N (default 100000), --users N (default 5000), --repeat N.
"""

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench import _harness as harness  # noqa: E402
from bench import auth_sync as auth_bench  # noqa: E402
from bench import org_sync as org_bench  # noqa: E402
from koogallery.protocol import jsonbody  # noqa: E402


def bodies(departments: int, users: int) -> dict[str, bytes]:
    items = org_bench.build_tree("D", departments, random.Random(5))
    return {
        f"allOrgSync, {departments:,} departments": harness.raw_json(
            org_bench.all_org_sync_body("T1", items)
        ),
        f"authSync, {users:,} users": harness.raw_json(
            auth_bench.auth_sync("T1", auth_bench.users(users), 1)
        ),
    }


def best_ms(candidates: dict, repeat: int) -> dict[str, float]:
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(repeat):
        for name, run in candidates.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: seconds * 1000 for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--departments", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for label, raw in bodies(args.departments, args.users).items():
        assert jsonbody.parse_json(raw) == jsonbody.parse_json_stdlib(raw)
        value = orjson.loads(raw)
        times = best_ms(
            {
                "parse_json_stdlib (before)": lambda raw=raw: jsonbody.parse_json_stdlib(raw),
                "parse_json (orjson first)": lambda raw=raw: jsonbody.parse_json(raw),
                "  orjson.loads": lambda raw=raw: orjson.loads(raw),
                "  _floatless_within_depth": lambda v=value: jsonbody._floatless_within_depth(v),
                "  (_check_depth, stdlib path)": lambda v=value: jsonbody._check_depth(v),
            },
            args.repeat,
        )
        reference = times["parse_json_stdlib (before)"]
        print(f"{label}: {len(raw) / 1e6:.1f} MB, best of {args.repeat}")
        for name, ms in times.items():
            print(f"  {name:<32} {ms:8.1f} ms  {ms / reference:5.2f}x")


if __name__ == "__main__":
    main()
