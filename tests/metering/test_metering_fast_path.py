"""POST /api/usage's fast paths answer exactly as the checked ones (issue 17).

- `fast_validated_event` (metering/serializers.py) is `UsageEventSerializer`'s validated_data
  (same values, same types, same Decimal exponent) for every event it takes, and None for every
  event the serializer refuses: over random and edge-case events (hypothesis) and over the
  odd-but-valid values a client may send.
- On PostgreSQL a batch is stored with one INSERT … ON CONFLICT DO NOTHING: duplicates (stored
  or repeated within the batch) are counted exactly, a reused id with other content refuses the
  whole batch and stores nothing, twins of overlapping batches racing each other (in opposite
  orders) are stored once and counted once, and a conflict between racing batches lets exactly
  one of them in.
"""

import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from metering import services
from metering.models import UsageEvent
from metering.serializers import UsageEventSerializer, fast_validated_event
from tests.support.metering_kit import TOKEN, hour, make_instance, usage
from tests.support.procs import in_parallel

examples = hsettings(
    max_examples=int(os.environ.get("FAST_VALIDATION_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
    derandomize=os.environ.get("FAST_VALIDATION_RANDOM") != "1",
)


def drf(item):
    serializer = UsageEventSerializer(data=item)
    return serializer.validated_data if serializer.is_valid() else None


def assert_agrees(item) -> None:
    fast, slow = fast_validated_event(item), drf(item)
    if slow is None:
        assert fast is None, (item, fast)
    elif fast is not None:
        assert list(fast) == list(slow)
        for name in slow:
            assert type(fast[name]) is type(slow[name]), (name, item)
            assert fast[name] == slow[name], (name, item)
        assert str(fast["quantity"]) == str(slow["quantity"])  # same exponent: 1.5000
        assert fast["occurredAt"].tzinfo == slow["occurredAt"].tzinfo
        assert fast["occurredAt"].utcoffset() == slow["occurredAt"].utcoffset()


ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
PLAIN_ID = st.text(alphabet="abcXYZ019-_.:", min_size=1, max_size=64)
IDS = st.one_of(
    st.text(alphabet="abc019-", min_size=60, max_size=140),
    PLAIN_ID.map(lambda text: text + "\ud800"),
    st.text(max_size=70),  # any unicode: NUL, surrogates, whitespace, other scripts
    st.sampled_from(["", " ", "a\x00b", "\ud800", "é-1", " padded ", "x" * 64, "x" * 65, "1"]),
    ODD,
)
PLAIN_QUANTITY = st.from_regex(r"\A[0-9]{1,15}(\.[0-9]{0,4})?\Z")
QUANTITIES = st.one_of(
    st.from_regex(r"\A[0-9]{1,16}(\.[0-9]{0,5})?\Z"),  # at the limits and just over
    st.integers(0, 6).flatmap(
        lambda places: st.decimals(allow_nan=False, allow_infinity=False, places=places)
    ).map(str),
    st.from_regex(r"\A[ +-]?[0-9]{0,17}(\.[0-9]{0,6})?([eE][+-]?[0-9]{1,2})?[ ]?\Z"),
    st.sampled_from(
        ["0", "0.0000", "-0", "1.", ".5", "1.00001", "1e3", "NaN", "Infinity", "１", "٣.5", "1_0"]
    ),
    st.sampled_from(
        ["999999999999999.9999", "1000000000000000", "0001.5000", "000000000000000001"]
    ),
    ODD,
)
PLAIN_MOMENT = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
    lambda d: f"{d.year:04d}-{d:%m-%dT%H:%M:%S.%f}Z"
)
MOMENTS = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.builds(
        lambda d, h, m, sep, frac: f"{d.isoformat()}{sep}{h:02d}:{m:02d}:07{frac}"
        + st_offset(h, m),
        st.dates(),
        st.integers(0, 25),
        st.integers(0, 61),
        st.sampled_from(["T", " ", "t", "_"]),
        st.sampled_from(["", ".1", ".123456", ".1234567", ",5"]),
    ),
    st.sampled_from(
        [
            "2024-06-01",
            "2024-02-30T10:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2024-06-01T10:00:00+24:00",
            "2024-06-01T10:00:00+05:30",
            "20240601T100000Z",
            "2024-06-01T10:00Z",
            "2024-W22-6T10:00:00",
            "yesterday",
            "",
        ]
    ),
    ODD,
)


def st_offset(h: int, m: int) -> str:
    return ["Z", "", "+08:00", "-0330", "+00", "z"][(h + m) % 6]


