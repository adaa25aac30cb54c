"""The embedded default (SQLite, no Redis: tasks run in-process) runs quietly: a newcomer's
console shows no warning for what is working as designed."""

import os
import subprocess
import sys

from tests.support import ROOT

QUEUE_A_TASK = """
import django
django.setup()
from config.celery import app
print("result:", app.tasks["celery.accumulate"].delay(1, 2).get())
"""


def test_a_task_queued_without_a_broker_runs_in_process_without_warnings(tmp_path):
    scrubbed = ("REDIS_URL", "DATABASE_URL", "DJANGO_SETTINGS_MODULE", "LOG_LEVEL", "LOG_FORMAT")
    env = {k: v for k, v in os.environ.items() if k not in scrubbed}
    env.update(
        DEBUG="true",
        DJANGO_IGNORE_DOTENV="1",
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    run = subprocess.run(
        [sys.executable, "-c", QUEUE_A_TASK], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "result: (1, 2)" in run.stdout
    assert "WARNING" not in run.stdout + run.stderr, run.stdout + run.stderr
