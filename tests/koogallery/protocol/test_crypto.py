"""koogallery.protocol.crypto: the §3.5 vectors, AES round trips, RSA-OAEP (§3.6) and SecretBox.

Plain pytest, no Django: runs with `-p no:django`.
"""

import base64
import hashlib
import string

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from koogallery.protocol.crypto import (
    OAEP_VARIANTS,
    CryptoError,
    EncryptType,
    SecretBox,
    aes_decrypt,
    aes_encrypt,
    derive_aes_key,
    generate_rsa_keypair,
    load_rsa_private_key,
    public_key_body,
    public_key_pem,
    random_iv,
    rsa_oaep_decrypt,
)

KEY = "testAccessKey123"
IV = "abcdefgh12345678"

ivs = st.text(alphabet=string.ascii_letters + string.digits, min_size=16, max_size=16)
encrypt_types = st.sampled_from(["1", "2"])


# --- §3.5 vectors ------------------------------------------------------------------------------


def test_key_derivation_vectors():
    assert derive_aes_key(KEY, 256).hex() == (
        "0413c5de84a4312c10f237cf102c14f909635c067f68c442f5d9aa865fb0d176"
    )
    assert derive_aes_key(KEY, 128).hex() == "0413c5de84a4312c10f237cf102c14f9"


def _derive_with_unsigned_carry(key: str, size_bytes: int) -> bytes:
    state = bytearray(hashlib.sha1(key.encode()).digest())
    stream = b""
    while len(stream) < size_bytes:
        out = hashlib.sha1(bytes(state)).digest()
        stream += out
        carry = 1
        for i in range(20):
            v = state[i] + out[i] + carry
            state[i] = v & 0xFF
            carry = v >> 8
    return stream[:size_bytes]


def test_unsigned_carry_would_give_a_wrong_256_bit_key():
    """Why §3.5 insists on Java signed bytes: the vector catches the unsigned mistake."""
    assert _derive_with_unsigned_carry(KEY, 32) != derive_aes_key(KEY, 256)
    assert _derive_with_unsigned_carry(KEY, 16) == derive_aes_key(KEY, 128)


@given(st.text(max_size=64))
def test_aes_128_key_is_sha1_of_sha1_and_prefixes_the_256_key(key):
    seed = key.encode("utf-8")
    expected = hashlib.sha1(hashlib.sha1(seed).digest()).digest()[:16]
    assert derive_aes_key(key, 128) == expected
    assert derive_aes_key(key, 256)[:16] == expected


def test_derive_rejects_non_aes_sizes():
    with pytest.raises(CryptoError):
        derive_aes_key(KEY, 160)


@pytest.mark.parametrize(
    ("encrypt_type", "expected"),
    [
        ("1", "abcdefgh12345678pK8PDvOFeqZGyl4zomrQoQ=="),
        ("2", "abcdefgh12345678ktveWYXtcE0QjlAUSSMmMg=="),
    ],
)
def test_aes_vectors(encrypt_type, expected):
    assert aes_encrypt("hwadmin", KEY, encrypt_type, iv=IV) == expected
    assert aes_decrypt(expected, KEY, encrypt_type) == "hwadmin"


def test_encrypt_type_default_is_aes_256():
    assert aes_encrypt("hwadmin", KEY, iv=IV) == "abcdefgh12345678pK8PDvOFeqZGyl4zomrQoQ=="
    assert aes_decrypt("abcdefgh12345678pK8PDvOFeqZGyl4zomrQoQ==", KEY) == "hwadmin"
    # An absent optional `encryptType` field means the default.
    assert aes_decrypt("abcdefgh12345678pK8PDvOFeqZGyl4zomrQoQ==", KEY, None) == "hwadmin"
    assert aes_decrypt("abcdefgh12345678pK8PDvOFeqZGyl4zomrQoQ==", KEY, "") == "hwadmin"


def test_encrypt_type_enum():
    assert EncryptType("1") is EncryptType.AES_256_CBC
    assert EncryptType.AES_128_CBC == "2"
    assert EncryptType.AES_256_CBC.key_size_bits == 256
    assert EncryptType.AES_128_CBC.key_size_bits == 128
    assert aes_encrypt("hwadmin", KEY, EncryptType.AES_128_CBC, iv=IV).endswith("MmMg==")


