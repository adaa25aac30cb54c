"""Secrets we keep at rest (the OAuth `clientSecret` of applicationSync, spec §2.6, §3.6).

`secret_box()` is the one place that decides which Fernet keys protect stored secrets:
`settings.FIELD_ENCRYPTION_KEYS` (comma-separated, the first encrypts, any decrypts, so keys can
be rotated). Settings refuse to start without them unless DEBUG is on; only then, on the
embedded default where nobody configured anything, a key is derived from SECRET_KEY so that
`scripts/run` works out of the box. It is derived (HKDF-SHA256 with its own `info`) rather than
SECRET_KEY used directly so that the encryption key is not the key Django signs sessions and
tokens with: knowing one derived value reveals nothing about the other uses of SECRET_KEY.
Changing SECRET_KEY on such a development install makes stored secrets unreadable; the next
applicationSync stores them again.
"""

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from koogallery.protocol.crypto import SecretBox

DERIVATION_INFO = b"koogallery-field-encryption"


def derived_fernet_key(secret_key: str) -> str:
    """A Fernet key (32 bytes, url-safe base64) derived from `secret_key` by HKDF-SHA256."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=DERIVATION_INFO).derive(
        secret_key.encode("utf-8")
    )
    return base64.urlsafe_b64encode(raw).decode("ascii")


def secret_box() -> SecretBox:
    keys = [k for k in settings.FIELD_ENCRYPTION_KEYS if k and k.strip()]
    if keys:
        return SecretBox(keys)
    if not settings.DEBUG:
        # Settings already refuse this; checked again so a test or shell override cannot
        # silently store production secrets under a key derived from SECRET_KEY.
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set when DEBUG is off")
    return SecretBox([derived_fernet_key(settings.SECRET_KEY)])


def encrypt_secret(plaintext: str) -> str:
    return secret_box().encrypt(plaintext)


def decrypt_secret(token: str) -> str:
    """Raises `koogallery.protocol.crypto.CryptoError` when no configured key matches."""
    return secret_box().decrypt(token)


def decrypt_client_secret(application) -> str:
    """The plain OAuth `client_secret` of a `tenants.Application` (for SSO, spec §5.3)."""
    return decrypt_secret(application.client_secret_encrypted)
