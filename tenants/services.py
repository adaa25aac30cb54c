"""Writes for tenants, applications, users and authorisations (every write goes through here).

Kit semantics are those of spec §2.6. Every service is idempotent on the interface's natural
key (STYLE.md §3): the same call repeated leaves the same state, and a repeated or unknown
delete succeeds without creating anything.

Each service is one transaction without a savepoint of its own (`atomic(savepoint=False)`):
called inside a kit call's transaction, a savepoint would cost two round trips, and a service
that fails rolls the caller's transaction back anyway (the pipeline answers a refusal and
rolls back). On PostgreSQL an add/modify of each interface is one statement (upserts chained
by data-modifying CTEs, authSync's users sent as one JSON parameter, no models built); the
portable ORM path serves SQLite, and tests/test_tenant_writes.py proves both leave the same
rows.
"""

import functools
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.db import connection, transaction
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


# The tenant of a kit call: found, or created (tenantSync may come later, §1.3). A tenant that a
# concurrent call created after this statement's snapshot is neither found nor created.
_ENSURE_TENANT_CTE = """
found AS (
    SELECT id FROM tenants_tenant WHERE tenant_id = %(tenant_id)s AND is_test = %(is_test)s
),
created AS (
    INSERT INTO tenants_tenant (tenant_id, is_test, tenant_code, name, domain_name, removed_at,
                                org_synced_at, created_at, updated_at)
    SELECT %(tenant_id)s, %(is_test)s, '', '', '', NULL, NULL, %(now)s, %(now)s
    WHERE NOT EXISTS (SELECT FROM found)
    ON CONFLICT (tenant_id, is_test) DO NOTHING
    RETURNING id
),
tenant AS (SELECT id FROM found UNION ALL SELECT id FROM created)
"""


# --- tenantSync (§4.1.1) -----------------------------------------------------------------------


@transaction.atomic(savepoint=False)
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

    upsert = _upsert_tenant_postgresql if connection.vendor == "postgresql" else _upsert_tenant
    return upsert(
        tenant_id=tenant_id,
        is_test=is_test,
        instance_id=instance_id,
        order_id=order_id,
        tenant_code=tenant_code,
        name=name,
        domain_name=domain_name,
    )


# Two upserts (INSERT … ON CONFLICT DO UPDATE), no read first and no savepoints: a twin waits on
# the row lock the first one takes and then updates the same row (STYLE.md §3). The returned
# tenant holds what was written and its pk (other fields are not re-read).


def _upsert_tenant(
    *, tenant_id, is_test, instance_id, order_id, tenant_code, name, domain_name
) -> Tenant:
    """The tenant, then its binding, with the ORM."""
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


def _upsert_tenant_postgresql(
    *, tenant_id, is_test, instance_id, order_id, tenant_code, name, domain_name
) -> Tenant:
    """Both upserts in one statement."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _TENANT_SYNC_POSTGRESQL,
            {
                "tenant_id": tenant_id,
                "is_test": is_test,
                "tenant_code": tenant_code,
                "name": name,
                "domain_name": domain_name,
                "instance_id": instance_id,
                "order_id": order_id,
                "now": now,
            },
        )
        (pk,) = cursor.fetchone()
    return Tenant(
        pk=pk,
        tenant_id=tenant_id,
        is_test=is_test,
        tenant_code=tenant_code,
        name=name,
        domain_name=domain_name,
        removed_at=None,
        created_at=now,
        updated_at=now,
    )


# The two upserts of an add/modify in one statement (the binding's upsert takes the tenant's id
# from the first). Column lists as Django writes them: created_at only on insert.
_TENANT_SYNC_POSTGRESQL = """
WITH tenant AS (
    INSERT INTO tenants_tenant (tenant_id, is_test, tenant_code, name, domain_name, removed_at,
                                org_synced_at, created_at, updated_at)
    VALUES (%(tenant_id)s, %(is_test)s, %(tenant_code)s, %(name)s, %(domain_name)s, NULL, NULL,
            %(now)s, %(now)s)
    ON CONFLICT (tenant_id, is_test) DO UPDATE SET
        tenant_code = EXCLUDED.tenant_code, name = EXCLUDED.name,
        domain_name = EXCLUDED.domain_name, removed_at = NULL, updated_at = EXCLUDED.updated_at
    RETURNING id
)
INSERT INTO tenants_tenantbinding (tenant_id, instance_id, order_id, removed_at, created_at,
                                   updated_at)
SELECT id, %(instance_id)s, %(order_id)s, NULL, %(now)s, %(now)s FROM tenant
ON CONFLICT (tenant_id, instance_id) DO UPDATE SET
    order_id = EXCLUDED.order_id, removed_at = NULL, updated_at = EXCLUDED.updated_at
