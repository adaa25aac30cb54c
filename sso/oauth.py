"""The OAuth client of KooGallery's joint-operation login (spec §5.3), built on Authlib.

Endpoints live on the tenant's `domainName` (tenantSync, §4.1.1): token and refresh at
`/api/v1/oauth2/token` (form fields `client_id` + `client_secret`, i.e. `client_secret_post`),
userinfo at `/api/v1/oauth2/userinfo` (Bearer), logout at `/api/v1/logout`. The client secret is
the decrypted applicationSync `clientSecret` (§2.6).

Nothing here logs or raises with a code, token or secret in it: failures become `ProviderError`
with a `Reason` and a `detail` that is only the platform's error code or an HTTP status (the
platform's descriptions may echo the code, e.g. "Invalid authorization code: …").
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from django.conf import settings

from koogallery.protocol.crypto import CryptoError
from koogallery.protocol.secret_store import decrypt_client_secret
from tenants.models import Application, Tenant

from .models import Reason
from .rules import Refused

logger = logging.getLogger("sso.oauth")

TOKEN_PATH = "/api/v1/oauth2/token"
USERINFO_PATH = "/api/v1/oauth2/userinfo"
LOGOUT_PATH = "/api/v1/logout"
# §5.3: access tokens live 2 h; used when the platform leaves `expires_in` out.
DEFAULT_EXPIRES_IN_S = 7200
# Refresh when the access token has less than this left (checked on every protected request).
REFRESH_MARGIN_S = 300

# Error codes meaning "these client credentials are not accepted" (§5.3: `invalid_client` /
# "Client ID mismatch" = stale clientId; "Bad client credentials" = wrong secret or domain).
CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client", "unauthorized"})


class ProviderError(Refused):
    """The platform said no, or could not be asked; a refusal like any other for the caller."""


@dataclass(frozen=True)
class Tokens:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime


def base_url(domain_name: str) -> str:
    """The tenant's `domainName` as a base URL (§5.3: add `https://` if schemeless)."""
    domain = domain_name.strip().rstrip("/")
    if domain and "://" not in domain:
        domain = f"https://{domain}"
    return domain


def endpoint(tenant: Tenant, path: str) -> str:
    domain = base_url(tenant.domain_name)
    if not domain:
        raise ProviderError(Reason.PROVIDER_ERROR, "tenant has no domainName")
    return domain + path


def logout_url(*, tenant: Tenant, redirect_url: str) -> str:
    return f"{endpoint(tenant, LOGOUT_PATH)}?{urlencode({'redirect_url': redirect_url})}"


def unified_login_url(*, app_id: str, state: str) -> str:
    """`KOOGALLERY_UNIFIED_LOGIN_URL` for this app, carrying our `state` (and `redirect_uri`
    when `SSO_REDIRECT_URI` is set). The page is a single-page app whose parameters sit in the
    fragment (`#/portal-login?ind=UNOP&appId=…`), so ours are added where its own are."""
    url = settings.KOOGALLERY_UNIFIED_LOGIN_URL.replace("{app_id}", quote(app_id, safe=""))
    params = {"state": state}
    if settings.SSO_REDIRECT_URI:
        params["redirect_uri"] = settings.SSO_REDIRECT_URI
    return _add_params(url, params)


def _add_params(url: str, params: dict[str, str]) -> str:
    encoded = urlencode(params)
    if "#" in url:
        head, fragment = url.split("#", 1)
        return f"{head}#{fragment}{'&' if '?' in fragment else '?'}{encoded}"
    parts = urlsplit(url)
    return f"{url}{'&' if parts.query else '?'}{encoded}"


def _client(application: Application, *, token: dict | None = None, **kwargs) -> OAuth2Session:
    try:
        secret = decrypt_client_secret(application)
    except CryptoError:
        raise ProviderError(Reason.SECRET_UNREADABLE, "FIELD_ENCRYPTION_KEYS changed?") from None
    client = OAuth2Session(
        client_id=application.client_id,
        client_secret=secret,
        token_endpoint_auth_method="client_secret_post",
        token=token,
        default_timeout=settings.SSO_HTTP_TIMEOUT_S,
        **kwargs,
    )
    # Strict TLS always; an operator may point at their own CA bundle (as for §2.9 calls).
    client.verify = settings.KOOGALLERY_CA_BUNDLE or True
    return client


