import pytest
from django.db import connection

from tests.kgclient import KooGallery


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
