"""A fake KooGallery login platform on loopback, for the SSO tests (spec §5.3).

A real HTTP server (``ThreadingHTTPServer`` on ``127.0.0.1``, port 0, background thread): the
code under test talks to it through its real HTTP client and a real browser drives its pages.
It plays both sides of §5.3:

- the **unified login page** (``GET /unified-login/``). Like the real one it is a single-page
  app whose parameters sit in the URL fragment (``#/portal-login?ind=UNOP&appId=…``), which a
  server never sees, so a script reads them. It shows an account form; signing in (``POST
  /unified-login/authorize``) issues a code and 302s to the app's login URL registered for the
  ``appId`` with ``code`` and ``tenant`` (plus the ``state`` it was given, when
  ``echo_state``). A signed-in platform session (cookie) skips the form, as the real platform
  does for a user already signed in to KooGallery. ``GET /workbench?appId=…`` plays the user
  opening the app from KooGallery: a code with no ``state``.
- the **tenant's OAuth endpoints** on ``domainName`` (any path prefix): ``POST
  /api/v1/oauth2/token`` (``authorization_code`` and ``refresh_token`` grants, client
  credentials as form fields only), ``GET /api/v1/oauth2/userinfo`` (Bearer) and ``GET
  /api/v1/logout?redirect_url=…``. Errors are shaped like the platform's (Spring Security
  OAuth): ``401 {"error":"invalid_client","error_description":"Bad client credentials"}``,
  ``400 {"error":"invalid_grant","error_description":"Invalid authorization code: <code>"}`` —
  note the code echoed in the description, which the client must not copy anywhere.

Codes are single use and expire after ``code_ttl_s``; access tokens after ``expires_in``;
refresh tokens rotate on use (``rotate_refresh``); ``token_delay_s`` slows the token endpoint.
Every request is recorded in ``requests``.
``fail_next(route, status, body)`` queues an answer for ``token``/``userinfo``.
"""

from __future__ import annotations

import html
import json
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

PLATFORM_COOKIE = "fake_platform_user"


@dataclass
class FakeApp:
    app_id: str
    client_id: str
    client_secret: str
    tenant_id: str
    redirect_url: str


@dataclass
class Grant:
    client_id: str
    tenant_id: str
    user_name: str
    expires: float
    used: bool = False


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]
    status: int = 0