FIELDS = {"instanceId": IDS, "quantity": QUANTITIES, "occurredAt": MOMENTS, "eventId": IDS}
PLAIN = {
    "instanceId": PLAIN_ID,
    "quantity": PLAIN_QUANTITY,
    "occurredAt": PLAIN_MOMENT,
    "eventId": PLAIN_ID,
}


@st.composite
def events(draw):
    """Mostly plain values (the fast path's ground), each field now and then anything."""
    item = {}
    for name, values in FIELDS.items():
        # Hypothesis favours the ends of a range: the middle value is the rare choice.
        if draw(st.integers(0, 20)) != 10:  # now and then a field is missing
            item[name] = draw(values if draw(st.integers(0, 4)) == 2 else PLAIN[name])
    if draw(st.booleans()):
        item["extra"] = draw(ODD)  # unknown keys are ignored by both
    return item


@examples
@given(events())
def test_the_fast_validation_agrees_with_the_serializer(item):
    assert_agrees(item)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"quantity": 7},
        {"quantity": 7.25},
        {"quantity": 1e-05},
        {"quantity": "0.0001"},
        {"quantity": " 1.5 "},
        {"quantity": "1.50000"},
        {"quantity": True},
        {"quantity": "999999999999999.9999"},
        {"quantity": "1000000000000000"},
        {"quantity": "0000000000000001.5"},
        {"instanceId": "i" * 64},
        {"instanceId": "i" * 65},
        {"eventId": "e" * 128},
        {"eventId": "e" * 129},
        {"occurredAt": "2024-06-01T10:00:00+08:00"},
        {"occurredAt": "2024-06-01T10:00:00"},
        {"occurredAt": "2024-06-01 10:00:00.5Z"},
        {"occurredAt": "2024-06-01"},
        {"eventId": 12},
        {"eventId": "é-1"},
        {"eventId": "a\x00"},
        {"eventId": "a\ud800"},
        {"instanceId": "\udfff"},
        {"instanceId": "od 1 "},
    ],
)
def test_odd_values_get_the_serializers_answer(changes):
    item = {
        "instanceId": "od-1",
        "quantity": "1.5",
        "occurredAt": "2024-06-01T10:00:00.250000Z",
        "eventId": "e-1",
        **changes,
    }
    assert_agrees(item)


def test_a_plain_event_takes_the_fast_path():
    item = {
        "instanceId": "od-1",
        "quantity": "1.5",
        "occurredAt": "2024-06-01T10:00:00+08:00",
        "eventId": "e-1",
    }
    assert fast_validated_event(item) == {
        "instanceId": "od-1",
        "quantity": Decimal("1.5000"),
        "occurredAt": datetime(2024, 6, 1, 2, tzinfo=UTC),
        "eventId": "e-1",
    }


# --- storing -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_batch_with_odd_valid_values_is_recorded_exactly(client, settings):
    settings.METERING_API_TOKEN = [TOKEN]
    make_instance("od-1")
    at = hour(2) + timedelta(minutes=5)
    body = [
        {"instanceId": "od-1", "quantity": "2", "occurredAt": f"{at:%Y-%m-%dT%H:%M:%SZ}",
         "eventId": "plain"},
        {"instanceId": "od-1", "quantity": " 1.25 ", "eventId": "é-1",
         "occurredAt": (at + timedelta(minutes=1)).astimezone().isoformat()},
        {"instanceId": "od-1", "quantity": 7, "occurredAt": f"{at:%Y-%m-%dT%H:%M:%S}",
         "eventId": 42},
    ]  # fmt: skip
    response = client.post(
        "/api/usage", json.dumps(body), "application/json", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    )
    assert response.status_code == 201, response.content
    assert response.json()["events"] == [
        {"eventId": "plain", "instanceId": "od-1", "status": "recorded"},
        {"eventId": "é-1", "instanceId": "od-1", "status": "recorded"},
        {"eventId": "42", "instanceId": "od-1", "status": "recorded"},
    ]
    stored = {
        e.event_id: (e.quantity, e.occurred_at, e.hour_start) for e in UsageEvent.objects.all()
    }
    assert stored == {
        "plain": (Decimal("2"), at, hour(2)),
        "é-1": (Decimal("1.25"), at + timedelta(minutes=1), hour(2)),
        "42": (Decimal("7"), at, hour(2)),
    }


