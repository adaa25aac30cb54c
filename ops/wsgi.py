"""Request bodies sent without a Content-Length (Transfer-Encoding: chunked).

An HTTP/1.1 client may stream its body in chunks instead of declaring its length: Java clients
do so for an entity of unknown size, such as a large allOrgSync. Gunicorn decodes the chunks and
marks the input as terminated (`wsgi.input_terminated`, it ends where the body ends), but Django
reads exactly CONTENT_LENGTH bytes, and none when it is absent: the call would be verified
against an empty body and refused as forged (000001).

`ChunkedBodies` reads such a body before Django sees the request, keeping no more than
DATA_UPLOAD_MAX_MEMORY_SIZE + 1 bytes, and declares its length. A longer body is read on (up to
twice the limit more, as koogallery.inbound does for a declared one) and dropped, its full
length declared, so Django refuses it as too big and the caller gets the 000002 envelope rather
than a reset connection. Servers that do not terminate the input (wsgiref's, behind runserver)
are left alone: reading to the end of their stream would block.
"""

import io
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings

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


class ChunkedBodies:
    """WSGI middleware: a body of undeclared length, on a terminated input, gets its length."""

    def __init__(self, application: Callable):
        self.application = application

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if (
            environ.get("wsgi.input_terminated")
            and not environ.get("CONTENT_LENGTH")
            and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        ):
            self.declare_length(environ)
        return self.application(environ, start_response)

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
