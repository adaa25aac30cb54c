"""authSync's userList column by column (tenants/serializers.py `UserColumns`, issue 17).

The columns only ever accept: for any list, they answer exactly what UserSerializer answers
user by user, or None (then the item-by-item path and DRF decide, and word the refusal). So a
call is refused with the same message whichever path looked first, and a list of plainly valid
users does take the columns (else the fast path would be dead code).
"""

import copy
import os

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from bench import auth_sync as auth_bench
from koogallery.inbound import fastvalidate
from koogallery.inbound.endpoint import Rejected, serializer_error_message, validate
from koogallery.protocol.resultcodes import ResultCode
from tenants import serializers as ts
from tenants.models import Role

examples = hsettings(
    max_examples=int(os.environ.get("USER_COLUMNS_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
    derandomize=os.environ.get("USER_COLUMNS_RANDOM") != "1",
)

ABSENT = object()
# Values each field of a user takes when KooGallery sends it well (several spellings).
GOOD = {
    "userName": st.sampled_from(["u1", "张三", "x" * 64, "user.name@corp", "🙂" * 16]),
    "name": st.sampled_from(["", "Zhang San", "用" * 64, "a b"]),
    "orgCode": st.sampled_from(["", "D001", "9" * 64]),
    "position": st.sampled_from([ABSENT, None, "", "工程师", "p" * 64]),
    "employeeCode": st.sampled_from([ABSENT, None, "", "E1", "e" * 64]),
    "employeeType": st.sampled_from([ABSENT, None, "", 1, 4, "2", "3"]),
    "role": st.sampled_from(["admin", "user", "", "Admin", "r" * 32]),
    "enable": st.sampled_from([True, False, "true", "false", "TRUE", "False"]),
    "mobile": st.sampled_from([ABSENT, None, "", "13800000000", "m" * 32]),
    "email": st.sampled_from([ABSENT, None, "", "a@example.com", "e" * 128]),
    "workPlace": st.sampled_from([ABSENT, None, "", "南京", "w" * 255]),
    "entryDate": st.sampled_from([ABSENT, None, "", "2022-11-9", "d" * 32]),
    "extension": st.sampled_from([ABSENT, None, "", {}])
    | st.dictionaries(
        st.sampled_from(["entryDate", "employeeType", "workPlace", "other"]),
        st.sampled_from(["", None, "4", 4, "2022-11-9", "南京", "x" * 40, {"deep": "ok"}, [1]]),
        max_size=4,
    ),
}
# Values a field may meet that are invalid, or valid only in an unusual spelling (DRF decides).
ODD = st.sampled_from(
    [
        ABSENT,
        None,
        "",
        " ",
        True,
        0,
        1,
        5,
        1.0,
        "1.0",
        " 1",
        "yes",
        "a\x00b",
        "\ud800",
        "x" * 65,
        "y" * 256,
        [],
        {},
        {"employeeType": "9"},
        {"workPlace": "w" * 256},
        {"entryDate": "a\x00"},
        {"k\x00": "v"},
        {"k": ["a\x00"]},
        '{"workPlace": "x"}',
        "{workPlace:1}",
    ]
)


@st.composite
def user(draw) -> dict:
    """A user whose fields are mostly well sent; now and then one is odd."""
    record = {}
    for name, good in GOOD.items():
        value = draw(ODD if draw(st.integers(0, 59)) == 0 else good)
        if value is not ABSENT:
            record[name] = copy.deepcopy(value)
    return record


some_users = st.lists(user(), min_size=1, max_size=6) | st.lists(
    user() | st.sampled_from([None, "user", [], 1]), min_size=1, max_size=4
)


def columns() -> ts.UserColumns:
    found = ts.UserColumns.compile(ts.AuthSyncSerializer().fields["userList"].child)
    assert found is not None, "UserSerializer changed: teach UserColumns the new fields"
    return found


def by_item(items: list) -> list | None:
    """What UserSerializer makes of each item, or None if it refuses any."""
    out = []
    for item in items:
        serializer = ts.UserSerializer(data=item)
        if not serializer.is_valid():
            return None
        out.append(serializer.validated_data)
    return out


def same(a, b) -> bool:
    """Equal values of the same types, all the way down (True is not 1, Role.USER not "user")."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@examples
@given(items=some_users)
def test_columns_answer_as_the_serializer_or_not_at_all(items):
    sent = copy.deepcopy(items)
    got = columns()(items)
    assert items == sent, "the columns changed the list"
    expected = by_item(items)
    if got is not None:
        assert expected is not None, ("accepted a list DRF refuses", items)
        assert same(got, expected), (got, expected)


def body(user_list) -> dict:
    return {
        "instanceId": "i-1",
        "tenantId": "t-1",
        "appId": "app",
        "userList": user_list,
        "currentSyncTime": "20240601120000123",
        "flag": 1,
        "testFlag": 0,
        "timeStamp": "20240601120000123",
    }


@pytest.mark.parametrize(
    "serializer_class", [ts.AuthSyncSerializer, ts.AuthSyncV1Serializer], ids=lambda c: c.__name__
)
def test_a_call_is_answered_as_drf_answers_it(serializer_class):
    """The pipeline's answer, valid data or the refusal's message, is DRF's, word for word."""

    @examples
    @given(items=some_users)
    def check(items):
        call = body(items)
        drf = serializer_class(data=copy.deepcopy(call))
        try:
            data = validate(serializer_class, call)
        except Rejected as refusal:
            assert not drf.is_valid()
            assert refusal.code == ResultCode.INVALID_PARAM
            assert refusal.message == serializer_error_message(drf.errors)
        else:
            assert drf.is_valid(), drf.errors
            assert same(data["userList"], list(drf.validated_data["userList"]))

    check()


def test_plainly_valid_users_take_the_columns():
    """Huawei's shape (bench/auth_sync.py: extension holding entryDate, employeeType and
    workPlace), and the other spellings KooGallery uses, without a user-by-user check."""
    sent = auth_bench.users(50)
    sent[1] |= {"enable": True, "employeeType": 2, "extension": None, "workPlace": ""}
    sent[2] |= {"enable": "FALSE", "extension": "", "position": None}
    sent[3] |= {"extension": {"employeeType": 3, "nested": {"a": [1, "b"]}}}
    del sent[4]["mobile"]
    got = columns()(sent)
    assert got is not None
    assert same(got, by_item(sent))
    assert got[0]["role"] is Role.ADMIN and got[5]["role"] is Role.USER
    assert (got[1]["enabled"], got[2]["enabled"]) == (True, False)
    assert got[1]["employee_type"] == 2 and got[1]["work_place"] == ""
    assert got[2]["extension"] == {} and got[2]["position"] == ""
    assert got[3]["employee_type"] == 3 and got[4]["mobile"] == ""
    assert got[5]["entry_date"] == "2022-11-9" and got[5]["employee_type"] == 1


@pytest.mark.parametrize(
    "spoil",
    [
        lambda u: u.update(userName=""),
        lambda u: u.update(name="n" * 65),
        lambda u: u.update(role=None),
        lambda u: u.pop("enable"),
        lambda u: u.update(enable="yes"),
        lambda u: u.update(employeeType=True),
        lambda u: u.update(email="a\x00"),
        lambda u: u.update(mobile="\udc00"),
        lambda u: u.update(extension={"workPlace": "w" * 256}),
        lambda u: u.update(extension={"note": "a\x00"}),
        lambda u: u.update(extension={"employeeType": "7"}),
        lambda u: u.update(extension='{"workPlace": "x"}'),  # valid, but DRF's to read
        lambda u: u.update(employeeType=" 1"),  # valid, but DRF's to read
    ],
)
def test_one_odd_user_sends_the_whole_list_item_by_item(spoil):
    sent = auth_bench.users(20)
    spoil(sent[13])
    assert columns()(sent) is None
    call = body(sent)
    drf = ts.AuthSyncSerializer(data=copy.deepcopy(call))
    if drf.is_valid():
        assert same(
            validate(ts.AuthSyncSerializer, call)["userList"], drf.validated_data["userList"]
        )
        return
    with pytest.raises(Rejected) as refusal:
        validate(ts.AuthSyncSerializer, call)
    assert refusal.value.message == serializer_error_message(drf.errors)
    assert refusal.value.message.startswith("userList.13.")


def test_the_fast_path_uses_the_columns(monkeypatch):
    taken = []
    validated = ts.UserColumns.validated
    monkeypatch.setattr(
        ts.UserColumns, "validated", lambda self, items: taken.append(1) or validated(self, items)
    )
    check = fastvalidate.field_check(ts.AuthSyncSerializer().fields["userList"])
    sent = auth_bench.users(5)
    assert same(check(sent), by_item(sent))
    assert taken == [1]
