"""PostgreSQL keeps the statements the calls repeat prepared on the connection
(DB_PREPARED_STATEMENTS, config/settings.py), and an operator behind a transaction-mode pooler
can turn that off."""

import json
import subprocess
import sys

import pytest
from django.db import connection

from tests.support import ROOT
from tests.support.kgclient import envelope
from tests.support.procs import production_env


def database_options(**env: str) -> dict:
    shown = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "import json; from django.conf import settings; "
            "print(json.dumps(settings.DATABASES['default']['OPTIONS']))",
        ],
        cwd=ROOT,
        env=production_env(DATABASE_URL="postgres://merchant@db.example.com:5432/merchant", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout.strip().splitlines()[-1])


def test_postgresql_binds_and_prepares_by_default_and_can_be_told_not_to():
    options = database_options()
    assert (options["server_side_binding"], options["prepare_threshold"]) == (True, 5)
    options = database_options(DB_PREPARED_STATEMENTS="false")
    assert "server_side_binding" not in options and "prepare_threshold" not in options


@pytest.mark.django_db
def test_the_statements_calls_repeat_are_prepared_on_the_connection(kg, postgres_only):
    for _ in range(6):
        body = envelope(kg.basic({"activity": "queryInstance", "instanceId": "no-such-instance"}))
        assert body["resultCode"] in ("000000", "000003")
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [statement for (statement,) in cursor.fetchall()]
    assert any('INSERT INTO "koogallery_inboundcall"' in s for s in prepared), prepared
