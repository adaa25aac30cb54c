"""applicationSync (应用同步), V2 and V1 (spec §4.1.2, §4.3, §3.6, §2.6), and secrets at rest."""

import logging

import pytest
from django.apps import apps

from koogallery.inbound.journal import InboundCall
from koogallery.protocol.crypto import CryptoError, SecretBox, generate_rsa_keypair
from koogallery.protocol.secret_store import decrypt_client_secret, derived_fernet_key, secret_box
from tenants.models import Application, Tenant
from tests.support.kgclient import fixture
from tests.support.tenant_kit import (
    VERSIONS,
    assert_rejected,
    body_of,
    domain_state,
    oaep_encrypt,
    rsa_keys,  # noqa: F401 (fixture)
    rsa_settings,  # noqa: F401 (fixture)
    send,
)

pytestmark = pytest.mark.django_db

EXAMPLE = "applicationSync__huawei_shape_example"
PLAINTEXT = "s3cr3t-Plain-Client-Secret-7f3a"


@pytest.fixture
def secret_call(rsa_settings, rsa_keys):  # noqa: F811
    """The Huawei shape example with a real ciphertext of `plaintext` in `clientSecret`."""

    def make(plaintext: str = PLAINTEXT, variant: int = 0, **overrides) -> dict:
        secret = oaep_encrypt(rsa_keys[1], plaintext, variant)
        return body_of(EXAMPLE, clientSecret=secret, **overrides)

    return make


def application(is_test: bool = False) -> Application:
    return Application.objects.get(app_id="KSIDJF1234456", tenant__is_test=is_test)


@pytest.mark.parametrize("version", VERSIONS)
def test_add_stores_the_decrypted_secret_encrypted(kg, version, secret_call, caplog):
    caplog.set_level(logging.DEBUG)

    answer = send(kg, version, "applicationSync", secret_call())

    assert answer["resultCode"] == "000000"
    row = application()
    assert (row.instance_id, row.client_id, row.removed_at) == (
        "hua********23456",
        " bc20*******880d92f3",  # as sent, leading space included
        None,
    )
    assert row.tenant.tenant_id == "68cbc8*********b880d92f36422fa0e"
    assert PLAINTEXT not in row.client_secret_encrypted
    assert decrypt_client_secret(row) == PLAINTEXT
    assert "OAEP-SHA256-MGF1-SHA256" in caplog.text  # which variant worked is logged


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_every_oaep_variant_is_accepted(kg, secret_call, variant, caplog):
    caplog.set_level(logging.INFO)

    answer = send(kg, "v2", "applicationSync", secret_call(variant=variant))

    assert answer["resultCode"] == "000000"
    assert decrypt_client_secret(application()) == PLAINTEXT
    assert ("OAEP-SHA256-MGF1-SHA256", "OAEP-SHA256-MGF1-SHA1", "OAEP-SHA1-MGF1-SHA1")[
        variant
    ] in caplog.text


def test_debug_plaintext_comes_back(kg, secret_call):
    # The seller console's debugging sends a known plaintext such as "test" (§3.6).
    send(kg, "v2", "applicationSync", secret_call("test", testFlag=1, instanceId=""))

    assert decrypt_client_secret(application(is_test=True)) == "test"


def test_modify_replaces_client_id_and_secret(kg, secret_call):
    send(kg, "v2", "applicationSync", secret_call())

    answer = send(kg, "v2", "applicationSync", secret_call("rotated", flag=2, clientId="new-id"))

    assert answer["resultCode"] == "000000"
    row = application()
    assert (row.client_id, decrypt_client_secret(row)) == ("new-id", "rotated")
    assert Application.objects.count() == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_delete_marks_removed_and_add_restores(kg, version, secret_call):
    send(kg, version, "applicationSync", secret_call())

    answer = send(kg, version, "applicationSync", secret_call(flag=0))

    assert answer["resultCode"] == "000000"
    assert application().removed_at is not None
    send(kg, version, "applicationSync", secret_call())
    assert application().removed_at is None


def test_delete_needs_no_decryptable_secret(kg, secret_call, settings):
    send(kg, "v2", "applicationSync", secret_call())
    settings.KOOGALLERY_RSA_PRIVATE_KEY = ""  # e.g. the key pair was replaced since

    answer = send(kg, "v2", "applicationSync", body_of(EXAMPLE, flag=0))

    assert answer["resultCode"] == "000000"
    assert application().removed_at is not None


@pytest.mark.parametrize("version", VERSIONS)
def test_delete_of_an_unknown_application_succeeds_and_creates_nothing(kg, version, secret_call):
    answer = send(kg, version, "applicationSync", secret_call(flag=0))

    assert answer["resultCode"] == "000000"
    assert Application.objects.count() == 0 and Tenant.objects.count() == 0


