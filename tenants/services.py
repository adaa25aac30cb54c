"""Writes for tenants, applications, users and authorisations (every write goes through here).

Kit semantics are those of spec §2.6. Every service is idempotent on the interface's natural
key (STYLE.md §3): the same call repeated leaves the same state, and a repeated or unknown
delete succeeds without creating anything.

Each service is one transaction without a savepoint of its own (`atomic(savepoint=False)`):
called inside a kit call's transaction, a savepoint would cost two round trips, and a service
that fails rolls the caller's transaction back anyway (the pipeline answers a refusal and
rolls back). On PostgreSQL an add/modify of each interface is one statement (upserts chained
by data-modifying CTEs, authSync's users sent as one JSON parameter, no models built); the
portable ORM path serves SQLite, and tests/tenants/test_tenant_writes.py proves both leave the same
rows.

Late and replayed calls (spec §2.3): every write carries the KooGallery time of its call
(`call_time`), stored on the row it writes; a call older than the stored time leaves the row
as it is and is counted as stale (`SyncResult.stale`, which the journal records). The
comparison is part of each write statement (a conditional upsert or UPDATE, or a row lock on
the portable path), so two calls racing for one row leave the newer one's state whatever the
order. An equal time writes again (idempotent). `call_time` None is an untimed write (staff,
scripts, benchmarks): applied as before, the stored time kept.
"""

import functools
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from koogallery.protocol import secret_store
from koogallery.protocol.crypto import CryptoError, load_rsa_private_key, rsa_oaep_decrypt
from koogallery.protocol.resultcodes import InvalidParam, KooGalleryError, ResultCode
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

@dataclass
class SyncResult:
    """What a kit service did: the row it wrote (or found), how many rows it wrote, and how
    many entities it skipped because a newer call had written them (§2.3)."""

    row: Any = None
    written: int = 0
    stale: int = 0


def newer_rows(call_time: datetime | None) -> Q:
    """The rows a call of `call_time` may write: no newer call wrote them (§2.3)."""
    if call_time is None:
        return Q()
    return Q(call_time__isnull=True) | Q(call_time__lte=call_time)


def is_newer(stored: datetime | None, call_time: datetime | None) -> bool:
    """`newer_rows` for a row already read (under its lock)."""
    return call_time is None or stored is None or stored <= call_time


def stamp(call_time: datetime | None) -> dict:
    """The call time to store with a write (an untimed write keeps the stored one)."""
    return {} if call_time is None else {"call_time": call_time}


# The same rule inside an upsert's DO UPDATE, for a table aliased `t`.
NEWER_THAN_STORED = (
    "(EXCLUDED.call_time IS NULL OR t.call_time IS NULL OR t.call_time <= EXCLUDED.call_time)"
)
KEEP_TIME = "call_time = COALESCE(EXCLUDED.call_time, t.call_time)"


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
                                org_synced_at, call_time, org_call_time, org_snapshot_time,
                                created_at, updated_at)
    SELECT %(tenant_id)s, %(is_test)s, '', '', '', NULL, NULL, NULL, NULL, NULL, %(now)s, %(now)s
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
    call_time: datetime | None = None,
) -> SyncResult:
    """Add/modify: upsert the tenant and its binding to the instance, clearing any removal.

    Delete (dissolving the enterprise, §1.3) marks the binding and the tenant removed; the
    tenant's authorisations stop signing in (`Authorization.can_sign_in`) but are kept, so a
    later add restores them. Deleting an unknown tenant creates nothing (`row` None).

    The tenant and its binding are one entity, ordered by the tenant's `call_time`: a call
    older than the last one that wrote the tenant writes neither (`stale` 1).
    """
    if flag == SyncFlag.DELETE:
        tenant = selectors.tenant(tenant_id=tenant_id, is_test=is_test)
        if tenant is None:
            return SyncResult()
        now = timezone.now()
        # The conditional UPDATE decides, under the row's lock (a newer twin waits or wins).
        written = (
            Tenant.objects.filter(newer_rows(call_time), pk=tenant.pk)
            .update(
                removed_at=Coalesce(F("removed_at"), Value(now)),
                updated_at=now,
                **stamp(call_time),
            )
        )
        if not written:
            return SyncResult(row=tenant, stale=1)
        TenantBinding.objects.filter(
            tenant=tenant, instance_id=instance_id, removed_at__isnull=True
        ).update(removed_at=now, updated_at=now)
        tenant.refresh_from_db(fields=["removed_at", "call_time", "updated_at"])
        return SyncResult(row=tenant, written=1)

    upsert = _upsert_tenant_postgresql if connection.vendor == "postgresql" else _upsert_tenant
    return upsert(
        tenant_id=tenant_id,
        is_test=is_test,
        instance_id=instance_id,
        order_id=order_id,
        tenant_code=tenant_code,
        name=name,
        domain_name=domain_name,
        call_time=call_time,
    )


