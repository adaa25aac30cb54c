"""A key pasted as the README shows it (`KOOGALLERY_KIT_KEY=<联营kit key from …>`) is not a key:
the local simulator would sign with it and the journey pass, while KooGallery's calls would all
be refused. The service refuses to start with one when DEBUG is off, naming the variable (never
its value), and says so at start when DEBUG is on."""

import os
import subprocess
import sys

import pytest

from tests.support import ROOT

PROBE = "import django; django.setup(); print('started')"
README_KIT_KEY = "<联营kit key from 卖家中心 → 应用工具 → 密钥管理>"
README_BASIC_KEY = "<基础接口 key>,<License授权码交付接口 key>"


def start(tmp_path, **variables: str) -> subprocess.CompletedProcess:
    """config.settings in a clean process: no .env, no test settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KOOGALLERY_", "DJANGO_", "REDIS_", "METR"))
        and k not in ("DEBUG", "SECRET_KEY", "FIELD_ENCRYPTION_KEYS")
    }
    env.update(
        DJANGO_IGNORE_DOTENV="1",
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        **variables,
    )
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True
    )


PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "a-real-secret-key-of-some-length",
    "FIELD_ENCRYPTION_KEYS": "kQ1c6d3dpzlE7w6e9Zt1KUQv0M8rX4b2b6m0xg1xq3Y=",
    "KOOGALLERY_KIT_KEY": "kitkey0123456789",
    "KOOGALLERY_BASIC_KEY": "basic0123456789,licence0123456789",
    "KOOGALLERY_AK": "AKAKAKAKAKAKAKAKAK01",
    "KOOGALLERY_SK": "SKskSKskSKskSKskSKskSKskSKskSKskSKsk0001",
}


def test_real_looking_keys_start_quietly(tmp_path):
    run = start(tmp_path, **PRODUCTION)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "started" in run.stdout
    assert "placeholder" not in run.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KOOGALLERY_KIT_KEY", README_KIT_KEY),
        ("KOOGALLERY_BASIC_KEY", README_BASIC_KEY),
        ("KOOGALLERY_BASIC_KEY", "basic0123456789,<License授权码交付接口 key>"),
        ("KOOGALLERY_AK", "<AK>"),
        ("KOOGALLERY_SK", "my secret key"),
        ("METRICS_TOKEN", "<token>"),
        ("METERING_API_TOKEN", "token-1,<token 2>"),
    ],
)
def test_a_placeholder_key_is_refused_without_debug_naming_the_variable(tmp_path, name, value):
    run = start(tmp_path, **{**PRODUCTION, name: value})
    assert run.returncode != 0
    assert "started" not in run.stdout
    last = run.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in last
    assert f"{name}: looks like a placeholder" in last
    # The variable is named, its value (a would-be secret) never shown.
    for item in value.split(","):
        assert item not in run.stderr


def test_the_readme_keys_pasted_literally_start_with_debug_but_say_so(tmp_path):
    run = start(
        tmp_path,
        DEBUG="true",
        KOOGALLERY_KIT_KEY=README_KIT_KEY,
        KOOGALLERY_BASIC_KEY=README_BASIC_KEY,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "started" in run.stdout
    assert "KOOGALLERY_KIT_KEY, KOOGALLERY_BASIC_KEY: looks like a placeholder" in run.stderr
    assert README_KIT_KEY not in run.stderr
