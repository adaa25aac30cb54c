"""Comma-separated settings (keys, hosts, tokens) are read as an operator writes them: spaces
around the commas and a trailing comma are not part of any item. A kit key read as " k2" would
refuse every call KooGallery signs with k2."""

import json
import os
import subprocess
import sys

from tests.support import ROOT

PROBE = """
import json
import django
django.setup()
from django.conf import settings
names = ["KOOGALLERY_KIT_KEY", "KOOGALLERY_BASIC_KEY", "ALLOWED_HOSTS", "METERING_API_TOKEN"]
print(json.dumps({name: getattr(settings, name) for name in names}))
"""


def test_items_are_stripped_and_empty_ones_dropped(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DEBUG="true",
        DJANGO_IGNORE_DOTENV="1",
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        KOOGALLERY_KIT_KEY="kit-key-1, kit-key-2 ,",
        KOOGALLERY_BASIC_KEY=" basic-1,basic-2 ",
        ALLOWED_HOSTS="merchant.example.com, admin.example.com",
        METERING_API_TOKEN="token-1 , , token-2",
    )
    run = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.splitlines()[-1]) == {
        "KOOGALLERY_KIT_KEY": ["kit-key-1", "kit-key-2"],
        "KOOGALLERY_BASIC_KEY": ["basic-1", "basic-2"],
        "ALLOWED_HOSTS": ["merchant.example.com", "admin.example.com"],
        "METERING_API_TOKEN": ["token-1", "token-2"],
    }
