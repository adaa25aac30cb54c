"""Request bodies, before Django sees them: read whole, in bounded time, with a known length.

A body is read to its end here, under a deadline (HTTP_BODY_TIMEOUT_S from the end of the
request head): a client that dribbles it (a byte a second on a declared 100 kB) would otherwise
hold a server thread for as long as it likes (slowloris; the head has its own deadline,
ops/server.py). When the deadline passes, the read deadline watchdog (ops/deadlines.py) shuts the
socket for reading and logs the reason; the request is answered 408 (a KooGallery path: the
000002 envelope) and the application never runs, so no call is processed with part of its body.
A body cut short by the client (the connection closed early) is refused the same way.

An HTTP/1.1 client may also stream its body in chunks instead of declaring its length: Java
clients do so for an entity of unknown size, such as a large allOrgSync. Gunicorn decodes the
chunks and marks the input as terminated (`wsgi.input_terminated`, it ends where the body ends),
but Django reads exactly CONTENT_LENGTH bytes, and none when it is absent: the call would be
verified against an empty body and refused as forged (000001). Such a body is read here keeping
no more than DATA_UPLOAD_MAX_MEMORY_SIZE + 1 bytes, and its length declared. A longer body is
read on (up to twice the limit more, as koogallery.inbound.endpoint does for a declared one) and
dropped,
its full length declared, so Django refuses it as too big and the caller gets the 000002
envelope rather than a reset connection. A declared length over the limit is left to
koogallery.inbound.endpoint the same way (still under the deadline).

Only under gunicorn (`gunicorn.socket` in the environ): servers that do not terminate the input
(wsgiref's, behind runserver) are left alone, reading to the end of their stream would block.
"""

import io
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.urls import Resolver404, resolve

from .deadlines import watchdog

logger = logging.getLogger("ops.requests")

CHUNK = 1 << 16


def read_up_to(stream: Any, size: int) -> bytes:
    """At most `size` bytes of a stream, fewer only at its end."""
    parts, wanted = [], size
    while wanted > 0:
        part = stream.read(min(CHUNK, wanted))
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


def drain(stream: Any, budget: int) -> int:
    """Read and drop at most `budget` bytes; how many there were."""
    dropped = 0
    while dropped < budget:
        part = stream.read(min(CHUNK, budget - dropped))
        if not part:
            break
        dropped += len(part)
    return dropped


class BodyCut(Exception):
    """The body did not arrive whole: `why` says how, for the log and the answer."""

    def __init__(self, why: str, received: int):
        super().__init__(why)
        self.why, self.received = why, received


class RequestBodies:
    """WSGI middleware: a request's body is read whole, in time, before the application runs."""

    def __init__(self, application: Callable):
        self.application = application

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        chunked = bool(
            environ.get("wsgi.input_terminated")
            and not environ.get("CONTENT_LENGTH")
            and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        )
        declared = declared_length(environ)
        if sock is None or not (chunked or declared):
            if chunked:
                self.declare_length(environ)
            return self.application(environ, start_response)
        if refused_on_head(environ):
            # Its view refuses it from the head alone (a KooGallery call with no or a stale
            # signature): answered without reading a byte of its body, and the connection
            # closed, since the unread body would be taken for the next request.
            environ["wsgi.input"] = io.BytesIO(b"")
            return self.application(environ, closing(start_response))

        timeout = settings.HTTP_BODY_TIMEOUT_S
        watch = watchdog.watch(
            sock, timeout, "request body", path=environ.get("PATH_INFO", "")[:255]
        )
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if not chunked and limit is not None and declared > limit:
            # Over the limit: refused unread by the application, which drains what it can of
            # it; the watch stays on so the drain is bounded in time too.
            try:
                return self.application(environ, start_response)
            finally:
                watchdog.release(watch)
        why, received = "", declared
        try:
            if chunked:
                self.declare_length(environ)
            else:
                self.read_whole(environ, declared)
        except BodyCut as cut:
            why, received = cut.why, cut.received
        except OSError:
            why, received = "connection error", 0
        finally:
            if watchdog.release(watch):  # the socket was cut: whatever came, it came late
                why = f"not received within {timeout:g} s"
        if why:
            return self.refuse(environ, start_response, why, received, declared)
        return self.application(environ, start_response)

    @staticmethod
    def read_whole(environ: dict, length: int) -> None:
        body = read_up_to(environ["wsgi.input"], length)
        if len(body) < length:
            raise BodyCut("connection closed before its end", len(body))
        environ["wsgi.input"] = io.BytesIO(body)

    @staticmethod
    def declare_length(environ: dict) -> None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        stream = environ["wsgi.input"]
        if limit is None:
            body = stream.read()
            length = len(body)
        else:
            body = read_up_to(stream, limit + 1)
            length = len(body)
            if length > limit:
                body = b""  # refused unread (RequestDataTooBig): nothing of it is kept
                length += drain(stream, 2 * limit)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(length)

    @staticmethod
    def refuse(
        environ: dict, start_response: Callable, why: str, received: int, declared: int
    ) -> Iterable[bytes]:
        """408, the connection closed: the request is not served, and the reason logged."""
        path = environ.get("PATH_INFO", "")
        message = f"request body incomplete: {why}"
        logger.warning(
            "refused a request whose body did not arrive whole: %s",
            why,
            extra={
                "reason": why,
                "method": environ.get("REQUEST_METHOD", ""),
                "path": path[:255],
                "received_bytes": received,
                "declared_bytes": declared or None,
            },
        )
        if path.startswith("/koogallery"):
            # The protocol's envelope (spec §2.4): 000002, the request was not a valid call.
            content = json.dumps({"resultCode": "000002", "resultMsg": message}).encode()
            content_type = "application/json;charset=UTF-8"
        else:
            content, content_type = message.encode(), "text/plain; charset=utf-8"
        # gunicorn closes a connection whose request body was not consumed to its end.
        start_response(
            "408 Request Timeout",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(content))),
                ("Connection", "close"),
            ],
        )
        return [content]


def refused_on_head(environ: dict) -> bool:
    """Whether the view the request's path resolves to refuses it from its head alone: a view
    class may say so with a `refuses_on_head(request)` class method (koogallery.inbound.endpoint's
    endpoints do, spec §2.3 "headers before bodies"). Nothing of the body is read to ask."""
    try:
        match = resolve(environ.get("PATH_INFO") or "/")
    except Resolver404:
        return False
    check = getattr(getattr(match.func, "view_class", None), "refuses_on_head", None)
    initkwargs = getattr(match.func, "view_initkwargs", {})  # as_view(family=…) of the route
    return bool(check and check(WSGIRequest(environ), **initkwargs))


def closing(start_response: Callable) -> Callable:
    """`start_response` with `Connection: close` (gunicorn then closes after the answer)."""

    def start(status, headers, exc_info=None):
        kept = [(name, value) for name, value in headers if name.lower() != "connection"]
        return start_response(status, [*kept, ("Connection", "close")], exc_info)

    return start


def declared_length(environ: dict) -> int:
    try:
        return max(int(environ.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0
