"""parse_json parses with orjson first (issue 17); every value and every refusal must stay the
stdlib path's (`parse_json_stdlib`), down to int against float, -0.0, key order and message."""

import json
import math

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from koogallery.protocol.jsonbody import BodyError, parse_json, parse_json_stdlib


def _typed(value):
    """`value` with every type spelt out: 1 and 1.0, 0.0 and -0.0, {"a","b"} and {"b","a"}
    compare unequal."""
    if isinstance(value, dict):
        return ("dict", tuple((key, _typed(item)) for key, item in value.items()))
    if isinstance(value, list):
        return ("list", tuple(_typed(item) for item in value))
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def _outcome(parse, raw, unique_keys=False):
    try:
        return ("value", _typed(parse(raw, unique_keys=unique_keys)))
    except BodyError as exc:
        return ("refused", str(exc))


# --- documents --------------------------------------------------------------------------------
# Documents are written token by token, so they can hold what json.dumps never writes:
# repeated keys, numbers spelt any way, surrogate escapes paired or not, odd whitespace.
_BOUNDARY_INTS = [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**30)]
_INTS = st.integers() | st.integers(-(2**80), 2**80) | st.sampled_from(_BOUNDARY_INTS)
_FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([-0.0, 5e-324])
_NUMBER_TOKENS = ["1e400", "-1e400", "1E2", "1e-400", "-0", "-0.0", "0.1e1", "1" * 25, "1" * 4301]
_STRING_TOKENS = [
    r'"\ud800"',
    r'"x\udc00"',
    r'"\udc00\ud800"',
    r'"\ud83d\ude00"',
    r'"\uD83D\uDE00"',
    r'"\u0000"',
    r'"\/\b\f\n\r\t\"\\"',
    '"\x7f\u2028"',
]
_STRINGS = (
    st.text(max_size=6).map(json.dumps)
    | st.text(max_size=6).map(lambda text: json.dumps(text, ensure_ascii=False))
    | st.sampled_from(_STRING_TOKENS)
)
_SCALARS = (
    st.sampled_from(["null", "true", "false", *_NUMBER_TOKENS])
    | _INTS.map(str)
    | _FLOATS.map(json.dumps)
    | _STRINGS
)
_SPACE = st.sampled_from(["", "", " ", "\n", "\t", "\r\n  "])
_KEYS = _STRINGS | st.sampled_from(['"a"', '"b"'])  # "a" and "b" repeat often


def _containers(inner):
    item = st.tuples(_SPACE, inner, _SPACE).map("".join)
    pair = st.tuples(_SPACE, _KEYS, _SPACE, inner).map(lambda p: f"{p[0]}{p[1]}{p[2]}:{p[3]}")
    return st.lists(item, max_size=4).map(lambda items: "[" + ",".join(items) + "]") | st.lists(
        pair, max_size=4
    ).map(lambda pairs: "{" + ",".join(pairs) + "}")


def _nested(document: str, kinds: list[bool]) -> str:
    for in_list in kinds:
        document = f"[{document}]" if in_list else f'{{"k":{document}}}'
    return document


_DOCUMENTS = st.tuples(
    st.recursive(_SCALARS, _containers, max_leaves=20),
    # Shallow, around MAX_DEPTH (64), or anywhere up to 130: far below the stdlib's recursion
    # limit, which depends on the caller's stack (test_nesting_past_the_recursion_limit).
    (st.integers(0, 6) | st.integers(62, 66) | st.integers(0, 130)).flatmap(
        lambda n: st.lists(st.booleans(), min_size=n, max_size=n)
    ),
).map(lambda doc: _nested(*doc).encode())

_PIECES = [
    b"\\ud800",
    b"\\udc00",
    b"\\u",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e400",
    b"e9",
    b"00",
    b".",
    b"-",
    b",",
    b":",
    b'"',
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b" ",
    b"\x0c",
    b"\x00",
    b"\x1f",
    b"\xef\xbb\xbf",  # BOM
    b"\xed\xa0\x80",  # a surrogate in UTF-8: not UTF-8
    b"\xc3",
    b"\xff",
    b"tru",
    b"nul",
]