# Two upserts (INSERT … ON CONFLICT DO UPDATE), no read first and no savepoints: a twin waits on
# the row lock the first one takes and then updates the same row (STYLE.md §3). The returned
# tenant holds what was written and its pk (other fields are not re-read).


def _upsert_tenant(
    *, tenant_id, is_test, instance_id, order_id, tenant_code, name, domain_name, call_time=None
) -> SyncResult:
    """The tenant, then its binding, with the ORM; nothing if the tenant, read under its lock,
    was written by a newer call."""
    stored = (
        Tenant.objects.select_for_update()
        .filter(tenant_id=tenant_id, is_test=is_test)
        .values_list("pk", "call_time")
        .first()
    )
    if stored is not None and not is_newer(stored[1], call_time):
        return SyncResult(row=Tenant(pk=stored[0], tenant_id=tenant_id, is_test=is_test), stale=1)
    (tenant,) = Tenant.objects.bulk_create(
        [
            Tenant(
                tenant_id=tenant_id,
                is_test=is_test,
                tenant_code=tenant_code,
                name=name,
                domain_name=domain_name,
                removed_at=None,
                call_time=call_time if call_time is not None else stored and stored[1],
            )
        ],
        update_conflicts=True,
        unique_fields=["tenant_id", "is_test"],
        update_fields=[
            "tenant_code",
            "name",
            "domain_name",
            "removed_at",
            "call_time",
            "updated_at",
        ],
    )
    TenantBinding.objects.bulk_create(
        [TenantBinding(tenant=tenant, instance_id=instance_id, order_id=order_id, removed_at=None)],
        update_conflicts=True,
        unique_fields=["tenant", "instance_id"],
        update_fields=["order_id", "removed_at", "updated_at"],
    )
    return SyncResult(row=tenant, written=1)


