"""getLicenseAsync's raw-SQL path (licensing/services.py, licensing/selectors.py): rows read
without the ORM equal the ORM's, a new request is two statements and a repeat one, a refusal
leaves the caller's transaction as it was, and twins racing on PostgreSQL store one request.
"""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from instances.models import InstanceState
from koogallery.outbound import jobs
from koogallery.protocol.resultcodes import KooGalleryError
from licensing import selectors, services
from licensing.models import LicenseRequest, RequestState
from tests.support import licensing_kit as support
from tests.support.kgclient import KooGallery
from tests.support.licensing_kit import answer_code, license_body, make_instance

license_settings = support.license_settings

pytestmark = pytest.mark.django_db

FIELDS = [field.attname for field in LicenseRequest._meta.concrete_fields]


def request(instance, event="EV-1", device="DEV-1", **overrides) -> LicenseRequest:
    now = timezone.now().replace(microsecond=0)
    values = {
        "instance_id": instance.instance_id,
        "event_id": event,
        "effective_at": now,
        "expire_at": now + timedelta(days=30),
        "fingerprint": device,
        "is_test": instance.is_test,
    }
    return services.request_license(**{**values, **overrides})


def key(row: LicenseRequest) -> dict:
    return {"event_id": row.event_id, "digest": row.fingerprint_sha256, "is_test": row.is_test}


def as_stored(row: LicenseRequest) -> dict:
    return {name: getattr(row, name) for name in FIELDS}


def test_a_new_request_is_the_row_the_orm_reads_back():
    created = request(make_instance())

    stored = LicenseRequest.objects.get()
    assert as_stored(created) == as_stored(stored)
    assert created.state == RequestState.RECEIVED and not created._state.adding


@pytest.mark.parametrize("is_test", [False, True])
def test_a_stored_request_reads_as_the_orm_reads_it(is_test):
    instance = make_instance(is_test=is_test)
    created = request(instance)
    moment = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC)
    LicenseRequest.objects.filter(pk=created.pk).update(
        state=RequestState.DELIVERED,
        attempt_count=3,
        next_attempt_at=moment,
        lease_until=moment + timedelta(seconds=1),
        delivered_at=moment + timedelta(seconds=2),
        failure_code="CBC.0999",
        last_error="暂时失败",
    )
    orm = LicenseRequest.objects.get()

    direct = selectors.stored_request(**key(orm))
    stored, terms = selectors.stored_request_or_locked_instance(
        instance_id="any instance: the key is the event and the device", **key(orm)
    )

    assert as_stored(direct) == as_stored(stored) == as_stored(orm)
    assert stored.is_test is is_test and stored.delivered_at == moment + timedelta(seconds=2)
    assert terms is None
    assert selectors.stored_request(event_id="other", digest="x", is_test=is_test) is None


def test_instance_terms_read_as_the_orm_reads_them():
    instance = make_instance(linear_value=7, state=InstanceState.ACTIVE)

    stored, terms = selectors.stored_request_or_locked_instance(
        instance_id=instance.instance_id, is_test=False, event_id="EV", digest="D"
    )

    assert stored is None
    assert terms == selectors.InstanceTerms(
        instance.pk,
        instance.instance_id,
        False,
        instance.charging_mode,
        instance.state,
        instance.order_created_at,
        instance.expire_at,
        7,
    )
    assert selectors.stored_request_or_locked_instance(
        instance_id=instance.instance_id, is_test=True, event_id="EV", digest="D"
    ) == (None, None)


def test_a_call_without_test_flag_reads_the_debug_instance_it_names_and_its_requests():
    """§2.7: an instanceId names one instance across production and test data."""
    instance = make_instance(is_test=True)
    named = {"instance_id": instance.instance_id, "event_id": "EV", "digest": "D"}

    stored, terms = selectors.stored_request_or_locked_instance(**named, is_test=False)
    assert stored is None and (terms.pk, terms.is_test) == (instance.pk, True)

    created = request(instance, event="EV", is_test=False)
    assert created.is_test is True  # the instance's data set, not the call's flag
    stored, terms = selectors.stored_request_or_locked_instance(
        **{**named, "digest": created.fingerprint_sha256}, is_test=False
    )
    assert (stored.pk, terms) == (created.pk, None)


