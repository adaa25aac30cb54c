"""bench/_harness.py, the one harness every bench script runs on: the calls it builds are signed
as KooGallery signs them (the service accepts them, refuses them under another key), its client
loops count what they say they count, its figures read as they should, and its scratch
databases come and go as asked (PostgreSQL)."""

import os
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import psycopg
import pytest
from django.db import connection

from bench import _harness as harness
from bench import slow_clients
from instances.models import ChargingMode, Instance, InstanceState
from tenants.models import Tenant


@pytest.fixture
def bench_keys(settings):
    """The service as the benches configure it: their basic and kit keys."""
    settings.KOOGALLERY_BASIC_KEY = [harness.BASIC_KEY]
    settings.KOOGALLERY_KIT_KEY = [harness.KIT_KEY]
    return settings


def new_instance(order: str) -> dict:
    return {
        "activity": "newInstance",
        "businessId": f"business-{order}",
        "orderId": order,
        "orderLineId": f"{order}-000001",
    }


@pytest.mark.django_db
def test_a_basic_request_is_signed_as_koogallery_signs_it(bench_keys):
    sender = harness.InProcess()

    answer = sender.send(harness.basic_request(new_instance("CSHARNESS0001")))

    assert answer["resultCode"] == "000000"
    assert Instance.objects.filter(instance_id=answer["instanceId"]).exists()
    bench_keys.KOOGALLERY_BASIC_KEY = ["another-basic-key-0123456789"]
    forged = sender.send(harness.basic_request(new_instance("CSHARNESS0002")))
    assert forged["resultCode"] == "000001"


@pytest.mark.django_db
def test_the_slow_clients_raw_call_is_a_signed_kit_call(bench_keys):
    """slow_clients writes its tenantSync on a raw socket: head and body as KooGallery sends
    them, signed with the kit key (here parsed back and sent through the whole stack)."""
    raw = slow_clients._kit_request(slow_clients._tenant_body(7))
    head, _, body = raw.partition(b"\r\n\r\n")
    request_line, *lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    assert request_line == "POST /koogallery/produceAPI/v2/tenantSync HTTP/1.1"
    assert int(headers.pop("Content-Length")) == len(body)
    headers = {k: v for k, v in headers.items() if k not in ("Host", "Connection")}

    status, data = harness.InProcess().exchange((request_line.split()[1], headers, body))

    assert status == 200 and b'"000000"' in data
    assert Tenant.objects.filter(tenant_id="bench-slow-tenant-7").exists()
    declared = slow_clients._kit_request(slow_clients._tenant_body(8), content_length=100_000)
    assert declared.endswith(b"\r\n\r\n") and b"Content-Length: 100000\r\n" in declared


def test_a_timed_loop_times_each_call_and_keeps_what_went_wrong():
    prepared = []

    def prepare(n: int) -> int:
        prepared.append(n)
        return n

    latencies, failures = harness.timed_loop(
        prepare,
        lambda n: n * 2,
        lambda n, answer: f"odd {n}: {answer}" if n % 2 else None,
        count=5,
    )

    assert prepared == [0, 1, 2, 3, 4]
    assert len(latencies) == 5 and all(seconds >= 0 for seconds in latencies)
    assert failures == ["odd 1: 2", "odd 3: 6"]


def test_a_timed_loop_for_a_time_calls_until_it_is_over():
    started = time.perf_counter()
    latencies, failures = harness.timed_loop(
        lambda n: n, lambda n: time.sleep(0.01), lambda n, answer: None, seconds=0.1
    )
    assert time.perf_counter() - started >= 0.1
    assert 1 <= len(latencies) <= 11 and failures == []