def _upsert_tenant_postgresql(
    *, tenant_id, is_test, instance_id, order_id, tenant_code, name, domain_name, call_time=None
) -> SyncResult:
    """Both upserts in one statement; neither if a newer call wrote the tenant."""
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
                "call_time": call_time,
                "now": now,
            },
        )
        row = cursor.fetchone()
    if row is None:
        return SyncResult(row=Tenant(tenant_id=tenant_id, is_test=is_test), stale=1)
    (pk,) = row
    tenant = Tenant(
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
    return SyncResult(row=tenant, written=1)


# The two upserts of an add/modify in one statement (the binding's upsert takes the tenant's id
# from the first, which returns none when a newer call wrote the tenant: then neither is
# written). Column lists as Django writes them: created_at only on insert.
_TENANT_SYNC_POSTGRESQL = f"""
WITH tenant AS (
    INSERT INTO tenants_tenant AS t (tenant_id, is_test, tenant_code, name, domain_name,
                                     removed_at, org_synced_at, call_time, org_call_time,
                                     org_snapshot_time, created_at, updated_at)
    VALUES (%(tenant_id)s, %(is_test)s, %(tenant_code)s, %(name)s, %(domain_name)s, NULL, NULL,
            %(call_time)s::timestamptz, NULL, NULL, %(now)s, %(now)s)
    ON CONFLICT (tenant_id, is_test) DO UPDATE SET
        tenant_code = EXCLUDED.tenant_code, name = EXCLUDED.name,
        domain_name = EXCLUDED.domain_name, removed_at = NULL, updated_at = EXCLUDED.updated_at,
        {KEEP_TIME}
    WHERE {NEWER_THAN_STORED}
    RETURNING id
)
INSERT INTO tenants_tenantbinding (tenant_id, instance_id, order_id, removed_at, created_at,
                                   updated_at)
SELECT id, %(instance_id)s, %(order_id)s, NULL, %(now)s, %(now)s FROM tenant
ON CONFLICT (tenant_id, instance_id) DO UPDATE SET
    order_id = EXCLUDED.order_id, removed_at = NULL, updated_at = EXCLUDED.updated_at
RETURNING tenant_id
"""  # noqa: S608 (constant text)


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
    call_time: datetime | None = None,
) -> SyncResult:
    """Add/modify: decrypt the secret, store it encrypted at rest, upsert the application.

    Delete marks it removed, ignoring the secret (deleting needs none, and a key rotated since
    the add must not make the delete fail); an unknown application creates nothing. A call
    older than the one that last wrote the application writes nothing (`stale` 1).
    """
    if flag == SyncFlag.DELETE:
        tenant = selectors.tenant(tenant_id=tenant_id, is_test=is_test)
        if tenant is None:
            return SyncResult()
        rows = Application.objects.filter(tenant=tenant, instance_id=instance_id, app_id=app_id)
        now = timezone.now()
        written = rows.filter(newer_rows(call_time)).update(
            removed_at=Coalesce(F("removed_at"), Value(now)), updated_at=now, **stamp(call_time)
        )
        stale = int(not written and rows.exists())
        return SyncResult(row=rows.first(), written=written, stale=stale)

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
            call_time=call_time,
        )
        if application is not None:
            return SyncResult(row=application, written=1)
    return _upsert_application(
        tenant_id=tenant_id,
        is_test=is_test,
        instance_id=instance_id,
        app_id=app_id,
        client_id=client_id,
        client_secret_encrypted=encrypted,
        call_time=call_time,
    )


def _upsert_application(
    *, tenant_id, is_test, instance_id, app_id, client_id, client_secret_encrypted, call_time=None
) -> SyncResult:
    """The tenant (created if absent), then the application, with the ORM; nothing if the
    application, read under its lock, was written by a newer call."""
    tenant = ensure_tenant(tenant_id=tenant_id, is_test=is_test)
    key = {"tenant": tenant, "instance_id": instance_id, "app_id": app_id}
    stored = Application.objects.select_for_update().filter(**key).first()
    if stored is not None and not is_newer(stored.call_time, call_time):
        return SyncResult(row=stored, stale=1)
    application, _ = Application.objects.update_or_create(
        **key,
        defaults={
            "client_id": client_id,
            "client_secret_encrypted": client_secret_encrypted,
            "removed_at": None,
            **stamp(call_time),
        },
    )
    return SyncResult(row=application, written=1)


def _upsert_application_postgresql(
    *, tenant_id, is_test, instance_id, app_id, client_id, client_secret_encrypted, call_time=None
) -> Application | None:
    """The same in one statement; None, having written nothing, when the tenant was created
    by a concurrent call after the statement began (see `_ENSURE_TENANT_CTE`) or when a newer
    call wrote the application (the portable path then tells which, under the row's lock)."""
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
                "call_time": call_time,
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
        call_time=call_time,
        created_at=created_at,
        updated_at=now,
    )


