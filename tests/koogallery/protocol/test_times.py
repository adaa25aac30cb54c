"""KooGallery's compact times are read by one parser (koogallery/protocol/times.py), which answers
what
`strptime` answered everywhere it was used, milliseconds included."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from koogallery.protocol.times import compact_time


def by_strptime(text: str, millis: bool) -> datetime | None:
    if not (text.isascii() and text.isdigit() and len(text) in (14, 17)):
        return None
    try:
        moment = datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return moment.replace(microsecond=int(text[14:] or 0) * 1000) if millis else moment


digits = st.text(alphabet="0123456789", min_size=14, max_size=17)
moments = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31))


@given(text=st.one_of(digits, st.text(max_size=20)), millis=st.booleans())
def test_any_text_reads_as_strptime_reads_it(text, millis):
    assert compact_time(text, millis=millis) == by_strptime(text, millis)


@given(moment=moments, millis=st.booleans())
def test_every_real_moment_reads_back(moment, millis):
    text = moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}"
    if moment.year < 1000:
        text = text.zfill(17)
    assert compact_time(text, millis=millis) == by_strptime(text, millis)
    assert compact_time(text).tzinfo is UTC


def test_impossible_dates_and_other_shapes_are_refused():
    assert compact_time("20240230120000") is None  # 30 February
    assert compact_time("20241301120000") is None
    assert compact_time("2024010112000") is None  # 13 digits
    assert compact_time("2024-01-01 12:00") is None
    assert compact_time("２０２４０１０１１２００００") is None  # full-width digits
    assert compact_time("+0240101120000") is None
    assert compact_time("20240101120000123") == datetime(2024, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)
