"""The fast validation path (koogallery/inbound/fastvalidate.py) answers exactly as DRF does.

For every serializer the pipeline validates with (kit endpoints, V1 and V2, and every
registered basic activity), over random and edge-case bodies shaped after the serializer's
fields: the fast result is DRF's `validated_data` (same values, same types) when DRF accepts
the body, and None when DRF refuses it. FAST_VALIDATION_EXAMPLES (default 120) sets examples per
serializer; FAST_VALIDATION_RANDOM=1 explores new ones (CI runs the same ones every time).
"""

import copy
import json
import os
import sys
from pathlib import Path

import pytest
from django.urls import get_resolver
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from rest_framework import serializers
from rest_framework.fields import empty

from koogallery.inbound import activities, fastvalidate
from koogallery.inbound.endpoint import KitEndpoint, validate
from koogallery.inbound.journal import Family
from koogallery.protocol.jsonbody import BodyError, parse_json
from orgsync import serializers as org_serializers
from tenants import serializers as tenant_serializers
from tests.support.kgclient import fixture, fixture_json

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
import load  # bench/load.py: the bodies the load benchmark sends

EXAMPLES = int(os.environ.get("FAST_VALIDATION_EXAMPLES", "120"))
examples = hsettings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
    derandomize=os.environ.get("FAST_VALIDATION_RANDOM") != "1",
)


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def pipeline_serializers() -> list[type[serializers.Serializer]]:
    """Every serializer class `koogallery.inbound.endpoint.validate` is called with."""
    get_resolver().url_patterns  # imports every app's views
    classes = set()
    for view in _subclasses(KitEndpoint):
        classes |= {getattr(view, "serializer_class", None), view.v1_serializer_class}
    classes |= {activity.serializer_class for activity in activities._REGISTRY.values()}
    classes.discard(None)
    return sorted(classes, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


SERIALIZERS = pipeline_serializers()


def test_every_pipeline_serializer_is_found_and_compiled():
    names = {cls.__name__ for cls in SERIALIZERS}
    assert {
        "TenantSyncSerializer",
        "TenantSyncV1Serializer",
        "ApplicationSyncSerializer",
        "ApplicationSyncV1Serializer",
        "AuthSyncSerializer",
        "AuthSyncV1Serializer",
        "SingleOrgSyncSerializer",
        "AllOrgSyncSerializer",
        "AllOrgSyncV1Serializer",
        "NewInstanceSerializer",
        "V1NewInstanceSerializer",
        "GetLicenseAsyncSerializer",
    } <= names
    assert [cls for cls in SERIALIZERS if fastvalidate.plan_for(cls) is None] == []


# --- bodies shaped after a serializer's fields --------------------------------------------------

JUNK = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2**70,
    1.0,
    1.5,
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\t\n",
    "null",
    "[]",
    "{}",
    [],
    {},
    [1, "a"],
    {"a": 1},
]
junk = st.sampled_from(JUNK) | st.text(max_size=12) | st.integers(-5, 5)
# Valid texts of the non-string fields the pipeline knows (times, choices, numbers, lists).
TEXT_SAMPLES = [
    "20240601120000",
    "20240601120000123",
    "2024-06-01 12:00:00",
    "2024-06-01 12:00:00 Z",
    "2024-06-01T12:00:00+08:00",
    "2024-06-31 12:00:00",
    "0",
    "1",
    "3",
    "5",
    "12",
    "1.5",
    "FREEZE",
    "UNFREEZE",
    "NORMAL",
    "year",
    "month",
    "a,b, c",
    "W3sibmFtZSI6ImEiLCJ2YWx1ZSI6IjEifV0",  # base64 of [{"name":"a","value":"1"}]
    '[{"orgCode":"1","orgName":"a"}]',
    '[{orgCode:"1",name:"a",parentCode:""}]',
]


def text_of_length(limit: int | None):
    """Strings around a String(n) limit, ASCII and not, and hostile ones."""
    limit = limit or 70
    lengths = st.sampled_from([0, 1, limit - 1, limit, limit + 1]).filter(lambda n: n >= 0)
    return (
        st.text(max_size=min(limit + 2, 40))
        | st.builds(lambda n, c: c * n, lengths, st.sampled_from(["x", "用", "🙂", " "]))
        | st.sampled_from(["admin", "Admin", "user", "true", "FALSE", "a\x00", "\ud83d"])
    )


