"""`sso_required`: the guard for every page of the merchant's product.

It lets a request through only with a live `SignIn` in the session whose access rules still
hold (tenant, subscription, authorisation: a freeze or revocation synced meanwhile ends the
session with the page that says why) and whose platform token is fresh (refreshed when within
five minutes of expiry). The view finds `request.sso` (sign-in, tenant user, authorisation).
"""

import logging
from dataclasses import dataclass
from functools import wraps
from urllib.parse import urlencode

from django.contrib.auth import logout
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone

from tenants.models import Authorization, TenantUser

from . import flow, selectors, services
from .models import AuditEvent, AuditOutcome, Reason, SignIn, SignInEnd
from .oauth import ProviderError
from .pages import refused_page
from .rules import Refused
from .services import Attempt

logger = logging.getLogger("sso")

SIGN_IN_KEY = "sso_sign_in"


@dataclass(frozen=True)
class SsoContext:
    sign_in: SignIn
    tenant_user: TenantUser
    authorization: Authorization


def login_url(*, tenant_ref: str = "", next_url: str = "") -> str:
    params = {k: v for k, v in (("tenant", tenant_ref), ("next", next_url)) if v}
    url = reverse("sso:login")
    return f"{url}?{urlencode(params)}" if params else url


def sso_required(view):
    @wraps(view)
    def guarded(request, *args, **kwargs):
        sign_in = selectors.active_sign_in(pk=request.session.get(SIGN_IN_KEY), user=request.user)
        if sign_in is None:
            if SIGN_IN_KEY in request.session:
                logout(request)  # ended elsewhere (another tab, an operator)
            return redirect(login_url(next_url=request.get_full_path()))
        attempt = Attempt.of_request(request, tenant_ref=sign_in.tenant.tenant_id)
        try:
            authorization, refreshed = flow.recheck(attempt, sign_in=sign_in)
        except ProviderError as problem:
            response = _refresh_failed(request, attempt, sign_in, problem)
            if response is not None:
                return response
            authorization = selectors.authorization_for(
                tenant_user=sign_in.tenant_user, application=sign_in.application
            )
        except Refused as refusal:
            services.end_sign_in(sign_in=sign_in, reason=SignInEnd.ACCESS_LOST)
            services.record_audit(
                attempt=attempt,
                event=AuditEvent.RECHECK,
                outcome=refusal.outcome,
                reason=refusal.reason,
                detail=refusal.detail,
            )
            logout(request)
            return refused_page(request, refusal, tenant_ref=attempt.tenant_ref)
        else:
            if refreshed:
                services.record_audit(
                    attempt=attempt, event=AuditEvent.REFRESH, outcome=AuditOutcome.SUCCESS
                )
        request.sso = SsoContext(sign_in, sign_in.tenant_user, authorization)
        return view(request, *args, **kwargs)

    return guarded


def _refresh_failed(request, attempt: Attempt, sign_in: SignIn, problem: ProviderError):
    """A platform hiccup while the access token is still valid is tolerated (the next request
    tries again); a rejected refresh, or an expired token, ends the sign-in and starts a new
    login (the platform usually still knows the browser, so this is seamless)."""
    services.record_audit(
        attempt=attempt,
        event=AuditEvent.REFRESH,
        outcome=problem.outcome,
        reason=problem.reason,
        detail=problem.detail,
    )
    if problem.reason == Reason.PROVIDER_ERROR and sign_in.expires_at > timezone.now():
        logger.warning(
            "token refresh for sign-in %s failed (%s); retrying later", sign_in.pk, problem.detail
        )
        return None
    services.end_sign_in(sign_in=sign_in, reason=SignInEnd.REFRESH_FAILED)
    logout(request)
    return redirect(
        login_url(tenant_ref=sign_in.tenant.tenant_id, next_url=request.get_full_path())
    )
