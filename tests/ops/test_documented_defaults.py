"""The defaults the README and docs/operations.md document for numeric settings are the ones
config/settings.py applies when the variable is not set: an operator sizes and tunes by them;
and every variable `scripts/run` reads is in the README with its default."""

import json
import os
import re
import subprocess
import sys

from tests.support import ROOT

DOCUMENTED = [ROOT / "README.md", ROOT / "docs" / "operations.md"]
# A table row `| `NAME` | `123` … |`: a variable whose default is a plain number.
ROW = re.compile(r"^\| `([A-Z0-9_]+)` \| `(\d+)`", re.MULTILINE)
PROBE = """
import json, sys
import django
django.setup()
from django.conf import settings
names = json.loads(sys.argv[1])
values = {name: getattr(settings, name) for name in names if hasattr(settings, name)}
values["DB_CONN_MAX_AGE"] = settings.DATABASES["default"]["CONN_MAX_AGE"]
print(json.dumps(values))
"""


def documented_defaults() -> dict[str, int]:
    found = {}
    for path in DOCUMENTED:
        for name, value in ROW.findall(path.read_text(encoding="utf-8")):
            found[name] = int(value)
    return found


def applied_defaults(names: list[str]) -> dict:
    """Each setting as production settings make it with none of these variables set."""
    env = {k: v for k, v in os.environ.items() if k not in names and k != "DEBUG"}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_IGNORE_DOTENV="1",
        # PostgreSQL, as production runs (DB_CONN_MAX_AGE is its setting); nothing connects.
        DATABASE_URL="postgres://probe@127.0.0.1:9/probe",
        SECRET_KEY="a-secret-key-for-this-probe-only-0123456789",
        FIELD_ENCRYPTION_KEYS="kT3vZ2m0bq8cJQ0y2y3p1nq9Yy9K6Y1lX2Zr7XoGx0s=",
    )
    run = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(names)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


def test_documented_numeric_defaults_are_the_applied_ones():
    documented = documented_defaults()
    applied = applied_defaults(sorted(documented))
    compared = {name: applied[name] for name in documented if name in applied}
    assert {"DATA_UPLOAD_MAX_MEMORY_SIZE", "KOOGALLERY_MAX_CLOCK_SKEW_S"} <= set(compared)
    assert compared == {name: documented[name] for name in compared}


# `NAME="${NAME:-default}"` (or `export NAME=…`): a variable scripts/run reads, with its default.
SCRIPT_VARIABLE = re.compile(r'^(?:export )?([A-Z_]+)="\$\{\1:-([^}]*)\}"', re.MULTILINE)


def test_every_variable_scripts_run_reads_is_in_the_readme_with_its_default():
    # scripts/run installs, then sources scripts/_serve.sh, which reads the variables.
    script = "".join(
        (ROOT / "scripts" / name).read_text(encoding="utf-8") for name in ("run", "_serve.sh")
    )
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    read = SCRIPT_VARIABLE.findall(script)
    assert {name for name, _ in read} >= {"HOST", "PORT", "DEBUG"}
    for name, default in read:
        assert f"`{name}`" in readme, name
        assert f"`{default}`" in readme, (name, default)