def integer_values(field: serializers.IntegerField):
    allowed = list(getattr(field, "allowed", ())) or [0, 1, 5]
    return st.sampled_from(
        [
            *[str(a) for a in allowed],
            *[f" {a}" for a in allowed],
            *[f"{a}.0" for a in allowed],
            *[float(a) for a in allowed],
            "+1",
            "01",
            "-0",
            "١",
            "²",
            "0",
            "9" * 1001,
        ]
    ) | st.integers(-3, 6)


EXTENSION_KEYS = ["entryDate", "employeeType", "workPlace"]
EXTENSION_VALUES = ["", None, "4", 4, "2022-11-9", "南京", "x" * 300, True, [1], {}]


# Values that fields of these classes accept (or nearly).
SAMPLES_BY_CLASS = {
    "BasicTestFlag": ["0", "1", "", 1],
    "ExpireTimeField": ["20240601120000", "20240601120000123", ""],
    "LicenseTimeField": ["2024-06-01 12:00:00", "2025-06-01 12:00:00 Z", "2024-07-01T12:00:00Z"],
    "CompactTimeField": ["20240601120000", "20240601120000123"],
    "V1Integer": ["5", "", 7, "0"],
    "V1Decimal": ["1.5", "", "10", "0.0001"],
    "V1ChargingMode": ["0", "1", "3", "5", ""],
    "ExtendParamsField": ["W3sibmFtZSI6ImEiLCJ2YWx1ZSI6IjEifV0", "", "W10"],
    "OrgInfoListField": [
        [{"orgCode": "1", "orgName": "a", "name": "a"}],
        [],
        '[{orgCode:"1",name:"a",orgName:"a",parentCode:""}]',
    ],
}


_STRATEGIES: dict[tuple, tuple] = {}


def built_once(make):
    """`make(field, depth)`'s strategy, built once per field: the bodies drawn are the same, but
    building (and validating) fresh strategies on every draw was most of this file's time."""

    def cached(field, depth: int):
        key = (make.__name__, id(field), depth)
        if key not in _STRATEGIES:
            _STRATEGIES[key] = (field, make(field, depth))  # the field kept: its id stays its own
        return _STRATEGIES[key][1]

    return cached


@built_once
def plausible(field: serializers.Field, depth: int):
    """Values a field accepts, mostly (blank strings, for one, may still be refused)."""
    samples = SAMPLES_BY_CLASS.get(type(field).__name__)
    if samples:
        return st.sampled_from(samples)
    if hasattr(field, "allowed") and not isinstance(field, serializers.IntegerField):
        return st.sampled_from(list(field.allowed))
    if isinstance(field, serializers.Serializer):
        return body_for(field, depth + 1)
    if isinstance(field, serializers.ListField):
        items = st.lists(plausible(field.child, depth + 1), max_size=3)
        return items | items.map(lambda value: json.dumps(value, ensure_ascii=False))
    if isinstance(field, serializers.DictField):
        objects = st.dictionaries(st.sampled_from(EXTENSION_KEYS), st.sampled_from(["4", "南京"]))
        return objects | objects.map(json.dumps)
    if isinstance(field, serializers.IntegerField):
        allowed = list(getattr(field, "allowed", ())) or [0, 1, 5]
        return st.sampled_from([*allowed, *[str(a) for a in allowed]])
    if isinstance(field, serializers.ChoiceField):
        return st.sampled_from(list(field.choices))
    if isinstance(field, serializers.BooleanField) or type(field).__name__ == "EnableField":
        return st.sampled_from([True, False, "true", "false"])
    if isinstance(field, serializers.CharField) and type(field).to_internal_value in (
        serializers.CharField.to_internal_value,
        tenant_serializers.KgString.to_internal_value,
    ):
        limit = field.max_length or 70
        fits = st.builds(lambda n, c: c * n, st.integers(0, limit), st.sampled_from(["x", "用"]))
        return fits | st.text(max_size=min(limit, 20))
    return st.sampled_from(TEXT_SAMPLES)


