import pytest
from django.db import connection

from tests.support.kgclient import KooGallery, envelope, fixture_json

# The `fake_koogallery` fixture: a fake KooGallery open-API host on loopback (tests/support/fakes/).
pytest_plugins = ["tests.support.fakes.koogallery_server"]


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


@pytest.fixture
def eager_tasks():
    """Run queued tasks in-process, also on the Redis pass (no worker runs in tests)."""
    from config.celery import app as celery_app

    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def call(kg, django_capture_on_commit_callbacks, fake_koogallery, eager_tasks):
    """Send a basic fixture (an override of None leaves the field out), check its Body-Sign, and
    return its envelope once its follow-up job (Query Order) has run: after the commit, or from
    the outbox, published as beat does (koogallery/outbound/jobs.py)."""
    from django.conf import settings

    from koogallery.outbound.jobs import dispatch_queued_jobs
    from koogallery.protocol.signing import body_sign_header

    def send(name: str, v1: bool = False, **overrides) -> dict:
        body = {k: v for k, v in fixture_json(name, **overrides).items() if v is not None}
        with django_capture_on_commit_callbacks(execute=True):
            response = kg.basic_v1(body) if v1 else kg.basic(body)
        dispatch_queued_jobs()
        key = settings.KOOGALLERY_BASIC_KEY[0]
        assert response["Body-Sign"] == body_sign_header(key, response.content)
        return envelope(response)

    return send
