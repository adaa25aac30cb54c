"""A developer's .env (README: `DEBUG=true` and KooGallery keys for the local simulator) must not
change what the suite tests: tests/settings.py makes config/settings.py ignore it."""

import os
import subprocess
import sys

import pytest

from tests.support import ROOT

PROBE = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"


@pytest.mark.skipif((ROOT / ".env").exists(), reason="a real .env is here: not overwritten")
def test_the_suite_ignores_a_local_dotenv_that_the_service_reads():
    (ROOT / ".env").write_text("DEBUG=true\n")
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DJANGO_IGNORE_DOTENV")}

        def debug(settings_module: str) -> str:
            run = subprocess.run(
                [sys.executable, "-c", PROBE],
                cwd=ROOT,
                env={**env, "DJANGO_SETTINGS_MODULE": settings_module, "SECRET_KEY": "x"},
                capture_output=True,
                text=True,
                check=True,
            )
            return run.stdout.strip()

        assert debug("config.settings") == "True"  # the service reads it
        assert debug("tests.settings") == "False"  # the suite does not
    finally:
        (ROOT / ".env").unlink()