@built_once
def hostile(field: serializers.Field, depth: int):
    """Values a field may meet: often broken, sometimes valid in an unusual spelling."""
    if isinstance(field, serializers.Serializer):
        return body_for(field, depth + 1) | junk
    if isinstance(field, serializers.ListField):
        items = st.lists(hostile(field.child, depth + 1), max_size=3)
        as_text = items.map(lambda value: json.dumps(value, ensure_ascii=False))
        return items | as_text | junk
    if isinstance(field, serializers.DictField):
        keys = st.sampled_from([*EXTENSION_KEYS, "other", ""])
        objects = st.dictionaries(keys, st.sampled_from(EXTENSION_VALUES) | junk, max_size=4)
        return objects | objects.map(lambda value: json.dumps(value, ensure_ascii=False)) | junk
    if isinstance(field, serializers.IntegerField):
        return integer_values(field) | junk
    if isinstance(field, serializers.ChoiceField):
        return st.sampled_from(list(field.choices)).map(lambda c: f"{c} ") | junk
    if isinstance(field, serializers.CharField):
        limit = getattr(field, "text_max_length", None) or field.max_length
        return text_of_length(limit) | st.sampled_from(TEXT_SAMPLES) | junk
    return st.sampled_from(TEXT_SAMPLES) | st.booleans() | junk


@built_once
def spoilable(serializer: serializers.Serializer, depth: int):
    return st.sets(st.sampled_from(sorted(serializer.fields)), max_size=3 if depth else 2)


@st.composite
def body_for(draw, serializer: serializers.Serializer, depth: int = 0) -> dict:
    """Every field with a plausible value, then a few removed or spoilt, a stray key added.

    Nested serializers (authSync's users) are spoilt as rarely, so that a good share of the
    bodies are valid and a good share are invalid in a single place.
    """
    fields = serializer.fields
    body = {name: draw(plausible(field, depth)) for name, field in fields.items()}
    spoilt = draw(spoilable(serializer, depth))
    for name in sorted(spoilt):
        if draw(st.booleans()):
            del body[name]
        else:
            body[name] = draw(hostile(fields[name], depth))
    if draw(st.booleans()):
        body["stray"] = draw(junk)
    return body


def same(a, b) -> bool:
    """Equal values of the same types, all the way down (True is not 1, "1" is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def assert_fast_equals_drf(serializer_class, body) -> None:
    sent = copy.deepcopy(body)
    try:
        fast, fast_failure = fastvalidate.validated_data(serializer_class, body), None
    except Exception as exc:  # a hook's own bug: DRF must then fail the same way
        fast, fast_failure = None, type(exc)
    assert body == sent, "the fast path changed the body"
    drf = serializer_class(data=body)
    try:
        valid = drf.is_valid()
    except Exception as exc:
        assert fast_failure is type(exc), (fast_failure, exc)
        return
    assert fast_failure is None
    if valid:
        assert fast is not None, "a compiled serializer answers every valid body"
        assert same(fast, drf.validated_data), (fast, drf.validated_data)
    else:
        assert fast is None, (drf.errors, fast)


@pytest.mark.parametrize("serializer_class", SERIALIZERS, ids=lambda cls: cls.__name__)
def test_fast_path_equals_drf(serializer_class):
    @examples
    @given(body=body_for(serializer_class()))
    def check(body):
        assert_fast_equals_drf(serializer_class, body)

    check()


def bound_fields(serializer: serializers.Serializer, path: str = "") -> dict[str, tuple]:
    """Every field of a serializer, nested ones and UserSerializer's extension fallbacks
    included: {path: (field, its check)}."""
    found = {}
    for name, field in serializer.fields.items():
        found[path + name] = (field, fastvalidate.field_check(field))
        child = getattr(field, "child", None)
        if isinstance(child, serializers.Serializer):
            found |= bound_fields(child, f"{path}{name}[].")
    if isinstance(serializer, tenant_serializers.UserSerializer):
        for name, (_, make_field) in tenant_serializers.EXTENSION_FALLBACKS.items():
            field = make_field()
            field.bind(name, serializer)
            found[f"{path}extension.{name}"] = (field, fastvalidate.field_check(field))
    return found


# One of each distinct field declaration: {(class, repr): (where, field, check)}.
FIELDS: dict[tuple[str, str], tuple] = {}
for serializer_class in SERIALIZERS:
    for where, (field, check) in bound_fields(serializer_class()).items():
        key = (type(field).__name__, repr(field))
        FIELDS.setdefault(key, (f"{serializer_class.__name__}.{where}", field, check))


def drf_answer(field: serializers.Field, value):
    try:
        return "value", field.run_validation(value)
    except serializers.SkipField:
        return "value", fastvalidate.SKIP
    except serializers.ValidationError as exc:
        return "error", exc.detail


@pytest.mark.parametrize("key", sorted(FIELDS), ids=lambda key: FIELDS[key][0])
def test_field_checks_equal_run_validation(key):
    """Field by field, where one wrong answer cannot hide behind another field's error."""
    _, field, check = FIELDS[key]

    def compare(value):
        expected = drf_answer(field, value)
        try:
            got = "value", check(value)
        except serializers.ValidationError as exc:
            got = "error", exc.detail
        assert got[0] == expected[0], (value, got, expected)
        if got[0] == "value":
            assert same(got[1], expected[1]), (value, got, expected)

    for value in edge_values(field):
        compare(value)
    examples(given(value=plausible(field, 0) | hostile(field, 0) | junk)(compare))()


