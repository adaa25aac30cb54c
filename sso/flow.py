"""The login flow of §5.3, step by step, with the access rules applied at each step.

    start     tenant (tenantId, then tenantCode) or instance → application → instance active
    complete  code (first use) → token → userinfo → (tenant, userName) → authorisation → sign in
    recheck   on each protected request: the same rules again, then refresh the token if due

Each step raises `rules.Refused` (or its subclass `oauth.ProviderError`) with the reason; the
caller shows the page for it and records the attempt. HTTP calls to the platform happen here,
outside any transaction; the writes are services.
"""

import hashlib

from django.core.cache import cache

from tenants.models import Application, Authorization

from . import oauth, rules, selectors, services
from .models import Reason, SignIn
from .rules import Refused
from .services import Attempt

# Codes live minutes at most; remembering them for an hour covers any replay of one.
USED_CODE_TTL_S = 3600


def start(attempt: Attempt, *, tenant_ref: str = "", instance_ref: str = "") -> Application:
    """The application a login for this tenant (or purchased instance) goes to."""
    if instance_ref:
        application = selectors.application_for_instance(instance_id=instance_ref)
        if application is None:
            raise Refused(Reason.NO_APPLICATION, "no application for the instance")
    else:
        if not tenant_ref:
            raise Refused(Reason.MISSING_TENANT)
        tenant = rules.check_tenant(selectors.find_tenant(ref=tenant_ref))
        attempt.tenant = tenant
        application = selectors.preferred_application(tenant=tenant)
        rules.check_application(application)
    attempt.for_application(application)
    check_subscription(application)
    return application


def check_subscription(application: Application) -> None:
    rules.check_tenant(application.tenant)
    rules.check_application(application)
    rules.check_instance(application=application, instance=selectors.instance_of(application))


def _first_use(application: Application, code: str) -> bool:
    """Codes are single use (§5.3); the platform enforces it, and so do we, before asking it.
    Only a hash of the code is kept."""
    digest = hashlib.sha256(f"{application.pk}:{code}".encode()).hexdigest()
    return cache.add(f"sso:code:{digest}", 1, timeout=USED_CODE_TTL_S)


def complete(attempt: Attempt, *, application: Application, code: str) -> SignIn:
    attempt.for_application(application)
    check_subscription(application)
    if not _first_use(application, code):
        raise Refused(Reason.CODE_REPLAYED)
    tokens = oauth.exchange_code(application=application, code=code)
    info = oauth.fetch_userinfo(application=application, access_token=tokens.access_token)
    attempt.user_name = info["userName"]
    tenant = application.tenant
    # `tenant` of userinfo is the tenant id (§5.3); when present it must be this tenant's.
    claimed = info.get("tenant")
    if claimed and str(claimed) != tenant.tenant_id:
        raise Refused(Reason.TENANT_MISMATCH)
    tenant_user = selectors.tenant_user(tenant=tenant, user_name=attempt.user_name)
    if tenant_user is None:
        raise Refused(Reason.UNKNOWN_USER)
    attempt.tenant_user = tenant_user
    authorization = rules.check_authorization(
        selectors.authorization_for(tenant_user=tenant_user, application=application)
    )
    account = selectors.account_of(tenant_user=tenant_user)
    if account is not None and not account.user.is_active:
        attempt.user = account.user
        raise Refused(Reason.USER_DISABLED, "deactivated in this server's admin")
    sign_in = services.sign_in(
        tenant_user=tenant_user,
        authorization=authorization,
        application=application,
        tokens=tokens,
    )
    attempt.user = sign_in.user
    return sign_in


def recheck(attempt: Attempt, *, sign_in: SignIn) -> tuple[Authorization, bool]:
    """Access rules again for an open sign-in, then the token refresh if due.

    Returns the authorisation and whether the token was refreshed. Raises `Refused`.
    """
    attempt.for_application(sign_in.application)
    attempt.tenant_user = sign_in.tenant_user
    attempt.user_name = sign_in.tenant_user.user_name
    attempt.user = sign_in.user
    check_subscription(sign_in.application)
    authorization = rules.check_authorization(
        selectors.authorization_for(
            tenant_user=sign_in.tenant_user, application=sign_in.application
        )
    )
    services.apply_role(user=sign_in.user, role=authorization.role)
    refreshed = services.refresh_sign_in(sign_in=sign_in)
    return authorization, refreshed
