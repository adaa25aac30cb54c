"""Writes of sign-in (STYLE.md §2): audit rows, accounts, sign-ins and their tokens."""

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils import timezone

from tenants.models import Application, Authorization, Role, Tenant, TenantUser

from . import oauth
from .models import (
    AuditEvent,
    AuditOutcome,
    LoginAudit,
    Reason,
    SignIn,
    SignInEnd,
    TenantAccount,
)

ADMIN_GROUP = "tenant administrators"
ADMIN_PERMISSION = ("sso", "administer_tenant")


@dataclass
class Attempt:
    """What is known about one request so far, for its audit row (filled in as the flow goes)."""

    tenant_ref: str = ""
    remote_addr: str = ""
    user_agent: str = ""
    tenant: Tenant | None = None
    application: Application | None = None
    user_name: str = ""
    tenant_user: TenantUser | None = None
    user: AbstractBaseUser | None = None

    @classmethod
    def of_request(cls, request, *, tenant_ref: str = "") -> "Attempt":
        return cls(
            tenant_ref=tenant_ref[:64],
            remote_addr=request.META.get("REMOTE_ADDR", "")[:64],
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:255],
        )

    @classmethod
    def of_sign_in(cls, request, sign_in: SignIn) -> "Attempt":
        """An attempt on an existing sign-in: everything about it is known."""
        attempt = cls.of_request(request, tenant_ref=sign_in.tenant.tenant_id)
        attempt.for_application(sign_in.application)
        attempt.tenant_user = sign_in.tenant_user
        attempt.user_name = sign_in.tenant_user.user_name
        attempt.user = sign_in.user
        return attempt

    def for_application(self, application: Application) -> None:
        self.application = application
        self.tenant = application.tenant


@transaction.atomic
def record_audit(
    *,
    attempt: Attempt,
    event: AuditEvent,
    outcome: AuditOutcome,
    reason: Reason | str = "",
    detail: str = "",
) -> LoginAudit:
    application = attempt.application
    return LoginAudit.objects.create(
        event=event,
        outcome=outcome,
        reason=reason,
        detail=detail[:255],
        tenant_ref=attempt.tenant_ref[:64],
        tenant=attempt.tenant,
        application=application,
        instance_id=application.instance_id if application else "",
        user_name=attempt.user_name[:64],
        tenant_user=attempt.tenant_user,
        user=attempt.user,
        remote_addr=attempt.remote_addr,
        user_agent=attempt.user_agent,
    )


def _account_user(tenant_user: TenantUser):
    """The Django user standing for `tenant_user`, created and linked on first sign-in."""
    account = TenantAccount.objects.select_related("user").filter(tenant_user=tenant_user).first()
    if account is not None:
        user = account.user
    else:
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username=f"kg:{tenant_user.tenant_id}:{tenant_user.user_name}"
        )
        if created:
            # Only the platform signs these users in (§5.3); there is no local password.
            user.set_unusable_password()
        TenantAccount.objects.get_or_create(tenant_user=tenant_user, defaults={"user": user})
    # Name and e-mail follow authSync, the source of truth for people (§4.1.3).
    user.first_name = tenant_user.name[:150]
    user.email = tenant_user.email[:254]
    user.save()
    return user


def apply_role(*, user, role: str) -> None:
    """authSync role `admin` → member of the "tenant administrators" group, which holds the
    `sso.administer_tenant` permission; any other role → not a member (§4.1.3)."""
    group, _ = Group.objects.get_or_create(name=ADMIN_GROUP)
    app_label, codename = ADMIN_PERMISSION
    permission = Permission.objects.get(content_type__app_label=app_label, codename=codename)
    group.permissions.add(permission)
    is_member = user.groups.filter(pk=group.pk).exists()
    if role == Role.ADMIN and not is_member:
        user.groups.add(group)
    elif role != Role.ADMIN and is_member:
        user.groups.remove(group)


@transaction.atomic
def sign_in(
    *,
    tenant_user: TenantUser,
    authorization: Authorization,
    application: Application,
    tokens: oauth.Tokens,
) -> SignIn:
    user = _account_user(tenant_user)
    apply_role(user=user, role=authorization.role)
    record = SignIn(
        user=user,
        tenant_user=tenant_user,
        tenant=application.tenant,
        application=application,
        expires_at=tokens.expires_at,
    )
    record.store_tokens(access_token=tokens.access_token, refresh_token=tokens.refresh_token)
    record.save()
    return record


@transaction.atomic
def refresh_sign_in(*, sign_in: SignIn) -> bool:
    """Refresh the platform tokens of `sign_in` if they expire within the margin; True if done.

    The row is locked while the platform is asked, so two requests of one browser cannot both
    spend the same refresh token (the platform may rotate it). Raises `oauth.ProviderError`.
    """
    locked = SignIn.objects.select_for_update().get(pk=sign_in.pk)
    if locked.ended_at is not None:
        return False
    tokens = oauth.refresh_if_due(
        application=sign_in.application,
        access_token=locked.access_token(),
        refresh_token=locked.refresh_token(),
        expires_at=locked.expires_at,
    )
    if tokens is None:
        return False
    locked.store_tokens(access_token=tokens.access_token, refresh_token=tokens.refresh_token)
    locked.expires_at = tokens.expires_at
    locked.refreshed_at = timezone.now()
    locked.save(
        update_fields=[
            "access_token_encrypted",
            "refresh_token_encrypted",
            "expires_at",
            "refreshed_at",
        ]
    )
    sign_in.refresh_from_db()
    return True


@transaction.atomic
def end_sign_in(*, sign_in: SignIn, reason: SignInEnd) -> SignIn:
    """End a sign-in and forget its tokens (nothing needs them afterwards)."""
    # Filtered update: ending twice (two tabs signing out) keeps the first end.
    SignIn.objects.filter(pk=sign_in.pk, ended_at__isnull=True).update(
        ended_at=timezone.now(),
        end_reason=reason,
        access_token_encrypted="",
        refresh_token_encrypted="",
    )
    sign_in.refresh_from_db()
    return sign_in
