"""The KooGallery simulator (`manage.py koogallery_call`) against a live server on loopback."""

import base64
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from instances.models import Instance, InstanceState
from koogallery.inbound.journal import InboundCall
from koogallery.protocol import signing
from koogallery.simulator import player as simulator
from koogallery.simulator.player import Journey, Keys, SimulatorError, Target
from licensing import tokens
from licensing.models import LicenseRequest
from orgsync.models import Department
from tenants.models import Application, Tenant, TenantUser
from tests.support.kgclient import FIXTURES
from tests.support.tenant_kit import rsa_keys  # noqa: F401 (fixture)


@pytest.fixture
def service(live_server, settings, rsa_keys, fake_koogallery):  # noqa: F811
    """A running service with the keys a merchant configures (README: the .env), KooGallery's
    open API played by the fake host so nothing leaves the machine."""
    settings.KOOGALLERY_RSA_PRIVATE_KEY = rsa_keys[0]
    settings.LICENSE_SIGNING_KEY = tokens.private_key_pem(tokens.generate_private_key())
    return f"{live_server.url}/koogallery"


def run(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("koogallery_call", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc)
    return 0, out.getvalue()


# --- the buyer journey -------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_buyer_journey_passes_every_step(service):
    code, output = run("--scenario", "buyer-journey", "--url", service)

    lines = [line for line in output.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert code == 0, output
    assert [line.split()[2] for line in lines] == [
        "newInstance", "tenantSync", "applicationSync", "allOrgSync", "authSync",
        "singleOrgSync", "getLicenseAsync", "refresh", "freeze", "unfreeze", "release",
    ]  # fmt: skip
    assert all(line.startswith("PASS") for line in lines)
    assert "buyer journey: 11/11 steps passed" in output
    # What the service now holds, all as debug data chained on one instance.
    instance = Instance.objects.get()
    assert instance.is_test
    assert instance.state == InstanceState.RELEASED
    assert instance.order_id == "MOCKPERIODYEARNEW"
    tenant = Tenant.objects.get()
    assert tenant.is_test
    assert Application.objects.filter(tenant=tenant).count() == 1
    assert Department.objects.filter(tenant=tenant).count() == 3
    assert TenantUser.objects.filter(tenant=tenant).count() == 1
    assert LicenseRequest.objects.get().instance == instance
    assert set(InboundCall.objects.values_list("result_code", flat=True)) <= {"000000", "000004"}
    assert InboundCall.objects.count() == 11


@pytest.mark.django_db(transaction=True)
def test_buyer_journey_can_run_twice_against_the_same_service(service):
    assert run("--scenario", "buyer-journey", "--url", service)[0] == 0
    assert run("--scenario", "buyer-journey", "--url", service)[0] == 0
    assert Instance.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_buyer_journey_v1(service):
    code, output = run("--scenario", "buyer-journey", "--v1", "--url", service)

    assert code == 0, output
    assert "buyer journey: 9/9 steps passed" in output
    assert InboundCall.objects.filter(family__in=["kit_v1", "basic_v1"]).count() == 9


@pytest.mark.django_db(transaction=True)
def test_a_journey_with_the_wrong_keys_stops_at_the_first_step(service, settings):
    settings.KOOGALLERY_BASIC_KEY = ["not-the-service-key"]  # the service keeps its own...
    keys = Keys(kit=["wrong-kit-key-000"], basic=["wrong-basic-key-000"])

    results = simulator.buyer_journey(base_url=service, keys=keys)

    assert len(results) == 1
    assert not results[0].ok
    # The service signs its answer with its first key, which the simulator does not hold.
    assert results[0].exchange.verdict.result_code == "000001"
    assert any("Body-Sign MISMATCH" in p for p in results[0].exchange.verdict.problems)
    assert Instance.objects.count() == 0


# --- single calls ------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_single_call_prints_request_response_and_verdict_with_secrets_masked(service):
    code, output = run("applicationSync", "clientSecret=s3cret-Plain-77", "--url", service)

    assert code == 0, output
    assert "--> POST " + service + "/produceAPI/v2/applicationSync" in output
    assert "x-sign: ***" in output
    assert '"clientSecret": "***"' in output
    assert "s3cret-Plain-77" not in output
    assert "<-- HTTP 200" in output
    assert 'Body-Sign: sign_type="HMAC-SHA256", signature= "' in output
    assert "PASS applicationSync (kit V2): 000000 success; Body-Sign verified with kit key #1" in (
        output
    )
    # The service decrypted what the simulator encrypted with the public half of its key.
    from koogallery.protocol.secret_store import decrypt_client_secret

    assert decrypt_client_secret(Application.objects.get()) == "s3cret-Plain-77"


@pytest.mark.django_db(transaction=True)
def test_basic_signature_is_masked_in_the_printed_url(service):
    code, output = run("newInstance", "--url", service)

    assert code == 0, output
    assert "?signature=%2A%2A%2A&timestamp=" in output
    assert "instanceId" in output


@pytest.mark.django_db(transaction=True)
def test_a_fixture_is_sent_and_fields_override_it(service):
    fixture = FIXTURES / "tenantSync__huawei_example.json"

    code, output = run(
        "tenantSync", "--fixture", str(fixture), "flag:=2", "name=Renamed", "--url", service
    )

    assert code == 0, output
    tenant = Tenant.objects.get()
    assert tenant.name == "Renamed"
    assert tenant.tenant_id == "68cbc86****************880d92f36422fa0e"


@pytest.mark.django_db(transaction=True)
def test_an_unexpected_code_fails_unless_expected(service):
    missing = ("queryInstance", "instanceId=unknown-instance", "--url", service)

    failed = run(*missing)
    expected = run(*missing, "--expect", "000003")

    assert failed[0] == 1
    assert (
        "REFUSED queryInstance (basic V2): 000003 instance ID does not exist: none of the "
        "instanceIds is known — what KooGallery would expect when the deployment's data says "
        "so (instance ID does not exist)" in failed[1]
    )
    assert "did not answer as KooGallery expects" not in failed[1]
    assert expected[0] == 0, expected[1]


@pytest.mark.django_db(transaction=True)
def test_a_correct_refusal_of_an_invalid_call_is_reported_as_what_koogallery_expects(service):
    """A deliberately bad call: the deployment is right to refuse it, and the command says so
    instead of blaming the deployment."""
    code, output = run("newInstance", "orderId=", "--url", service)

    assert code == 1
    verdict = (
        "000002 invalid request parameter: orderId: This field may not be blank. — what "
        "KooGallery would expect: a correct refusal, the call itself is invalid (orderId: This "
        "field may not be blank.)"
    )
    assert f"REFUSED newInstance (basic V2): {verdict}; Body-Sign " in output
    assert output.endswith(
        "the deployment answered 000002 'invalid request parameter: orderId: This field may not "
        "be blank.': what KooGallery would expect: a correct refusal, the call itself is invalid "
        "(orderId: This field may not be blank.)"
    )
    assert "did not answer as KooGallery expects" not in output
    assert Instance.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_refusal_of_a_valid_call_is_not_what_koogallery_expects(service):
    # Taken by another order: the call's fields are valid, the deployment's data refuses it.
    first = run("newInstance", "businessId=taken-id", "--url", service)
    again = ("newInstance", "businessId=taken-id", "orderId=OTHER-ORDER", "--url", service)
    code, output = run(*again)

    assert first[0] == 0, first[1]
    assert code == 1
    assert "REFUSED newInstance (basic V2): 000002 invalid request parameter: businessId:" in output
    assert "not what KooGallery would expect from these rules: the call's fields are valid" in (
        output
    )


@pytest.mark.django_db(transaction=True)
def test_an_answer_that_breaks_the_protocol_is_blamed_on_the_deployment(service):
    # An address that is not the production interface: an HTML 404 page.
    code, output = run("queryInstance", "instanceId=any", "--url", service + "/nowhere")

    assert code == 1
    assert "FAIL queryInstance (basic V2): HTTP 404, expected 200 (§2.4)" in output
    assert output.endswith(
        "the deployment did not answer as KooGallery expects: HTTP 404, expected 200 (§2.4); "
        "Content-Type text/html; charset=utf-8, expected application/json; the answer is not JSON"
    )


def test_kit_and_basic_calls_are_checked_against_the_services_own_rules():
    journey = Journey()
    assert simulator.call_refusal(Target("newInstance"), simulator.default_body(
        Target("newInstance"), journey)) is None
    assert simulator.call_refusal(Target("tenantSync"), simulator.default_body(
        Target("tenantSync"), journey)) is None
    assert simulator.call_refusal(Target("tenantSync"), {"flag": 1}).startswith("instanceId")
    assert simulator.call_refusal(Target("nope"), {"activity": "nope"}) == (
        "activity: unknown activity 'nope'"
    )
    v1 = Target("refreshInstance", v1=True)
    assert simulator.call_refusal(v1, {"activity": "refreshInstance"}) is not None


@pytest.mark.django_db(transaction=True)
def test_v1_basic_uses_get_with_a_masked_auth_token(service):
    code, output = run(
        "queryInstance", "--v1", "instanceId=nope", "--expect", "000003", "--url", service
    )

    assert code == 0, output
    assert "--> GET " in output
    assert "authToken=%2A%2A%2A" in output
    assert InboundCall.objects.get().family == "basic_v1"


@pytest.mark.django_db(transaction=True)
def test_raw_signing_is_accepted_too(service):
    fixture = FIXTURES / "singleOrgSync__huawei.json"
    code, output = run(
        "singleOrgSync", "--fixture", str(fixture), "--sign", "raw", "--url", service
    )
    assert code == 0, output


def test_an_unreachable_service_is_reported():
    with pytest.raises(CommandError) as failure:
        call_command(
            "koogallery_call",
            "tenantSync",
            "--url",
            "http://127.0.0.1:9/koogallery",
            "--timeout",
            "2",
            stdout=StringIO(),
        )
    assert failure.value.returncode == 2
    assert "127.0.0.1:9" in str(failure.value)


def test_application_sync_without_any_rsa_key_is_refused_before_sending(settings):
    settings.KOOGALLERY_RSA_PRIVATE_KEY = ""
    with pytest.raises(CommandError, match="KOOGALLERY_RSA_PRIVATE_KEY"):
        call_command(
            "koogallery_call", "applicationSync", "--url", "http://127.0.0.1:9/x", stdout=StringIO()
        )


# --- building blocks ---------------------------------------------------------------------------
def test_field_assignments():
    assert simulator.parse_assignments(
        ["name=a=b", "flag:=0", 'userList:=[{"userName":"u"}]', "testFlag=1"]
    ) == {"name": "a=b", "flag": 0, "userList": [{"userName": "u"}], "testFlag": "1"}
    for bad in (["novalue"], ["=x"], ["flag:=nope"]):
        with pytest.raises(SimulatorError):
            simulator.parse_assignments(bad)


def test_signatures_match_the_spec_vectors():
    # §3.1 vector B and §3.2's vector, built the way `prepare` signs (canonical JSON).
    keys = Keys(kit=["TEST_KIT_ACCESS_KEY_0123456789"], basic=["testAccessKey123"])
    body = json.loads(
        '{"instanceId":"i1","tenantId":"t1","orgCode":"10000","orgName":"开发部",'
        '"parentCode":"","flag":1,"testFlag":0,"timeStamp":"20220413093539534"}'
    )
    prepared = simulator.prepare(Target("singleOrgSync"), body, base_url="http://x/kg", keys=keys)
    nonce, stamp = prepared.headers["x-nonce"], prepared.headers["x-timestamp"]
    assert (
        prepared.headers["x-sign"]
        == signing.kit_sign(
            "TEST_KIT_ACCESS_KEY_0123456789", nonce, stamp, signing.canonical_json(body)
        ).upper()
    )
    assert (
        signing.kit_sign(
            "TEST_KIT_ACCESS_KEY_0123456789",
            "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA",
            "1680508066618",
            signing.canonical_json(body),
        )
        == "39fe8440d3d343dd69c0c14d535b9088a8bb6f69707652ede6ca57877179e7f0"
    )


def test_body_sign_verdicts():
    keys = Keys(kit=["k1"], basic=["TEST_V1_KEY"])
    body = b'{"resultCode":"000000","resultMsg":"Success"}'
    good = 'sign_type="HMAC-SHA256", signature= "D5YSdWrnLeNEk6KjSIaOuMsqh4Fl0/y5/PA2VfFMkKc="'
    v1, v2 = Target("queryInstance", v1=True), Target("queryInstance")
    ct = "application/json;charset=UTF-8"

    assert simulator.judge(v1, 200, ct, good, body, keys).ok  # §3.4 vector
    assert not simulator.judge(v1, 200, ct, None, body, keys).ok  # mandatory for V1
    assert simulator.judge(v2, 200, ct, None, body, keys).ok  # not required for V2
    tampered = body.replace(b"Success", b"success")
    assert "MISMATCH" in " ".join(simulator.judge(v2, 200, ct, good, tampered, keys).problems)
    assert not simulator.judge(v2, 301, "text/html", None, b"", keys).ok


def test_client_secret_is_encrypted_for_the_given_public_key(rsa_keys):  # noqa: F811
    from koogallery.protocol.crypto import load_rsa_private_key, rsa_oaep_decrypt

    public = simulator.load_public_key(rsa_keys[1])  # the one-line console form
    body = simulator.prepare_body(
        Target("applicationSync"), {"clientSecret": "test"}, public_key=public
    )

    assert base64.b64decode(body["clientSecret"])
    plain, variant = rsa_oaep_decrypt(body["clientSecret"], load_rsa_private_key(rsa_keys[0]))
    assert (plain, variant) == ("test", "OAEP-SHA256-MGF1-SHA256")


def test_journey_ids_are_fresh_per_journey():
    first, second = Journey(), Journey()
    assert first.order_id == second.order_id == "MOCKPERIODYEARNEW"
    assert first.order_line_id != second.order_line_id
    assert first.tenant_id != second.tenant_id
    assert simulator.kit_time_stamp()[:2] == "20" and len(simulator.kit_time_stamp()) == 17


# --- replaying a journaled call ----------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("first", "family"),
    [
        (("tenantSync", "--fixture", str(FIXTURES / "tenantSync__huawei_example.json")), "kit_v2"),
        (("allOrgSync", "--v1"), "kit_v1"),
        (("newInstance",), "basic_v2"),
        (("newInstance", "--v1"), "basic_v1"),
    ],
)
def test_a_journaled_call_is_sent_again(service, first, family):
    assert run(*first, "--url", service)[0] == 0
    original = InboundCall.objects.get()

    code, output = run("--journal", str(original.pk), "--url", service)

    assert code == 0, output
    replay = InboundCall.objects.exclude(pk=original.pk).get()
    assert (replay.family, replay.endpoint, replay.result_code) == (
        family,
        original.endpoint,
        "000000",
    )
    if family != "basic_v1":  # a V1 GET gets a fresh timeStamp
        assert json.loads(replay.request_body) == json.loads(original.request_body)
    # Idempotent on natural keys: the replay changed nothing (one instance, one tenant).
    assert Instance.objects.count() <= 1
    assert Tenant.objects.count() <= 1


@pytest.mark.django_db(transaction=True)
def test_a_journaled_call_with_a_masked_secret_is_not_replayed(service):
    assert run("applicationSync", "--url", service)[0] == 0
    original = InboundCall.objects.get()

    code, output = run("--journal", str(original.pk), "--url", service)

    assert code == 2
    assert "masked clientSecret" in output
    assert InboundCall.objects.count() == 1


@pytest.mark.django_db
def test_an_unknown_journal_id_is_reported():
    code, output = run("--journal", "999999", "--url", "http://127.0.0.1:9/koogallery")
    assert code == 2
    assert "no journaled call #999999" in output
