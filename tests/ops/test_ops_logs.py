"""Structured logs: one JSON object per line with the request id and the business keys of each
KooGallery call; secrets never in logs, journal or admin (SECURITY.md)."""

import io
import json
import logging
import re

import pytest
from celery.signals import before_task_publish
from django.contrib.auth import get_user_model
from django.test import Client

from koogallery.inbound.journal import InboundCall
from koogallery.outbound.client import query_order
from koogallery.protocol.redaction import SECRET_KEYS
from ops.context import request_id_var
from ops.logs import (
    SECRET_FIELD_NAMES,
    JsonFormatter,
    PlainFormatter,
    QuietDispatchFilter,
    StripQueryFilter,
    scrub,
)
from tests.support.kgclient import envelope, fixture, fixture_json
from tests.support.tenant_kit import (
    oaep_encrypt,
    rsa_keys,  # noqa: F401 (fixture)
    rsa_settings,  # noqa: F401 (fixture)
)

pytestmark = pytest.mark.django_db

CLIENT_SECRET = "plain-Client-Secret-8d1e5b"


class Captured:
    """The root logger's records, formatted by both production formatters."""

    def __init__(self) -> None:
        self.json_stream, self.plain_stream = io.StringIO(), io.StringIO()
        self.handlers = []
        for stream, formatter in (
            (self.json_stream, JsonFormatter()),
            (self.plain_stream, PlainFormatter()),
        ):
            handler = logging.StreamHandler(stream)
            handler.setFormatter(formatter)
            handler.setLevel(logging.DEBUG)
            self.handlers.append(handler)

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.json_stream.getvalue().splitlines()]

    def text(self) -> str:
        return self.json_stream.getvalue() + self.plain_stream.getvalue()


@pytest.fixture
def captured():
    capture = Captured()
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.DEBUG)
    for handler in capture.handlers:
        root.addHandler(handler)
    scrub.reset()  # secrets are read from the settings of this test
    yield capture
    for handler in capture.handlers:
        root.removeHandler(handler)
    root.setLevel(old_level)
    scrub.reset()


# --- request id --------------------------------------------------------------------------------
def test_the_callers_request_id_is_echoed_and_logged(client, captured):
    response = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.42"})

    assert response["X-Request-ID"] == "lb-7f3a.42"
    access = [line for line in captured.lines() if line["logger"] == "ops.requests"]
    assert access[-1]["request_id"] == "lb-7f3a.42"
    assert access[-1]["path"] == "/healthz"


@pytest.mark.parametrize("given", [None, "", "x" * 129, "evil\nINFO forged line", "a b"])
def test_a_missing_or_unsafe_request_id_is_replaced(client, given):
    headers = {} if given is None else {"X-Request-ID": given}

    response = client.get("/healthz", headers=headers)

    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_each_request_gets_its_own_id(client):
    first = client.get("/healthz")["X-Request-ID"]
    second = client.get("/healthz")["X-Request-ID"]
    assert first != second
    assert request_id_var.get() == ""  # nothing leaks past the request


# --- the KooGallery call line ------------------------------------------------------------------
def test_a_call_logs_one_json_line_with_its_business_keys(kg, captured):
    response = kg.kit("tenantSync", fixture("tenantSync__huawei_example"))

    assert envelope(response)["resultCode"] == "000000"
    calls = [line for line in captured.lines() if line["logger"] == "koogallery.calls"]
    assert len(calls) == 1
    line = calls[0]
    assert list(line)[:5] == ["time", "level", "logger", "message", "request_id"]
    assert line["level"] == "INFO"
    assert line["request_id"] == response["X-Request-ID"]
    assert line["endpoint"] == "tenantSync"
    assert line["family"] == "kit_v2"
    assert line["result_code"] == "000000"
    assert line["tenant_id"] == "68cbc86****************880d92f36422fa0e"
    assert line["instance_id"] == "huaiweitest123456"
    assert line["order_id"] == "CS1906666666ABCDE"
    assert line["duration_ms"] > 0
    assert line["journal_id"] == InboundCall.objects.get().pk
    assert (line["method"], line["path"]) == ("POST", "/koogallery/produceAPI/v2/tenantSync")
    # The call line stands for the request's access line: one line per call.
    request_lines = [
        line for line in captured.lines() if line.get("request_id") == response["X-Request-ID"]
    ]
    assert request_lines == [line]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"])


