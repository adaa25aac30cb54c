"""Unambiguous signed text (spec §2.3): accepted requests with equal signed text are equal.

For each signing scheme (kit V2, basic V2, V1 kit, V1 GET) a request A is drawn, then an
adversary builds B from A's signed text: it moves characters across the nonce / timestamp /
payload boundaries (V2), or cuts the `name=value&…` join at other `&` and `=`, retypes values
and adds parameters the join skips (V1). Whenever B's signed text equals A's and both pass the
rules the service applies before any key is tried, B must be read as A. The server's own
functions decide acceptance and reading; the endpoints are exercised in test_forged_calls.py.
"""

import json
from collections import Counter
from types import SimpleNamespace
from urllib.parse import urlencode

from django.http import QueryDict
from django.urls import get_resolver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError as DRFValidationError

from koogallery.inbound import activities
from koogallery.inbound.endpoint import KitEndpoint
from koogallery.inbound.journal import Family
from koogallery.inbound.production import v1_pairs, v1_params
from koogallery.protocol import signed_text, signing
from koogallery.protocol.jsonbody import BodyError, parse_json
from tests.support.kgclient import FIXTURES

KEY = "TEST_KIT_ACCESS_KEY_0123456789"
EXAMPLES = settings(
    max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)

# --- V2 ---------------------------------------------------------------------------------------
# Mostly what the rules accept (the adversary's shifts are what they must refuse).
canonical_nonces = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
nonces = st.one_of(canonical_nonces, canonical_nonces, st.text("aZ09_-.{ 0", max_size=6))
canonical_timestamps = st.integers(10**12, 10**13 - 1).map(str)
timestamps = st.one_of(
    canonical_timestamps,
    canonical_timestamps,
    st.from_regex(r"0?[0-9]{11,14}", fullmatch=True),
    st.sampled_from(["0", "", " 1700000000000", "+1700000000000"]),
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.text("a=&{}\" 0", max_size=6)
)
objects = st.dictionaries(st.text("abc=", max_size=3), json_scalars, max_size=4)
raw_bodies = st.tuples(objects, st.sampled_from(["", "", "", " ", "\n", "0", "a"])).map(
    lambda pair: (pair[1] + json.dumps(pair[0], ensure_ascii=False)).encode()
)


def v2_read(nonce: str, timestamp: str, raw: bytes):
    """(nonce, timestamp, body) as the service reads it, or None if it is refused before any
    key is tried (or, being no JSON object, right after)."""
    if signed_text.v2_problem(timestamp, nonce):
        return None
    try:
        parsed = parse_json(raw)
    except BodyError:
        return None
    if not isinstance(parsed, dict):
        return None
    # The canonical form is what a body means (top-level nulls are absent, spec §2.3).
    return nonce, timestamp, signing.canonical_json(parsed)


def v2_payloads(raw: bytes) -> list[bytes]:
    try:
        parsed = parse_json(raw)
    except BodyError:
        parsed = None
    return list(signing.payload_forms(raw, parsed))


def kit_signed(nonce: str, timestamp: str, raw: bytes) -> set[bytes]:
    """What an x-sign covers (§3.1), over each payload form the service verifies."""
    return {KEY.encode() + nonce.encode() + timestamp.encode() + p for p in v2_payloads(raw)}


def basic_signed(nonce: str, timestamp: str, raw: bytes) -> set[str]:
    """The canonicalRequest of §3.2 (the body enters as its keyed hash)."""
    return {
        KEY + nonce + timestamp + signing._hmac(KEY, p).hex() for p in v2_payloads(raw)
    }


def resplit(text: str, data, anchors: list[int]) -> tuple[str, str, str]:
    """`text` cut in three at two points, each near an anchor (or anywhere)."""
    cuts = []
    for anchor in anchors:
        near = st.integers(max(0, anchor - 3), min(len(text), anchor + 3))
        cuts.append(data.draw(st.one_of(near, near, st.integers(0, len(text)))))
    first, second = sorted(cuts)
    return text[:first], text[first:second], text[second:]