def edge_values(field: serializers.Field) -> list:
    """Every listed edge case, not left to chance."""
    limit = getattr(field, "max_length", None) or 70
    allowed = list(getattr(field, "allowed", ())) or [0, 1, 5]
    values = [empty, *JUNK, *TEXT_SAMPLES, *EXTENSION_VALUES, "0", "00", "0 ", "1\n", "TRUE"]
    values += SAMPLES_BY_CLASS.get(type(field).__name__, [])
    values += [*allowed, *(str(a) for a in allowed), *(f"{a}.0" for a in allowed)]
    values += [c * n for c in ("x", "用", "\x00", " ") for n in (limit - 1, limit, limit + 1)]
    values += [{"employeeType": "4"}, '{"workPlace": "x"}', "{workPlace:1}", [{}], "[{}]"]
    return values


# --- bodies KooGallery sends -------------------------------------------------------------------

KIT_SERIALIZERS = {
    "tenantSync": tenant_serializers.TenantSyncSerializer,
    "applicationSync": tenant_serializers.ApplicationSyncSerializer,
    "authSync": tenant_serializers.AuthSyncSerializer,
}
FIXTURES = sorted(
    path.stem for path in (Path(__file__).resolve().parents[2] / "fixtures/koogallery").iterdir()
)


def fixture_body(name: str) -> dict | None:
    try:
        body = parse_json(fixture(name))
    except BodyError:
        return None  # a malformed body never reaches validation
    return body if isinstance(body, dict) else None


def serializers_of_fixture(name: str) -> list[type[serializers.Serializer]]:
    """The serializers that may meet a fixture: by interface, or by basic activity."""
    found = [cls for cls in SERIALIZERS if cls.__name__.lower().startswith(name.split("__")[0])]
    body = fixture_body(name) or {}
    family = Family.BASIC_V1 if name.startswith("v1_") else Family.BASIC_V2
    activity = activities.lookup(family, body.get("activity", ""))
    return found + ([activity.serializer_class] if activity else [])


@pytest.mark.parametrize("name", FIXTURES)
def test_fixtures_get_drf_answer(name):
    body = fixture_body(name)
    if body is None:
        pytest.skip("not a JSON object")
    for serializer_class in serializers_of_fixture(name):
        assert_fast_equals_drf(serializer_class, body)


def test_benchmark_bodies_take_the_fast_path(monkeypatch):
    world = {"tenants": ["tenant-a"], "instances": ["inst-a"]}
    bodies = {
        tenant_serializers.AuthSyncSerializer: load.auth_sync_body(world, "k", 0),
        tenant_serializers.TenantSyncSerializer: load.tenant_body("k"),
    }
    for serializer_class, body in bodies.items():
        assert_fast_equals_drf(serializer_class, body)

    def no_drf(self, **kwargs):
        raise AssertionError("DRF ran on a plainly valid body")

    monkeypatch.setattr(serializers.Serializer, "is_valid", no_drf)
    for serializer_class, body in bodies.items():
        assert validate(serializer_class, body)["tenantId"] == body["tenantId"]


def test_users_from_the_extension_and_the_top_level():
    """UserSerializer.validate's fallbacks see the fast values as they see DRF's."""
    base = fixture_json("authSync__composed_example")
    user = base["userList"][0]
    variants = [
        {**user, "employeeType": "2"},
        {**user, "employeeType": "", "entryDate": None},
        {**user, "extension": json.dumps(user["extension"])},
        {**user, "extension": ""},
        {**user, "extension": {"employeeType": "9"}},
        {**user, "extension": {"employeeType": 3, "workPlace": "x" * 256}},
        {**user, "role": "ADMIN", "enable": False},
        {**user, "enable": "TRUE", "mobile": None, "email": ""},
    ]
    for variant in variants:
        body = {**base, "userList": [variant, {**variant, "userName": "b"}]}
        assert_fast_equals_drf(tenant_serializers.AuthSyncSerializer, body)
        assert_fast_equals_drf(tenant_serializers.AuthSyncV1Serializer, body)


