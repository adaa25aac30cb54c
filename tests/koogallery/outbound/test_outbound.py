"""koogallery.outbound.client against the fake KooGallery host on loopback (§2.9, §3.7, §5.1, §5.2,
§5.4).

Nothing is patched: every call goes through `requests` to a real server in this process, which
verifies the APIG signature independently (tests/support/fakes/koogallery_server.py).
"""

import datetime as dt
import hashlib
import ipaddress
import json
import logging
import socket

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.db import transaction

from koogallery.outbound.attempts import AttemptOutcome, OutboundAttempt, OutboundPurpose
from koogallery.outbound.client import (
    BusinessOutboundError,
    TransientOutboundError,
    call_api,
    license_code_call,
    parse_order,
    query_order,
    upload_license,
)
from tests.support.fakes import CLOSE, TIMEOUT, FakeKooGallery, Reply
from tests.support.fakes.koogallery_server import usage_signature

pytestmark = pytest.mark.django_db


def closed_port_url() -> str:
    """A loopback URL nobody listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def attempts() -> list[OutboundAttempt]:
    return list(OutboundAttempt.objects.order_by("started_at", "id"))


# --- Query Order (§5.1) ---------------------------------------------------------------------------


def test_query_order_success_is_parsed_and_recorded(fake_koogallery):
    result = query_order(order_id="MOCKPERIODYEARNEW", order_line_id="MOCKPERIODYEARNEW-000001")

    assert result.ok and not result.retryable
    assert (result.status_code, result.result_code) == (200, "MKT.0000")
    assert result.data["orderInfo"]["orderId"] == "MOCKPERIODYEARNEW"

    order = parse_order(result.data, "MOCKPERIODYEARNEW-000001")
    assert order.order_type == "NEW"
    assert order.created_at == dt.datetime(2024, 11, 21, 9, 8, 46, tzinfo=dt.UTC)
    assert (order.charging_mode, order.period_type, order.period_number) == ("PERIOD", "year", 1)
    assert order.expire_at == dt.datetime(2025, 11, 21, 23, 59, 59, tzinfo=dt.UTC)
    assert order.product_id == "OFFI846204237451911168"
    assert order.sku_code == "0a4d1578-5295-46a7-92d4-7c803dccc51d"
    assert order.product_name == "MOCK测试商品,测试规格,基础版,包周期"
    assert order.linear_value == 50
    assert order.customer_id == "459bbbec25d24749b2eb83be37b602a8"
    assert order.customer_name == "mock_user_01"
    assert order.line["currency"] == "100"

    (request,) = fake_koogallery.requests
    assert request.verified
    assert request.method == "GET"
    assert request.query == {
        "orderId": "MOCKPERIODYEARNEW",
        "orderLineId": "MOCKPERIODYEARNEW-000001",
    }
    assert "SignedHeaders=content-type;host;x-sdk-date," in request.header("Authorization")

    (attempt,) = attempts()
    assert attempt.purpose == OutboundPurpose.QUERY_ORDER
    assert attempt.subject == "MOCKPERIODYEARNEW"
    assert attempt.method == "GET"
    assert attempt.url.startswith(fake_koogallery.url + "/api/mkp-openapi-public/global/v1/order")
    assert (attempt.status_code, attempt.result_code, attempt.result_msg) == (
        200,
        "MKT.0000",
        "Success",
    )
    assert attempt.outcome == AttemptOutcome.SUCCESS
    assert json.loads(attempt.response_body)["orderInfo"]["orderId"] == "MOCKPERIODYEARNEW"
    assert attempt.duration_ms > 0 and attempt.error == ""


@pytest.mark.parametrize(
    ("order_id", "order_type", "mode", "expires"),
    [
        ("MOCKONETIMENEW", "NEW", "ONE_TIME", False),
        ("MOCKONDEMAND", "NEW", "ON_DEMAND", False),
        ("MOCKONDEMANDPKG", "NEW", "ON_DEMAND_PKG", True),
        ("MOCKPERIODDAYTRIAL", "TRIAL", "PERIOD", True),
        ("MOCKMONTYTRIALTOFORMAL", "TRIAL_TO_FORMAL", "PERIOD", True),
        ("MOCKMONTYUNSUBSCRIBE", "UNSUBSCRIBE", "PERIOD", True),
        ("MOCKMONTYRENEW", "RENEW", "PERIOD", True),
        ("MOCKMONTYCHANGE", "CHANGE", "PERIOD", True),
    ],
)
def test_every_mock_order_parses(fake_koogallery, order_id, order_type, mode, expires):
    result = query_order(order_id=order_id)

    order = parse_order(result.data, None)
    assert result.ok
    assert (order.order_id, order.order_line_id) == (order_id, f"{order_id}-000001")
    assert (order.order_type, order.charging_mode) == (order_type, mode)
    assert (order.expire_at is not None) == expires


def test_registered_order_and_unknown_order(fake_koogallery):
    fake_koogallery.register_order("CS2411210001", chargingMode="ONE_TIME", periodType=None)

    known = query_order(order_id="CS2411210001")
    unknown = query_order(order_id="CS0000000000")

    assert parse_order(known.data, "CS2411210001-000001").charging_mode == "ONE_TIME"
    assert parse_order(known.data, "CS2411210001-000001").period_type == ""
    assert not unknown.ok and not unknown.retryable
    assert (unknown.status_code, unknown.result_code) == (400, "MKT.0101")


def test_parse_order_tolerates_missing_and_odd_fields():
    data = {
        "resultCode": "MKT.0000",
        "orderInfo": {
            "orderId": "X1",
            "createTime": "not-a-time",
            "orderLine": [
                {"orderLineId": "X1-1", "periodNumber": "3", "productInfo": None},
                {"orderLineId": "X1-2", "expireTime": "20250101000000123", "buyerInfo": 7},
            ],
            "buyerInfo": None,
        },
    }

    first = parse_order(data, None)
    second = parse_order(data, "X1-2")
    missing = parse_order(data, "X1-9")
    empty = parse_order({}, None)

    assert (first.order_line_id, first.period_number, first.created_at) == ("X1-1", 3, None)
    assert (first.product_id, first.linear_value, first.customer_id) == ("", None, "")
    assert second.expire_at == dt.datetime(2025, 1, 1, 0, 0, 0, 123000, tzinfo=dt.UTC)
    assert (missing.order_id, missing.order_line_id, missing.line) == ("X1", "", {})
    assert (empty.order_id, empty.charging_mode, empty.expire_at) == ("", "", None)


# --- fallback and transient failures (§2.9) -------------------------------------------------------


def test_5xx_then_success_on_the_fallback_host(fake_koogallery):
    fake_koogallery.script("query_order", (503, {"resultCode": "MKT.0999", "resultMsg": "busy"}))

    result = query_order(order_id="MOCKONDEMAND")

    assert result.ok and result.result_code == "MKT.0000"
    first, second = attempts()
    assert (first.outcome, first.status_code, first.result_code) == (
        AttemptOutcome.RETRY,
        503,
        "MKT.0999",
    )
    assert first.url.startswith(fake_koogallery.url)
    assert (second.outcome, second.status_code) == (AttemptOutcome.SUCCESS, 200)
    assert second.url.startswith(fake_koogallery.fallback.url)
    assert [a.pk for a in result.attempts] == [first.pk, second.pk]
    # The fallback request was re-signed for its own host: the fake gateway accepted it.
    (on_fallback,) = fake_koogallery.fallback.requests
    assert on_fallback.verified
    assert on_fallback.header("Host") == fake_koogallery.fallback.host


def test_5xx_without_a_code_on_both_hosts_is_retryable(fake_koogallery):
    fake_koogallery.script("query_order", Reply(502, body=b"<html>Bad Gateway</html>"))
    fake_koogallery.fallback.script("query_order", 500)

    result = query_order(order_id="MOCKONDEMAND")

    assert not result.ok and result.retryable
    assert [a.outcome for a in attempts()] == [AttemptOutcome.RETRY, AttemptOutcome.RETRY]
    # Not JSON: no key names its words, so none is kept (spec §2.4's allow-list); the status is.
    assert attempts()[0].response_body == '"***" "***"'
    assert "HTTP 502" in attempts()[0].error
    with pytest.raises(TransientOutboundError) as raised:
        result.raise_for_error()
    assert raised.value.result is result


def test_timeout_is_retried_on_the_fallback_then_reported_retryable(fake_koogallery, settings):
    settings.KOOGALLERY_API_TIMEOUT_S = 0.3
    fake_koogallery.script("query_order", TIMEOUT)
    fake_koogallery.fallback.script("query_order", TIMEOUT)

    result = query_order(order_id="MOCKONDEMAND")

    assert not result.ok and result.retryable and result.status_code is None
    recorded = attempts()
    assert [a.outcome for a in recorded] == [AttemptOutcome.RETRY, AttemptOutcome.RETRY]
    assert all(a.status_code is None and "timeout" in a.error for a in recorded)
    assert all(a.duration_ms >= 300 for a in recorded)
    assert recorded[1].url.startswith(fake_koogallery.fallback.url)


def test_dropped_connection_is_transient(fake_koogallery):
    fake_koogallery.script("market_event", CLOSE)

    result = upload_license(event_id="evt-close", token="tok")

    assert result.ok  # the fallback host took it
    assert [a.outcome for a in attempts()] == [AttemptOutcome.RETRY, AttemptOutcome.SUCCESS]
    assert "ConnectionError" in attempts()[0].error
    assert fake_koogallery.uploads["evt-close"].characters == "tok"


def test_connection_refused_on_both_hosts(settings):
    settings.KOOGALLERY_API_BASE = closed_port_url()
    settings.KOOGALLERY_API_FALLBACK = closed_port_url()

    result = query_order(order_id="MOCKONDEMAND")

    assert not result.ok and result.retryable and result.status_code is None
    recorded = attempts()
    assert [a.outcome for a in recorded] == [AttemptOutcome.RETRY, AttemptOutcome.RETRY]
    assert all("ConnectionError" in a.error for a in recorded)
    assert recorded[0].url.startswith(settings.KOOGALLERY_API_BASE)
    assert recorded[1].url.startswith(settings.KOOGALLERY_API_FALLBACK)


def test_a_malformed_base_url_is_fatal(settings):
    settings.KOOGALLERY_API_BASE = "mkt.myhuaweicloud.com"  # no scheme
    settings.KOOGALLERY_API_FALLBACK = ""

    result = query_order(order_id="MOCKONDEMAND")

    assert not result.ok and not result.retryable
    (attempt,) = attempts()
    assert attempt.outcome == AttemptOutcome.FATAL and "MissingSchema" in attempt.error


# --- business errors (§2.9, §6.2) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "answer", "retryable", "tries"),
    [
        # business: never retried, not even on the fallback host when they come with a 5xx
        (500, {"error_code": "CBC.0100", "error_msg": "Failure of input parameter"}, False, 1),
        (400, {"error_code": "CBC.0101", "error_msg": "Invalid parameter"}, False, 1),
        (401, {"error_code": "CBC.0154", "error_msg": "Illegal token"}, False, 1),
        (500, {"resultCode": "MKT.0100", "resultMsg": "Failure of input parameter"}, False, 1),
        (500, {"error_code": "CBC.9001", "error_msg": "Instance ID not found."}, False, 1),
        (200, {"error_code": "91381035", "error_msg": "no remain amount"}, False, 1),
        (200, {"error_code": "91380150", "error_msg": "Role permission denied"}, False, 1),
        (200, {"resultCode": "MKT.0000", "resultMsg": "ok"}, False, 1),  # wrong API's success
        # transient, but a 2xx/4xx does not move to the fallback host
        (406, {"error_code": "CBC.0250", "error_msg": "Access frequency overlimit"}, True, 1),
        (401, {"error_code": "APIG.0303", "error_msg": "signature expired"}, True, 1),
        (429, {"error_code": "APIG.0308", "error_msg": "The request is throttled"}, True, 1),
        # transient 5xx: one more try on the fallback host (which has nothing scripted)
        (500, {"error_code": "CBC.0999", "error_msg": "internal error"}, None, 2),
    ],
)
def test_answer_classification(fake_koogallery, status, answer, retryable, tries):
    fake_koogallery.script("market_event", (status, answer))

    result = call_api(
        purpose=OutboundPurpose.LICENSE_UPLOAD,
        subject="evt-1",
        method="POST",
        path="/api/mkp-openapi-public/global/v1/market-event/evt-1/file",
        multipart=[
            (
                "isvUpdateFileReq",
                (None, b'{"type":"CHARACTERS","characters":"t"}', "application/json"),
            )
        ],
        success_codes=("CBC.0000",),
    )

    recorded = attempts()
    assert len(recorded) == tries
    if retryable is None:  # recovered on the fallback host
        assert result.ok
        return
    assert not result.ok and result.retryable is retryable
    assert result.status_code == status
    assert result.result_code == answer.get("error_code", answer.get("resultCode"))
    assert recorded[0].outcome == (AttemptOutcome.RETRY if retryable else AttemptOutcome.FATAL)
    expected = TransientOutboundError if retryable else BusinessOutboundError
    with pytest.raises(expected):
        result.raise_for_error()


def test_business_error_cbc_0100_is_fatal(fake_koogallery):
    fake_koogallery.script(
        "market_event", (500, {"error_code": "CBC.0100", "error_msg": "Failure of input parameter"})
    )

    result = upload_license(event_id="evt-bad", token="tok")

    assert not result.ok and not result.retryable
    assert (result.result_code, result.result_msg) == ("CBC.0100", "Failure of input parameter")
    (attempt,) = attempts()
    assert attempt.outcome == AttemptOutcome.FATAL
    assert fake_koogallery.fallback.requests == []
    assert "evt-bad" not in fake_koogallery.uploads


def test_9138_with_http_200_is_fatal(fake_koogallery):
    fake_koogallery.script(
        "market_event", (200, {"error_code": "91381036", "error_msg": "Invalid license format."})
    )

    result = upload_license(event_id="evt-9138", token="tok")

    assert (result.ok, result.retryable, result.status_code) == (False, False, 200)
    assert attempts()[0].outcome == AttemptOutcome.FATAL
    with pytest.raises(BusinessOutboundError, match="91381036"):
        result.raise_for_error()


def test_redirect_is_not_followed(fake_koogallery):
    fake_koogallery.script("query_order", Reply(302, headers={"Location": "http://example.com/"}))

    result = query_order(order_id="MOCKONDEMAND")

    assert not result.ok and not result.retryable and result.status_code == 302
    assert len(fake_koogallery.all_requests) == 1


# --- credentials (§2.9) ---------------------------------------------------------------------------


def test_rejected_aksk_is_fatal_and_alerts(fake_koogallery, settings, caplog):
    settings.KOOGALLERY_SK = "WRONG-SECRET-KEY-0000000000000000000000"

    with caplog.at_level(logging.INFO, logger="koogallery.outbound"):
        result = query_order(order_id="MOCKONDEMAND")

    assert not result.ok and not result.retryable
    assert (result.status_code, result.result_code) == (401, "APIG.0301")
    (attempt,) = attempts()
    assert attempt.outcome == AttemptOutcome.FATAL
    assert fake_koogallery.requests[0].verified is False
    assert fake_koogallery.fallback.requests == []
    alerts = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(alerts) == 1 and "AK/SK rejected" in alerts[0].getMessage()


def test_missing_aksk_records_a_fatal_attempt_without_network(fake_koogallery, settings, caplog):
    settings.KOOGALLERY_AK = ""

    with caplog.at_level(logging.ERROR, logger="koogallery.outbound"):
        result = upload_license(event_id="evt-nokey", token="tok")

    assert not result.ok and not result.retryable and result.status_code is None
    (attempt,) = attempts()
    assert attempt.outcome == AttemptOutcome.FATAL
    assert attempt.error == "KOOGALLERY_AK/SK not configured"
    assert attempt.subject == "evt-nokey"
    assert fake_koogallery.all_requests == []
    assert "KOOGALLERY_AK/SK not configured" in caplog.text


# --- signatures verified by the fake gateway (§3.7) -----------------------------------------------


def test_get_with_query_needing_encoding_is_signed_correctly(fake_koogallery):
    order_id = "ORDER A/B+C~é"
    fake_koogallery.register_order(order_id)

    result = query_order(order_id=order_id, order_line_id=f"{order_id}-000001")

    (request,) = fake_koogallery.requests
    assert request.verified, request.verify_error
    assert "orderId=ORDER%20A%2FB%2BC~%C3%A9" in request.raw_query
    assert request.query["orderLineId"] == "ORDER A/B+C~é-000001"
    assert result.ok
    assert parse_order(result.data, f"{order_id}-000001").order_id == order_id


def test_characters_upload_multipart_is_signed_and_shaped_as_specified(fake_koogallery):
    token = "eyJ2IjoxfQ." + "a" * 1013  # exactly 1024 characters: still CHARACTERS

    result = upload_license(event_id="evt/42", token=token)

    assert result.ok and result.result_code == "CBC.0000"
    (request,) = fake_koogallery.requests
    assert request.verified, request.verify_error
    assert request.path == "/api/mkp-openapi-public/global/v1/market-event/evt%2F42/file"
    assert request.header("Content-Type").startswith("multipart/form-data; boundary=")
    (part,) = request.parts
    assert (part.name, part.filename, part.content_type) == (
        "isvUpdateFileReq",
        None,
        "application/json",
    )
    assert (
        part.data
        == json.dumps({"type": "CHARACTERS", "characters": token}, separators=(",", ":")).encode()
    )
    assert fake_koogallery.uploads["evt/42"].token == token


def test_long_token_goes_as_file_with_sha256(fake_koogallery):
    token = "eyJ2IjoxfQ." + "b" * 1014  # 1025 characters
    digest = hashlib.sha256(token.encode()).hexdigest()

    result = upload_license(event_id="evt-file", token=token)

    assert result.ok
    (request,) = fake_koogallery.requests
    assert request.verified, request.verify_error
    file_part, meta_part = request.parts
    assert (file_part.name, file_part.filename) == ("file", "license-evt-file.lic")
    assert file_part.data == token.encode()
    assert meta_part.name == "isvUpdateFileReq" and meta_part.content_type == "application/json"
    assert meta_part.json() == {
        "type": "FILE",
        "file_name": "license-evt-file.lic",
        "sha256": digest,
    }
    assert list(meta_part.json()) == ["type", "file_name", "sha256"]
    upload = fake_koogallery.uploads["evt-file"]
    assert (upload.type, upload.sha256, upload.token) == ("FILE", digest, token)


def test_fake_gateway_rejects_a_wrong_sha256(fake_koogallery):
    """The fake really checks the FILE digest (so the test above can fail)."""
    result = call_api(
        purpose=OutboundPurpose.LICENSE_UPLOAD,
        subject="evt-sha",
        method="POST",
        path="/api/mkp-openapi-public/global/v1/market-event/evt-sha/file",
        multipart=[
            ("file", ("license-evt-sha.lic", b"token", "application/octet-stream")),
            (
                "isvUpdateFileReq",
                (None, b'{"type":"FILE","file_name":"x","sha256":"00"}', "application/json"),
            ),
        ],
    )

    assert fake_koogallery.requests[0].verified
    assert (result.ok, result.status_code, result.result_code) == (False, 400, "CBC.0101")


# --- licence-code APIs (§5.4) ---------------------------------------------------------------------


def test_license_code_activate_query_and_usage(fake_koogallery):
    activated = license_code_call(api="v1/license/activate", body={"license": "PL0001"})
    again = license_code_call(api="v1/license/activate", body={"license": "PL0001"})
    queried = license_code_call(api="v1/license/heartbeat", body={"license": "PL0001"})
    usage = license_code_call(
        api="v2/license/software-usage-info",
        body={"usage_info": [{"license": "PL0001", "software_usage_Info": [{"active_num": 3}]}]},
    )

    assert activated.ok and activated.result_code == "92020000"
    info = json.loads(activated.data["data"]["license_code_info"])
    assert info["status"] == "ALIVE"
    assert (again.ok, again.retryable, again.result_code) == (False, False, "92020003")
    assert queried.ok and queried.data["data"]["status"] == "ALIVE"
    assert usage.ok
    assert all(r.verified for r in fake_koogallery.requests)
    assert fake_koogallery.requests[0].json == {"license": "PL0001"}
    assert [a.subject for a in attempts()] == ["PL0001"] * 4
    assert {a.purpose for a in attempts()} == {OutboundPurpose.LICENSE_CODE}


def test_license_code_internal_error_is_retryable_but_stays_on_the_host(fake_koogallery):
    fake_koogallery.script(
        "v1/license/heartbeat", (200, {"error_code": "92020001", "error_msg": "internal error"})
    )

    result = license_code_call(api="v1/license/heartbeat", body={"license": "PL0002"})

    assert not result.ok and result.retryable
    assert [a.outcome for a in attempts()] == [AttemptOutcome.RETRY]


def test_unknown_license_code_api_is_refused_before_any_call(fake_koogallery):
    with pytest.raises(ValueError, match="unknown licence-code API"):
        license_code_call(api="../v1/order/query", body={"license": "PL"})
    assert fake_koogallery.all_requests == [] and attempts() == []


# --- usage push (§5.5): the basic-key signature, APIG off by default ----------------------------

USAGE_PATH = "/api/mkp-openapi-public/global/v1/isv/usage-data"
USAGE_BODY = (
    b'{"usage_records":[{"begin_time":"20220809T080000Z","end_time":"20220809T090000Z",'
    b'"instance_id":"7f141bf1-aec8-4859-8323-fb3a8ad50721",'
    b'"metering_sn":"a1b2c3d4e5f60718293a4b5c6d7e8f90","record_time":"20220809T091000Z",'
    b'"usage_value":"99"}]}'
)


def test_fake_usage_signature_matches_the_spec_vector():
    nonce = "6c63c221-1f6b-4141-8ff4-22f5dfe82b65"
    assert usage_signature("TEST_ISV_KEY", "1709690865879", nonce, USAGE_BODY) == (
        "dmO2eWXf/Ir8LBHTH44yDwiUfaeyYSSEwCMA1kgzBy0="
    )


def push_usage(signature: str, ts: str = "1709690865879", nonce: str = "n-1"):
    return call_api(
        purpose=OutboundPurpose.USAGE_PUSH,
        subject="a1b2c3d4e5f60718293a4b5c6d7e8f90",
        method="POST",
        path=USAGE_PATH,
        raw_body=USAGE_BODY,
        headers={"signature": signature, "ts": ts, "nonce": nonce},
        apig=False,
    )


def test_usage_push_without_apig_needs_no_aksk(fake_koogallery, settings):
    key = settings.KOOGALLERY_BASIC_KEY[0]
    settings.KOOGALLERY_AK = settings.KOOGALLERY_SK = ""

    result = push_usage(usage_signature(key, "1709690865879", "n-1", USAGE_BODY))

    assert result.ok and result.result_code == "MKT.0000"
    (request,) = fake_koogallery.requests
    assert request.body == USAGE_BODY
    assert request.header("Authorization") is None and request.verified is None
    assert fake_koogallery.usage_records == json.loads(USAGE_BODY)["usage_records"]
    assert attempts()[0].purpose == OutboundPurpose.USAGE_PUSH


def test_usage_push_with_a_bad_signature_is_fatal(fake_koogallery):
    result = push_usage("bm90IGEgc2lnbmF0dXJl")

    assert (result.ok, result.retryable, result.result_code) == (False, False, "MKT.0102")
    assert fake_koogallery.usage_records == []


# --- recording rules ------------------------------------------------------------------------------


def test_no_secret_in_logs_or_attempt_rows(fake_koogallery, settings, caplog):
    sk = settings.KOOGALLERY_SK
    token = "SECRET-LICENCE-TOKEN-" + "z" * 20
    fake_koogallery.script(
        "v1/license/heartbeat",
        (200, {"error_code": "92020000", "error_msg": "success", "data": {"token": token}}),
    )

    with caplog.at_level(logging.DEBUG):  # urllib3 and everything else too
        upload_license(event_id="evt-secret", token=token)
        license_code_call(api="v1/license/heartbeat", body={"license": "PL1"})
        query_order(order_id="MOCKONDEMAND")
        settings.KOOGALLERY_SK = "ANOTHER-WRONG-SECRET-0000000000000000000"
        query_order(order_id="MOCKONDEMAND")

    authorizations = [r.header("Authorization") for r in fake_koogallery.requests]
    assert len(authorizations) == 4
    stored = json.dumps([list(a.__dict__.values()) for a in attempts()], default=str)
    for secret in [sk, settings.KOOGALLERY_SK, token, *authorizations]:
        assert secret not in caplog.text
        assert secret not in stored
    assert "SDK-HMAC-SHA256" not in caplog.text and "Signature=" not in stored
    assert json.loads(attempts()[1].response_body)["data"]["token"] == "***"


def test_response_body_is_truncated_to_4_kib(fake_koogallery):
    fake_koogallery.script("query_order", (200, {"resultCode": "MKT.0000", "blob": "x" * 20000}))

    result = query_order(order_id="MOCKONDEMAND")

    assert result.ok and len(result.data["blob"]) == 20000
    assert len(attempts()[0].response_body) <= 4096
    assert "truncated" in attempts()[0].response_body


def test_refuses_to_run_inside_a_transaction(fake_koogallery):
    with transaction.atomic(), pytest.raises(RuntimeError, match=r"transaction\.atomic"):
        query_order(order_id="MOCKONDEMAND")
    assert fake_koogallery.all_requests == []


# --- strict TLS (§2.9) ----------------------------------------------------------------------------


@pytest.fixture
def self_signed_cert(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake koogallery")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def test_tls_is_verified_and_the_ca_bundle_setting_is_honoured(settings, self_signed_cert):
    with FakeKooGallery(
        ak=settings.KOOGALLERY_AK, sk=settings.KOOGALLERY_SK, tls=self_signed_cert
    ) as fake:
        settings.KOOGALLERY_API_BASE = fake.url
        settings.KOOGALLERY_API_FALLBACK = ""

        untrusted = query_order(order_id="MOCKONDEMAND")
        settings.KOOGALLERY_CA_BUNDLE = self_signed_cert[0]
        trusted = query_order(order_id="MOCKONDEMAND")
        assert fake.url.startswith("https://")

    assert not untrusted.ok and untrusted.retryable
    assert "SSLError" in untrusted.attempts[0].error
    assert trusted.ok and trusted.result_code == "MKT.0000"
    assert len(fake.requests) == 1  # the untrusted attempt never got past the handshake
