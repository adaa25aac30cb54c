"""Writes for tenants, applications, users and authorisations (every write goes through here).

Kit semantics are those of spec §2.6. Every service is idempotent on the interface's natural
key (STYLE.md §3): the same call repeated leaves the same state, and a repeated or unknown
delete succeeds without creating anything.
"""

import functools
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from koogallery import secret_store
from koogallery.crypto import CryptoError, load_rsa_private_key, rsa_oaep_decrypt
from koogallery.resultcodes import InvalidParam, KooGalleryError, ResultCode
from orgsync.models import Department

from . import selectors
from .models import (
    Application,
    Authorization,
    AuthorizationState,
    Role,
    SyncFlag,
    Tenant,
    TenantBinding,
    TenantUser,
)

logger = logging.getLogger(__name__)

# authSync flags that only change the state of existing authorisations (§2.6).
STATE_FLAGS = {
    SyncFlag.DELETE: AuthorizationState.REMOVED,
    SyncFlag.CANCEL: AuthorizationState.REVOKED,
}


def ensure_tenant(*, tenant_id: str, is_test: bool, lock: bool = False) -> Tenant:
    """The tenant row for a kit call, created if a call arrives before tenantSync (§1.3: the
    order of kit calls is not guaranteed). With `lock`, the row is locked until the caller's
    transaction ends, which serialises department syncs of one tenant without blocking others.
    """
    # savepoint=False: nothing here can fail half-way (get_or_create keeps its own savepoint
    # for a concurrent twin), and inside a call's transaction a savepoint is two round trips.
    with transaction.atomic(savepoint=False):
        rows = Tenant.objects.filter(tenant_id=tenant_id, is_test=is_test)
        try:
            # The usual case, the tenant exists: one query (and the lock with it).
            return (rows.select_for_update() if lock else rows).get()
        except Tenant.DoesNotExist:
            pass
        tenant, _ = Tenant.objects.get_or_create(tenant_id=tenant_id, is_test=is_test)
        if lock:
            tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        return tenant


# --- tenantSync (§4.1.1) -----------------------------------------------------------------------


@transaction.atomic
def tenant_sync(
    *,
    tenant_id: str,
    is_test: bool,
    instance_id: str,
    order_id: str,
    tenant_code: str,
    name: str,
    domain_name: str,
    flag: SyncFlag,
) -> Tenant | None:
    """Add/modify: upsert the tenant and its binding to the instance, clearing any removal.

    Delete (dissolving the enterprise, §1.3) marks the binding and the tenant removed; the
    tenant's authorisations stop signing in (`Authorization.can_sign_in`) but are kept, so a
    later add restores them. Deleting an unknown tenant creates nothing and returns None.
    """
    if flag == SyncFlag.DELETE:
        tenant = selectors.tenant(tenant_id=tenant_id, is_test=is_test)
        if tenant is None:
            return None
        now = timezone.now()
        TenantBinding.objects.filter(
            tenant=tenant, instance_id=instance_id, removed_at__isnull=True
        ).update(removed_at=now, updated_at=now)
        if tenant.removed_at is None:
            tenant.removed_at = now
            tenant.save(update_fields=["removed_at", "updated_at"])
        return tenant

    # Two upserts (INSERT … ON CONFLICT DO UPDATE), no read first and no savepoints: a twin
    # waits on the row lock the first one takes and then updates the same row (STYLE.md §3).
    # The returned tenant holds what was written and its pk (other fields are not re-read).
    (tenant,) = Tenant.objects.bulk_create(
        [
            Tenant(
                tenant_id=tenant_id,
                is_test=is_test,
                tenant_code=tenant_code,
                name=name,
                domain_name=domain_name,
                removed_at=None,
            )
        ],
        update_conflicts=True,
        unique_fields=["tenant_id", "is_test"],
        update_fields=["tenant_code", "name", "domain_name", "removed_at", "updated_at"],
    )
    TenantBinding.objects.bulk_create(
        [TenantBinding(tenant=tenant, instance_id=instance_id, order_id=order_id, removed_at=None)],
        update_conflicts=True,
        unique_fields=["tenant", "instance_id"],
        update_fields=["order_id", "removed_at", "updated_at"],
    )
    return tenant


