"""ops/wsgi.py: a body streamed without a Content-Length (Transfer-Encoding: chunked) reaches
Django whole, or is refused as too big, on a server that terminates its input (gunicorn). The
same over HTTP through gunicorn: tests/koogallery/inbound/test_hostile_input.py (PostgreSQL
pass)."""

import io

import pytest
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.wsgi import WSGIRequest
from django.test import override_settings

from ops.wsgi import RequestBodies


class Unreadable(io.RawIOBase):
    def read(self, size=-1):
        raise AssertionError("the input was read")


def serve(environ: dict) -> WSGIRequest:
    """The request Django builds from what the middleware hands on."""
    seen = {}

    def application(environ, start_response):
        seen["request"] = WSGIRequest(environ)
        return []

    RequestBodies(application)(environ, lambda *args: None)
    return seen["request"]


def environ(stream, **extra) -> dict:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/koogallery",
        "wsgi.input": stream,
        "wsgi.input_terminated": True,
        "HTTP_TRANSFER_ENCODING": "chunked",
        **extra,
    }


def test_a_chunked_body_reaches_django_with_its_length():
    body = b'{"activity":"queryInstance","instanceId":"' + b"9" * 200_000 + b'"}'
    request = serve(environ(io.BytesIO(body)))
    assert request.body == body
    assert request.META["CONTENT_LENGTH"] == str(len(body))


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100)
def test_a_chunked_body_over_the_limit_is_refused_and_drained():
    stream = io.BytesIO(b"x" * 250 + b"y" * 200)
    request = serve(environ(stream))
    with pytest.raises(RequestDataTooBig):
        request.body
    # Read on up to twice the limit past it, so the client is not cut off mid-upload.
    assert stream.tell() == 101 + 200
    assert request.META["CONTENT_LENGTH"] == "301"


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100)
def test_a_chunked_body_at_the_limit_is_kept():
    request = serve(environ(io.BytesIO(b"z" * 100)))
    assert request.body == b"z" * 100


@pytest.mark.parametrize(
    "extra",
    [
        {"wsgi.input_terminated": False},  # wsgiref (runserver): reading on would block
        {"CONTENT_LENGTH": "5"},  # a declared length is Django's to read
        {"HTTP_TRANSFER_ENCODING": ""},  # no body was sent
    ],
    ids=["input-not-terminated", "length-declared", "not-chunked"],
)
def test_other_requests_are_left_alone(extra):
    request = serve(environ(Unreadable(), **extra))
    assert request.META.get("CONTENT_LENGTH") == extra.get("CONTENT_LENGTH")
