"""Log formatters: one JSON object per line (production) or readable text (development).

Both add the request id and the record's `extra` fields (the business keys of a KooGallery call:
endpoint, result_code, tenant_id, instance_id, order_id, duration_ms, …), and both scrub
secrets twice over: a field whose *name* is secret-like is replaced by `***`, and any configured
secret *value* (access keys, SK, SECRET_KEY, Fernet keys, metrics token) is cut out of the whole
line, wherever a careless message or traceback put it.

This module is loaded by `LOGGING` before the app registry is ready, so it imports no models.
"""

import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .context import current_request_id

REDACTED = "***"

# Field names whose values never reach a log line. A superset of
# koogallery.protocol.redaction.SECRET_KEYS
# (a test keeps the two in step), compared lower-case.
SECRET_FIELD_NAMES = frozenset(
    {
        "clientsecret",
        "client_secret",
        "password",
        "authtoken",
        "signature",
        "x-sign",
        "access_token",
        "refresh_token",
        "token",
        "characters",
        "authorization",
        "cookie",
        "sk",
        "secret",
        "secret_key",
        "private_key",
    }
)

# Settings whose values are secrets (a list setting contributes each entry).
SECRET_SETTINGS = (
    "SECRET_KEY",
    "KOOGALLERY_BASIC_KEY",
    "KOOGALLERY_KIT_KEY",
    "KOOGALLERY_SK",
    "FIELD_ENCRYPTION_KEYS",
    "METRICS_TOKEN",
    "KOOGALLERY_RSA_PRIVATE_KEY",
    "LICENSE_SIGNING_KEY",
)
PEM_OR_PATH_SETTINGS = frozenset({"KOOGALLERY_RSA_PRIVATE_KEY", "LICENSE_SIGNING_KEY"})
# Shorter values are not scrubbed: replacing every "abc" in every line would garble the log,
# and a key that short is no secret anyway.
MIN_SECRET_LENGTH = 8

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "request_id", "taskName"}
)


def _configured_secrets() -> list[str]:
    try:
        from django.conf import settings

        if not settings.configured:
            return []
        values: list[str] = []
        for name in SECRET_SETTINGS:
            value = getattr(settings, name, None)
            items = value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                if not isinstance(item, str) or len(item.strip()) < MIN_SECRET_LENGTH:
                    continue
                # The key settings hold PEM text or a file path: the path is no secret, and
                # hiding it would hide what an error message is about.
                if name in PEM_OR_PATH_SETTINGS and not item.strip().startswith("-----BEGIN"):
                    continue
                values.append(item.strip())
        # Longest first, so a key that contains another is cut whole.
        return sorted(set(values), key=len, reverse=True)
    except Exception:  # logging must never fail because settings are half-loaded
        return []


class SecretScrubber:
    """Cuts configured secret values out of text; the list is read from settings once."""

    def __init__(self) -> None:
        self._secrets: list[str] | None = None

    def secrets(self) -> list[str]:
        if self._secrets is None:
            found = _configured_secrets()
            if not found:
                return []  # settings not ready yet: try again on the next record
            self._secrets = found
        return self._secrets

    def reset(self) -> None:
        self._secrets = None

    def __call__(self, text: str) -> str:
        for secret in self.secrets():
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


scrub = SecretScrubber()


def redact_fields(value: Any) -> Any:
    """A copy with every secret-named value (at any depth) replaced by `***`."""
    if isinstance(value, dict):
        return {
            k: (
                REDACTED
                if str(k).lower() in SECRET_FIELD_NAMES and v not in (None, "")
                else redact_fields(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact_fields(v) for v in value]
    return value


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}
    request = extras.pop("request", None)
    # django.request passes the HttpRequest as `extra={"request": …}`; its repr carries the
    # query string, where KooGallery puts `signature` and `authToken`: method and path only.
    # (runserver passes its socket under the same name: dropped.)
    if hasattr(request, "META") and hasattr(request, "path"):
        extras.setdefault("method", getattr(request, "method", ""))
        extras.setdefault("path", request.path)
    return redact_fields(extras)


_QUERY = re.compile(r"\?[^\s\"]*")


class StripQueryFilter(logging.Filter):
    """For the development server's access lines (`django.server`): the request line without
    its query string, which carries KooGallery's `signature` or `authToken`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            record.msg, record.args = _QUERY.sub("?…", message), ()
        return True


class QuietDispatchFilter(logging.Filter):
    """Beat's outbox dispatch (koogallery/outbound/jobs.py) runs every second: Celery's lines about
    it
    (sent by beat, received, done having published nothing, discarded as expired) would be
    most of the log. Kept: a dispatch that published jobs, and anything above INFO."""

    TASK = "koogallery.tasks.dispatch_jobs"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or not record.name.startswith("celery"):
            return True
        args = record.args
        if isinstance(args, Mapping):
            if args.get("name") != self.TASK:
                return True
            return str(args.get("return_value", "0")) != "0"
        return not (isinstance(args, tuple) and self.TASK in args)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return str(value)


class JsonFormatter(logging.Formatter):
    """`{"time","level","logger","message","request_id",…extras,"exception"?}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
            "request_id": current_request_id() or None,
        }
        for name, value in record_extras(record).items():
            if name not in entry:
                entry[name] = _jsonable(value)
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        elif record.stack_info:
            entry["stack"] = scrub(self.formatStack(record.stack_info))
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)
        # Values inside extras (e.g. a URL with a key in it) are cut here, after serialisation;
        # a secret with characters JSON escapes was already cut from the message above.
        return scrub(line)


class PlainFormatter(logging.Formatter):
    """`time LEVEL logger [request id] message key=value …` for a developer's terminal."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        super().__init__(*args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        record.request_id = current_request_id() or "-"
        text = super().format(record)
        extras = record_extras(record)
        if extras:
            text += " " + " ".join(f"{k}={_jsonable(v)}" for k, v in extras.items())
        return scrub(text)