def test_a_validate_hook_that_returns_none_goes_to_drf():
    class Careless(serializers.Serializer):
        name = tenant_serializers.KgString(8)

        def validate(self, attrs):
            return None

    assert fastvalidate.validated_data(Careless, {"name": "a"}) is None
    with pytest.raises(AssertionError):
        Careless(data={"name": "a"}).is_valid()


def test_unknown_machinery_is_not_compiled():
    class Custom(serializers.Serializer):
        name = tenant_serializers.KgString(8)

        def to_internal_value(self, data):
            return {"name": "mine"}

    class Dotted(serializers.Serializer):
        name = tenant_serializers.KgString(8, source="a.b")

    assert fastvalidate.plan_for(Custom) is None
    assert fastvalidate.plan_for(Dotted) is None
    assert fastvalidate.validated_data(Custom, {"name": "a"}) is None


# --- allOrgSync items column by column (issue 17) ---------------------------------------------
def _org_items_before_issue_17(items: list, name_key: str) -> list:
    """validate_org_items as it was before the column-wise check: the reference."""
    out = []
    for index, item in enumerate(items):
        if type(item) is dict:
            code = item.get("orgCode")
            name = item.get(name_key)
            parent = item.get("parentCode", "")
            if (
                type(code) is str
                and type(name) is str
                and type(parent) is str
                and 0 < len(code) <= org_serializers.CODE_MAX
                and 0 < len(name) <= org_serializers.NAME_MAX
                and len(parent) <= org_serializers.CODE_MAX
            ):
                out.append((code, name, parent))
                continue
        out.append(org_serializers._item(index, item, name_key))
    if any("\x00" in "".join(column) for column in zip(*out, strict=True)):
        return [org_serializers._item(i, item, name_key) for i, item in enumerate(items)]
    return out


def _outcome(check, items: list, name_key: str):
    try:
        return "value", check(items, name_key)
    except serializers.ValidationError as exc:
        return "error", exc.detail


_ORG_TEXT = st.sampled_from(["", "x" * 64, "用" * 65, "x" * 128, "x" * 129, "a\x00"])
_ORG_TEXT |= text_of_length(64)
_ORG_VALUE = _ORG_TEXT | st.none() | st.integers(-2, 10**20) | st.floats() | st.booleans()
_ORG_VALUE |= st.sampled_from([[], {}, ["1"], {"a": "1"}])
_GOOD_ITEM = st.fixed_dictionaries(
    {"orgCode": st.sampled_from(["1", "10", "x" * 64]), "orgName": st.sampled_from(["a", "部门"])},
    optional={"parentCode": st.sampled_from(["", "1", "x" * 64])},
)


def _spoilt(item: dict, key: str, value, drop: bool) -> dict:
    """A good item with one field replaced or left out."""
    item = dict(item)
    if drop:
        item.pop(key, None)
    else:
        item[key] = value
    return item


_ANY_ITEM = (
    st.builds(
        _spoilt,
        _GOOD_ITEM,
        st.sampled_from(["orgCode", "orgName", "parentCode", "extra"]),
        _ORG_VALUE,
        st.booleans(),
    )
    | st.dictionaries(
        st.sampled_from(["orgCode", "orgName", "parentCode", "extra"]), _ORG_VALUE, max_size=4
    )
    | st.sampled_from([None, "1", 1, [], ["orgCode"]])
)


@hsettings(examples, max_examples=max(EXAMPLES, 400))
@given(
    good=st.lists(_GOOD_ITEM, max_size=6),
    bad=st.lists(st.tuples(st.integers(0, 6), _ANY_ITEM), max_size=2),
    name_key=st.sampled_from(["orgName", "name"]),
)
def test_org_items_column_by_column_answer_as_item_by_item(good, bad, name_key):
    items = [{name_key if k == "orgName" else k: v for k, v in item.items()} for item in good]
    for at, item in bad:
        items.insert(min(at, len(items)), item)
    before = _outcome(_org_items_before_issue_17, items, name_key)
    now = _outcome(lambda i, k: org_serializers.validate_org_items(i, name_key=k), items, name_key)
    assert now == before