@EXAMPLES
@given(nonce=nonces, timestamp=timestamps, raw=raw_bodies, data=st.data())
def _kit_v2(seen, nonce, timestamp, raw, data):
    payload = data.draw(st.sampled_from(v2_payloads(raw)))
    text = nonce + timestamp + payload.decode()
    other_nonce, other_ts, other_payload = resplit(
        text, data, [len(nonce), len(nonce) + len(timestamp)]
    )
    other_raw = other_payload.encode()
    if not kit_signed(nonce, timestamp, raw) & kit_signed(other_nonce, other_ts, other_raw):
        return
    seen["equal signed text"] += 1
    mine, theirs = v2_read(nonce, timestamp, raw), v2_read(other_nonce, other_ts, other_raw)
    if mine is not None and theirs is not None:
        seen["both accepted"] += 1  # only when the cut moved nothing
        assert mine == theirs
    elif (nonce, timestamp) != (other_nonce, other_ts) and (mine or theirs):
        seen["shifted and refused"] += 1


def test_kit_v2_signed_text_reads_back_one_way():
    seen = Counter()
    _kit_v2(seen)
    assert seen["shifted and refused"] > 20, seen


@EXAMPLES
@given(nonce=nonces, timestamp=timestamps, raw=raw_bodies, data=st.data())
def _basic_v2(seen, nonce, timestamp, raw, data):
    # The body's hash has a fixed length: only the nonce/timestamp cut can move, and another
    # body signs the same only if its hash is the same: the same canonical or raw bytes.
    head = nonce + timestamp
    cut = data.draw(st.integers(max(0, len(nonce) - 3), min(len(head), len(nonce) + 3)))
    other_nonce, other_ts = head[:cut], head[cut:]
    other_raw = data.draw(
        st.sampled_from(v2_payloads(raw)) | st.just(_reindent(raw)), label="other body"
    )
    if not basic_signed(nonce, timestamp, raw) & basic_signed(other_nonce, other_ts, other_raw):
        return
    seen["equal signed text"] += 1
    mine, theirs = v2_read(nonce, timestamp, raw), v2_read(other_nonce, other_ts, other_raw)
    if mine is not None and theirs is not None:
        seen["both accepted"] += 1  # only when the cut moved nothing
        assert mine == theirs
    elif (nonce, timestamp) != (other_nonce, other_ts) and (mine or theirs):
        seen["shifted and refused"] += 1


def _reindent(raw: bytes) -> bytes:
    try:
        return json.dumps(parse_json(raw), indent=1).encode()
    except BodyError:
        return raw


def test_basic_v2_signed_text_reads_back_one_way():
    seen = Counter()
    _basic_v2(seen)
    assert seen["shifted and refused"] > 20, seen


def test_the_reported_nonce_timestamp_shift_is_refused():
    """The review's replay: nonce `…0` + ts is the same text as nonce `…` + `0ts`."""
    nonce, ts, raw = "4F2A0", "1700000000000", b'{"a":1}'
    assert kit_signed(nonce, ts, raw) == kit_signed(nonce[:-1], "0" + ts, raw)
    assert v2_read(nonce, ts, raw) is not None
    assert v2_read(nonce[:-1], "0" + ts, raw) is None


# --- V1 ---------------------------------------------------------------------------------------
good_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,4}", fullmatch=True)
names = st.one_of(good_names, good_names, st.text("ab=&_1 ", max_size=4))
v1_strings = st.text("ab=&_ 1\u00e9", max_size=8) | st.sampled_from(["", " ", "xyz==", "q&b=1"])
v1_values = (
    v1_strings
    | st.none()
    | st.booleans()
    | st.integers(-99, 999)
    | st.floats(allow_nan=False, allow_infinity=False, width=16)
    | st.lists(st.integers(0, 9), max_size=2)
    | st.dictionaries(st.just("k"), st.integers(0, 9), max_size=1)
)
TIME_STAMP = ("timeStamp", "20220413093539534")


def v1_token(params: dict) -> str:
    """The authToken: over the join, keyed with the access key and the timeStamp (§3.3)."""
    return signing.v1_auth_token(KEY, params)


def cut_join(join: str, data) -> list[tuple[str, str]] | None:
    """Another reading of a join: cut at some `&`, each part at one of its `=`."""
    parts, start = [], 0
    for at in [i for i, c in enumerate(join) if c == "&"]:
        if data.draw(st.booleans()):
            parts.append(join[start:at])
            start = at + 1
    parts.append(join[start:])
    pairs = []
    for part in parts:
        equals = [i for i, c in enumerate(part) if c == "="]
        if not equals:
            return None
        at = data.draw(st.sampled_from(equals))
        pairs.append((part[:at], part[at + 1 :]))
    return pairs