def test_a_rejected_call_is_a_warning_with_its_code(kg, captured):
    kg.basic(fixture("newInstance__huawei"), signature="0" * 64)

    line = next(line for line in captured.lines() if line["logger"] == "koogallery.calls")
    assert line["level"] == "WARNING"
    assert (line["endpoint"], line["result_code"]) == ("basic", "000001")
    assert line["verification"] == "bad_signature"
    assert line["order_id"] == "CS2211181819B4LVS"


def test_every_line_is_one_json_object(kg, captured):
    kg.kit("tenantSync", fixture("tenantSync__huawei_example"))
    logging.getLogger("anything").warning("multi\nline %s", "message")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("anything").exception("failed")

    raw = captured.json_stream.getvalue().splitlines()
    parsed = [json.loads(line) for line in raw]
    assert len(parsed) == len(raw) >= 3  # the call line, then these two
    assert parsed[-2]["message"] == "multi\nline message"
    assert "ValueError: boom" in parsed[-1]["exception"]


# --- secrets -----------------------------------------------------------------------------------
@pytest.fixture
def secret_calls(kg, rsa_settings, rsa_keys, fake_koogallery, admin_client):  # noqa: F811
    """Calls that carry every kind of secret; returns the secret values to look for."""
    from django.conf import settings

    app_body = fixture_json("applicationSync__huawei_shape_example")
    ciphertext = oaep_encrypt(rsa_keys[1], CLIENT_SECRET, 0)
    app_body["clientSecret"] = ciphertext
    assert envelope(kg.kit("applicationSync", app_body))["resultCode"] == "000000"
    assert envelope(kg.kit_v1("applicationSync", app_body))["resultCode"] == "000000"

    v1_token_params = fixture_json("v1_queryInstance__composed")
    v1 = kg.basic_v1(v1_token_params)
    envelope(v1)
    v1_token = re.search(r"authToken=([^&]+)", v1.request["QUERY_STRING"]).group(1)

    basic = kg.basic(fixture("newInstance__huawei"))
    assert envelope(basic)["resultCode"] == "000000"
    basic_signature = re.search(r"signature=([0-9A-F]+)", basic.request["QUERY_STRING"]).group(1)

    # Outbound: APIG-signed with the SK (spec §3.7).
    query_order(order_id="MOCKPERIODYEARNEW")
    authorization = fake_koogallery.requests[-1].headers["Authorization"]
    apig_signature = authorization.rsplit("Signature=", 1)[1]

    # A careless message that names the key itself.
    logging.getLogger("careless").error("signing with %s", settings.KOOGALLERY_SK)
    logging.getLogger("careless").info("body", extra={"clientSecret": CLIENT_SECRET})

    journal_pages = [
        admin_client.get("/admin/koogallery/inboundcall/").content.decode(),
        *(
            admin_client.get(f"/admin/koogallery/inboundcall/{pk}/change/").content.decode()
            for pk in InboundCall.objects.values_list("pk", flat=True)
        ),
    ]
    return {
        "clientSecret (plaintext)": CLIENT_SECRET,
        "clientSecret (ciphertext)": ciphertext,
        "V1 authToken": v1_token,
        "basic signature": basic_signature,
        "APIG signature": apig_signature,
        "SK": settings.KOOGALLERY_SK,
        "kit key": settings.KOOGALLERY_KIT_KEY[0],
        "basic key": settings.KOOGALLERY_BASIC_KEY[0],
        "SECRET_KEY": settings.SECRET_KEY,
    }, journal_pages


def test_no_secret_reaches_the_logs(captured, secret_calls):
    secrets, _ = secret_calls
    text = captured.text()

    assert "koogallery.calls" in text and "applicationSync" in text  # the calls were logged
    leaked = [name for name, value in secrets.items() if value in text]
    assert leaked == []
    assert '"clientSecret":"***"' in text  # a secret-named field is shown redacted


