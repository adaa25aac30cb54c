"""Licence tokens (spec §2.8): `base64url(payload) + "." + base64url(sig)`, both unpadded.

`payload` is compact, key-sorted UTF-8 JSON; `sig` is Ed25519 (`LICENSE_SIGNING_KEY`) over the
ASCII of the first segment. The merchant's software verifies a token offline with the public key
only (`verify`), then checks `fp`, `nbf` and `exp` (`check_claims`). Pure functions: no
database, no settings except where a function says so.
"""

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

TOKEN_VERSION = 1
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# The claims of §2.8 plus the optional extras the issue asks for (customer, product, SKU).
REQUIRED_CLAIMS = ("v", "lid", "iid", "eid", "fp", "nbf", "iat")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


class SigningKeyError(ValueError):
    """A signing or verification key could not be loaded (message never holds key material)."""


class InvalidToken(ValueError):
    """The token is malformed or its signature does not verify."""


# --- encoding ----------------------------------------------------------------------------------


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict unpadded base64url: any other character (padding included) is an error."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise InvalidToken("not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("not unpadded base64url") from None


def canonical_payload(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def format_time(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` in UTC, seconds precision."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    if not isinstance(text, str) or not _TIME.fullmatch(text):
        raise InvalidToken(f"time {text!r} is not YYYY-MM-DDTHH:MM:SSZ")
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidToken(f"time {text!r} is not a valid date") from None


# --- keys --------------------------------------------------------------------------------------


def _pem_or_path(value: str, what: str) -> tuple[bytes, str]:
    text = (value or "").strip()
    if not text:
        raise SigningKeyError(f"no {what} configured")
    if text.startswith("-----BEGIN"):
        # PEM pasted into a one-line environment variable often carries literal "\n".
        return text.replace("\\n", "\n").encode("ascii", errors="replace"), f"the {what} PEM text"
    try:
        return Path(text).read_bytes(), f"{what} file {text!r}"
    except OSError as exc:
        raise SigningKeyError(f"cannot read {what} file {text!r}: {exc.strerror}") from None


def load_private_key(value: str) -> Ed25519PrivateKey:
    """An unencrypted Ed25519 private key: PEM text (starts `-----BEGIN`) or a path (§2.2)."""
    data, source = _pem_or_path(value, "LICENSE_SIGNING_KEY")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SigningKeyError(f"{source} is password-protected") from None
    except (ValueError, UnsupportedAlgorithm):
        raise SigningKeyError(f"{source} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{source} is not an Ed25519 key")
    return key


def load_public_key(value: str) -> Ed25519PublicKey:
    """A public key as PEM text, a PEM file path, or the raw 32 bytes in base64url/base64."""
    text = (value or "").strip()
    if text and not text.startswith("-----BEGIN") and not Path(text).exists():
        try:
            raw = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "==")
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == 32:
            return Ed25519PublicKey.from_public_bytes(raw)
    data, source = _pem_or_path(text, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise SigningKeyError(f"{source} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{source} is not an Ed25519 key")
    return key


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def public_key_raw(key: Ed25519PublicKey) -> str:
    """The 32 raw key bytes, base64url: the shortest form to embed in the merchant's software."""
    return b64url_encode(
        key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def key_id(key: Ed25519PublicKey) -> str:
    """16 hex characters of the raw key's SHA-256: tells which key signed a stored licence."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# --- signing and verification ------------------------------------------------------------------


def sign(payload: dict[str, Any], key: Ed25519PrivateKey) -> str:
    first = b64url_encode(canonical_payload(payload))
    return f"{first}.{b64url_encode(key.sign(first.encode('ascii')))}"


def verify(token: str, key: Ed25519PublicKey) -> dict[str, Any]:
    """The payload of a token whose signature verifies with `key`, else `InvalidToken`."""
    if not isinstance(token, str):
        raise InvalidToken("token is not text")
    token = token.strip()
    first, dot, second = token.partition(".")
    if not dot or not first or not second or "." in second:
        raise InvalidToken("token must be two base64url segments joined by one '.'")
    signature = b64url_decode(second)
    try:
        key.verify(signature, first.encode("ascii"))
    except (InvalidSignature, UnicodeEncodeError):
        raise InvalidToken("signature does not verify with this public key") from None
    try:
        payload = json.loads(b64url_decode(first).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidToken("payload is not UTF-8 JSON") from None
    if not isinstance(payload, dict):
        raise InvalidToken("payload is not a JSON object")
    missing = [name for name in REQUIRED_CLAIMS if name not in payload]
    if missing:
        raise InvalidToken(f"payload lacks {', '.join(missing)}")
    if payload["v"] != TOKEN_VERSION:
        raise InvalidToken(f"unsupported token version {payload['v']!r}")
    return payload


@dataclass
class ClaimCheck:
    """What `check_claims` found; `problems` is empty when the licence may be used."""

    not_before: datetime
    expires: datetime | None
    fingerprint_matches: bool | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_claims(
    payload: dict[str, Any], *, at: datetime | None = None, fingerprint: str | None = None
) -> ClaimCheck:
    """Check `nbf` ≤ at < `exp` and, when `fingerprint` is given, `fp` == fingerprint."""
    at = at or datetime.now(UTC)
    not_before = parse_time(payload["nbf"])
    expires = parse_time(payload["exp"]) if "exp" in payload else None
    matches = None if fingerprint is None else payload.get("fp") == fingerprint
    check = ClaimCheck(not_before, expires, matches)
    if at < not_before:
        check.problems.append(f"not valid before {payload['nbf']}")
    if expires is not None and at >= expires:
        check.problems.append(f"expired at {payload['exp']}")
    if matches is False:
        check.problems.append("issued for another device fingerprint")
    return check
