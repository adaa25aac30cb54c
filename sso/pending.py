"""Logins started here and not yet completed, kept in the Django session.

Each carries the `state` we send to the unified login page; a callback that brings it back is
ours (CSRF protection of the callback: a code planted by someone else cannot be redeemed in this
browser). One that comes back without it, right after we sent one, means the platform does not
carry `state`: views.callback then has the person confirm whom they sign in as. A state is single
use and expires after `PENDING_TTL_S`. A few logins may be pending at once (several tabs); the
oldest are dropped beyond `MAX_PENDING`.
"""

import hmac
import secrets
import time
from dataclasses import asdict, dataclass

from tenants.models import Application

SESSION_KEY = "sso_pending"
MAX_PENDING = 5
PENDING_TTL_S = 600


@dataclass(frozen=True)
class PendingLogin:
    state: str
    application_pk: int
    tenant_ref: str
    next_url: str
    started: float


def _pending(session) -> list[dict]:
    now = time.time()
    return [p for p in session.get(SESSION_KEY, []) if now - p.get("started", 0) < PENDING_TTL_S]


def remember(session, *, application: Application, tenant_ref: str, next_url: str) -> str:
    state = secrets.token_urlsafe(32)
    entry = PendingLogin(state, application.pk, tenant_ref, next_url, time.time())
    session[SESSION_KEY] = [*_pending(session), asdict(entry)][-MAX_PENDING:]
    return state


def take(session, state: str) -> PendingLogin | None:
    """The pending login `state` belongs to, removed from the session (single use)."""
    found = None
    kept = []
    for entry in _pending(session):
        if found is None and hmac.compare_digest(entry["state"].encode(), state.encode()):
            found = PendingLogin(**entry)
        else:
            kept.append(entry)
    session[SESSION_KEY] = kept
    return found


def take_latest_within(session, seconds: float) -> PendingLogin | None:
    """The newest login started here less than `seconds` ago, removed from the session, with
    every other pending one: for a callback that came back without its state (the platform
    dropped it), the login it answers can only be the one just started."""
    now = time.time()
    recent = [entry for entry in _pending(session) if now - entry["started"] < seconds]
    clear(session)
    return PendingLogin(**recent[-1]) if recent else None


def clear(session) -> None:
    session.pop(SESSION_KEY, None)