# V1 has no modify (§4.3).
@pytest.mark.parametrize(
    ("version", "flag"), [("v2", 1), ("v2", 2), ("v2", 0), ("v1", 1), ("v1", 0)]
)
def test_each_flag_repeated_three_times_leaves_the_same_state(kg, version, flag, secret_call):
    send(kg, version, "applicationSync", secret_call())
    body = secret_call(flag=flag)

    answers, states = [], []
    for _ in range(3):
        answers.append(send(kg, version, "applicationSync", body)["resultCode"])
        # Fernet tokens differ on every encryption: compare what they decrypt to.
        states.append(domain_state(ignore=("updated_at", "client_secret_encrypted")))
        assert decrypt_client_secret(application()) == PLAINTEXT

    assert answers == ["000000"] * 3
    assert states[0] == states[1] == states[2]
    assert Application.objects.count() == 1


def test_debug_application_is_kept_apart_from_production(kg, secret_call):
    send(kg, "v2", "applicationSync", secret_call())

    send(kg, "v2", "applicationSync", secret_call("debug", testFlag=1, instanceId=""))
    send(kg, "v2", "applicationSync", secret_call(testFlag=1, instanceId="", flag=0))

    assert Application.objects.count() == 2
    assert application().removed_at is None
    assert decrypt_client_secret(application()) == PLAINTEXT
    assert application(is_test=True).removed_at is not None


# --- refusals ----------------------------------------------------------------------------------


def test_huawei_placeholder_secret_is_refused(kg, rsa_settings):  # noqa: F811
    before, journal = domain_state(), InboundCall.objects.count()

    answer = send(kg, "v2", "applicationSync", fixture(EXAMPLE))

    assert_rejected(before, answer, "clientSecret: cannot be decrypted", journal)


@pytest.mark.parametrize("version", VERSIONS)
def test_secret_for_another_key_is_refused_and_nothing_stored(kg, version, secret_call):
    _, foreign_public = generate_rsa_keypair(3072)
    body = body_of(EXAMPLE, clientSecret=oaep_encrypt(foreign_public, PLAINTEXT))
    before, journal = domain_state(), InboundCall.objects.count()

    answer = send(kg, version, "applicationSync", body)

    assert_rejected(before, answer, "clientSecret: cannot be decrypted", journal)


def test_secret_refused_on_modify_keeps_the_stored_one(kg, secret_call):
    send(kg, "v2", "applicationSync", secret_call())
    before, journal = domain_state(), InboundCall.objects.count()

    answer = send(kg, "v2", "applicationSync", body_of(EXAMPLE, flag=2, clientSecret="AAAA"))

    assert_rejected(before, answer, "clientSecret", journal)
    assert decrypt_client_secret(application()) == PLAINTEXT


@pytest.mark.parametrize("version", VERSIONS)
def test_no_rsa_key_answers_000005_and_stores_nothing(kg, version, secret_call, settings):
    body = secret_call()
    settings.KOOGALLERY_RSA_PRIVATE_KEY = ""
    before, journal = domain_state(), InboundCall.objects.count()

    answer = send(kg, version, "applicationSync", body)

    assert answer == {
        "resultCode": "000005",
        "resultMsg": "other internal service error: no RSA private key configured",
    }
    assert domain_state() == before
    assert InboundCall.objects.count() == journal + 1
    assert InboundCall.objects.order_by("-id").first().result_code == "000005"


def test_unreadable_rsa_key_answers_000005(kg, secret_call, settings, tmp_path):
    body = secret_call()
    settings.KOOGALLERY_RSA_PRIVATE_KEY = str(tmp_path / "missing.pem")

    answer = send(kg, "v2", "applicationSync", body)

    assert answer["resultCode"] == "000005"
    assert Application.objects.count() == 0


def test_rsa_key_may_be_a_path(kg, secret_call, settings, rsa_keys, tmp_path):  # noqa: F811
    path = tmp_path / "koogallery.pem"
    path.write_text(rsa_keys[0])
    body = secret_call()
    settings.KOOGALLERY_RSA_PRIVATE_KEY = str(path)

    assert send(kg, "v2", "applicationSync", body)["resultCode"] == "000000"
    assert decrypt_client_secret(application()) == PLAINTEXT


INVALID = [
    ({"tenantId": None}, "tenantId"),
    ({"tenantId": "t" * 65}, "tenantId"),
    ({"appId": None}, "appId"),
    ({"appId": ""}, "appId"),
    ({"appId": "a" * 65}, "appId"),
    ({"clientId": None}, "clientId"),
    ({"clientId": "c" * 65}, "clientId"),
    ({"clientSecret": None}, "clientSecret"),
    ({"clientSecret": ""}, "clientSecret"),
    ({"clientSecret": 12345}, "clientSecret"),
    ({"flag": 5}, "flag"),
    ({"testFlag": None}, "testFlag"),
    ({"instanceId": None}, "instanceId"),
]


# V1 signs neither a blank field nor an absent one, so it reads both as blank (spec §2.3).
V1_READ_AS_BLANK = ("clientId", "instanceId")