@st.composite
def _garbled(draw) -> bytes:
    raw = bytearray(draw(_DOCUMENTS))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(raw)))
        piece = draw(st.sampled_from(_PIECES) | st.binary(min_size=1, max_size=3))
        how = draw(st.sampled_from(["insert", "delete", "replace"]))
        if how == "insert":
            raw[at:at] = piece
        elif how == "delete":
            del raw[at : at + draw(st.integers(1, 4))]
        else:
            raw[at : at + len(piece)] = piece
    return bytes(raw)


# Half valid documents, half garbled or arbitrary bytes.
_BODIES = st.one_of(_DOCUMENTS, _DOCUMENTS, _garbled(), st.binary(max_size=24))


@hsettings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_BODIES, as_text=st.booleans())
def test_parse_json_is_the_stdlib_path(raw, as_text):
    """Bytes as the endpoint passes them, or str as lenient_list/lenient_object do (a str may
    hold lone surrogates: surrogateescape). `unique_keys` is the stdlib path alone."""
    body = raw.decode("utf-8", "surrogateescape") if as_text else raw
    assert _outcome(parse_json, body) == _outcome(parse_json_stdlib, body)


# --- where orjson alone would differ ----------------------------------------------------------
@pytest.mark.parametrize(
    "raw, value",
    [
        (b"18446744073709551615", 2**64 - 1),  # orjson's largest int
        (b"18446744073709551616", 2**64),  # orjson: 1.8446744073709552e+19
        (b"-9223372036854775808", -(2**63)),
        (b"-9223372036854775809", -(2**63) - 1),  # orjson: -9.223372036854776e+18
        (b'{"orgList":[{"n":123456789012345678901234567890}]}', None),
    ],
)
def test_integers_beyond_64_bits_stay_integers(raw, value):
    parsed = parse_json(raw)
    if value is None:
        parsed, value = parsed["orgList"][0]["n"], 123456789012345678901234567890
    assert type(parsed) is int
    assert parsed == value


def test_floats_keep_their_value_and_sign():
    parsed = parse_json(b"[-0.0, 0.1, 1E2, 1e-400, 5e-324, 123456789012345678901234567890.0]")
    assert [type(item) for item in parsed] == [float] * 6
    assert math.copysign(1, parsed[0]) == -1
    assert parsed[1:] == [0.1, 100.0, 0.0, 5e-324, 1.2345678901234568e29]


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"1e400", "number out of range: 1e400"),
        (b'{"a":[-1e400]}', "number out of range: -1e400"),
        (b"NaN", "non-standard JSON constant NaN"),
        (b'{"a":Infinity}', "non-standard JSON constant Infinity"),
        (b"[-Infinity]", "non-standard JSON constant -Infinity"),
        (b'"\\ud800"', "malformed JSON: unpaired surrogate escape"),
        (b'{"name":"a\\udc00b"}', "malformed JSON: unpaired surrogate escape"),
        (b'"\\udc00\\ud800"', "malformed JSON: unpaired surrogate escape"),
        (b'"\xed\xa0\x80"', "body is not valid UTF-8 (byte 1)"),
        (b"1" * 4301, "malformed JSON: number too long"),
        (b"[1,]", "malformed JSON: Expecting value at line 1 column 4"),
        (
            b"\xef\xbb\xbf{}",
            "malformed JSON: Unexpected UTF-8 BOM (decode using utf-8-sig) at line 1 column 1",
        ),
        (b"[" * 65 + b"]" * 65, "JSON nested deeper than 64 levels"),
    ],
)
def test_refusals_keep_their_message(raw, message):
    with pytest.raises(BodyError) as refused:
        parse_json(raw)
    assert str(refused.value) == message


@pytest.mark.parametrize("depth", [1010, 1024, 1025, 5000])
def test_nesting_past_the_recursion_limit(depth):
    """orjson takes up to 1024 levels, json stops near sys.getrecursionlimit(): either way
    the refusal is the stdlib path's."""
    raw = b"[" * depth + b"]" * depth
    assert _outcome(parse_json, raw)[0] == "refused"
    assert _outcome(parse_json, raw) == _outcome(parse_json_stdlib, raw)


def test_repeated_keys_keep_the_last_value_at_the_first_place():
    raw = b'{"a":1,"b":2,"a":3}'
    assert list(parse_json(raw).items()) == [("a", 3), ("b", 2)]
    with pytest.raises(BodyError) as refused:
        parse_json(raw, unique_keys=True)
    assert str(refused.value) == "a: parameter repeated"
