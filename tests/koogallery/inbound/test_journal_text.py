"""What the journal keeps of a body (STYLE.md §1, spec §2.4): the text as received when the
allow-list masks nothing in it, else the same text with those values masked — however a
secret-named key is spelt. More: tests/koogallery/inbound/test_journal_redaction.py."""

import json

import pytest

from koogallery.inbound.journal import redacted_text, response_text
from koogallery.protocol.jsonbody import parse_json
from koogallery.protocol.redaction import REDACTED


def stored(raw: bytes) -> str:
    return redacted_text(raw, parse_json(raw))


def test_a_body_without_secrets_is_kept_as_received():
    raw = '{"tenantId":"t1",  "name":"张三", "flag":1}'.encode()
    assert stored(raw) == raw.decode()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"clientSecret":"s3cr3t-value"}',
        b'{"CLIENTSECRET":"s3cr3t-value"}',
        b'{"client\\u0053ecret":"s3cr3t-value"}',  # an escape spells the key
        b'{"a":[{"b":{"authToken":"s3cr3t-value"}}]}',
        b'{"clientSecret":"s3cr3t-value","clientSecret":"s3cr3t-value"}',  # duplicate key
    ],
)
def test_a_secret_named_key_is_redacted_however_it_is_spelt(raw):
    text = stored(raw)
    assert "s3cr3t-value" not in text
    assert REDACTED in text


def test_a_value_that_merely_mentions_a_secret_name_is_kept_under_a_named_key():
    raw = b'{"resultMsg":"the token is elsewhere","note":"the token is elsewhere"}'
    # `note` is no field of the spec: its value is masked whatever it says (spec §2.4).
    assert json.loads(stored(raw)) == {"resultMsg": "the token is elsewhere", "note": REDACTED}


def test_our_answer_is_stored_as_written_unless_it_carries_a_secret():
    plain = b'{"resultCode":"000000","resultMsg":"success"}'
    assert response_text(plain) == plain.decode()
    secret = b'{"resultCode":"000000","authToken":"s3cr3t-value"}'
    assert "s3cr3t-value" not in response_text(secret)


def test_parameters_parsed_from_a_query_string_are_kept_redacted():
    """A V1 GET has no body: what it sent is the parsed parameters."""
    params = {"activity": "queryInstance", "instanceId": "i1", "authToken": "s3cr3t-value"}
    text = redacted_text(b"", params)
    assert json.loads(text) == {**params, "authToken": REDACTED}