RETURNING tenant_id
"""


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


@transaction.atomic(savepoint=False)
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
    encrypted = secret_store.encrypt_secret(plaintext)
    if connection.vendor == "postgresql":
        application = _upsert_application_postgresql(
            tenant_id=tenant_id,
            is_test=is_test,
            instance_id=instance_id,
            app_id=app_id,
            client_id=client_id,
            client_secret_encrypted=encrypted,
        )
        if application is not None:
            return application
    return _upsert_application(
        tenant_id=tenant_id,
        is_test=is_test,
        instance_id=instance_id,
        app_id=app_id,
        client_id=client_id,
        client_secret_encrypted=encrypted,
    )


def _upsert_application(
    *, tenant_id, is_test, instance_id, app_id, client_id, client_secret_encrypted
) -> Application:
    """The tenant (created if absent), then the application, with the ORM."""
    tenant = ensure_tenant(tenant_id=tenant_id, is_test=is_test)
    application, _ = Application.objects.update_or_create(
        tenant=tenant,
        instance_id=instance_id,
        app_id=app_id,
        defaults={
            "client_id": client_id,
            "client_secret_encrypted": client_secret_encrypted,
            "removed_at": None,
        },
    )
    return application


def _upsert_application_postgresql(
    *, tenant_id, is_test, instance_id, app_id, client_id, client_secret_encrypted
) -> Application | None:
    """The same in one statement; None, having written nothing, when the tenant was created
    by a concurrent call after the statement began (see `_ENSURE_TENANT_CTE`)."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _APPLICATION_SYNC_POSTGRESQL,
            {
                "tenant_id": tenant_id,
                "is_test": is_test,
                "instance_id": instance_id,
                "app_id": app_id,
                "client_id": client_id,
                "secret": client_secret_encrypted,
                "now": now,
            },
        )
        row = cursor.fetchone()
    if row is None:
        return None
    pk, tenant_pk, created_at = row
    return Application(
        pk=pk,
        tenant_id=tenant_pk,
        instance_id=instance_id,
        app_id=app_id,
        client_id=client_id,
        client_secret_encrypted=client_secret_encrypted,
        removed_at=None,
        created_at=created_at,
        updated_at=now,
    )


_APPLICATION_SYNC_POSTGRESQL = f"""
WITH {_ENSURE_TENANT_CTE},
written AS (
    INSERT INTO tenants_application (tenant_id, instance_id, app_id, client_id,
                                     client_secret_encrypted, removed_at, created_at, updated_at)
    SELECT id, %(instance_id)s, %(app_id)s, %(client_id)s, %(secret)s, NULL, %(now)s, %(now)s
    FROM tenant
    ON CONFLICT (tenant_id, instance_id, app_id) DO UPDATE SET
        client_id = EXCLUDED.client_id, client_secret_encrypted = EXCLUDED.client_secret_encrypted,
        removed_at = NULL, updated_at = EXCLUDED.updated_at
    RETURNING id, tenant_id, created_at
)
SELECT id, tenant_id, created_at FROM written
"""  # noqa: S608 (constant text)


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


def _role(value: str) -> str:
    """Only the exact role `admin` administers (§2.6)."""
    return Role.ADMIN.value if value == Role.ADMIN.value else Role.USER.value


