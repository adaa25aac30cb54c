"""Sign-in pages: /sso/login, /sso/callback, /sso/logout, /sso/signed-out and the landing page.

Views are thin: they read the query, keep the pending `state` in the session, call the flow,
record the attempt and answer with a redirect or the page for the refusal.
"""

import logging
import time
from urllib.parse import urlencode

from django.contrib.auth import login, logout
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods

from . import flow, oauth, pending, selectors, services
from .decorators import SIGN_IN_KEY, login_url, sso_required
from .models import AuditEvent, AuditOutcome, Reason, SignInEnd
from .pages import refused_page
from .rules import Refused
from .services import Attempt

logger = logging.getLogger("sso")

# A callback without `state` right after we sent the browser off with one means the platform
# dropped it: the person then confirms the sign-in (see `callback`), held this long.
STATE_LOOP_WINDOW_S = 120
CONFIRM_KEY = "sso_confirm"
CONFIRM_TTL_S = 300


def _refuse(request, attempt: Attempt, refusal: Refused, *, event=AuditEvent.LOGIN):
    services.record_audit(
        attempt=attempt,
        event=event,
        outcome=refusal.outcome,
        reason=refusal.reason,
        detail=refusal.detail,
    )
    logger.info(
        "sso %s refused: %s tenant=%r user=%r",
        event,
        refusal.reason,
        attempt.tenant_ref,
        attempt.user_name,
    )
    return refused_page(request, refusal, tenant_ref=attempt.tenant_ref)