def retyped(value):
    """A value the join writes the same: its text, or the number or boolean it spells."""
    if isinstance(value, str):
        if value in ("true", "false"):
            return value == "true"
        if value.lstrip("-").isdigit() and value == str(int(value)):
            return int(value)
        return value
    return signed_text.v1_text(value)


def adversary(pairs: list[tuple[str, object]], data) -> list[tuple[str, object]] | None:
    join = signing.v1_joined(dict(pairs))
    other = cut_join(join, data) if join else []
    if other is None:
        return None
    other = [(n, retyped(v) if data.draw(st.booleans()) else v) for n, v in other]
    # Parameters the join skips: null, blank, lists, objects, and repeats of a name.
    other += data.draw(
        st.lists(st.tuples(names, st.sampled_from([None, "", " ", [1], {"k": 1}])), max_size=2)
    )
    if other and data.draw(st.booleans()):
        other.insert(0, (other[-1][0], data.draw(v1_values)))
    return data.draw(st.permutations(other))


def kit_v1_read(pairs: list[tuple[str, object]]):
    """The body as the service reads it (spec §2.3), or None if refused before any key."""
    raw = "{" + ",".join(f"{json.dumps(n)}:{json.dumps(v)}" for n, v in pairs) + "}"
    try:
        parsed = parse_json(raw.encode(), unique_keys=True)
    except BodyError:
        return None
    if signed_text.v1_problem(parsed.items(), token_in_params=False):
        return None
    return parsed, _read(signed_text.v1_reading(parsed))


def _read(reading: dict) -> dict[str, str]:
    # Read by its text, since that is all the token covers; that the serializers read a
    # number and its text alike (or refuse one) is test_v1_fields_read_a_value_by_its_text.
    return {name: signed_text.v1_text(value) for name, value in reading.items()}


@EXAMPLES
@given(
    pairs=st.lists(st.tuples(names, v1_values), max_size=5).map(lambda p: [TIME_STAMP, *p]),
    data=st.data(),
)
def _kit_v1(seen, pairs, data):
    other = adversary(pairs, data)
    mine = kit_v1_read(pairs)
    theirs = None if other is None else kit_v1_read(other)
    if mine is None or theirs is None:
        return
    if v1_token(mine[0]) != v1_token(theirs[0]):
        return
    seen["both accepted, equal token"] += 1
    assert mine[1] == theirs[1]
    if dict(pairs) != dict(other):
        seen["different bodies"] += 1


def test_v1_kit_join_reads_back_one_way():
    seen = Counter()
    _kit_v1(seen)
    assert seen["both accepted, equal token"] > 15 and seen["different bodies"] > 10, seen


def get_read(pairs: list[tuple[str, str]], token: str):
    """A V1 GET carrying `token` as the server reads it (URL-decoded, §4.4): whether the
    token verifies, and the reading; None if refused before any key is tried."""
    request = SimpleNamespace(GET=QueryDict(urlencode([*pairs, ("authToken", token)])))
    received = v1_params(request)
    if signed_text.v1_problem(v1_pairs(request), token_in_params=True):
        return None
    verifies = v1_token(received) == signing.clean_v1_token(received["authToken"])
    return verifies, _read(signed_text.v1_reading(received))


@EXAMPLES
@given(
    pairs=st.lists(st.tuples(names, v1_strings), max_size=5).map(lambda p: [TIME_STAMP, *p]),
    data=st.data(),
)
def _basic_v1(seen, pairs, data):
    other = adversary(pairs, data)
    if other is None:
        return
    other = [(n, v) for n, v in other if isinstance(v, str)]  # a query holds text only
    captured = v1_token(dict(pairs))
    mine, theirs = get_read(pairs, captured), get_read(other, captured)
    if mine is None or theirs is None or not (mine[0] and theirs[0]):
        return
    seen["both accepted, same token"] += 1
    assert mine[1] == theirs[1]
    if sorted(pairs) != sorted(other):
        seen["different queries"] += 1


