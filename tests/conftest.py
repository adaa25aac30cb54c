import pytest
from django.db import connection

from tests.kgclient import KooGallery

# The `fake_koogallery` fixture: a fake KooGallery open-API host on loopback (tests/fakes/).
pytest_plugins = ["tests.fakes.koogallery_server"]


@pytest.fixture
def kg(client) -> KooGallery:
    """Speaks to the server as KooGallery does (signed, quirks included)."""
    return KooGallery(client)


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture
def postgres_only():
    if not is_postgres():
        pytest.skip("needs PostgreSQL (runs in the .ci/run PostgreSQL pass)")
