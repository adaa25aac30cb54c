"""Licence token format and offline verification (spec §2.8)."""

import base64
import json
from datetime import UTC, datetime

import pytest

from licensing import tokens

KEY = tokens.generate_private_key()
PUBLIC = KEY.public_key()
PAYLOAD = {
    "v": 1,
    "lid": "0b7e7d0e-4a0c-4c1e-9d8f-2f5b2b0b1a11",
    "iid": "RA2****4LVS",
    "eid": "8****e5694*****c8",
    "fp": "04:7C:16:5E:E3:5D|001B_444A_488B_5CEC.||BFEBFBFF00090672",
    "nbf": "2023-10-27T10:30:15Z",
    "exp": "2024-10-27T10:30:15Z",
    "iat": "2023-10-27T10:31:00Z",
}


def unpadded_b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_token_is_two_unpadded_base64url_segments_of_sorted_compact_json():
    token = tokens.sign(PAYLOAD, KEY)
    first, second = token.split(".")
    assert "=" not in token and "+" not in token and "/" not in token
    raw = unpadded_b64url_decode(first)
    assert raw == json.dumps(PAYLOAD, sort_keys=True, separators=(",", ":")).encode()
    assert list(json.loads(raw)) == sorted(PAYLOAD)
    assert len(unpadded_b64url_decode(second)) == 64  # an Ed25519 signature


def test_signature_covers_the_first_segment_ascii():
    token = tokens.sign(PAYLOAD, KEY)
    first, second = token.split(".")
    PUBLIC.verify(unpadded_b64url_decode(second), first.encode("ascii"))  # raises if not


def test_non_ascii_payload_is_utf8_not_escaped():
    payload = {**PAYLOAD, "fp": "设备-01"}
    token = tokens.sign(payload, KEY)
    raw = unpadded_b64url_decode(token.split(".")[0])
    assert "设备-01".encode() in raw
    assert tokens.verify(token, PUBLIC)["fp"] == "设备-01"


def test_verify_returns_the_payload():
    assert tokens.verify(tokens.sign(PAYLOAD, KEY), PUBLIC) == PAYLOAD


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace(".", "", 1),  # one segment
        lambda t: t + ".x",  # three segments
        lambda t: t.split(".")[0] + "." + t.split(".")[1] + "==",  # padded
        lambda t: _retail(t.split(".")[0]) + "." + t.split(".")[1],  # payload changed
        lambda t: t.split(".")[0] + "." + _retail(t.split(".")[1]),  # signature changed
        lambda t: "",
    ],
)
def test_tampered_or_malformed_tokens_are_invalid(mangle):
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(mangle(tokens.sign(PAYLOAD, KEY)), PUBLIC)


def test_another_key_does_not_verify():
    other = tokens.generate_private_key().public_key()
    with pytest.raises(tokens.InvalidToken, match="signature"):
        tokens.verify(tokens.sign(PAYLOAD, KEY), other)


def test_a_signed_payload_of_another_version_is_refused():
    with pytest.raises(tokens.InvalidToken, match="version"):
        tokens.verify(tokens.sign({**PAYLOAD, "v": 2}, KEY), PUBLIC)


def test_claims_window_and_fingerprint():
    inside = datetime(2024, 1, 1, tzinfo=UTC)
    assert tokens.check_claims(PAYLOAD, at=inside, fingerprint=PAYLOAD["fp"]).ok
    early = tokens.check_claims(PAYLOAD, at=datetime(2023, 10, 27, 10, 30, 14, tzinfo=UTC))
    assert early.problems == ["not valid before 2023-10-27T10:30:15Z"]
    late = tokens.check_claims(PAYLOAD, at=datetime(2024, 10, 27, 10, 30, 15, tzinfo=UTC))
    assert late.problems == ["expired at 2024-10-27T10:30:15Z"]
    other = tokens.check_claims(PAYLOAD, at=inside, fingerprint="OTHER")
    assert other.fingerprint_matches is False and not other.ok


def test_a_licence_without_exp_never_expires():
    payload = {k: v for k, v in PAYLOAD.items() if k != "exp"}
    check = tokens.check_claims(payload, at=datetime(2099, 1, 1, tzinfo=UTC))
    assert check.ok and check.expires is None


def test_keys_load_from_pem_text_escaped_newlines_paths_and_raw(tmp_path):
    pem = tokens.private_key_pem(KEY)
    assert tokens.load_private_key(pem).public_key() == PUBLIC
    assert tokens.load_private_key(pem.replace("\n", "\\n")).public_key() == PUBLIC
    path = tmp_path / "license.pem"
    path.write_text(pem)
    assert tokens.load_private_key(str(path)).public_key() == PUBLIC
    assert tokens.load_public_key(tokens.public_key_pem(PUBLIC)) == PUBLIC
    assert tokens.load_public_key(tokens.public_key_raw(PUBLIC)) == PUBLIC


@pytest.mark.parametrize("value", ["", "/nonexistent/key.pem", "-----BEGIN PRIVATE KEY-----\nx"])
def test_unusable_signing_keys_are_reported_without_their_content(value):
    with pytest.raises(tokens.SigningKeyError) as info:
        tokens.load_private_key(value)
    assert "-----BEGIN" not in str(info.value)


def test_an_rsa_key_is_not_a_licence_signing_key():
    from koogallery.protocol.crypto import generate_rsa_keypair

    rsa_pem, _ = generate_rsa_keypair()
    with pytest.raises(tokens.SigningKeyError, match="Ed25519"):
        tokens.load_private_key(rsa_pem)


def _retail(segment: str) -> str:
    """The segment with its first character changed (always different bytes, unlike a new tail
    that may equal the old one)."""
    return ("B" if segment[0] == "A" else "A") + segment[1:]
