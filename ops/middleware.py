"""Request id and one log line per request (docs/operations.md, "Reading the logs"): the access
line, or for a KooGallery call its call line (ops/calls.py), which carries the same fields."""

import logging
import time

from .context import accept_request_id, call_logged_var, request_id_var

logger = logging.getLogger("ops.requests")

HEADER = "X-Request-ID"
# Probes hit these every few seconds: their lines go to DEBUG so they do not drown the log.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestIdMiddleware:
    """Take the caller's X-Request-ID (or make one), log under it, return it in the answer.

    Only the path is logged, never the query string: KooGallery puts `signature` (basic V2) and
    `authToken` (V1 GET) there.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = accept_request_id(request.headers.get(HEADER))
        request.request_id = request_id
        token = request_id_var.set(request_id)
        logged = call_logged_var.set(False)
        started = time.monotonic()
        try:
            response = self.get_response(request)
            response[HEADER] = request_id
            if call_logged_var.get() and response.status_code == 200:
                return response  # the KooGallery call line said it all
            level = logging.DEBUG if request.path in QUIET_PATHS else logging.INFO
            logger.log(
                level,
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path[:255],
                    "status": response.status_code,
                    "duration_ms": round((time.monotonic() - started) * 1000, 3),
                },
            )
            return response
        finally:
            call_logged_var.reset(logged)
            request_id_var.reset(token)