# --- AES round trips ---------------------------------------------------------------------------


@settings(max_examples=200)
@given(plaintext=st.text(), key=st.text(min_size=1, max_size=64), iv=ivs, kind=encrypt_types)
def test_aes_round_trip(plaintext, key, iv, kind):
    value = aes_encrypt(plaintext, key, kind, iv=iv)
    assert value.startswith(iv)
    assert aes_decrypt(value, key, kind) == plaintext


@given(plaintext=st.text(min_size=1), kind=encrypt_types)
def test_aes_round_trip_with_random_iv(plaintext, kind):
    value = aes_encrypt(plaintext, KEY, kind)
    assert all(c in string.ascii_letters + string.digits for c in value[:16])
    assert aes_decrypt(value, KEY, kind) == plaintext


@pytest.mark.parametrize("kind", ["1", "2"])
def test_aes_round_trip_non_ascii(kind):
    for plaintext in ["张三@example.com", "13800138000", "pässwörd 🔑", ""]:
        assert aes_decrypt(aes_encrypt(plaintext, KEY, kind), KEY, kind) == plaintext


def test_random_iv_is_16_alphanumerics_and_varies():
    ivs_seen = {random_iv() for _ in range(20)}
    assert len(ivs_seen) == 20
    assert all(len(iv) == 16 and iv.isalnum() and iv.isascii() for iv in ivs_seen)


def test_decrypt_tolerates_line_breaks_and_form_decoded_plus():
    value = aes_encrypt("hwadmin", KEY, iv=IV)
    assert aes_decrypt(value[:24] + "\r\n" + value[24:] + "\n", KEY) == "hwadmin"
    with_plus = next(
        v for v in (aes_encrypt(f"user{i}", KEY, iv=IV) for i in range(200)) if "+" in v[16:]
    )
    plain = aes_decrypt(with_plus, KEY)
    assert aes_decrypt(with_plus.replace("+", " "), KEY) == plain


# --- AES failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "abcdefgh", IV, IV[:15]])
def test_decrypt_too_short(value):
    with pytest.raises(CryptoError, match="too short"):
        aes_decrypt(value, KEY)


@pytest.mark.parametrize("tail", ["pK8PDvOFeq!Gyl4zomrQoQ==", "pK8PDvOFeqZGyl4zomrQoQ=", "%%%"])
def test_decrypt_bad_base64(tail):
    with pytest.raises(CryptoError, match="base64"):
        aes_decrypt(IV + tail, KEY)


def test_decrypt_not_whole_blocks():
    with pytest.raises(CryptoError, match="blocks"):
        aes_decrypt(IV + base64.b64encode(b"short").decode(), KEY)


@pytest.mark.parametrize("wrong_key", ["wrongKey", "testAccessKey124", "TESTACCESSKEY123"])
def test_decrypt_wrong_key(wrong_key):
    with pytest.raises(CryptoError):
        aes_decrypt("abcdefgh12345678pK8PDvOFeqZGyl4zomrQoQ==", wrong_key)


def test_decrypt_wrong_encrypt_type():
    with pytest.raises(CryptoError):
        aes_decrypt("abcdefgh12345678pK8PDvOFeqZGyl4zomrQoQ==", KEY, "2")


def test_decrypt_wrong_iv():
    with pytest.raises(CryptoError):
        aes_decrypt("abcdefgh12345679pK8PDvOFeqZGyl4zomrQoQ==", KEY)


def test_decrypt_non_ascii_iv():
    with pytest.raises(CryptoError, match="IV"):
        aes_decrypt("abcdefgh1234567äpK8PDvOFeqZGyl4zomrQoQ==", KEY)


@pytest.mark.parametrize("kind", ["3", "AES256", "01"])
def test_unknown_encrypt_type(kind):
    with pytest.raises(CryptoError, match="encryptType"):
        aes_encrypt("hwadmin", KEY, kind, iv=IV)
    with pytest.raises(CryptoError, match="encryptType"):
        aes_decrypt("abcdefgh12345678pK8PDvOFeqZGyl4zomrQoQ==", KEY, kind)