def test_v1_get_join_reads_back_one_way():
    seen = Counter()
    _basic_v1(seen)
    assert seen["both accepted, same token"] > 15 and seen["different queries"] > 10, seen


def test_the_reported_v1_forgeries_are_refused():
    """The review's two V1 forgeries: equal join, and refused now."""
    captured = [TIME_STAMP, ("userList", '[{"email":"abcdefgh12345678pK8PDvOFeq=="}]')]
    first, _, rest = captured[1][1].partition("=")
    forged = [TIME_STAMP, (f"userList={first}", rest), ("userList", [{"role": "admin"}])]
    assert signing.v1_joined(dict(captured)) == signing.v1_joined(dict(forged))
    assert kit_v1_read(captured) is not None and kit_v1_read(forged) is None

    signed = [TIME_STAMP, ("activity", "x"), ("customerId", "c"), ("instanceId", "i")]
    folded = [TIME_STAMP, ("activity", "x"), ("customerId", "c&instanceId=i")]
    assert signing.v1_joined(dict(signed)) == signing.v1_joined(dict(folded))
    token = v1_token(dict(signed))
    assert get_read(signed, token) == (True, dict(signed)) and get_read(folded, token) is None


def _v1_serializers() -> list:
    """Every serializer a V1 call is validated with (kit V1 views, basic V1 activities)."""
    get_resolver().url_patterns  # imports every app's views

    def subclasses(cls: type) -> list[type]:
        return [s for sub in cls.__subclasses__() for s in (sub, *subclasses(sub))]

    found = {v.v1_serializer_class or v.serializer_class for v in subclasses(KitEndpoint)}
    found |= {
        activity.serializer_class
        for (family, _), activity in activities._REGISTRY.items()
        if family == Family.BASIC_V1
    }
    return sorted(found - {None}, key=lambda cls: cls.__name__)


def test_v1_fields_read_a_value_by_its_text():
    """The token covers a V1 value's text only (`5` and `"5"` sign alike), so every field a V1
    call is validated with reads a number or boolean as it reads its text, or refuses one."""
    serializers = _v1_serializers()
    assert len(serializers) >= 10
    checked = 0
    for serializer_class in serializers:
        for name, field in serializer_class().fields.items():
            if field.read_only:
                continue
            for value in (0, 1, 2, 3, 7, -1, 12345, 1.5, 1.0, True, False):
                outcomes = [_outcome(field, v) for v in (value, signed_text.v1_text(value))]
                if None not in outcomes:
                    assert outcomes[0] == outcomes[1], (serializer_class, name, value)
                    checked += 1
    assert checked > 20  # flag and testFlag accept 0 and "0" alike, and so on


def _outcome(field, value):
    try:
        return ("valid", field.run_validation(value))
    except (DRFValidationError, BodyError):
        return None


def test_huawei_examples_and_every_v1_fixture_meet_the_rules():
    """Huawei's own V1 bodies and parameters (tests/fixtures/koogallery/) and the spec's vectors
    already read back one way: the rules refuse none of them."""
    v1_fixtures = [
        path
        for path in sorted(FIXTURES.glob("*.json"))
        if (path.stem.startswith("v1_") or "__v1" in path.stem)
        # Huawei's trailing comma (§4.3): not JSON at all, 000002 before and after.
        and path.stem != "singleOrgSync__v1_doc_typo"
    ]
    assert len(v1_fixtures) >= 18
    for path in v1_fixtures:
        pairs = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=list)
        in_query = path.stem.startswith("v1_")  # basic GET parameters, the token among them
        assert signed_text.v1_problem(pairs, token_in_params=in_query) is None, path.stem
    vector_nonce = "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA"
    assert signed_text.v2_problem("1680508066618", vector_nonce) is None
    sample = QueryDict(  # Huawei's sample test URL (§4.4)
        "activity=newInstance&businessId=61e834ba-7b97-4418-b8f7-e5345137278c&customerId="
        "68cbc86abc2018ab880d92f36422fa0e&expireTime=20200727153156&orderId=CS1906666666ABCDE&"
        "productId=00301-666666-0--0&testFlag=1&timeStamp=20200727073711903&authToken=x"
    )
    request = SimpleNamespace(GET=sample)
    assert signed_text.v1_problem(v1_pairs(request), token_in_params=True) is None
