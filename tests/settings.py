"""Settings for the test suite: production settings with test-only keys from the spec.

Values go into os.environ (not only into settings) so that servers and workers the tests start
as subprocesses see the same configuration. DATABASE_URL and REDIS_URL are left to the caller:
unset means SQLite and in-process Celery; `.ci/run` sets both for the PostgreSQL/Redis pass.
"""

import os

from cryptography.fernet import Fernet

TEST_ENV = {
    "SECRET_KEY": "test-only-secret-key",
    # Keys of the spec's vectors (§3.1–§3.4); public, test-only.
    "KOOGALLERY_KIT_KEY": "TEST_KIT_ACCESS_KEY_0123456789,TEST_V1_KEY",
    "KOOGALLERY_BASIC_KEY": "testAccessKey123,TEST_V1_KEY",
    "KOOGALLERY_AK": "TESTAKTESTAKTESTAK01",
    "KOOGALLERY_SK": "TESTSKtestSKtestSKtestSKtestSKtestSK0001",
    # ops: the test client and live servers speak plain HTTP (DEBUG is off here).
    "SECURE_SSL_REDIRECT": "false",
}
for name, value in TEST_ENV.items():
    os.environ.setdefault(name, value)
# A developer's .env (README: DEBUG, KooGallery keys) is not this suite's configuration; set in
# os.environ so the servers and workers the tests start ignore it too.
os.environ["DJANGO_IGNORE_DOTENV"] = "true"
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", Fernet.generate_key().decode())

from config.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# pytest-xdist (scripts/test runs the suite in parallel): each worker has its own test database
# (pytest-django names it test_<name>_gw0, …), and here its own keys in the shared Redis db, so
# one worker's Celery queue, purge or cache never meets another's. The prefix comes from the
# environment, so the Celery workers and servers a test starts (which inherit it) use it too.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if XDIST_WORKER and REDIS_URL:  # noqa: F405
    CACHES["default"]["KEY_PREFIX"] = XDIST_WORKER  # noqa: F405
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        **CELERY_BROKER_TRANSPORT_OPTIONS,  # noqa: F405
        "global_keyprefix": f"{XDIST_WORKER}:",
    }