@pytest.mark.parametrize(
    "iv", ["short", "abcdefgh12345678x", "abcdefgh-2345678", "äbcdefgh12345678"]
)
def test_encrypt_rejects_bad_iv(iv):
    with pytest.raises(CryptoError, match="IV"):
        aes_encrypt("hwadmin", KEY, iv=iv)


def test_crypto_error_is_a_value_error():
    assert issubclass(CryptoError, ValueError)


# --- RSA-OAEP (§3.6) ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keypair():
    """One 3072-bit key for the module: generating it takes seconds."""
    private_pem, body = generate_rsa_keypair()
    return private_pem, body, load_rsa_private_key(private_pem)


def _encrypt(private_key, plaintext: str, variant: str) -> str:
    oaep = dict(OAEP_VARIANTS)[variant]
    ciphertext = private_key.public_key().encrypt(plaintext.encode("utf-8"), oaep)
    return base64.b64encode(ciphertext).decode("ascii")


def test_variant_order():
    assert [name for name, _ in OAEP_VARIANTS] == [
        "OAEP-SHA256-MGF1-SHA256",
        "OAEP-SHA256-MGF1-SHA1",
        "OAEP-SHA1-MGF1-SHA1",
    ]


@pytest.mark.parametrize("variant", [name for name, _ in OAEP_VARIANTS])
@pytest.mark.parametrize("plaintext", ["test", "s3cr3t-Client_Secret", "密钥🔑 ä"])
def test_oaep_decrypt_each_variant(keypair, variant, plaintext):
    _, _, key = keypair
    assert rsa_oaep_decrypt(_encrypt(key, plaintext, variant), key) == (plaintext, variant)


def test_oaep_tolerates_whitespace_in_base64(keypair):
    _, _, key = keypair
    encoded = _encrypt(key, "test", "OAEP-SHA1-MGF1-SHA1")
    wrapped = "\n".join(encoded[i : i + 64] for i in range(0, len(encoded), 64))
    assert rsa_oaep_decrypt(f"  {wrapped}\r\n", key) == ("test", "OAEP-SHA1-MGF1-SHA1")


