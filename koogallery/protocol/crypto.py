"""Credential cryptography: AES-CBC values (spec §3.5), RSA-OAEP `clientSecret` (§3.6) and
at-rest encryption of the secrets we store (`SecretBox`).

Pure Python (stdlib + `cryptography`). Every failure raises `CryptoError`, a `ValueError`, with a
message that names what was wrong and never echoes key material or plaintext.
"""

import base64
import binascii
import enum
import hashlib
import re
import secrets
import string
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class CryptoError(ValueError):
    """A value could not be encrypted, decrypted or loaded."""


# --- AES-CBC credential encryption (§3.5) ------------------------------------------------------

IV_LENGTH = 16
_IV_ALPHABET = string.ascii_letters + string.digits
_IV_PATTERN = re.compile(r"[A-Za-z0-9]{16}")
_SHA1_SIZE = 20


class EncryptType(enum.StrEnum):
    """`encryptType` (§3.5): which AES key size the value uses."""

    AES_256_CBC = "1"
    AES_128_CBC = "2"

    @property
    def key_size_bits(self) -> int:
        return 256 if self is EncryptType.AES_256_CBC else 128


DEFAULT_ENCRYPT_TYPE = EncryptType.AES_256_CBC


def _sha1(data: bytes) -> bytes:
    # SHA-1 is what Java's SHA1PRNG is built on; the protocol (§3.5) fixes it, we do not choose it.
    return hashlib.sha1(data).digest()  # noqa: S324


def derive_aes_key(key: str, key_size_bits: int) -> bytes:
    """The AES key Java derives with `KeyGenerator.init(size, SecureRandom("SHA1PRNG"))` seeded
    with the UTF-8 access key (§3.5).

    The state update adds `out + 1` in Java *signed* bytes: the carry is an arithmetic shift and
    may be -1. An unsigned carry gives the same first 20 bytes (so AES-128 looks right) but a
    wrong AES-256 key.
    """
    if key_size_bits not in (128, 192, 256):
        raise CryptoError(f"AES key size must be 128, 192 or 256 bits, not {key_size_bits}")
    wanted = key_size_bits // 8
    state = bytearray(_sha1(key.encode("utf-8")))
    stream = b""
    while len(stream) < wanted:
        out = _sha1(bytes(state))
        stream += out
        carry = 1
        changed = False
        for i in range(_SHA1_SIZE):
            v = _signed(state[i]) + _signed(out[i]) + carry
            new = v & 0xFF
            changed |= new != state[i]
            state[i] = new
            carry = v >> 8
        if not changed:
            state[0] = (state[0] + 1) & 0xFF
    return stream[:wanted]