@dataclass
class FakeOAuthProvider:
    expires_in: int = 7200
    code_ttl_s: int = 300
    echo_state: bool = True
    issue_refresh_token: bool = True
    rotate_refresh: bool = True
    token_delay_s: float = 0.0  # a slow token endpoint, to make concurrent refreshes overlap
    apps: dict[str, FakeApp] = field(default_factory=dict)  # by app_id
    users: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    codes: dict[str, Grant] = field(default_factory=dict)
    access_tokens: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, Grant] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)  # every code and token ever handed out
    scripted: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))

    def __post_init__(self):
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> FakeOAuthProvider:
        provider = self

        class Handler(_Handler):
            fake = provider

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll: shutdown() waits for the loop's next poll (0.5 s by default, after every
        # test that uses the fake).
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def unified_login_url(self) -> str:
        """The KOOGALLERY_UNIFIED_LOGIN_URL pointing here (fragment as on the real page)."""
        return f"{self.url}/unified-login/#/portal-login?ind=UNOP&appId={{app_id}}"

    # --- set-up ------------------------------------------------------------------------------
    def register_app(self, *, app_id, client_id, client_secret, tenant_id, redirect_url) -> None:
        self.apps[app_id] = FakeApp(app_id, client_id, client_secret, tenant_id, redirect_url)

    def add_user(self, *, tenant_id: str, user_name: str, **info) -> None:
        self.users[(tenant_id, user_name)] = {"userName": user_name, **info}

    def fail_next(self, route: str, status: int, body: Any = None) -> None:
        self.scripted[route].append((status, body))

    def issue_code(self, *, app_id: str, user_name: str) -> str:
        app = self.apps[app_id]
        code = secrets.token_urlsafe(12)
        with self._lock:
            self.codes[code] = Grant(
                app.client_id, app.tenant_id, user_name, time.time() + self.code_ttl_s
            )
            self.issued.append(code)
        return code

    def callback_url(self, *, app_id: str, code: str, state: str = "") -> str:
        app = self.apps[app_id]
        params = {"code": code, "tenant": app.tenant_id}
        if state and self.echo_state:
            params["state"] = state
        return f"{app.redirect_url}?{urlencode(params)}"

    def expire_access_tokens(self) -> None:
        with self._lock:
            for grant in self.access_tokens.values():
                grant.expires = 0

    def seen(self, suffix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(suffix)]

    # --- token handling ----------------------------------------------------------------------
    def _new_tokens(self, grant: Grant, *, refresh: str | None = None) -> dict[str, Any]:
        access = secrets.token_urlsafe(24)
        self.access_tokens[access] = Grant(
            grant.client_id, grant.tenant_id, grant.user_name, time.time() + self.expires_in
        )
        self.issued.append(access)
        answer = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": "get_user_info",
        }
        if self.issue_refresh_token:
            if refresh is None or self.rotate_refresh:
                refresh = secrets.token_urlsafe(24)
                self.issued.append(refresh)
            self.refresh_tokens[refresh] = Grant(
                grant.client_id, grant.tenant_id, grant.user_name, time.time() + 30 * 86400
            )
            answer["refresh_token"] = refresh
        return answer

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        client = next((a for a in self.apps.values() if a.client_id == form.get("client_id")), None)
        if client is None:
            return 401, {"error": "invalid_client", "error_description": "Client ID mismatch"}
        if not secrets.compare_digest(form.get("client_secret", ""), client.client_secret):
            return 401, {"error": "invalid_client", "error_description": "Bad client credentials"}
        grant_type = form.get("grant_type")
        with self._lock:
            if grant_type == "authorization_code":
                code = form.get("code", "")
                grant = self.codes.get(code)
                valid = (
                    grant is not None
                    and not grant.used
                    and grant.expires > time.time()
                    and grant.client_id == client.client_id
                )
                if grant is not None:
                    grant.used = True  # single use, even when presented by another client
                if not valid:
                    return 400, {
                        "error": "invalid_grant",
                        "error_description": f"Invalid authorization code: {code}",
                    }
                return 200, self._new_tokens(grant)
            if grant_type == "refresh_token":
                refresh = form.get("refresh_token", "")
                grant = self.refresh_tokens.get(refresh)
                if grant is None or grant.client_id != client.client_id:
                    return 400, {
                        "error": "invalid_grant",
                        "error_description": f"Invalid refresh token: {refresh}",
                    }
                if self.rotate_refresh:
                    del self.refresh_tokens[refresh]
                for access, old in list(self.access_tokens.items()):
                    if old.user_name == grant.user_name and old.client_id == grant.client_id:
                        del self.access_tokens[access]
                return 200, self._new_tokens(grant, refresh=refresh)
        return 400, {"error": "unsupported_grant_type", "error_description": str(grant_type)}

    def userinfo(self, authorization: str) -> tuple[int, dict[str, Any]]:
        token = authorization.removeprefix("Bearer ").strip()
        grant = self.access_tokens.get(token)
        if not authorization.startswith("Bearer ") or grant is None or grant.expires < time.time():
            return 401, {
                "error": "unauthorized",
                "error_description": "Full authentication is required to access this resource",
            }
        info = {
            "id": f"id-{grant.user_name}",
            "userId": f"uid-{grant.user_name}",
            "tenant": grant.tenant_id,
            **self.users.get((grant.tenant_id, grant.user_name), {"userName": grant.user_name}),
        }
        return 200, info


LOGIN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>KooGallery unified login (fake)</title></head>
<body>
<h1>KooGallery sign-in (fake)</h1>
<form id="login" method="post" action="authorize">
  <input type="hidden" name="appId" id="appId">
  <input type="hidden" name="state" id="state">
  <label>Account <input type="text" name="userName" id="userName" value="{user}"></label>
  <button type="submit" id="platform-sign-in">Sign in</button>