_APPLICATION_SYNC_POSTGRESQL = f"""
WITH {_ENSURE_TENANT_CTE},
written AS (
    INSERT INTO tenants_application AS t (tenant_id, instance_id, app_id, client_id,
                                          client_secret_encrypted, removed_at, call_time,
                                          created_at, updated_at)
    SELECT id, %(instance_id)s, %(app_id)s, %(client_id)s, %(secret)s, NULL,
           %(call_time)s::timestamptz, %(now)s, %(now)s
    FROM tenant
    ON CONFLICT (tenant_id, instance_id, app_id) DO UPDATE SET
        client_id = EXCLUDED.client_id, client_secret_encrypted = EXCLUDED.client_secret_encrypted,
        removed_at = NULL, updated_at = EXCLUDED.updated_at, {KEEP_TIME}
    WHERE {NEWER_THAN_STORED}
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
    call_time: datetime | None = None,
) -> SyncResult:
    """Apply one authSync call to every listed user, in a handful of queries whatever the size.

    `users` are validated user records keyed by TenantUser field names plus `role` (Role) and
    `enabled` (bool). Add/modify upserts the users (unique in the tenant) and their
    authorisation for (instance, app), linking each user to the department of its `org_code`
    when that department exists (else later, when it arrives). Delete (flag 0) and cancel
    (flag 3) change only the state of existing authorisations; unknown users are skipped.

    `call_time` (the call's currentSyncTime, §2.3) orders the changes: an authorisation, and
    a user's record, written by a newer call are left as they are; each such authorisation
    counts as stale. Returns how many authorisations were written and how many were stale.
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
            call_time=call_time,
        )
    if users and connection.vendor == "postgresql":
        tenant_pk = _hold_tenant(tenant_id, is_test)
        written = _authorize_postgresql(
            tenant_pk, instance_id, app_id, users, current_sync_time, call_time
        )
    else:
        written = _authorize_portable(
            tenant_id, is_test, instance_id, app_id, users, current_sync_time, call_time
        )
    return SyncResult(written=written, stale=len(users) - written)


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
            # Created as ensure_tenant creates it, in one statement instead of five (a read,
            # get_or_create's read, savepoint, INSERT, release); a concurrent twin's row is
            # waited for and kept (ON CONFLICT DO NOTHING), and then held like any other.
            cursor.execute(
                _CREATE_TENANT, {"tenant_id": tenant_id, "is_test": is_test, "now": timezone.now()}
            )
            cursor.execute(_HOLD_TENANT, [tenant_id, is_test])
            row = cursor.fetchone()
    return row[0]


_CREATE_TENANT = """
INSERT INTO tenants_tenant (tenant_id, is_test, tenant_code, name, domain_name, removed_at,
                            org_synced_at, call_time, org_call_time, org_snapshot_time,
                            created_at, updated_at)
VALUES (%(tenant_id)s, %(is_test)s, '', '', '', NULL, NULL, NULL, NULL, NULL, %(now)s, %(now)s)
ON CONFLICT (tenant_id, is_test) DO NOTHING
"""


def _authorize_portable(
    tenant_id: str,
    is_test: bool,
    instance_id: str,
    app_id: str,
    users: list[Mapping[str, Any]],
    current_sync_time: str,
    call_time: datetime | None = None,
) -> int:
    """Add/modify with the ORM: tenant, departments, users, their ids, authorisations; users
    and authorisations a newer call wrote are left out (read first: the portable path serves
    SQLite, which has one writer at a time). Returns how many authorisations were written."""
    tenant = ensure_tenant(tenant_id=tenant_id, is_test=is_test)
    if not users:
        return 0
    names = [user["user_name"] for user in users]
    stored_users = {
        name: (pk, stored)
        for name, pk, stored in TenantUser.objects.filter(
            tenant=tenant, user_name__in=names
        ).values_list("user_name", "pk", "call_time")
    }
    newer_grants = set()
    if call_time is not None and stored_users:
        newer_grants = set(
            Authorization.objects.filter(
                tenant=tenant,
                user_id__in=[pk for pk, _ in stored_users.values()],
                instance_id=instance_id,
                app_id=app_id,
                call_time__gt=call_time,
            ).values_list("user__user_name", flat=True)
        )
    grants = [user for user in users if user["user_name"] not in newer_grants]
    profiles = [
        user
        for user in users
        if user["user_name"] not in stored_users
        or is_newer(stored_users[user["user_name"]][1], call_time)
    ]
    departments = _departments_by_code(tenant, {user["org_code"] for user in profiles})
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
            call_time=call_time
            if call_time is not None
            else stored_users.get(user["user_name"], (None, None))[1],
        )
        for user in profiles
    ]
    if rows:
        TenantUser.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["tenant", "user_name"],
            update_fields=[*USER_FIELDS, "call_time", "updated_at"],
        )
    if not grants:
        return 0
    # The upsert does not hand back the ids of rows that already existed on every backend.
    user_ids = dict(
        TenantUser.objects.filter(
            tenant=tenant, user_name__in=[user["user_name"] for user in grants]
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
            call_time=call_time,
        )
        for user in grants
    ]
    update_fields = ["role", "enabled", "state", "current_sync_time", "updated_at"]
    Authorization.objects.bulk_create(
        authorizations,
        update_conflicts=True,
        unique_fields=["user", "instance_id", "app_id"],
        update_fields=update_fields + (["call_time"] if call_time is not None else []),
    )
    return len(authorizations)


