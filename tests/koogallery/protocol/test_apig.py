"""koogallery.protocol.apig: Huawei's SDK-HMAC-SHA256 example (§3.7) and the encoding rules.

Plain pytest, no Django: runs with `-p no:django`.
"""

import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest

from koogallery.protocol.apig import (
    EMPTY_BODY_SHA256,
    canonical_query_string,
    canonical_request,
    canonical_uri,
    format_sdk_date,
    sign_request,
    signature,
    string_to_sign,
)

# Huawei's example, verbatim (§3.7).
AK = "QTWAOYTTINDUT2QVKYUC"
SK = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
URL = (
    "https://service.region.example.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs"
    "?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0"
)
HEADERS = {
    "Content-Type": "application/json",
    "Host": "service.region.example.com",
    "X-Sdk-Date": "20191115T033655Z",
}
CANONICAL = (
    "GET\n"
    "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/\n"
    "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0\n"
    "content-type:application/json\n"
    "host:service.region.example.com\n"
    "x-sdk-date:20191115T033655Z\n"
    "\n"
    "content-type;host;x-sdk-date\n"
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)
STRING_TO_SIGN = (
    "SDK-HMAC-SHA256\n20191115T033655Z\n"
    "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
)
SIGNATURE = "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
AUTHORIZATION = (
    "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, SignedHeaders=content-type;host;x-sdk-date, "
    "Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
)
EXAMPLE_TIME = datetime(2019, 11, 15, 3, 36, 55, tzinfo=UTC)


def _lines(method, url, headers, body=b""):
    return canonical_request(method, url, headers, body).split("\n")


# --- Huawei's example --------------------------------------------------------------------------


def test_example_canonical_request():
    assert canonical_request("GET", URL, HEADERS, b"") == CANONICAL


def test_example_string_to_sign():
    assert string_to_sign(CANONICAL, "20191115T033655Z") == STRING_TO_SIGN


def test_example_signature():
    assert signature(SK, STRING_TO_SIGN) == SIGNATURE


def test_example_authorization_header():
    signed = sign_request("GET", URL, HEADERS, b"", AK, SK)
    assert signed == {**HEADERS, "Authorization": AUTHORIZATION}


def test_example_with_host_and_date_added():
    signed = sign_request(
        "get", URL, {"Content-Type": "application/json"}, b"", AK, SK, now=EXAMPLE_TIME
    )
    assert signed["Host"] == "service.region.example.com"
    assert signed["X-Sdk-Date"] == "20191115T033655Z"
    assert signed["Authorization"] == AUTHORIZATION


def test_example_is_case_and_order_insensitive_for_header_names():
    headers = {
        "x-sdk-date": "20191115T033655Z",
        "HOST": "service.region.example.com",
        "content-type": " application/json ",
    }
    assert sign_request("GET", URL, headers, b"", AK, SK)["Authorization"] == AUTHORIZATION


def test_example_query_order_does_not_matter():
    url = (
        "https://service.region.example.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/"
        "?marker=13551d6b-755d-4757-b956-536f674975c0&limit=2"
    )
    assert canonical_request("GET", url, HEADERS, b"") == CANONICAL


# --- Date and Host -----------------------------------------------------------------------------


def test_sdk_date_is_utc():
    beijing = timezone(timedelta(hours=8))
    assert format_sdk_date(datetime(2019, 11, 15, 11, 36, 55, tzinfo=beijing)) == (
        "20191115T033655Z"
    )
    assert format_sdk_date(datetime(2019, 11, 15, 3, 36, 55)) == "20191115T033655Z"