# --- applicationSync (§4.1.2) ------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _rsa_private_key(setting: str):
    # Parsing and checking a 3072-bit key costs milliseconds; the setting rarely changes.
    return load_rsa_private_key(setting)


def decrypt_inbound_client_secret(ciphertext: str) -> str:
    """The plain `clientSecret` of an applicationSync call (§3.6), or a protocol error.

    No key configured is our fault (`000005`); a value our key cannot decrypt is the caller's
    (`000002`). Neither the plaintext nor key material ever reaches a message or a log line.
    """
    setting = settings.KOOGALLERY_RSA_PRIVATE_KEY
    if not setting or not setting.strip():
        logger.error("applicationSync refused: KOOGALLERY_RSA_PRIVATE_KEY is not set")
        raise KooGalleryError(ResultCode.INTERNAL_ERROR, "no RSA private key configured")
    try:
        private_key = _rsa_private_key(setting)
    except CryptoError as exc:
        logger.error("applicationSync refused: KOOGALLERY_RSA_PRIVATE_KEY unusable: %s", exc)
        raise KooGalleryError(
            ResultCode.INTERNAL_ERROR, "RSA private key cannot be loaded"
        ) from None
    try:
        plaintext, variant = rsa_oaep_decrypt(ciphertext, private_key)
    except CryptoError as exc:
        raise InvalidParam(f"clientSecret: cannot be decrypted ({exc})") from None
    # Huawei does not say which OAEP digests it uses (§7): record which one did the job.
    logger.info("applicationSync: clientSecret decrypted with %s", variant)
    return plaintext


@transaction.atomic
def application_sync(
    *,
    tenant_id: str,
    is_test: bool,
    instance_id: str,
    app_id: str,
    client_id: str,
    client_secret_ciphertext: str,
    flag: SyncFlag,
) -> Application | None:
    """Add/modify: decrypt the secret, store it encrypted at rest, upsert the application.

    Delete marks it removed, ignoring the secret (deleting needs none, and a key rotated since
    the add must not make the delete fail); an unknown application creates nothing.
    """
    if flag == SyncFlag.DELETE:
        tenant = selectors.tenant(tenant_id=tenant_id, is_test=is_test)
        if tenant is None:
            return None
        application = Application.objects.filter(
            tenant=tenant, instance_id=instance_id, app_id=app_id
        ).first()
        if application and application.removed_at is None:
            application.removed_at = timezone.now()
            application.save(update_fields=["removed_at", "updated_at"])
        return application

    # Decrypt before touching any row: a refused secret leaves nothing behind (§2.6).
    plaintext = decrypt_inbound_client_secret(client_secret_ciphertext)
    tenant = ensure_tenant(tenant_id=tenant_id, is_test=is_test)
    application, _ = Application.objects.update_or_create(
        tenant=tenant,
        instance_id=instance_id,
        app_id=app_id,
        defaults={
            "client_id": client_id,
            "client_secret_encrypted": secret_store.encrypt_secret(plaintext),
            "removed_at": None,
        },
    )
    return application


# --- authSync (§4.1.3) -------------------------------------------------------------------------

# TenantUser columns an add/modify writes: the whole record as sent, so a field KooGallery stops
# sending (e.g. mobile after the privacy permission is withdrawn) is cleared, not kept stale.
USER_FIELDS = (
    "name",
    "org_code",
    "department",
    "position",
    "employee_code",
    "employee_type",
    "mobile",
    "email",
    "work_place",
    "entry_date",
    "extension",
)


