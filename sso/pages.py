"""What a refused user is told, one page per reason (issue 7 §2)."""

from dataclasses import dataclass
from urllib.parse import urlencode

from django.shortcuts import render
from django.urls import reverse

from .models import Reason
from .rules import Refused


@dataclass(frozen=True)
class Page:
    title: str
    message: str
    status: int = 403
    retry: bool = False  # offer "sign in again"


ASK_ADMIN = "Ask your enterprise's administrator to check it in KooGallery."
PAGES: dict[Reason, Page] = {
    Reason.MISSING_TENANT: Page(
        "Enterprise missing",
        "Open this app from KooGallery, or give your enterprise code to sign in.",
        400,
    ),
    Reason.UNKNOWN_TENANT: Page(
        "Enterprise not known",
        "Your enterprise has not been set up for this app. " + ASK_ADMIN,
    ),
    Reason.TENANT_REMOVED: Page(
        "Enterprise no longer subscribed",
        "Your enterprise no longer has access to this app.",
    ),
    Reason.TEST_TENANT: Page(
        "Test enterprise",
        "Sign-in for test (debug) enterprises is switched off on this server.",
    ),
    Reason.NO_APPLICATION: Page(
        "App not set up",
        "This app has not been bound to your enterprise yet. " + ASK_ADMIN,
    ),
    Reason.NO_INSTANCE: Page(
        "No subscription",
        "Your enterprise has no subscription to this app. " + ASK_ADMIN,
    ),
    Reason.INSTANCE_PROVISIONING: Page(
        "Subscription not ready",
        "Your enterprise's subscription is still being set up. Please try again shortly.",
        retry=True,
    ),
    Reason.INSTANCE_FROZEN: Page(
        "Subscription suspended",
        "Your enterprise's subscription to this app is suspended, for example because it "
        "expired. It can be renewed in KooGallery; your data is kept in the meantime.",
    ),
    Reason.INSTANCE_RELEASED: Page(
        "Subscription ended",
        "Your enterprise's subscription to this app has ended.",
    ),
    Reason.MISSING_CODE: Page(
        "Sign-in incomplete", "The sign-in answer was incomplete.", 400, retry=True
    ),
    Reason.BAD_STATE: Page(
        "Sign-in link not valid here",
        "This sign-in was not started in this browser, or it has expired. Please start again.",
        400,
        retry=True,
    ),
    Reason.CODE_REPLAYED: Page(
        "Sign-in link already used",
        "This sign-in link has already been used. Please start again.",
        400,
        retry=True,
    ),
    Reason.CODE_REJECTED: Page(
        "Sign-in link expired",
        "KooGallery did not accept this sign-in link: it was already used or has expired. "
        "Please start again.",
        400,
        retry=True,
    ),
    Reason.CLIENT_REJECTED: Page(
        "Sign-in unavailable",
        "KooGallery refused this app's credentials, so nobody can sign in right now. "
        "The app's operator can see this in the login audit.",
        502,
    ),
    Reason.SECRET_UNREADABLE: Page(
        "Sign-in unavailable",
        "This app's credentials cannot be read on the server. "
        "The app's operator can see this in the login audit.",
        500,
    ),
    Reason.PROVIDER_ERROR: Page(
        "KooGallery not reachable",
        "KooGallery's sign-in service did not answer as expected. Please try again shortly.",
        502,
        retry=True,
    ),
    Reason.TENANT_MISMATCH: Page(
        "Wrong enterprise",
        "The account you signed in with belongs to another enterprise.",
    ),
    Reason.UNKNOWN_USER: Page(
        "Not authorized",
        "Your account has not been given access to this app. " + ASK_ADMIN,
    ),
    Reason.NOT_AUTHORIZED: Page(
        "Not authorized",
        "Your account has not been given access to this app. " + ASK_ADMIN,
    ),
    Reason.AUTHORIZATION_REMOVED: Page(
        "Not authorized",
        "Your access to this app has been removed. " + ASK_ADMIN,
    ),
    Reason.AUTHORIZATION_REVOKED: Page(
        "Access revoked",
        "Your enterprise's administrator has revoked your access to this app.",
    ),
    Reason.USER_DISABLED: Page(
        "Account disabled",
        "Your account is disabled for this app. " + ASK_ADMIN,
    ),
    Reason.REFRESH_REJECTED: Page(
        "Session ended", "Your KooGallery session has ended.", 401, retry=True
    ),
    Reason.TOKEN_EXPIRED: Page(
        "Session ended", "Your KooGallery session has ended.", 401, retry=True
    ),
}


def refused_page(request, refusal: Refused, *, tenant_ref: str = ""):
    page = PAGES[refusal.reason]
    retry_url = ""
    if page.retry and tenant_ref:
        retry_url = f"{reverse('sso:login')}?{urlencode({'tenant': tenant_ref})}"
    return render(
        request,
        "sso/refused.html",
        {"page": page, "reason": refusal.reason.value, "retry_url": retry_url},
        status=page.status,
    )
