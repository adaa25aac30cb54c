"""Shared helpers of the tenantSync / applicationSync / authSync tests.

`send` speaks V2 or V1 exactly as KooGallery does (through `tests.support.kgclient`); `domain_state`
snapshots every domain row so a test can prove a rejected call wrote nothing; `rsa_keys` is the
seller's key pair, generated once per session, and `oaep_encrypt` plays KooGallery encrypting a
`clientSecret` with the uploaded public key (§3.6).
"""

import base64
import json

import pytest
from cryptography.hazmat.primitives.serialization import load_der_public_key
from django.apps import apps

from koogallery.inbound.journal import InboundCall
from koogallery.protocol.crypto import OAEP_VARIANTS, generate_rsa_keypair
from tests.support.kgclient import KooGallery, envelope, fixture_json

VERSIONS = ("v2", "v1")
DOMAIN_APPS = ("tenants", "orgsync")


def send(kg: KooGallery, version: str, interface: str, body) -> dict:
    """Post a kit call in V2 (x-sign) or V1 (authToken) form; return the checked envelope."""
    response = kg.kit(interface, body) if version == "v2" else kg.kit_v1(interface, body)
    if version == "v1":
        # V1 answers must carry Body-Sign (§4.3).
        assert response.has_header("Body-Sign")
    return envelope(response)


def body_of(fixture_name: str, /, **overrides) -> dict:
    """`fixture_json` for bodies with a `name` field (positional-only fixture name)."""
    body = fixture_json(fixture_name)
    body.update(overrides)
    return body


def v1_body(body: dict) -> dict:
    """A V2 body as V1 sends it: `userList` is a String of JSON text (§4.3)."""
    body = dict(body)
    if isinstance(body.get("userList"), list):
        body["userList"] = json.dumps(body["userList"], ensure_ascii=False)
    return body


def domain_models() -> list:
    return [m for label in DOMAIN_APPS for m in apps.get_app_config(label).get_models()]


def domain_state(*, ignore: tuple[str, ...] = ()) -> dict:
    """Every domain row, column by column (minus `ignore`), in primary-key order."""
    state = {}
    for model in domain_models():
        rows = list(model.objects.order_by("pk").values())
        state[model._meta.label] = [
            {k: v for k, v in row.items() if k not in ignore} for row in rows
        ]
    return state


def stable_state() -> dict:
    """The state a repeated call must not change (timestamps of the write itself excluded)."""
    return domain_state(ignore=("updated_at",))


def assert_rejected(before: dict, answer: dict, field: str, journal_count: int) -> None:
    """A rejected call: 000002 naming `field`, nothing written but its own journal row."""
    assert answer["resultCode"] == "000002", answer
    assert field in answer["resultMsg"], answer
    assert domain_state() == before
    assert InboundCall.objects.count() == journal_count + 1
    assert InboundCall.objects.order_by("-id").first().result_code == "000002"


@pytest.fixture(scope="session")
def rsa_keys() -> tuple[str, str]:
    """(private PKCS#8 PEM, public key body as uploaded to the seller console)."""
    return generate_rsa_keypair(3072)


@pytest.fixture
def rsa_settings(settings, rsa_keys):
    settings.KOOGALLERY_RSA_PRIVATE_KEY = rsa_keys[0]
    return settings


def oaep_encrypt(public_body: str, plaintext: str, variant: int = 0) -> str:
    """What KooGallery sends as `clientSecret`: base64 RSA-OAEP with the seller's public key."""
    public_key = load_der_public_key(base64.b64decode(public_body))
    _, padding = OAEP_VARIANTS[variant]
    return base64.b64encode(public_key.encrypt(plaintext.encode("utf-8"), padding)).decode()