@transaction.atomic(savepoint=False)
def auth_sync(
    *,
    tenant_id: str,
    is_test: bool,
    instance_id: str,
    app_id: str,
    users: Iterable[Mapping[str, Any]],
    current_sync_time: str,
    flag: SyncFlag,
) -> int:
    """Apply one authSync call to every listed user, in a handful of queries whatever the size.

    `users` are validated user records keyed by TenantUser field names plus `role` (Role) and
    `enabled` (bool). Add/modify upserts the users (unique in the tenant) and their
    authorisation for (instance, app), linking each user to the department of its `org_code`
    when that department exists (else later, when it arrives). Delete (flag 0) and cancel
    (flag 3) change only the state of existing authorisations; unknown users are skipped.
    Returns how many authorisations were written.
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
    if users and connection.vendor == "postgresql":
        tenant_pk = _hold_tenant(tenant_id, is_test)
        return _authorize_postgresql(tenant_pk, instance_id, app_id, users, current_sync_time)
    return _authorize_portable(tenant_id, is_test, instance_id, app_id, users, current_sync_time)


_HOLD_TENANT = (
    f"SELECT id FROM {Tenant._meta.db_table} WHERE tenant_id = %s AND is_test = %s FOR KEY SHARE"  # noqa: S608
)


def _hold_tenant(tenant_id: str, is_test: bool) -> int:
    """The tenant's primary key (PostgreSQL), its row created if absent and held until the
    transaction ends, in a statement of its own before the users are written. Department
    writers lock it FOR UPDATE (orgsync/services.py), so an authSync either sees the department
    a concurrent sync added and links its users to it, or commits first and the add links
    them: without the hold, a user written while the add was uncommitted stayed unlinked. FOR
    KEY SHARE: concurrent authSyncs of one tenant share it. (SQLite has one writer at a time.)
    """
    with connection.cursor() as cursor:
        cursor.execute(_HOLD_TENANT, [tenant_id, is_test])
        row = cursor.fetchone()
        if row is None:
            ensure_tenant(tenant_id=tenant_id, is_test=is_test)
            cursor.execute(_HOLD_TENANT, [tenant_id, is_test])
            row = cursor.fetchone()
    return row[0]


def _authorize_portable(
    tenant_id: str,
    is_test: bool,
    instance_id: str,
    app_id: str,
    users: list[Mapping[str, Any]],
    current_sync_time: str,
) -> int:
    """Add/modify with the ORM: tenant, departments, users, their ids, authorisations."""
    tenant = ensure_tenant(tenant_id=tenant_id, is_test=is_test)
    if not users:
        return 0
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
            role=_role(user["role"]),
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
    return len(authorizations)


def _authorize_postgresql(
    tenant_pk: int,
    instance_id: str,
    app_id: str,
    users: list[Mapping[str, Any]],
    current_sync_time: str,
) -> int:
    """Add/modify in one statement for a held tenant (`_hold_tenant`): the users with their
    departments, their authorisations."""
    # One JSON parameter: json.dumps is C, and psycopg's array literals escape every element.
    records = json.dumps(users, ensure_ascii=False)
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _AUTHORIZE_POSTGRESQL,
            {
                "users": records,
                "tenant": tenant_pk,
                "instance_id": instance_id,
                "app_id": app_id,
                "admin": Role.ADMIN.value,
                "user": Role.USER.value,
                "state": AuthorizationState.AUTHORIZED.value,
                "current_sync_time": current_sync_time,
                "now": now,
            },
        )
        (written,) = cursor.fetchone()
    return written


# Rows are written in the order of the (sorted) records, as the portable path writes them, so
# concurrent calls lock them in the same order. The department is the one of the user's
# org_code in the tenant, if it exists; every column is the record as sent (USER_FIELDS).
_AUTHORIZE_POSTGRESQL = """
WITH incoming AS (
    SELECT * FROM ROWS FROM (json_to_recordset(%(users)s::json) AS (
        user_name text, name text, org_code text, position text, employee_code text,
        employee_type smallint, mobile text, email text, work_place text, entry_date text,
        extension jsonb, role text, enabled boolean
    )) WITH ORDINALITY AS x(user_name, name, org_code, position, employee_code, employee_type,
                            mobile, email, work_place, entry_date, extension, role, enabled, n)
),
users AS (
    INSERT INTO tenants_tenantuser (tenant_id, user_name, name, org_code, department_id,
                                    position, employee_code, employee_type, mobile, email,
                                    work_place, entry_date, extension, created_at, updated_at)
    SELECT %(tenant)s, x.user_name, x.name, x.org_code,
           (SELECT d.id FROM orgsync_department d
             WHERE d.tenant_id = %(tenant)s AND d.org_code = x.org_code AND x.org_code <> ''),
           x.position, x.employee_code, x.employee_type, x.mobile, x.email, x.work_place,
           x.entry_date, x.extension, %(now)s, %(now)s
    FROM incoming x
    ORDER BY x.n
    ON CONFLICT (tenant_id, user_name) DO UPDATE SET
        name = EXCLUDED.name, org_code = EXCLUDED.org_code,
        department_id = EXCLUDED.department_id, position = EXCLUDED.position,
        employee_code = EXCLUDED.employee_code, employee_type = EXCLUDED.employee_type,
        mobile = EXCLUDED.mobile, email = EXCLUDED.email, work_place = EXCLUDED.work_place,
        entry_date = EXCLUDED.entry_date, extension = EXCLUDED.extension,
        updated_at = EXCLUDED.updated_at
    RETURNING id, user_name
),
granted AS (
    INSERT INTO tenants_authorization (tenant_id, user_id, instance_id, app_id, role, enabled,
                                       state, current_sync_time, created_at, updated_at)
    SELECT %(tenant)s, users.id, %(instance_id)s, %(app_id)s,
           CASE WHEN x.role = %(admin)s THEN %(admin)s ELSE %(user)s END, x.enabled, %(state)s,
           %(current_sync_time)s, %(now)s, %(now)s
    FROM incoming x JOIN users ON users.user_name = x.user_name
    ORDER BY x.n
    ON CONFLICT (user_id, instance_id, app_id) DO UPDATE SET
        role = EXCLUDED.role, enabled = EXCLUDED.enabled, state = EXCLUDED.state,
        current_sync_time = EXCLUDED.current_sync_time, updated_at = EXCLUDED.updated_at
    RETURNING 1
)
SELECT count(*) FROM granted
"""


def _set_authorization_state(
    *,
    tenant_id: str,
    is_test: bool,
    instance_id: str,
    app_id: str,
    user_names: list[str],
    state: AuthorizationState,
    current_sync_time: str,
) -> int:
    """Delete/cancel: only existing authorisations change; the users themselves are kept.
    One UPDATE, whose filter finds the tenant (an unknown one matches nothing)."""
    if not user_names:
        return 0
    return Authorization.objects.filter(
        tenant__tenant_id=tenant_id,
        tenant__is_test=is_test,
        instance_id=instance_id,
        app_id=app_id,
        user__user_name__in=user_names,
    ).update(state=state, current_sync_time=current_sync_time, updated_at=timezone.now())