def _last_wins(users: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One record per userName, the last one sent (§2.6), in a fixed order: rows are then
    locked in the same order by concurrent calls, which cannot deadlock each other."""
    by_name = {user["user_name"]: user for user in users}
    return [by_name[name] for name in sorted(by_name)]


def _departments_by_code(tenant: Tenant, codes: set[str]) -> dict[str, int]:
    codes.discard("")
    if not codes:
        return {}
    rows = Department.objects.filter(tenant=tenant, org_code__in=codes)
    return dict(rows.values_list("org_code", "pk"))


@transaction.atomic
def auth_sync(
    *,
    tenant_id: str,
    is_test: bool,
    instance_id: str,
    app_id: str,
    users: Iterable[Mapping[str, Any]],
    current_sync_time: str,
    flag: SyncFlag,
) -> list[Authorization]:
    """Apply one authSync call to every listed user, in a handful of queries whatever the size.

    `users` are validated user records keyed by TenantUser field names plus `role` (Role) and
    `enabled` (bool). Add/modify upserts the users (unique in the tenant) and their
    authorisation for (instance, app), linking each user to the department of its `org_code`
    when that department exists (else later, when it arrives). Delete (flag 0) and cancel
    (flag 3) change only the state of existing authorisations; unknown users are skipped.
    Returns the authorisations written.
    """
    users = _last_wins(users)
    if flag in STATE_FLAGS:
        return _set_authorization_state(
            tenant_id=tenant_id,
            is_test=is_test,
            instance_id=instance_id,
            app_id=app_id,
            user_names=[user["user_name"] for user in users],
            state=STATE_FLAGS[flag],
            current_sync_time=current_sync_time,
        )

    tenant = ensure_tenant(tenant_id=tenant_id, is_test=is_test)
    if not users:
        return []
    departments = _departments_by_code(tenant, {user["org_code"] for user in users})
    rows = [
        TenantUser(
            tenant=tenant,
            user_name=user["user_name"],
            name=user["name"],
            org_code=user["org_code"],
            department_id=departments.get(user["org_code"]),
            position=user["position"],
            employee_code=user["employee_code"],
            employee_type=user["employee_type"],
            mobile=user["mobile"],
            email=user["email"],
            work_place=user["work_place"],
            entry_date=user["entry_date"],
            extension=user["extension"],
        )
        for user in users
    ]
    TenantUser.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["tenant", "user_name"],
        update_fields=[*USER_FIELDS, "updated_at"],
    )
    # The upsert does not hand back the ids of rows that already existed on every backend.
    user_ids = dict(
        TenantUser.objects.filter(
            tenant=tenant, user_name__in=[user["user_name"] for user in users]
        ).values_list("user_name", "pk")
    )
    authorizations = [
        Authorization(
            tenant=tenant,
            user_id=user_ids[user["user_name"]],
            instance_id=instance_id,
            app_id=app_id,
            role=user["role"] if user["role"] in Role.values else Role.USER,
            enabled=user["enabled"],
            state=AuthorizationState.AUTHORIZED,
            current_sync_time=current_sync_time,
        )
        for user in users
    ]
    Authorization.objects.bulk_create(
        authorizations,
        update_conflicts=True,
        unique_fields=["user", "instance_id", "app_id"],
        update_fields=["role", "enabled", "state", "current_sync_time", "updated_at"],
    )
    return authorizations


def _set_authorization_state(
    *,
    tenant_id: str,
    is_test: bool,
    instance_id: str,
    app_id: str,
    user_names: list[str],
    state: AuthorizationState,
    current_sync_time: str,
) -> list[Authorization]:
    """Delete/cancel: only existing authorisations change; the users themselves are kept."""
    tenant = selectors.tenant(tenant_id=tenant_id, is_test=is_test)
    if tenant is None or not user_names:
        return []
    matching = Authorization.objects.filter(
        tenant=tenant,
        instance_id=instance_id,
        app_id=app_id,
        user__user_name__in=user_names,
    )
    matching.update(state=state, current_sync_time=current_sync_time, updated_at=timezone.now())
    return list(matching.select_related("user"))