def test_threads_and_processes_share_the_clients_and_return_what_each_did():
    assert harness.in_threads(lambda i: i * i, 4) == [0, 1, 4, 9]

    returned, wall = harness.in_processes(lambda i, share: (i, share, os.getpid()), 5, 2)
    assert sorted((i, share) for i, share, _ in returned) == [(0, 3), (1, 2)]
    assert os.getpid() not in {pid for _, _, pid in returned} and wall > 0
    # More processes than clients: none starts without a client.
    returned, _ = harness.in_processes(lambda i, share: (i, share), 1, 3)
    assert returned == [(0, 1)]


def test_merged_concatenates_lists_and_adds_numbers():
    assert harness.merged([([1.0], ["a"], 0.5), ([2.0, 3.0], [], 1.5)]) == [
        [1.0, 2.0, 3.0],
        ["a"],
        2.0,
    ]


def test_the_figures_read_as_the_benches_print_them():
    assert harness.spread([3.0, 1.0, 2.0, 10.0]) == (1.0, 2.5, 10.0)
    assert harness.spread_text([2.0, 1.0, 3.0], ".0f", " / ") == "1 / 2 / 3"
    assert harness.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    summary = harness.latency_summary([0.001 * n for n in range(1, 101)], wall=2.0)
    assert summary.startswith("n=  100  p50=   50.5 ms  p90=   90.0 ms  p99=   99.0 ms")
    assert summary.endswith("max=  100.0 ms     50.0 calls/s")
    assert harness.latency_summary([]) == "n=    0"
    assert harness.load_averages((1, 2, 3), (4.5, 5, 6)) == (
        "load average (1/5/15 min) before: 1.00 2.00 3.00   after: 4.50 5.00 6.00"
    )


@pytest.mark.django_db
def test_on_demand_instances_are_active_and_started_when_asked():
    started = datetime.now(UTC) - timedelta(days=2)

    ids = harness.add_on_demand_instances(3, prefix="harness", started=started)

    assert ids == ["harness-00000", "harness-00001", "harness-00002"]
    rows = Instance.objects.filter(instance_id__in=ids)
    assert {(r.charging_mode, r.state, r.created_at) for r in rows} == {
        (ChargingMode.ON_DEMAND, InstanceState.ACTIVE, started)
    }


def test_stderr_goes_to_the_file_for_the_block_only(tmp_path):
    log = tmp_path / "service.log"
    before = os.fstat(2)

    with harness.stderr_to(log):
        os.write(2, b"a log line\n")
    with harness.stderr_to(log, append=True):
        os.write(2, b"another\n")

    assert log.read_bytes() == b"a log line\nanother\n"
    assert (os.fstat(2).st_ino, os.fstat(2).st_dev) == (before.st_ino, before.st_dev)


def _scratch_url() -> str:
    params = connection.settings_dict
    password = f":{quote(params['PASSWORD'])}" if params["PASSWORD"] else ""
    host = f"{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 5432}"
    return f"postgres://{params['USER']}{password}@{host}/{params['NAME']}_scratch"


def _exists(url: str) -> bool:
    server, name = harness._server(url)
    with psycopg.connect(server, autocommit=True) as conn:
        return bool(conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone())


def test_a_scratch_database_is_new_and_goes_unless_kept(postgres_only):
    url = _scratch_url()
    try:
        with harness.scratch_database(url), psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE left_over (id int)")
        assert not _exists(url)

        with harness.scratch_database(url, keep=True), psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE left_over (id int)")
            conn.commit()
        with psycopg.connect(url) as conn:  # kept, with what the bench wrote
            assert conn.execute("SELECT to_regclass('left_over')").fetchone()[0] == "left_over"

        with harness.scratch_database(url, empty_at_end=True), psycopg.connect(url) as conn:
            # New: nothing from before.
            assert conn.execute("SELECT to_regclass('left_over')").fetchone()[0] is None
            conn.execute("CREATE TABLE left_over (id int)")
            conn.commit()
        with psycopg.connect(url) as conn:  # there, and empty again
            assert conn.execute("SELECT to_regclass('left_over')").fetchone()[0] is None
    finally:
        harness.drop_database(url)