def test_default_date_is_now():
    before = datetime.now(UTC).replace(microsecond=0)
    signed = sign_request("GET", URL, {}, b"", AK, SK)
    stamped = datetime.strptime(signed["X-Sdk-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= stamped <= datetime.now(UTC)


def test_existing_date_wins_over_now():
    signed = sign_request("GET", URL, HEADERS, b"", AK, SK, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert signed["X-Sdk-Date"] == "20191115T033655Z"
    assert signed["Authorization"] == AUTHORIZATION


def test_host_keeps_a_non_default_port():
    signed = sign_request("GET", "https://api.example.com:8443/x", {}, b"", AK, SK)
    assert signed["Host"] == "api.example.com:8443"


def test_signed_headers_always_include_host_and_date():
    signed = sign_request("GET", "https://mkt.myhuaweicloud.com/x", {}, b"", AK, SK)
    assert "SignedHeaders=host;x-sdk-date," in signed["Authorization"]


def test_input_headers_are_not_modified_and_old_authorization_is_replaced():
    headers = dict(HEADERS, Authorization="SDK-HMAC-SHA256 stale")
    original = dict(headers)
    signed = sign_request("GET", URL, headers, b"", AK, SK)
    assert headers == original
    assert signed["Authorization"] == AUTHORIZATION


def test_missing_credentials():
    with pytest.raises(ValueError, match="AK"):
        sign_request("GET", URL, HEADERS, b"", "", SK)
    with pytest.raises(ValueError, match="AK"):
        sign_request("GET", URL, HEADERS, b"", AK, "")


def test_authorization_verifies_with_the_sk():
    """An independent recomputation, as the gateway does it."""
    body = b'{"license":"abc"}'
    url = "https://mkt.myhuaweicloud.com/api/mkp-openapi-public/global/v1/license/activate"
    headers = {"Content-Type": "application/json"}
    signed = sign_request("POST", url, headers, body, AK, SK, now=EXAMPLE_TIME)
    unsigned = {k: v for k, v in signed.items() if k != "Authorization"}
    canonical = canonical_request("POST", url, unsigned, body)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    expected = hmac.new(
        SK.encode(), f"SDK-HMAC-SHA256\n20191115T033655Z\n{digest}".encode(), hashlib.sha256
    ).hexdigest()
    assert signed["Authorization"].endswith(f"Signature={expected}")


# --- Body --------------------------------------------------------------------------------------


def test_post_body_hash_in_canonical_request():
    body = '{"license":"许可证-01"}'.encode()
    headers = dict(HEADERS, **{"Content-Type": "application/json;charset=UTF-8"})
    lines = _lines("POST", URL, headers, body)
    assert lines[0] == "POST"
    assert lines[-1] == hashlib.sha256(body).hexdigest()
    assert lines[-1] != EMPTY_BODY_SHA256
    assert canonical_request("POST", URL, headers, body.decode()) == "\n".join(lines)
    signed = sign_request("POST", URL, headers, body, AK, SK)
    assert signed["Authorization"] != AUTHORIZATION
    assert sign_request("POST", URL, headers, body + b" ", AK, SK) != signed


def test_empty_body_hash():
    assert _lines("GET", URL, HEADERS)[-1] == EMPTY_BODY_SHA256 == hashlib.sha256().hexdigest()


def test_unsigned_payload():
    headers = dict(HEADERS, **{"X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"})
    lines = _lines("POST", URL, headers, b"multipart bytes that are not hashed")
    assert lines[-1] == "UNSIGNED-PAYLOAD"
    assert lines[-2] == "content-type;host;x-sdk-content-sha256;x-sdk-date"
    assert "x-sdk-content-sha256:UNSIGNED-PAYLOAD" in lines
    a = sign_request("POST", URL, headers, b"one body", AK, SK)
    b = sign_request("POST", URL, headers, b"another body", AK, SK)
    assert a["Authorization"] == b["Authorization"]
    assert a["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"


# --- Encoding ----------------------------------------------------------------------------------


def test_empty_query_value_keeps_equals():
    assert canonical_query_string("b=1&a=&c") == "a=&b=1&c="


def test_no_query_is_an_empty_line():
    lines = _lines("GET", "https://h.example.com/v1/orders", {"Host": "h", "X-Sdk-Date": "d"})
    assert lines[1:3] == ["/v1/orders/", ""]


def test_special_characters_upper_case_percent_and_space_as_20():
    query = "name=a%20b&plus=a%2bb&raw=a b&cn=%e4%bd%a0%E5%A5%BD&mark=*!'()&safe=-_.~AZaz09"
    assert canonical_query_string(query) == (
        "cn=%E4%BD%A0%E5%A5%BD&mark=%2A%21%27%28%29&name=a%20b&plus=a%2Bb&raw=a%20b&safe=-_.~AZaz09"
    )


def test_literal_plus_is_a_plus_not_a_space():
    assert canonical_query_string("q=a+b") == "q=a%2Bb"


def test_query_names_are_encoded_and_sorted():
    assert canonical_query_string("z=1&a%20b=2&A=3") == "A=3&a%20b=2&z=1"


def test_repeated_query_names_sorted_by_value():
    assert canonical_query_string("id=b&id=a&x=1") == "id=a&id=b&x=1"


def test_example_query_with_order_id():
    query = "orderId=CS2211181819B4LVS&orderLineId=CS2211181819B4LVS-000001"
    assert canonical_query_string(query) == query


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", "/"),
        ("/", "/"),
        ("/v1/vpcs", "/v1/vpcs/"),
        ("/v1/vpcs/", "/v1/vpcs/"),
        ("/v1/a b/ä", "/v1/a%20b/%C3%A4/"),
        ("/v1/a%20b/%c3%a4", "/v1/a%20b/%C3%A4/"),
        ("/v1/market-event/ev_1.2~x/file", "/v1/market-event/ev_1.2~x/file/"),
        ("/v1/a:b@c", "/v1/a%3Ab%40c/"),
    ],
)
def test_canonical_uri(path, expected):
    assert canonical_uri(path) == expected


def test_trailing_slash_is_for_signing_only():
    url = "https://mkt.myhuaweicloud.com/api/v1/order/query?orderId=1"
    signed = sign_request("GET", url, {}, b"", AK, SK, now=EXAMPLE_TIME)
    with_slash = sign_request(
        "GET", url.replace("query?", "query/?"), {}, b"", AK, SK, now=EXAMPLE_TIME
    )
    assert signed["Authorization"] == with_slash["Authorization"]
    assert _lines("GET", url, signed)[1] == "/api/v1/order/query/"


def test_header_values_trimmed_and_names_lower_case():
    headers = {"Host": " h.example.com ", "X-Sdk-Date": "20191115T033655Z", "X-Project-Id": " p "}
    lines = _lines("GET", "https://h.example.com/", headers)
    assert lines[3:7] == [
        "host:h.example.com",
        "x-project-id:p",
        "x-sdk-date:20191115T033655Z",
        "",
    ]
    assert lines[7] == "host;x-project-id;x-sdk-date"