</form>
<script>
  // The real page is a single-page app: its parameters are in the fragment.
  const query = new URLSearchParams((location.hash.split("?")[1]) || "");
  document.getElementById("appId").value = query.get("appId") || "";
  document.getElementById("state").value = query.get("state") || "";
  if ({signed_in}) document.getElementById("login").submit();
</script>
</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOAuthProvider
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet: tests read `fake.requests`
        pass

    def _record(self, form: dict[str, str] | None = None) -> Recorded:
        parts = urlsplit(self.path)
        record = Recorded(
            self.command,
            parts.path,
            dict(parse_qsl(parts.query)),
            form or {},
            {k.lower(): v for k, v in self.headers.items()},
        )
        self.fake.requests.append(record)
        return record

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8") if length else ""
        return dict(parse_qsl(raw, keep_blank_values=True))

    def _send(self, record: Recorded, status: int, body: bytes, content_type: str, headers=()):
        record.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, record: Recorded, status: int, data: Any) -> None:
        body = json.dumps(data).encode() if data is not None else b""
        self._send(record, status, body, "application/json;charset=UTF-8")

    def _redirect(self, record: Recorded, location: str, headers=()) -> None:
        self._send(record, 302, b"", "text/plain", [("Location", location), *headers])

    def _scripted(self, record: Recorded, route: str) -> bool:
        queue = self.fake.scripted.get(route)
        if not queue:
            return False
        status, body = queue.popleft()
        self._json(record, status, body)
        return True

    def _platform_user(self) -> str:
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == PLATFORM_COOKIE:
                return value
        return ""

    def do_GET(self):
        record = self._record()
        fake = self.fake
        path = record.path
        if path.rstrip("/").endswith("/unified-login"):
            user = self._platform_user()
            page = LOGIN_PAGE.replace("{user}", html.escape(user)).replace(
                "{signed_in}", "true" if user else "false"
            )
            self._send(record, 200, page.encode(), "text/html; charset=utf-8")
        elif path.endswith("/workbench"):
            app_id = record.query.get("appId", "")
            user = record.query.get("userName") or self._platform_user()
            code = fake.issue_code(app_id=app_id, user_name=user)
            cookie = f"{PLATFORM_COOKIE}={user}; Path=/; HttpOnly"
            self._redirect(
                record, fake.callback_url(app_id=app_id, code=code), [("Set-Cookie", cookie)]
            )
        elif path.endswith("/api/v1/oauth2/userinfo"):
            if not self._scripted(record, "userinfo"):
                self._json(record, *fake.userinfo(self.headers.get("Authorization", "")))
        elif path.endswith("/api/v1/logout"):
            target = record.query.get("redirect_url") or f"{fake.url}/unified-login/"
            expire = f"{PLATFORM_COOKIE}=; Path=/; Max-Age=0"
            self._redirect(record, target, [("Set-Cookie", expire)])
        else:
            self._json(record, 404, {"error": "not_found"})

    def do_POST(self):
        form = self._form()
        record = self._record(form)
        fake = self.fake
        if record.path.endswith("/unified-login/authorize"):
            app_id = form.get("appId", "")
            user = form.get("userName", "").strip()
            if app_id not in fake.apps or not user:
                self._send(record, 400, b"unknown app or empty account", "text/plain")
                return
            code = fake.issue_code(app_id=app_id, user_name=user)
            location = fake.callback_url(app_id=app_id, code=code, state=form.get("state", ""))
            cookie = f"{PLATFORM_COOKIE}={user}; Path=/; HttpOnly"
            self._redirect(record, location, [("Set-Cookie", cookie)])
        elif record.path.endswith("/api/v1/oauth2/token"):
            if fake.token_delay_s:
                time.sleep(fake.token_delay_s)
            if not self._scripted(record, "token"):
                self._json(record, *fake.token(form))
        else:
            self._json(record, 404, {"error": "not_found"})
