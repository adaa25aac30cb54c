"""Fake external services for tests, real servers on loopback (never a patched client).

`tests.support.fakes.koogallery_server` provides `FakeKooGallery` and the `fake_koogallery` fixture
(registered suite-wide through `pytest_plugins` in tests/conftest.py); read its docstring.
"""

from tests.support.fakes.koogallery_server import (
    CLOSE,
    TIMEOUT,
    FakeKooGallery,
    Marketplace,
    Part,
    RecordedRequest,
    Reply,
    Upload,
    mock_order_answer,
)

__all__ = [
    "CLOSE",
    "TIMEOUT",
    "FakeKooGallery",
    "Marketplace",
    "Part",
    "RecordedRequest",
    "Reply",
    "Upload",
    "mock_order_answer",
]
