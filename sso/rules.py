"""The access rules of sign-in (issue 7 §2), as checks that raise `Refused`.

They run when a login starts, when it completes, and again on every protected request, so a
freeze, release or revocation synced by KooGallery takes effect on open sessions too.
"""

from django.conf import settings

from instances.models import Instance, InstanceState
from tenants.models import Application, Authorization, AuthorizationState, Tenant

from .models import AuditOutcome, Reason

# Reasons that are the platform's or our configuration's fault rather than the user's.
ERROR_REASONS = frozenset({Reason.CLIENT_REJECTED, Reason.SECRET_UNREADABLE, Reason.PROVIDER_ERROR})


class Refused(Exception):
    def __init__(self, reason: Reason, detail: str = ""):
        super().__init__(reason.value)
        self.reason = reason
        self.detail = detail[:255]

    @property
    def outcome(self) -> AuditOutcome:
        return AuditOutcome.ERROR if self.reason in ERROR_REASONS else AuditOutcome.REFUSED


def check_tenant(tenant: Tenant | None) -> Tenant:
    if tenant is None:
        raise Refused(Reason.UNKNOWN_TENANT)
    if tenant.is_test and not settings.SSO_ALLOW_TEST_TENANTS:
        raise Refused(Reason.TEST_TENANT)
    if tenant.removed_at is not None:
        raise Refused(Reason.TENANT_REMOVED)
    return tenant


def check_application(application: Application | None) -> Application:
    if application is None or application.removed_at is not None:
        raise Refused(Reason.NO_APPLICATION)
    return application


def check_instance(*, application: Application, instance: Instance | None) -> None:
    """The subscription behind the application must be active (§2.7 states).

    An application without instance comes from the seller's own credential or a debug call
    (§1.3, §4.1); it is only good for test-data tenants, and only when they are allowed.
    """
    if not application.instance_id:
        if application.tenant.is_test and settings.SSO_ALLOW_TEST_TENANTS:
            return
        raise Refused(Reason.NO_INSTANCE, "application without instanceId")
    if instance is None:
        raise Refused(Reason.NO_INSTANCE, application.instance_id)
    if instance.state == InstanceState.FROZEN:
        raise Refused(Reason.INSTANCE_FROZEN, instance.instance_id)
    if instance.state == InstanceState.RELEASED:
        raise Refused(Reason.INSTANCE_RELEASED, instance.instance_id)
    if instance.state != InstanceState.ACTIVE:
        raise Refused(Reason.INSTANCE_PROVISIONING, instance.instance_id)


def check_authorization(authorization: Authorization | None) -> Authorization:
    """authSync must have authorised the user for the app: not removed (flag 0), not revoked
    (flag 3), enabled (§2.6)."""
    if authorization is None:
        raise Refused(Reason.NOT_AUTHORIZED)
    if authorization.state == AuthorizationState.REMOVED:
        raise Refused(Reason.AUTHORIZATION_REMOVED)
    if authorization.state == AuthorizationState.REVOKED:
        raise Refused(Reason.AUTHORIZATION_REVOKED)
    if not authorization.enabled:
        raise Refused(Reason.USER_DISABLED)
    return authorization