def _signed(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def _encrypt_type(value: str | None) -> EncryptType:
    # `encryptType` is optional; absent (None or "") means the default AES-256 (§3.5).
    if not value:
        return DEFAULT_ENCRYPT_TYPE
    try:
        return EncryptType(value)
    except ValueError:
        raise CryptoError(f"unknown encryptType {value!r}: expected '1' or '2'") from None


def _aes_cipher(key: str, encrypt_type: str | None, iv: bytes) -> Cipher:
    size = _encrypt_type(encrypt_type).key_size_bits
    return Cipher(algorithms.AES(derive_aes_key(key, size)), modes.CBC(iv))


def random_iv() -> str:
    """16 random `[A-Za-z0-9]` characters: the clear-text IV prefix (§3.5)."""
    return "".join(secrets.choice(_IV_ALPHABET) for _ in range(IV_LENGTH))


def aes_encrypt(
    plaintext: str, key: str, encrypt_type: str | None = "1", iv: str | None = None
) -> str:
    """`iv + base64(AES_CBC(PKCS#7(UTF-8 plaintext)))` (§3.5); a random IV when none is given."""
    if iv is None:
        iv = random_iv()
    elif not _IV_PATTERN.fullmatch(iv):
        raise CryptoError("the IV must be 16 characters from [A-Za-z0-9] (§3.5)")
    padder = padding.PKCS7(algorithms.AES.block_size).padder()
    padded = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    encryptor = _aes_cipher(key, encrypt_type, iv.encode("ascii")).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return iv + base64.b64encode(ciphertext).decode("ascii")


def aes_decrypt(value: str, key: str, encrypt_type: str | None = "1") -> str:
    """Inverse of `aes_encrypt`: `iv = value[:16]`, base64 ciphertext after it (§3.5).

    Whitespace in the base64 part is ignored (line-wrapping encoders), and a space is read as the
    `+` it was before a form/query decoder turned it into one (V1 GET values, §3.3); neither can
    occur in valid base64, so both readings are unambiguous.
    """
    if not isinstance(value, str) or len(value) <= IV_LENGTH:
        raise CryptoError("encrypted value too short: expected a 16-character IV and ciphertext")
    try:
        iv = value[:IV_LENGTH].encode("ascii")
    except UnicodeEncodeError:
        raise CryptoError("the IV (first 16 characters) is not ASCII") from None
    encoded = "".join(value[IV_LENGTH:].replace(" ", "+").split())
    try:
        ciphertext = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError("the ciphertext after the IV is not valid base64") from None
    if not ciphertext or len(ciphertext) % IV_LENGTH:
        raise CryptoError("the ciphertext is not a whole number of AES blocks")
    decryptor = _aes_cipher(key, encrypt_type, iv).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise CryptoError(
            "bad padding after AES decryption: wrong key or encryptType, or corrupted value"
        ) from None
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise CryptoError(
            "decrypted value is not UTF-8: wrong key or encryptType, or corrupted value"
        ) from None


# --- RSA-OAEP clientSecret (§3.6) --------------------------------------------------------------

MIN_RSA_BITS = 3072

# Huawei does not say which digests it uses (§7), so try all three, most likely first (§3.6).
# SHA-1 here is the sender's choice, not ours, and OAEP with SHA-1 is still sound.
OAEP_VARIANTS: tuple[tuple[str, asym_padding.OAEP], ...] = (
    (
        "OAEP-SHA256-MGF1-SHA256",
        asym_padding.OAEP(asym_padding.MGF1(hashes.SHA256()), hashes.SHA256(), None),
    ),
    (
        "OAEP-SHA256-MGF1-SHA1",
        asym_padding.OAEP(asym_padding.MGF1(hashes.SHA1()), hashes.SHA256(), None),  # noqa: S303
    ),
    (
        "OAEP-SHA1-MGF1-SHA1",
        asym_padding.OAEP(asym_padding.MGF1(hashes.SHA1()), hashes.SHA1(), None),  # noqa: S303
    ),
)


def load_rsa_private_key(value: str) -> rsa.RSAPrivateKey:
    """An unencrypted RSA private key, PKCS#8 or PKCS#1 PEM.

    `value` is PEM text when it starts with `-----BEGIN`, else a path to a PEM file (§2.2
    `KOOGALLERY_RSA_PRIVATE_KEY`). Literal `\\n` sequences are read as newlines, since PEM
    pasted into a one-line environment variable often arrives that way.
    """
    text = value.strip()
    if text.startswith("-----BEGIN"):
        source = "the PEM text"
        data = text.replace("\\n", "\n").encode("ascii", errors="replace")
    else:
        source = f"file {text!r}"
        try:
            data = Path(text).read_bytes()
        except OSError as exc:
            raise CryptoError(f"cannot read RSA private key {source}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CryptoError(f"RSA private key in {source} is password-protected") from None
    except (ValueError, binascii.Error):
        raise CryptoError(
            f"{source} is not a PEM private key (PKCS#8 or PKCS#1 expected)"
        ) from None
    except UnsupportedAlgorithm:
        raise CryptoError(f"the private key in {source} uses an unsupported algorithm") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CryptoError(f"the private key in {source} is not an RSA key")
    return key


def rsa_oaep_decrypt(ciphertext_b64: str, private_key: rsa.RSAPrivateKey) -> tuple[str, str]:
    """Decrypt a base64 RSA-OAEP `clientSecret` (§3.6): `(plaintext, variant name)`.

    Each variant in `OAEP_VARIANTS` is tried in order; the caller logs the name that worked.
    """
    try:
        ciphertext = base64.b64decode("".join(ciphertext_b64.split()), validate=True)
    except (binascii.Error, ValueError, AttributeError):
        raise CryptoError("clientSecret is not valid base64") from None
    if not ciphertext:
        raise CryptoError("clientSecret is empty")
    for name, oaep in OAEP_VARIANTS:
        try:
            plain = private_key.decrypt(ciphertext, oaep)
        except ValueError:
            continue
        try:
            return plain.decode("utf-8"), name
        except UnicodeDecodeError:
            raise CryptoError(f"clientSecret decrypted ({name}) but is not UTF-8") from None
    raise CryptoError(
        "clientSecret could not be decrypted with any OAEP variant "
        f"({', '.join(name for name, _ in OAEP_VARIANTS)}): wrong key or corrupted value"
    )


def _as_private_key(private_key: rsa.RSAPrivateKey | str) -> rsa.RSAPrivateKey:
    return load_rsa_private_key(private_key) if isinstance(private_key, str) else private_key


def public_key_pem(private_key: rsa.RSAPrivateKey | str) -> str:
    """SubjectPublicKeyInfo PEM of a key object, PEM text or path."""
    public = _as_private_key(private_key).public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode("ascii")


def public_key_body(private_key: rsa.RSAPrivateKey | str) -> str:
    """What the seller console asks for (§3.6): base64 SubjectPublicKeyInfo DER on one line,
    without BEGIN/END lines."""
    public = _as_private_key(private_key).public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def generate_rsa_keypair(bits: int = MIN_RSA_BITS) -> tuple[str, str]:
    """A new key pair: (unencrypted PKCS#8 private PEM, `public_key_body`). Huawei requires at
    least 3072 bits (§3.6)."""
    if bits < MIN_RSA_BITS:
        raise CryptoError(f"RSA keys must have at least {MIN_RSA_BITS} bits (§3.6), not {bits}")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return private_pem, public_key_body(key)


# --- Secrets at rest ---------------------------------------------------------------------------


class SecretBox:
    """Encrypts secrets we store (e.g. decrypted `clientSecret`s) with Fernet.

    Several keys allow rotation: the first encrypts, any decrypts; `rotate` re-encrypts a token
    under the first key. A single string is split on commas, like the other key settings (§2.2).
    """

    def __init__(self, keys: Sequence[str] | str):
        if isinstance(keys, str):
            keys = keys.split(",")
        keys = [k.strip() for k in keys if k and k.strip()]
        if not keys:
            raise CryptoError("SecretBox needs at least one Fernet key")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, binascii.Error):
                raise CryptoError(
                    f"secret key #{position} is not a Fernet key "
                    "(32 bytes, url-safe base64; see SecretBox.generate_key())"
                ) from None
        self._fernet = MultiFernet(fernets)

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode("ascii")

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            plain = self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError, AttributeError):
            raise CryptoError(
                "stored secret cannot be decrypted: no configured key matches, or it was altered"
            ) from None
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError:
            raise CryptoError("stored secret decrypted but is not UTF-8") from None

    def rotate(self, token: str) -> str:
        """The same secret, re-encrypted under the first (current) key."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError, AttributeError):
            raise CryptoError(
                "stored secret cannot be rotated: no configured key matches, or it was altered"
            ) from None