def _authorize_postgresql(
    tenant_pk: int,
    instance_id: str,
    app_id: str,
    users: list[Mapping[str, Any]],
    current_sync_time: str,
    call_time: datetime | None = None,
) -> int:
    """Add/modify in one statement for a held tenant (`_hold_tenant`): the users with their
    departments, their authorisations; rows a newer call wrote are left as they are (the
    upserts' conditions, evaluated on the row under its lock). Returns how many
    authorisations were written."""
    # One JSON parameter holding a column per field (json.dumps is C, and psycopg's array
    # literals escape every element); a column is an array, so no key is repeated per user.
    records = json.dumps(
        [list(map(itemgetter(field), users)) for field in _INCOMING_FIELDS], ensure_ascii=False
    )
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
                "call_time": call_time,
                "now": now,
            },
        )
        (written,) = cursor.fetchone()
    return written


# Rows are written in the order of the (sorted) records, as the portable path writes them, so
# concurrent calls lock them in the same order. The department is the one of the user's
# org_code in the tenant, if it exists; every column is the record as sent (USER_FIELDS). A user
# row a newer call wrote keeps its columns but is still returned (its id is needed): each column
# is chosen by the call times (§2.3). An authorisation a newer call wrote is not written at all.
_USER_COLUMNS = (
    *("department_id" if field == "department" else field for field in USER_FIELDS),
    "updated_at",
)
_NEWER_USER = f"CASE WHEN {NEWER_THAN_STORED} THEN EXCLUDED.{{0}} ELSE t.{{0}} END"
_UPDATE_USER = ",\n        ".join(
    f"{column} = {_NEWER_USER.format(column)}" for column in _USER_COLUMNS
)
# The record fields in the order of the document's columns, and how each is read from it.
_INCOMING_FIELDS = (
    "user_name", "name", "org_code", "position", "employee_code", "employee_type", "mobile",
    "email", "work_place", "entry_date", "extension", "role", "enabled",
)  # fmt: skip
_INCOMING_COLUMNS = ",\n        ".join(
    f"jsonb_array_elements(d.c->{i})"
    if field == "extension"
    else f"jsonb_array_elements_text(d.c->{i})"
    for i, field in enumerate(_INCOMING_FIELDS)
)
# The document is parsed once (jsonb; `json` would be parsed again for every `->`), and ROWS
# FROM zips its columns back into records, numbered in the order sent.
_AUTHORIZE_POSTGRESQL = f"""
WITH incoming AS (
    SELECT x.user_name, x.name, x.org_code, x.position, x.employee_code,
           x.employee_type::smallint AS employee_type, x.mobile, x.email, x.work_place,
           x.entry_date, x.extension, x.role, x.enabled::boolean AS enabled, x.n
    FROM (SELECT %(users)s::jsonb AS c) AS d,
    ROWS FROM (
        {_INCOMING_COLUMNS}
    ) WITH ORDINALITY AS x({", ".join(_INCOMING_FIELDS)}, n)
),
users AS (
    INSERT INTO tenants_tenantuser AS t (tenant_id, user_name, name, org_code, department_id,
                                         position, employee_code, employee_type, mobile, email,
                                         work_place, entry_date, extension, call_time,
                                         created_at, updated_at)
    SELECT %(tenant)s, x.user_name, x.name, x.org_code,
           (SELECT d.id FROM orgsync_department d
             WHERE d.tenant_id = %(tenant)s AND d.org_code = x.org_code AND x.org_code <> ''),
           x.position, x.employee_code, x.employee_type, x.mobile, x.email, x.work_place,
           x.entry_date, x.extension, %(call_time)s::timestamptz, %(now)s, %(now)s
    FROM incoming x
    ORDER BY x.n
    ON CONFLICT (tenant_id, user_name) DO UPDATE SET
        {_UPDATE_USER},
        call_time = CASE WHEN {NEWER_THAN_STORED}
                         THEN COALESCE(EXCLUDED.call_time, t.call_time) ELSE t.call_time END
    RETURNING id, user_name
),
granted AS (
    INSERT INTO tenants_authorization AS t (tenant_id, user_id, instance_id, app_id, role,
                                            enabled, state, current_sync_time, call_time,
                                            created_at, updated_at)
    SELECT %(tenant)s, users.id, %(instance_id)s, %(app_id)s,
           CASE WHEN x.role = %(admin)s THEN %(admin)s ELSE %(user)s END, x.enabled, %(state)s,
           %(current_sync_time)s, %(call_time)s::timestamptz, %(now)s, %(now)s
    FROM incoming x JOIN users ON users.user_name = x.user_name
    ORDER BY x.n
    ON CONFLICT (user_id, instance_id, app_id) DO UPDATE SET
        role = EXCLUDED.role, enabled = EXCLUDED.enabled, state = EXCLUDED.state,
        current_sync_time = EXCLUDED.current_sync_time, updated_at = EXCLUDED.updated_at,
        {KEEP_TIME}
    WHERE {NEWER_THAN_STORED}
    RETURNING 1
)
SELECT count(*) FROM granted
"""  # noqa: S608 (constant text)


