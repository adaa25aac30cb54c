"""The service under gunicorn on the PostgreSQL test database, for races of real parallel requests
(`server`, one per test module; PostgreSQL pass only)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.db import connection

from tests.support import ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(postgres_only, transactional_db, _server):
    """gunicorn serving the test database; committed rows are visible both ways."""
    return _server


@pytest.fixture(scope="module")
def _server(django_db_setup):
    """The gunicorn behind `server`, started once for this module (five Django processes);
    each test still gets its own emptied database."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (runs in the .ci/run PostgreSQL pass)")
    db = connection.settings_dict
    database_url = (
        f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url,
        # No AK/SK: the Query Order queued after commit is recorded as not configured.
        "KOOGALLERY_AK": "",
        "LOG_LEVEL": "WARNING",
    }
    port = _free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "4",
            "--worker-class",
            "gthread",
            "--threads",
            "16",
            "--backlog",
            "512",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{url}/koogallery", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