@pytest.mark.parametrize(
    ("requests", "device", "expected"),
    [
        ([], "A", (0, False)),
        ([("A", "received"), ("B", "issued"), ("C", "delivered")], "D", (3, False)),
        ([("A", "received"), ("B", "failed"), ("C", "revoked")], "B", (1, False)),
        ([("A", "delivered"), ("A", "uploading"), ("B", "delivered")], "A", (2, True)),
        ([("A", "failed")], "A", (0, False)),
    ],
)
def test_licensed_devices_count_distinct_devices_without_failed_or_revoked(
    requests, device, expected
):
    instance = make_instance(linear_value=None)
    for n, (holder, state) in enumerate(requests):
        created = request(instance, event=f"EV-{n}", device=holder)
        LicenseRequest.objects.filter(pk=created.pk).update(state=state)
    digest = services.fingerprint_digest(device)

    answer = selectors.licensed_devices(instance_pk=instance.pk, is_test=False, digest=digest)

    licensed = LicenseRequest.objects.filter(instance=instance).exclude(
        state__in=(RequestState.FAILED, RequestState.REVOKED)
    )
    orm = (
        licensed.values("fingerprint_sha256").distinct().count(),
        licensed.filter(fingerprint_sha256=digest).exists(),
    )
    assert answer == orm == expected


def job_statement() -> int:
    """The delivery job's outbox row: in the request's own INSERT on PostgreSQL, one INSERT more
    on SQLite (which has no INSERT in a WITH)."""
    return 0 if jobs.queued_by_statement() else 1


def test_a_new_request_is_two_statements_and_a_repeat_one(settings):
    # A repeat within the sweep's grace (production's 2 minutes) only reads; a later one also
    # queues the delivery again (its job: one statement more in the outbox mode).
    settings.LICENSE_SWEEP_AFTER_S = 120
    instance = make_instance(linear_value=None)

    with CaptureQueriesContext(connection) as new:
        request(instance)
    with CaptureQueriesContext(connection) as repeat:
        again = request(instance, instance_id="unknown: a repeat needs no instance")

    assert len(new) == 2 + job_statement(), new.captured_queries
    assert len(repeat) == 1, repeat.captured_queries
    assert not any("SAVEPOINT" in q["sql"] for q in new.captured_queries)
    assert again.pk == LicenseRequest.objects.get().pk


def test_a_known_quota_costs_one_statement_more():
    instance = make_instance(linear_value=5)

    with CaptureQueriesContext(connection) as queries:
        request(instance)

    assert len(queries) == 3 + job_statement(), queries.captured_queries


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"state": InstanceState.FROZEN}, "000901"),
        ({"linear_value": 0}, "000900"),
    ],
)
def test_a_refusal_leaves_the_callers_transaction_usable_and_unchanged(fields, code):
    instance = make_instance(**fields)

    with transaction.atomic():
        with pytest.raises(KooGalleryError) as refused:
            request(instance)
        assert not LicenseRequest.objects.exists()  # still usable: nothing was written

    assert refused.value.code == code


def test_an_unknown_instance_is_refused_only_when_the_request_is_new():
    with pytest.raises(KooGalleryError) as refused:
        request(make_instance(), instance_id="nope")

    assert refused.value.code == "000003"


# --- concurrency (PostgreSQL: real parallel requests) -----------------------------------------
def _race(bodies: list[dict]) -> list[str]:
    barrier = threading.Barrier(len(bodies))
    codes: list[str] = []

    def call(body: dict) -> None:
        try:
            client = KooGallery(Client())
            barrier.wait(timeout=30)
            codes.append(answer_code(client.basic(body)))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=call, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return codes


def test_twins_racing_store_one_request(postgres_only, transactional_db, fake_koogallery):
    body = license_body(make_instance(linear_value=1))

    codes = _race([dict(body) for _ in range(10)])

    assert codes == ["000004"] * 10
    assert LicenseRequest.objects.count() == 1


def test_twins_naming_different_instances_store_one_request(
    postgres_only, transactional_db, fake_koogallery
):
    # The key is (eventId, deviceFingerprint): the twins do not wait for each other's
    # instance lock, so the loser meets the winner's row in its INSERT (ON CONFLICT).
    body = license_body(make_instance())
    bodies = [{**body, "instanceId": make_instance().instance_id} for _ in range(8)]

    codes = _race(bodies)

    assert codes == ["000004"] * 8
    assert LicenseRequest.objects.count() == 1