def _set_authorization_state(
    *,
    tenant_id: str,
    is_test: bool,
    instance_id: str,
    app_id: str,
    user_names: list[str],
    state: AuthorizationState,
    current_sync_time: str,
    call_time: datetime | None = None,
) -> SyncResult:
    """Delete/cancel: only existing authorisations change; the users themselves are kept (their
    records take the call's time). One conditional UPDATE, whose filter finds the tenant (an
    unknown one matches nothing) and leaves authorisations a newer call wrote (re-checked on
    each row under its lock); only when some were left is a count made, to tell stale ones
    from unknown users."""
    if not user_names:
        return SyncResult()
    # Conditions on the updated table's own columns and `IN` subqueries on other tables: no
    # join, so PostgreSQL re-checks the call time on a row a concurrent call just wrote.
    tenants = Tenant.objects.filter(tenant_id=tenant_id, is_test=is_test).values("pk")
    rows = Authorization.objects.filter(
        tenant_id__in=tenants,
        user_id__in=TenantUser.objects.filter(
            tenant_id__in=tenants, user_name__in=user_names
        ).values("pk"),
        instance_id=instance_id,
        app_id=app_id,
    )
    if call_time is not None:
        # The users' records are as of this call too (an older add arriving later leaves
        # them); first, as an add locks them first: users, then authorisations.
        _stamp_users(tenant_id, is_test, sorted(user_names), call_time)
    written = rows.filter(newer_rows(call_time)).update(
        state=state,
        current_sync_time=current_sync_time,
        updated_at=timezone.now(),
        **stamp(call_time),
    )
    stale = rows.count() - written if written < len(user_names) else 0
    return SyncResult(written=written, stale=stale)


def _stamp_users(tenant_id: str, is_test: bool, user_names: list[str], call_time) -> None:
    """Give the users' records `call_time` where it is newer. On PostgreSQL the rows are locked
    in name order, the order in which an add locks them, so that the two cannot deadlock."""
    if connection.vendor != "postgresql":
        TenantUser.objects.filter(
            Q(call_time__isnull=True) | Q(call_time__lt=call_time),
            tenant__tenant_id=tenant_id,
            tenant__is_test=is_test,
            user_name__in=user_names,
        ).update(call_time=call_time)
        return
    with connection.cursor() as cursor:
        cursor.execute(_STAMP_USERS, [call_time, tenant_id, is_test, user_names, call_time])


_STAMP_USERS = """
UPDATE tenants_tenantuser u SET call_time = %s
FROM (SELECT id FROM tenants_tenantuser
      WHERE tenant_id = (SELECT id FROM tenants_tenant WHERE tenant_id = %s AND is_test = %s)
        AND user_name = ANY(%s) AND (call_time IS NULL OR call_time < %s)
      ORDER BY user_name FOR UPDATE) AS locked
WHERE u.id = locked.id
"""
