"""A gunicorn worker keeps part of Python's small-object heap mapped between requests
(ops/gunicorn.py, issue 17): a big call's objects then land in memory already faulted in,
instead of arenas the kernel hands out afresh, page by page, on every call."""

import json
import subprocess
import sys

from tests.support import ROOT

PROBE = """
import json, resource, sys
sys.path.insert(0, ".")
from ops import gunicorn

kept = gunicorn.reserve_heap(int(sys.argv[1]))

def faults_of_a_big_call():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    objects = [{"orgCode": str(n), "orgName": "name"} for n in range(200_000)]  # ~50 MB
    del objects
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults_of_a_big_call()  # the first call after start
print(json.dumps({"kept": len(kept), "faults": faults_of_a_big_call()}))
"""


def later_call(reserve_mb: int) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(reserve_mb)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(run.stdout)


def test_a_later_big_call_reuses_the_reserved_heap_instead_of_faulting_in_fresh_memory():
    without, with_reserve = later_call(0), later_call(128)

    assert without["kept"] == 0 and with_reserve["kept"] > 0
    assert without["faults"] > 5_000  # the arenas were handed back after the first call
    assert with_reserve["faults"] < without["faults"] / 5
