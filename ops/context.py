"""The request id of the work in progress, for log lines (set per HTTP request or Celery task).

A context variable rather than a thread-local: it follows the request through async code and is
reset when the request ends, so a worker thread never logs under a previous request's id.
"""

import re
import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="")
# Set when the request's KooGallery call line (koogallery.calls) was written: that line carries
# what the access line would (method, path, duration), so the request is logged once.
call_logged_var: ContextVar[bool] = ContextVar("call_logged", default=False)

# A caller-supplied id is echoed back and logged: keep it short and printable, so a hostile
# header cannot inject log lines or bloat every record.
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(value: str | None) -> str:
    """The caller's X-Request-ID when it is acceptable, else a new one."""
    if value and _ACCEPTABLE.fullmatch(value):
        return value
    return new_request_id()


def current_request_id() -> str:
    return request_id_var.get()
