"""Key and verification tooling: license_keygen, license_pubkey, license_verify, license_sweep."""

import io
import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command

from licensing import tokens
from tests.support import licensing_kit as support
from tests.support.licensing_kit import PRIVATE_PEM, PUBLIC_KEY, PUBLIC_PEM, ROOT

license_settings = support.license_settings

PAYLOAD = {
    "v": 1,
    "lid": "0b7e7d0e-4a0c-4c1e-9d8f-2f5b2b0b1a11",
    "iid": "RA2****4LVS",
    "eid": "8****e5694*****c8",
    "fp": "04:7C:16:5E:E3:5D|001B_444A_488B_5CEC.||BFEBFBFF00090672",
    "nbf": "2023-10-27T10:30:15Z",
    "exp": "2024-10-27T10:30:15Z",
    "iat": "2023-10-27T10:31:00Z",
    "pid": "OFFI846204237451911168",
}
TOKEN = tokens.sign(PAYLOAD, tokens.load_private_key(PRIVATE_PEM))
INSIDE = "2024-01-01T00:00:00Z"


def run(*args, stdin: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        call_command(*args, stdout=out, stderr=err)
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


# --- keygen / pubkey ------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path):
    path = tmp_path / "signing.pem"
    code, out, _ = run("license_keygen", "--out", str(path))
    assert code == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = tokens.load_private_key(str(path))
    assert tokens.public_key_pem(key.public_key()) in out
    assert tokens.key_id(key.public_key()) in out
    assert "PRIVATE KEY" not in out

    with pytest.raises(CommandError, match="exists"):
        call_command("license_keygen", "--out", str(path))
    run("license_keygen", "--out", str(path), "--force")
    assert tokens.load_private_key(str(path)).public_key() != key.public_key()


def test_keygen_to_stdout_keeps_the_public_part_on_stderr():
    code, out, err = run("license_keygen")
    assert code == 0
    key = tokens.load_private_key(out)
    assert tokens.public_key_raw(key.public_key()) in err and "PRIVATE" not in err


def test_pubkey_prints_the_public_key_of_the_signing_key():
    assert run("license_pubkey")[1] == PUBLIC_PEM
    assert run("license_pubkey", "--format", "raw")[1].strip() == tokens.public_key_raw(PUBLIC_KEY)
    assert run("license_pubkey", "--format", "id")[1].strip() == tokens.key_id(PUBLIC_KEY)


def test_pubkey_without_a_signing_key_says_so(settings):
    settings.LICENSE_SIGNING_KEY = ""
    with pytest.raises(CommandError, match="license_keygen"):
        call_command("license_pubkey")


# --- verify ---------------------------------------------------------------------------------------


def test_a_valid_licence_is_reported_with_its_claims():
    code, out, _ = run("license_verify", TOKEN, "--at", INSIDE, "--fingerprint", PAYLOAD["fp"])
    assert code == 0
    assert out.startswith("licence: VALID")
    assert "signature: OK" in out and "(matches)" in out
    assert "expires: 2024-10-27T10:30:15Z (300.4 days left)" in out
    assert "product: OFFI846204237451911168" in out
    assert json.loads(out[out.index("payload:\n") + 9 :]) == PAYLOAD


def test_verify_reads_a_licence_file_and_stdin(tmp_path):
    path = tmp_path / "license-8.lic"
    path.write_text(TOKEN + "\n")
    assert run("license_verify", str(path), "--at", INSIDE)[0] == 0
    assert run("license_verify", "-", "--at", INSIDE, stdin=TOKEN)[0] == 0


def test_an_expired_licence_is_invalid():
    code, out, _ = run("license_verify", TOKEN, "--at", "2025-01-01 00:00:00")
    assert code == 1
    assert "licence: INVALID" in out and "expired at 2024-10-27T10:30:15Z" in out
    assert "(expired)" in out


def test_a_licence_not_yet_valid_is_invalid():
    code, out, _ = run("license_verify", TOKEN, "--at", "2023-10-01T00:00:00Z")
    assert code == 1 and "not valid before" in out


def test_another_device_is_invalid():
    code, out, _ = run("license_verify", TOKEN, "--at", INSIDE, "--fingerprint", "OTHER")
    assert code == 1 and "DOES NOT MATCH" in out


def test_a_tampered_licence_is_invalid():
    second = TOKEN.split(".")[1]
    forged = dict(PAYLOAD, exp="2099-01-01T00:00:00Z")
    tampered = tokens.b64url_encode(tokens.canonical_payload(forged)) + "." + second
    code, out, _ = run("license_verify", tampered, "--at", INSIDE)
    assert code == 1 and "signature does not verify" in out


def test_verify_with_an_explicit_public_key_and_json(tmp_path):
    other = tokens.generate_private_key()
    token = tokens.sign(PAYLOAD, other)
    assert run("license_verify", token, "--at", INSIDE)[0] == 1  # not our key
    raw = tokens.public_key_raw(other.public_key())
    # "=": a random key's base64url may start with "-", which argparse would take for an option.
    code, out, _ = run("license_verify", token, f"--public-key={raw}", "--at", INSIDE, "--json")
    report = json.loads(out)
    assert code == 0 and report["valid"] is True and report["payload"] == PAYLOAD
    assert report["key_id"] == tokens.key_id(other.public_key())


def test_verify_usage_errors_exit_2(settings):
    with pytest.raises(CommandError) as info:
        call_command("license_verify", TOKEN, "--at", "soon")
    assert info.value.returncode == 2
    settings.LICENSE_SIGNING_KEY = ""
    with pytest.raises(CommandError) as info:
        call_command("license_verify", TOKEN)
    assert info.value.returncode == 2


def test_verify_exit_codes_from_the_command_line():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env["LICENSE_SIGNING_KEY"] = PRIVATE_PEM
    env.pop("DATABASE_URL", None)  # the command needs no database
    base = [sys.executable, "manage.py", "license_verify", TOKEN]
    valid = subprocess.run([*base, "--at", INSIDE], cwd=ROOT, env=env, capture_output=True)
    assert valid.returncode == 0, valid.stderr
    expired = subprocess.run(base, cwd=ROOT, env=env, capture_output=True)
    assert expired.returncode == 1 and b"expired at" in expired.stdout


# --- sweep ----------------------------------------------------------------------------------------


def test_sweep_command_delivers_stuck_requests(kg, transactional_db, fake_koogallery):
    if support.uses_worker():
        pytest.skip("delivers in-process only on the embedded default")
    body = support.license_body(support.make_instance())
    with support.celery_broker(support.DEAD_BROKER):
        kg.basic(body)
    code, out, _ = run("license_sweep")
    assert code == 0
    assert "1 licence request(s) re-enqueued" in out
    assert support.request_for(body).state == "delivered"
    assert tokens.verify(fake_koogallery.uploads[body["eventId"]].token, PUBLIC_KEY)


def test_days_left_is_relative_to_the_check_time():
    moment = datetime(2024, 10, 26, 10, 30, 15, tzinfo=UTC)
    assert tokens.check_claims(PAYLOAD, at=moment).ok
    code, out, _ = run("license_verify", TOKEN, "--at", moment.isoformat())
    assert code == 0
    assert "(1.0 days left)" in out