def _tokens(token: dict[str, Any], *, previous_refresh_token: str = "") -> Tokens:
    access = token.get("access_token")
    if not isinstance(access, str) or not access:
        raise ProviderError(Reason.PROVIDER_ERROR, "token answer without access_token")
    expires_at = token.get("expires_at")
    if not isinstance(expires_at, int | float):
        expires_in = token.get("expires_in")
        try:
            expires_in = int(expires_in)
        except (TypeError, ValueError):
            expires_in = DEFAULT_EXPIRES_IN_S
        expires_at = time.time() + expires_in
    refresh = token.get("refresh_token") or previous_refresh_token
    return Tokens(
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) else "",
        expires_at=datetime.fromtimestamp(expires_at, tz=UTC),
    )


def _error_from(exc: Exception, *, grant_error: Reason) -> ProviderError:
    """Map what Authlib/requests raised to a reason; never keep the exception's text."""
    if isinstance(exc, OAuthError):
        code = str(exc.error or "")[:64]
        if code == "invalid_grant":
            return ProviderError(grant_error, code)
        if code in CLIENT_ERRORS:
            return ProviderError(Reason.CLIENT_REJECTED, code)
        return ProviderError(Reason.PROVIDER_ERROR, code or "oauth error")
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        # §5.3: a bare 401/403 on the token endpoint = wrong domainName or undecrypted secret.
        reason = Reason.CLIENT_REJECTED if status in (401, 403) else Reason.PROVIDER_ERROR
        return ProviderError(reason, f"HTTP {status}")
    if isinstance(exc, requests.Timeout):
        return ProviderError(Reason.PROVIDER_ERROR, "timeout")
    if isinstance(exc, requests.RequestException):
        return ProviderError(Reason.PROVIDER_ERROR, type(exc).__name__)
    return ProviderError(Reason.PROVIDER_ERROR, "unexpected token answer")


def exchange_code(*, application: Application, code: str) -> Tokens:
    """Redeem an authorization code (single use) at the tenant's token endpoint."""
    url = endpoint(application.tenant, TOKEN_PATH)
    client = _client(application)
    try:
        with client:
            token = client.fetch_token(
                url,
                grant_type="authorization_code",
                code=code,
                redirect_uri=settings.SSO_REDIRECT_URI or None,
            )
    except (OAuthError, requests.RequestException, ValueError) as exc:
        raise _error_from(exc, grant_error=Reason.CODE_REJECTED) from None
    return _tokens(token)


def fetch_userinfo(*, application: Application, access_token: str) -> dict[str, Any]:
    url = endpoint(application.tenant, USERINFO_PATH)
    client = _client(application, token={"access_token": access_token, "token_type": "Bearer"})
    try:
        with client:
            response = client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        info = response.json()
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        raise ProviderError(Reason.PROVIDER_ERROR, f"userinfo HTTP {status}") from None
    except (requests.RequestException, ValueError) as exc:
        raise _error_from(exc, grant_error=Reason.PROVIDER_ERROR) from None
    if not isinstance(info, dict) or not isinstance(info.get("userName"), str):
        raise ProviderError(Reason.PROVIDER_ERROR, "userinfo without userName")
    return info


def refresh_if_due(
    *, application: Application, access_token: str, refresh_token: str, expires_at: datetime
) -> Tokens | None:
    """New tokens when the access token expires within `REFRESH_MARGIN_S`, else None.

    Authlib decides (`ensure_active_token` with that leeway) and performs the refresh grant
    (`client_id`, `client_secret`, `refresh_token`, §5.3). Raises `ProviderError`
    (`REFRESH_REJECTED` for `invalid_grant`); `TOKEN_EXPIRED` when due but no refresh token.
    """
    token = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_at": int(expires_at.timestamp()),
    }
    if refresh_token:
        token["refresh_token"] = refresh_token
    refreshed: dict[str, Any] = {}
    client = _client(
        application,
        token=token,
        token_endpoint=endpoint(application.tenant, TOKEN_PATH),
        leeway=REFRESH_MARGIN_S,
        update_token=lambda new, **_: refreshed.update(new),
    )
    try:
        with client:
            client.ensure_active_token()
    except (OAuthError, requests.RequestException, ValueError) as exc:
        raise _error_from(exc, grant_error=Reason.REFRESH_REJECTED) from None
    if refreshed:
        return _tokens(refreshed, previous_refresh_token=refresh_token)
    if not refresh_token and client.token.is_expired(leeway=0):
        raise ProviderError(Reason.TOKEN_EXPIRED, "no refresh token")
    return None