def test_oaep_garbage(keypair):
    _, _, key = keypair
    garbage = base64.b64encode(bytes(range(256)) * (384 // 256) + bytes(128)).decode()
    with pytest.raises(CryptoError, match="any OAEP variant"):
        rsa_oaep_decrypt(garbage, key)


@pytest.mark.parametrize("value", ["", "not base64!", "DSDT*******ECDD#$^#", "QUJD"])
def test_oaep_bad_input(keypair, value):
    _, _, key = keypair
    with pytest.raises(CryptoError):
        rsa_oaep_decrypt(value, key)


def test_oaep_wrong_key(keypair):
    _, _, key = keypair
    other = load_rsa_private_key(generate_rsa_keypair()[0])
    with pytest.raises(CryptoError):
        rsa_oaep_decrypt(_encrypt(other, "test", "OAEP-SHA256-MGF1-SHA256"), key)


def test_generated_keypair_shape(keypair):
    private_pem, body, key = keypair
    assert private_pem.startswith("-----BEGIN PRIVATE KEY-----\n")  # PKCS#8
    assert key.key_size == 3072
    assert "\n" not in body and "BEGIN" not in body
    public = serialization.load_der_public_key(base64.b64decode(body))
    assert public.public_numbers() == key.public_key().public_numbers()
    assert public_key_body(key) == body
    assert public_key_body(private_pem) == body


def test_public_key_pem(keypair):
    private_pem, body, key = keypair
    pem = public_key_pem(key)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert "".join(pem.splitlines()[1:-1]) == body
    assert public_key_pem(private_pem) == pem


def test_generate_refuses_short_keys():
    with pytest.raises(CryptoError, match="3072"):
        generate_rsa_keypair(2048)


def _pkcs1_pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")


def test_load_pkcs8_and_pkcs1_text(keypair):
    private_pem, _, key = keypair
    pkcs1 = _pkcs1_pem(key)
    assert pkcs1.startswith("-----BEGIN RSA PRIVATE KEY-----")
    ciphertext = _encrypt(key, "test", "OAEP-SHA256-MGF1-SHA256")
    for pem in (private_pem, pkcs1, f"\n  {pkcs1}  \n"):
        loaded = load_rsa_private_key(pem)
        assert loaded.private_numbers() == key.private_numbers()
        assert rsa_oaep_decrypt(ciphertext, loaded)[0] == "test"


def test_load_pem_with_escaped_newlines(keypair):
    private_pem, _, key = keypair
    one_line = private_pem.replace("\n", "\\n")
    assert load_rsa_private_key(one_line).private_numbers() == key.private_numbers()


def test_load_from_path(keypair, tmp_path):
    private_pem, _, key = keypair
    for name, pem in [("pkcs8.pem", private_pem), ("pkcs1.pem", _pkcs1_pem(key))]:
        path = tmp_path / name
        path.write_text(pem)
        assert load_rsa_private_key(str(path)).private_numbers() == key.private_numbers()


def test_load_missing_path(tmp_path):
    with pytest.raises(CryptoError, match="cannot read"):
        load_rsa_private_key(str(tmp_path / "absent.pem"))


def test_load_garbage(tmp_path):
    path = tmp_path / "garbage.pem"
    path.write_text("not a key")
    with pytest.raises(CryptoError, match="not a PEM private key"):
        load_rsa_private_key(str(path))
    with pytest.raises(CryptoError, match="not a PEM private key"):
        load_rsa_private_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


def test_load_public_key_is_refused(keypair):
    _, _, key = keypair
    with pytest.raises(CryptoError):
        load_rsa_private_key(public_key_pem(key))


def test_load_encrypted_key(keypair):
    _, _, key = keypair
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    ).decode()
    with pytest.raises(CryptoError, match="password"):
        load_rsa_private_key(encrypted)


def test_load_non_rsa_key():
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(CryptoError, match="not an RSA key"):
        load_rsa_private_key(pem)


# --- SecretBox ---------------------------------------------------------------------------------


@given(st.text())
def test_secret_box_round_trip(secret):
    box = SecretBox([SecretBox.generate_key()])
    assert box.decrypt(box.encrypt(secret)) == secret


def test_secret_box_token_hides_the_secret_and_varies():
    box = SecretBox([SecretBox.generate_key()])
    first, second = box.encrypt("client-secret-123"), box.encrypt("client-secret-123")
    assert first != second
    assert "client-secret" not in first
    assert "client-secret" not in base64.urlsafe_b64decode(first).decode("latin-1")


def test_secret_box_key_is_a_fernet_key():
    key = SecretBox.generate_key()
    assert len(base64.urlsafe_b64decode(key)) == 32
    Fernet(key)


def test_secret_box_rotation():
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    token = SecretBox([old]).encrypt("client-secret")
    rotated_box = SecretBox([new, old])
    assert rotated_box.decrypt(token) == "client-secret"
    fresh = rotated_box.encrypt("client-secret")
    assert SecretBox([new]).decrypt(fresh) == "client-secret"
    with pytest.raises(CryptoError):
        SecretBox([old]).decrypt(fresh)
    rotated = rotated_box.rotate(token)
    assert SecretBox([new]).decrypt(rotated) == "client-secret"


def test_secret_box_accepts_comma_separated_string():
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    token = SecretBox(old).encrypt("x")
    assert SecretBox(f"{new}, {old}").decrypt(token) == "x"


def test_secret_box_tampered_token():
    box = SecretBox([SecretBox.generate_key()])
    token = box.encrypt("client-secret")
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[-40] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode()
    for bad in (tampered, token[:-4], "", "not a token", "ä"):
        with pytest.raises(CryptoError):
            box.decrypt(bad)
    with pytest.raises(CryptoError):
        box.rotate(tampered)


def test_secret_box_unknown_key():
    token = SecretBox([SecretBox.generate_key()]).encrypt("client-secret")
    with pytest.raises(CryptoError, match="no configured key"):
        SecretBox([SecretBox.generate_key()]).decrypt(token)


@pytest.mark.parametrize("keys", [[], [""], "", " , ", ["not-a-fernet-key"]])
def test_secret_box_bad_keys(keys):
    with pytest.raises(CryptoError):
        SecretBox(keys)


def test_secret_box_error_does_not_echo_the_key():
    with pytest.raises(CryptoError) as info:
        SecretBox(["very-secret-but-invalid"])
    assert "very-secret" not in str(info.value)
