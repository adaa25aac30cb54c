"""Headers before bodies (spec §2.3): a call whose credentials are missing, malformed or outside
the time window is refused from its headers (or, basic V2, its query) alone, before its body is
read. Proven with a body that cannot be read: a WSGI input that fails if touched, and a real
socket that declares a body and never sends it.
"""

import json
import socket
import time
import uuid

import pytest
from django.conf import settings
from django.test import RequestFactory
from django.test.client import ClientHandler

from koogallery.inbound.journal import InboundCall, Verification
from koogallery.protocol import signing
from tests.support.kgclient import envelope, now_ms
from tests.support.live_server import _server, server  # noqa: F401 (fixtures)

DECLARED = 50_000


class UnreadableBody:
    """A wsgi.input that fails the call if anybody reads it."""

    def __init__(self):
        self.touched = False

    def read(self, *args):
        self.touched = True
        raise OSError("the body was read")

    readline = read


def call(path: str, headers: dict[str, str]):
    """POST with a declared body nobody can read; returns the response and the input."""
    request = RequestFactory().post(
        path, data=b"", content_type="application/json;charset=utf8", headers=headers
    )
    environ = dict(request.environ)
    body = environ["wsgi.input"] = UnreadableBody()
    environ["CONTENT_LENGTH"] = str(DECLARED)
    return ClientHandler()(environ), body


def kit_headers(**overrides) -> dict[str, str]:
    headers = {"x-sign": "AB" * 32, "x-timestamp": now_ms(), "x-nonce": uuid.uuid4().hex}
    headers.update(overrides)
    return {k: v for k, v in headers.items() if v is not None}


def stale_ms() -> str:
    return str(int((time.time() - 3600) * 1000))


def basic_path(**overrides) -> str:
    query = {"signature": "AB" * 32, "timestamp": now_ms(), "nonce": uuid.uuid4().hex}
    query.update(overrides)
    return "/koogallery?" + "&".join(f"{k}={v}" for k, v in query.items() if v is not None)


KIT = "/koogallery/produceAPI/v2/tenantSync"
CASES = [
    ("kit, no x-sign", KIT, kit_headers(**{"x-sign": None}), "000001", "missing"),
    ("kit, no x-nonce", KIT, kit_headers(**{"x-nonce": None}), "000002", "missing"),
    ("kit, timestamp 0-led", KIT, kit_headers(**{"x-timestamp": "0" + now_ms()}), "000002",
     "malformed"),
    ("kit, nonce with a dot", KIT, kit_headers(**{"x-nonce": "a.b"}), "000002", "malformed"),
    ("kit, an hour old", KIT, kit_headers(**{"x-timestamp": stale_ms()}), "000002", "stale"),
    ("basic, no signature", basic_path(signature=None), {}, "000001", "missing"),
    ("basic, an hour old", basic_path(timestamp=stale_ms()), {}, "000002", "stale"),
    ("V1 kit, no authToken", "/koogallery/produceAPI/tenantSync", {}, "000001", "missing"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "headers", "code", "verification"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_a_call_refused_on_its_headers_never_reads_its_body(path, headers, code, verification):
    response, body = call(path, headers)

    assert envelope(response)["resultCode"] == code
    assert not body.touched
    row = InboundCall.objects.get()
    # The journal row records what the headers say: the declared size, no body.
    assert (row.verification, row.result_code) == (verification, code)
    assert (row.request_size, row.request_body, row.request_sha256) == (DECLARED, "", "")
    assert response["Body-Sign"]


@pytest.mark.django_db
def test_a_call_whose_headers_pass_reads_its_body():
    """The control: with good credentials the body is read (and here it cannot be)."""
    response, body = call(KIT, kit_headers())
    assert body.touched
    assert envelope(response)["resultCode"] == "000005"
    assert InboundCall.objects.get().verification == Verification.MISSING


def raw_exchange(url: str, head: str, timeout: float = 10) -> bytes:
    """Send a request head that declares a body, never send the body, read the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1"))
        received = b""
        while b"\r\n\r\n" not in received or not _complete(received):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


@pytest.mark.parametrize(
    ("what", "headers", "code"),
    [
        ("no signature", lambda: f"x-timestamp: {now_ms()}\r\nx-nonce: abc\r\n", "000001"),
        (
            "timestamp an hour old",
            lambda: f"x-sign: {'AB' * 32}\r\nx-timestamp: {stale_ms()}\r\nx-nonce: abc\r\n",
            "000002",
        ),
    ],
    ids=["no signature", "timestamp an hour old"],  # the same in every xdist worker
)
def test_a_live_server_answers_a_body_that_never_comes(server, what, headers, code):  # noqa: F811
    """gunicorn, a real socket: Content-Length promises a body that is never sent; the answer
    comes at once from the headers (reading the body would wait for ever)."""
    extra = headers()  # stamped when the test runs, not when it was collected
    head = (
        f"POST {KIT} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json;charset=utf8\r\n"
        f"Content-Length: {DECLARED}\r\n{extra}\r\n"
    )
    received = raw_exchange(server, head)  # a server reading the body: socket timeout
    status, _, rest = received.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 200"), received[:200]
    answer = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert answer["resultCode"] == code, answer
    row = InboundCall.objects.get()
    assert (row.request_size, row.request_body) == (DECLARED, "")
    key = settings.KOOGALLERY_KIT_KEY[0]
    assert signing.body_signature(key, rest.partition(b"\r\n\r\n")[2]) in rest.decode()


def test_a_live_server_reads_and_serves_genuine_calls_of_every_family(server):  # noqa: F811
    """The server asks each route whether a call is refused on its head before reading its
    body (ops/wsgi.py): genuine kit V2, kit V1 and basic V2 calls are read and served."""
    import requests

    from tests.support.kgclient import fixture_json, kit_timestamp

    tenant = {**fixture_json("tenantSync__huawei_example"), "timeStamp": kit_timestamp()}
    raw = json.dumps(tenant).encode()
    kit_key = settings.KOOGALLERY_KIT_KEY[0]
    nonce, stamp = uuid.uuid4().hex.upper(), now_ms()
    v2 = requests.post(
        f"{server}{KIT}",
        data=raw,
        headers={
            "Content-Type": "application/json",
            "x-sign": signing.kit_sign(kit_key, nonce, stamp, raw).upper(),
            "x-timestamp": stamp,
            "x-nonce": nonce,
        },
        timeout=10,
    )
    v1_body = {**tenant, "timeStamp": kit_timestamp()}
    v1 = requests.post(
        f"{server}/koogallery/produceAPI/tenantSync",
        data=json.dumps(v1_body).encode(),
        headers={
            "Content-Type": "application/json",
            "authToken": signing.v1_auth_token(kit_key, v1_body),
        },
        timeout=10,
    )
    basic_raw = json.dumps(fixture_json("newInstance__huawei")).encode()
    basic_key = settings.KOOGALLERY_BASIC_KEY[0]
    nonce, stamp = uuid.uuid4().hex.upper(), now_ms()
    sign = signing.basic_sign(basic_key, nonce, stamp, basic_raw).upper()
    basic = requests.post(
        f"{server}/koogallery?signature={sign}&timestamp={stamp}&nonce={nonce}",
        data=basic_raw,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )

    assert [r.json()["resultCode"] for r in (v2, v1, basic)] == ["000000", "000000", "000000"]
    assert InboundCall.objects.filter(verification=Verification.VERIFIED).count() == 3