def _safe_next(request, value: str) -> str:
    if value and url_has_allowed_host_and_scheme(
        value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return value
    return ""


@require_GET
def login_start(request):
    """`/sso/login?tenant=<tenantId or tenantCode>` (or `?instance=<instanceId>`, the front-end
    URL of queryInstance): send the browser to the unified login page of the tenant's app."""
    tenant_ref = request.GET.get("tenant", "").strip()
    instance_ref = request.GET.get("instance", "").strip()
    next_url = _safe_next(request, request.GET.get("next", ""))
    if not tenant_ref and not instance_ref:
        return render(request, "sso/start.html", {"next": next_url})
    attempt = Attempt.of_request(request, tenant_ref=tenant_ref or instance_ref)
    try:
        application = flow.start(attempt, tenant_ref=tenant_ref, instance_ref=instance_ref)
    except Refused as refusal:
        return _refuse(request, attempt, refusal)
    state = pending.remember(
        request.session,
        application=application,
        tenant_ref=tenant_ref or application.tenant.tenant_id,
        next_url=next_url,
    )
    return redirect(oauth.unified_login_url(app_id=application.app_id, state=state))


@require_GET
def callback(request):
    """The app's login URL: the unified login page sends the browser here with `code` and
    `tenant` (§5.3), and with our `state` when we started the login and the platform carries
    it back."""
    code = request.GET.get("code", "")
    state = request.GET.get("state", "")
    tenant_ref = request.GET.get("tenant", "").strip()
    attempt = Attempt.of_request(request, tenant_ref=tenant_ref)

    if state:
        started = pending.take(request.session, state)
        if started is None:
            return _refuse(request, attempt, Refused(Reason.BAD_STATE, "unknown or expired state"))
        return _redeem(request, attempt, started, code=code, tenant_ref=tenant_ref)
    if not tenant_ref:
        pending.clear(request.session)
        return _refuse(request, attempt, Refused(Reason.MISSING_TENANT, "callback without state"))
    started = pending.take_latest_within(request.session, STATE_LOOP_WINDOW_S)
    if started is None:
        # Opened from KooGallery (not started here): nothing ties this code to this browser,
        # so it is not redeemed; a login of our own, with a state, starts instead.
        return redirect(login_url(tenant_ref=tenant_ref))
    # We sent the browser off with a state moments ago and it came back without one: the
    # platform does not carry `state`. The code is redeemed, but since nothing ties it to this
    # browser (login CSRF), the person confirms whom they are signing in as first.
    return _redeem(request, attempt, started, code=code, tenant_ref=tenant_ref, confirm=True)


def _redeem(request, attempt, started, *, code: str, tenant_ref: str, confirm: bool = False):
    """Complete the login `started` here with `code`: sign the browser in, or, with `confirm`,
    hold the sign-in until the person confirms it (`confirm_view`)."""
    attempt.tenant_ref = attempt.tenant_ref or started.tenant_ref
    application = selectors.application_by_pk(started.application_pk)
    if application is None:
        return _refuse(request, attempt, Refused(Reason.NO_APPLICATION))
    tenant = application.tenant
    if tenant_ref and tenant_ref not in (tenant.tenant_id, tenant.tenant_code):
        attempt.for_application(application)
        return _refuse(request, attempt, Refused(Reason.BAD_STATE, "tenant differs from start"))
    if not code:
        attempt.for_application(application)
        return _refuse(request, attempt, Refused(Reason.MISSING_CODE))

    try:
        sign_in = flow.complete(attempt, application=application, code=code)
    except Refused as refusal:
        return _refuse(request, attempt, refusal)
    if confirm:
        request.session[CONFIRM_KEY] = {
            "sign_in": sign_in.pk,
            "next": started.next_url,
            "at": time.time(),
        }
        logger.info(
            "sso login awaits confirmation: tenant=%r user=%r", tenant.tenant_id, attempt.user_name
        )
        return redirect("sso:confirm")
    return _sign_browser_in(request, attempt, sign_in, started.next_url)


def _sign_browser_in(request, attempt: Attempt, sign_in, next_url: str):
    previous = selectors.active_sign_in(pk=request.session.get(SIGN_IN_KEY), user=request.user)
    if previous is not None:
        services.end_sign_in(sign_in=previous, reason=SignInEnd.REPLACED)
    login(request, sign_in.user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[SIGN_IN_KEY] = sign_in.pk
    services.record_audit(attempt=attempt, event=AuditEvent.LOGIN, outcome=AuditOutcome.SUCCESS)
    logger.info("sso login: tenant=%r user=%r", sign_in.tenant.tenant_id, attempt.user_name)
    return redirect(next_url or reverse("sso:home"))


@require_http_methods(["GET", "POST"])
def confirm_view(request):
    """A sign-in whose callback came back without our state (`callback`): GET shows whom the
    browser would be signed in as, POST (a form with Django's CSRF token, which a planted link
    cannot send) signs it in, or ends the sign-in when declined. Held `CONFIRM_TTL_S`."""
    held = request.session.get(CONFIRM_KEY) or {}
    sign_in = selectors.open_sign_in(pk=held.get("sign_in"))
    if sign_in is None or time.time() - held.get("at", 0) > CONFIRM_TTL_S:
        request.session.pop(CONFIRM_KEY, None)
        if sign_in is not None:
            services.end_sign_in(sign_in=sign_in, reason=SignInEnd.DECLINED)
        attempt = Attempt.of_request(request)
        return _refuse(request, attempt, Refused(Reason.BAD_STATE, "nothing to confirm"))
    if request.method == "GET":
        return render(request, "sso/confirm.html", {"sign_in": sign_in})
    request.session.pop(CONFIRM_KEY, None)
    attempt = Attempt.of_sign_in(request, sign_in)
    if request.POST.get("decision") != "confirm":
        services.end_sign_in(sign_in=sign_in, reason=SignInEnd.DECLINED)
        refusal = Refused(Reason.BAD_STATE, "sign-in declined in the browser")
        return _refuse(request, attempt, refusal)
    return _sign_browser_in(request, attempt, sign_in, held.get("next", ""))


@require_http_methods(["GET", "POST"])
def logout_view(request):
    """GET asks for confirmation (a link cannot sign anyone out); POST ends the local session
    and sends the browser to the tenant's logout endpoint (§5.3), which comes back to
    /sso/signed-out."""
    sign_in = selectors.active_sign_in(pk=request.session.get(SIGN_IN_KEY), user=request.user)
    if request.method == "GET":
        if sign_in is None:
            return redirect("sso:signed_out")
        return render(request, "sso/logout.html", {"sign_in": sign_in})
    if sign_in is None:
        logout(request)
        return redirect("sso:signed_out")
    tenant = sign_in.tenant
    attempt = Attempt.of_sign_in(request, sign_in)
    services.end_sign_in(sign_in=sign_in, reason=SignInEnd.LOGOUT)
    services.record_audit(attempt=attempt, event=AuditEvent.LOGOUT, outcome=AuditOutcome.SUCCESS)
    logout(request)
    back = request.build_absolute_uri(
        f"{reverse('sso:signed_out')}?{urlencode({'tenant': tenant.tenant_id})}"
    )
    try:
        return redirect(oauth.logout_url(tenant=tenant, redirect_url=back))
    except Refused:  # no domainName: nothing to sign out of at the platform
        return redirect(back)


@require_GET
def signed_out(request):
    tenant_ref = request.GET.get("tenant", "")
    again = login_url(tenant_ref=tenant_ref) if tenant_ref else ""
    return render(request, "sso/signed_out.html", {"login_url": again})


@require_GET
@sso_required
def home(request):
    """The signed-in landing page: where the merchant's product hangs its UI."""
    context = request.sso
    tenant_user = context.tenant_user
    return render(
        request,
        "sso/home.html",
        {
            "tenant_user": tenant_user,
            "tenant": context.sign_in.tenant,
            "departments": selectors.department_path(tenant_user=tenant_user),
            "authorization": context.authorization,
            "is_tenant_admin": request.user.has_perm("sso.administer_tenant"),
        },
    )
