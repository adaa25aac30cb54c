"""`manage.py koogallery_keygen`: the seller's RSA key pair for `clientSecret` (spec §3.6)."""

import base64
import io
import stat

import pytest
from cryptography.hazmat.primitives.serialization import load_der_public_key
from django.core.management import CommandError, call_command

from koogallery.protocol.crypto import load_rsa_private_key, public_key_body, rsa_oaep_decrypt
from tests.support.tenant_kit import oaep_encrypt


def keygen(*args: str) -> str:
    out = io.StringIO()
    call_command("koogallery_keygen", *args, stdout=out)
    return out.getvalue()


def printed_public_key(output: str) -> str:
    """The line of the output a seller copies: the only long base64 line."""
    lines = [line for line in output.splitlines() if len(line) > 300 and " " not in line]
    assert len(lines) == 1, output
    return lines[0]


def test_writes_a_private_key_only_its_owner_can_read_and_prints_the_public_body(tmp_path):
    path = tmp_path / "koogallery.pem"

    output = keygen("--out", str(path))

    key = load_rsa_private_key(str(path))
    assert key.key_size == 3072
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    body = printed_public_key(output)
    assert "BEGIN" not in body and body == public_key_body(key)
    assert f"KOOGALLERY_RSA_PRIVATE_KEY={path}" in output
    assert "PRIVATE KEY" not in output.replace("KOOGALLERY_RSA_PRIVATE_KEY", "")


def test_what_the_printed_key_encrypts_the_written_key_decrypts(tmp_path):
    path = tmp_path / "koogallery.pem"
    body = printed_public_key(keygen("--out", str(path)))

    load_der_public_key(base64.b64decode(body))  # a valid SubjectPublicKeyInfo
    ciphertext = oaep_encrypt(body, "test")

    assert rsa_oaep_decrypt(ciphertext, load_rsa_private_key(str(path)))[0] == "test"


def test_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "koogallery.pem"
    keygen("--out", str(path))
    original = path.read_text()

    with pytest.raises(CommandError, match="--force"):
        keygen("--out", str(path))
    assert path.read_text() == original

    path.chmod(0o644)
    keygen("--out", str(path), "--force")
    assert path.read_text() != original
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_bits(tmp_path):
    with pytest.raises(CommandError, match="3072"):
        keygen("--out", str(tmp_path / "weak.pem"), "--bits", "2048")
    assert not (tmp_path / "weak.pem").exists()

    keygen("--out", str(tmp_path / "strong.pem"), "--bits", "4096")
    assert load_rsa_private_key(str(tmp_path / "strong.pem")).key_size == 4096


def test_missing_directory_is_reported(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        keygen("--out", str(tmp_path / "nowhere" / "key.pem"))