@pytest.mark.parametrize(
    ("version", "change", "field"),
    [
        (version, change, field)
        for version in VERSIONS
        for change, field in INVALID
        if not (version == "v1" and change == {field: None} and field in V1_READ_AS_BLANK)
    ],
)
def test_invalid_field_answers_000002_naming_it_and_writes_nothing(
    kg, version, change, field, secret_call
):
    send(kg, version, "applicationSync", secret_call())
    body = secret_call("other", clientId="changed")
    for name, value in change.items():
        if value is None:
            del body[name]
        else:
            body[name] = value
    before, journal = domain_state(), InboundCall.objects.count()

    answer = send(kg, version, "applicationSync", body)

    assert_rejected(before, answer, field, journal)


@pytest.mark.parametrize("field", V1_READ_AS_BLANK)
def test_v1_reads_an_absent_field_that_may_be_blank_as_blank(kg, secret_call, field):
    body = secret_call()
    del body[field]
    assert send(kg, "v1", "applicationSync", body)["resultCode"] == "000000"
    app = Application.objects.get()
    assert (app.client_id if field == "clientId" else app.instance_id) == ""


def test_v1_refuses_modify(kg, secret_call):
    before, journal = domain_state(), InboundCall.objects.count()

    answer = send(kg, "v1", "applicationSync", secret_call(flag=2))

    assert_rejected(before, answer, "flag", journal)


# --- the secret never leaks --------------------------------------------------------------------


def _every_stored_value() -> str:
    """Every column of every row the project stores (domain tables and the journal)."""
    texts = []
    for config in apps.get_app_configs():
        if config.label not in ("tenants", "orgsync", "koogallery"):
            continue
        for model in config.get_models():
            texts.extend(repr(row) for row in model.objects.values())
    return "\n".join(texts)


def test_plaintext_secret_is_nowhere_in_the_database_admin_or_logs(
    kg, secret_call, admin_client, caplog
):
    caplog.set_level(logging.DEBUG)
    body = secret_call()
    send(kg, "v2", "applicationSync", body)
    send(kg, "v1", "applicationSync", secret_call(flag=2))
    send(kg, "v2", "applicationSync", body_of(EXAMPLE, clientSecret="bm90IGEgc2VjcmV0"))
    row = application()

    stored = _every_stored_value()
    assert PLAINTEXT not in stored
    assert body["clientSecret"] not in stored  # not even the ciphertext is journalled
    assert InboundCall.objects.count() == 3
    assert PLAINTEXT not in caplog.text
    pages = [
        admin_client.get(url).content.decode()
        for url in (
            f"/admin/tenants/application/{row.pk}/change/",
            "/admin/tenants/application/",
            f"/admin/tenants/tenant/{row.tenant.pk}/change/",
        )
    ]
    for page in pages:
        assert PLAINTEXT not in page
        assert row.client_secret_encrypted not in page  # not even encrypted
        assert "client_secret" not in page
    assert "KSIDJF1234456" in pages[0] and "KSIDJF1234456" in pages[2]


def test_application_admin_lists_every_application_and_filters_by_data(
    kg, secret_call, admin_client
):
    send(kg, "v2", "applicationSync", secret_call())
    send(kg, "v2", "applicationSync", secret_call(testFlag=1, instanceId=""))

    def count(query: str = "") -> int:
        response = admin_client.get(f"/admin/tenants/application/{query}")
        assert response.status_code == 200
        return len(response.context["cl"].result_list)

    assert (
        count(),
        count("?data=production"),
        count("?data=test"),
        count("?data=all"),
        count("?removed=yes"),
    ) == (2, 1, 1, 2, 0)


# --- secrets at rest (koogallery/protocol/secret_store.py) --------------------------------------


def test_secret_box_uses_the_configured_keys(settings):
    first, second = SecretBox.generate_key(), SecretBox.generate_key()
    settings.FIELD_ENCRYPTION_KEYS = [second]
    token = secret_box().encrypt("x")

    settings.FIELD_ENCRYPTION_KEYS = [first, second]  # rotation: the old key still decrypts
    assert secret_box().decrypt(token) == "x"

    settings.FIELD_ENCRYPTION_KEYS = [first]
    with pytest.raises(CryptoError):
        secret_box().decrypt(token)


def test_debug_without_keys_derives_one_from_secret_key(settings):
    settings.FIELD_ENCRYPTION_KEYS = []
    settings.DEBUG = True
    settings.SECRET_KEY = "dev-key-one"
    token = secret_box().encrypt("x")

    assert secret_box().decrypt(token) == "x"
    assert derived_fernet_key("dev-key-one") != derived_fernet_key("dev-key-two")
    assert "dev-key-one" not in derived_fernet_key("dev-key-one")
    settings.SECRET_KEY = "dev-key-two"
    with pytest.raises(CryptoError):
        secret_box().decrypt(token)


def test_no_keys_without_debug_is_refused(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.FIELD_ENCRYPTION_KEYS = []
    settings.DEBUG = False

    with pytest.raises(ImproperlyConfigured):
        secret_box()