def test_no_secret_reaches_the_journal_or_its_admin_pages(secret_calls):
    secrets, pages = secret_calls
    rows = " ".join(str(value) for row in InboundCall.objects.values() for value in row.values())

    assert InboundCall.objects.count() >= 4
    assert [name for name, value in secrets.items() if value in rows] == []
    assert [name for name, value in secrets.items() if any(value in page for page in pages)] == []


def test_the_development_server_access_line_loses_its_query():
    record = logging.LogRecord(
        "django.server",
        logging.INFO,
        "",
        0,
        '"%s" %s %s',
        ("GET /koogallery?activity=newInstance&authToken=c2VjcmV0 HTTP/1.1", "200", "45"),
        None,
    )

    StripQueryFilter().filter(record)

    assert record.getMessage() == '"GET /koogallery?… HTTP/1.1" 200 45'


def celery_line(logger: str, message: str, args, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(logger, level, "", 0, message, args, None)


def test_the_every_second_dispatch_stays_out_of_the_log_unless_it_published(settings):
    from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS

    quiet = QuietDispatchFilter()
    task = "koogallery.tasks.dispatch_jobs"
    done = {"id": "1", "name": task, "return_value": "0", "runtime": 0.001}
    assert not quiet.filter(celery_line("celery.beat", "Sending due task %s (%s)", ("t", task)))
    received = {"id": "1", "name": task, "args": "()", "kwargs": "{}", "eta": None}
    assert not quiet.filter(celery_line("celery.worker.strategy", LOG_RECEIVED, received))
    assert not quiet.filter(celery_line("celery.app.trace", LOG_SUCCESS, done))
    # Kept: a dispatch that published, another task's lines, a failure of the dispatch.
    assert quiet.filter(celery_line("celery.app.trace", LOG_SUCCESS, done | {"return_value": "3"}))
    other = done | {"name": "licensing.tasks.deliver_license"}
    assert quiet.filter(celery_line("celery.app.trace", LOG_SUCCESS, other))
    assert quiet.filter(celery_line("celery.app.trace", "failed", done, logging.ERROR))
    # And the production handler has it.
    assert "quiet_dispatch" in settings.LOGGING["handlers"]["console"]["filters"]


def test_django_request_warnings_name_the_path_not_the_query(captured):
    Client().get("/koogallery?nothing=1&authToken=c2VjcmV0LXRva2Vu")  # GET without activity: 405

    warning = next(line for line in captured.lines() if line["logger"] == "django.request")
    assert warning["path"] == "/koogallery"
    assert "c2VjcmV0LXRva2Vu" not in captured.text()


def test_log_redaction_covers_every_journal_secret_name():
    assert {name.lower() for name in SECRET_KEYS} <= SECRET_FIELD_NAMES


# --- request id into Celery tasks -------------------------------------------------------------
def test_a_queued_task_carries_the_request_id():
    headers: dict = {}
    token = request_id_var.set("req-123")
    try:
        before_task_publish.send(sender="licensing.tasks.deliver_license", headers=headers)
    finally:
        request_id_var.reset(token)

    assert headers["request_id"] == "req-123"


def test_a_staff_page_is_logged_without_its_user_secrets(client, captured):
    get_user_model().objects.create_superuser("boss", password="pw-Correct-horse-1")

    client.post("/admin/login/", {"username": "boss", "password": "pw-Correct-horse-1"})

    assert "pw-Correct-horse-1" not in captured.text()


def test_a_key_given_as_pem_text_is_scrubbed_but_a_key_path_is_not(captured, settings, rsa_keys):  # noqa: F811
    settings.KOOGALLERY_RSA_PRIVATE_KEY = rsa_keys[0]
    settings.LICENSE_SIGNING_KEY = "/run/secrets/license-signing.pem"
    scrub.reset()

    logging.getLogger("careless").error("key %s", rsa_keys[0])
    logging.getLogger("careless").error("cannot read %s", settings.LICENSE_SIGNING_KEY)

    text = captured.text()
    assert "PRIVATE KEY" not in text
    assert "cannot read /run/secrets/license-signing.pem" in text