@pytest.mark.django_db
def test_stored_and_repeated_duplicates_are_counted_exactly():
    instance = make_instance("od-1")
    at = hour(3) + timedelta(minutes=1)
    services.record_usage(events=[usage(instance, 1, at, "a"), usage(instance, 2, at, "b")])

    receipt = services.record_usage(
        events=[
            usage(instance, "1.0000", at, "a"),  # stored: the same quantity
            usage(instance, 3, at, "c"),
            usage(instance, 3, at.astimezone(), "c"),  # repeated: the same moment
            usage(instance, 2, at, "b"),
            usage(instance, 4, at, "d"),
        ]
    )

    assert [(event.event_id, new) for event, new in receipt.results] == [
        ("a", False),
        ("c", True),
        ("c", False),
        ("b", False),
        ("d", True),
    ]
    assert (receipt.created, receipt.duplicates) == (2, 3)
    assert sorted(UsageEvent.objects.values_list("event_id", "quantity", "hour_start")) == [
        ("a", 1, hour(3)),
        ("b", 2, hour(3)),
        ("c", 3, hour(3)),
        ("d", 4, hour(3)),
    ]


@pytest.mark.django_db
def test_a_stored_duplicate_in_a_closed_hour_is_still_a_duplicate():
    from metering import aggregation

    instance = make_instance("od-1")
    old = hour(3) + timedelta(minutes=1)
    services.record_usage(events=[usage(instance, 1, old, "old")])
    aggregation.close_hours(now=hour(0) + timedelta(minutes=2))  # hour(3) is closed now
    receipt = services.record_usage(
        events=[usage(instance, 1, old, "old"), usage(instance, 1, datetime.now(UTC), "new")]
    )
    assert [(event.event_id, new) for event, new in receipt.results] == [
        ("old", False),
        ("new", True),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["stored", "in the batch"])
def test_a_reused_id_refuses_the_batch_and_stores_nothing(where):
    instance = make_instance("od-1")
    at = hour(2)
    if where == "stored":
        services.record_usage(events=[usage(instance, 1, at, "x")])
    batch = [
        usage(instance, 5, at, "fresh"),
        usage(instance, 1, at, "x"),
        usage(instance, 2, at, "x"),
    ]
    with pytest.raises(services.UsageRejected) as refusal:
        services.record_usage(events=batch if where == "in the batch" else batch[::2])
    (problem,) = refusal.value.problems
    assert problem.code == "event_id_conflict"
    assert problem.index == (2 if where == "in the batch" else 1)
    assert "quantity 1" in problem.message
    assert not UsageEvent.objects.filter(event_id="fresh").exists()


def test_overlapping_batches_in_opposite_orders_are_stored_once(committed):
    instances = [make_instance(f"ov-{n}") for n in range(3)]
    at = hour(2)
    events = [
        usage(instances[n % 3], n % 7 + 1, at + timedelta(seconds=n), f"ov-{n:04d}")
        for n in range(1200)
    ]
    for round_ in range(3):
        chunk = events[round_ * 400 : (round_ + 1) * 400]
        # The same ids ascending and descending, and a middle part: inserted row by row in
        # input order they would deadlock; the at-once path inserts in event id order.
        receipts = in_parallel(
            lambda chunk=chunk: services.record_usage(events=chunk),
            lambda chunk=chunk: services.record_usage(events=chunk[::-1]),
            lambda chunk=chunk: services.record_usage(events=chunk[100:300][::-1]),
        )
        assert sum(r.created for r in receipts) == 400
        assert [r.created + r.duplicates for r in receipts] == [400, 400, 200]
    assert sorted(UsageEvent.objects.values_list("event_id", flat=True)) == sorted(
        e.event_id for e in events
    )


def test_racing_batches_that_conflict_let_exactly_one_in(committed):
    instance = make_instance("cf-1")
    at = hour(2)
    shared = [usage(instance, 1, at + timedelta(seconds=n), f"cf-{n}") for n in range(100)]
    other = [usage(instance, 2, e.occurred_at, e.event_id) for e in shared[50:]]

    def attempt(batch):
        try:
            return services.record_usage(events=batch).created
        except services.UsageRejected as exc:
            return {p.code for p in exc.problems}

    outcomes = in_parallel(lambda: attempt(shared), lambda: attempt(other[::-1]))

    assert sorted(map(str, outcomes)) in (["100", "{'event_id_conflict'}"],
                                          ["50", "{'event_id_conflict'}"])  # fmt: skip
    stored = set(UsageEvent.objects.values_list("quantity", flat=True))
    assert stored == ({1} if 100 in outcomes else {2})
    assert UsageEvent.objects.count() == (100 if 100 in outcomes else 50)


@pytest.fixture
def committed(postgres_only, transactional_db):
    """Rows are committed, so every thread's connection sees them."""
