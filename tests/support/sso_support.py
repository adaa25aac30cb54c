"""Shared pieces of the SSO tests: a synced tenant built through the ORM (rows exactly as the
kit services leave them) and known to the fake platform. Fixtures are in
tests/support/sso_fixtures.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from django.utils import timezone

from instances.models import Instance, InstanceState
from koogallery.protocol.secret_store import encrypt_secret
from orgsync.models import Department
from tenants.models import (
    Application,
    Authorization,
    AuthorizationState,
    Role,
    Tenant,
    TenantBinding,
    TenantUser,
)

if TYPE_CHECKING:
    from tests.support.fakes.oauth_provider import FakeOAuthProvider

CLIENT_SECRET = "cs-3f9a1c7e5b2d4086a1e9"
TENANT_ID = "68cbc86a1b2c3d4e5f6880d92f36422fa0e"
TENANT_CODE = "acme"
APP_ID = "KSIDJF1234456"
INSTANCE_ID = "huaiweitest123456"


@dataclass
class SsoWorld:
    """One buyer enterprise with an active instance and the app's OAuth client, synced."""

    fake: FakeOAuthProvider
    tenant: Tenant
    application: Application
    instance: Instance | None
    client_secret: str

    def add_user(
        self,
        user_name: str,
        *,
        name: str = "",
        role: str = Role.USER,
        enabled: bool = True,
        state: str | None = AuthorizationState.AUTHORIZED,
        org_code: str = "",
        email: str = "",
        on_platform: bool = True,
    ) -> TenantUser:
        """A tenant user (authSync) with an authorisation in `state` (None: none at all);
        `on_platform`: the platform knows the account (it can sign in there)."""
        department = Department.objects.filter(tenant=self.tenant, org_code=org_code).first()
        user = TenantUser.objects.create(
            tenant=self.tenant,
            user_name=user_name,
            name=name or user_name.title(),
            org_code=org_code,
            department=department,
            email=email,
        )
        if state is not None:
            Authorization.objects.create(
                tenant=self.tenant,
                user=user,
                instance_id=self.application.instance_id,
                app_id=self.application.app_id,
                role=role,
                enabled=enabled,
                state=state,
            )
        if on_platform:
            self.fake.add_user(
                tenant_id=self.tenant.tenant_id,
                user_name=user_name,
                name=user.name,
                role=role,
                organizationCode=org_code,
                projectName=self.tenant.name,
            )
        return user

    def add_departments(self, *rows: tuple[str, str, str]) -> None:
        """(org_code, org_name, parent_code) in parent-first order."""
        for code, name, parent_code in rows:
            parent = Department.objects.filter(tenant=self.tenant, org_code=parent_code).first()
            Department.objects.create(
                tenant=self.tenant,
                org_code=code,
                org_name=name,
                parent_code=parent_code,
                parent=parent,
            )

    def set_instance_state(self, state: InstanceState) -> None:
        now = timezone.now()
        Instance.objects.filter(pk=self.instance.pk).update(
            state=state,
            frozen_at=now if state == InstanceState.FROZEN else None,
            released_at=now if state == InstanceState.RELEASED else None,
        )

    def authorization(self, user_name: str) -> Authorization:
        return Authorization.objects.get(tenant=self.tenant, user__user_name=user_name)


def build_world(
    fake: FakeOAuthProvider,
    *,
    redirect_url: str,
    tenant_id: str = TENANT_ID,
    tenant_code: str = TENANT_CODE,
    name: str = "Acme Trading Ltd",
    instance_id: str = INSTANCE_ID,
    app_id: str = APP_ID,
    client_id: str = "bc20a7f3880d92f3",
    client_secret: str = CLIENT_SECRET,
    platform_secret: str | None = None,
    is_test: bool = False,
    instance_state: InstanceState | None = InstanceState.ACTIVE,
    domain_name: str | None = None,
) -> SsoWorld:
    """Rows as tenantSync, applicationSync and newInstance leave them; the platform knows the
    app with `platform_secret` (default: the same secret, i.e. correctly synced)."""
    tenant = Tenant.objects.create(
        tenant_id=tenant_id,
        tenant_code=tenant_code,
        name=name,
        is_test=is_test,
        domain_name=domain_name if domain_name is not None else fake.url,
    )
    TenantBinding.objects.create(
        tenant=tenant, instance_id=instance_id, order_id="CS1906666666ABCDE"
    )
    instance = None
    if instance_id and instance_state is not None:
        instance = Instance.objects.create(
            instance_id=instance_id,
            order_id=f"order-{instance_id}",
            is_test=is_test,
            state=instance_state,
        )
    application = Application.objects.create(
        tenant=tenant,
        instance_id=instance_id,
        app_id=app_id,
        client_id=client_id,
        client_secret_encrypted=encrypt_secret(client_secret),
    )
    fake.register_app(
        app_id=app_id,
        client_id=client_id,
        client_secret=platform_secret if platform_secret is not None else client_secret,
        tenant_id=tenant_id,
        redirect_url=redirect_url,
    )
    return SsoWorld(fake, tenant, application, instance, client_secret)


# --- the login round trip with Django's test client ------------------------------------------

CALLBACK = "http://testserver/sso/callback"


def start_login(client, tenant=TENANT_ID, **params) -> dict[str, str]:
    """GET /sso/login; returns the parameters handed to the unified login page."""
    response = client.get("/sso/login", {"tenant": tenant, **params})
    assert response.status_code == 302, response.content
    location = response["Location"]
    fragment = urlsplit(location).fragment  # "/portal-login?ind=UNOP&appId=…&state=…"
    assert fragment.startswith("/portal-login?"), location
    return {k: v[0] for k, v in parse_qs(fragment.split("?", 1)[1]).items()}


def platform_login(client, world: SsoWorld, user_name: str, **params):
    """The whole round trip as the platform plays it: start, sign in there, come back."""
    return round_trip(client, world.fake, user_name, tenant_id=world.tenant.tenant_id, **params)


def round_trip(client, fake: FakeOAuthProvider, user_name: str, *, tenant_id: str, **params):
    sent = start_login(client, **params)
    code = fake.issue_code(app_id=sent["appId"], user_name=user_name)
    return client.get("/sso/callback", {"code": code, "tenant": tenant_id, "state": sent["state"]})
