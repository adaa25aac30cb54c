"""The inbound call journal: one row per KooGallery call (STYLE.md §1, after dj-stripe).

A row is written for every call that reaches an endpoint, accepted or not. For accepted calls it
commits in the same transaction as the call's domain writes; for rejected calls it is the only
thing written. Bodies are stored redacted and truncated (see `redact`).
"""

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db import connections, models, router


class Family(models.TextChoices):
    KIT_V2 = "kit_v2", "Kit V2 (x-sign)"
    KIT_V1 = "kit_v1", "Kit V1 (authToken)"
    BASIC_V2 = "basic_v2", "Basic V2 (signature)"
    BASIC_V1 = "basic_v1", "Basic V1 (GET, authToken)"


class Verification(models.TextChoices):
    VERIFIED = "verified", "verified"
    MISSING = "missing", "credentials missing"
    MALFORMED = "malformed", "timestamp or nonce malformed"
    STALE = "stale", "timestamp outside the window"
    BAD_SIGNATURE = "bad_signature", "no active key matches"
    REPLAYED = "replayed", "nonce replayed"
    NO_KEY = "no_key", "no key configured"


NONCE_CONSTRAINT = "kg_inbound_nonce_once"


def replay_key(nonce: str) -> str:
    """What the journal stores of a nonce: itself, or its SHA-256 when it is longer than the
    column (KooGallery's are 32 hex digits; a longer one is still told apart, never cut)."""
    if len(nonce) <= 64 and "\x00" not in nonce:
        return nonce
    return hashlib.sha256(nonce.encode("utf-8", "surrogatepass")).hexdigest()


def is_replay(exc: Exception) -> bool:
    """The IntegrityError is the nonce constraint's: the call was a replay."""
    text = str(exc)
    return NONCE_CONSTRAINT in text or "koogallery_inboundcall.nonce" in text


class InboundCall(models.Model):
    received_at = models.DateTimeField()
    family = models.CharField(max_length=16, choices=Family.choices)
    endpoint = models.CharField(max_length=64, help_text="interface or activity")
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    remote_addr = models.CharField(max_length=64, blank=True)

    tenant_id = models.CharField(max_length=64, blank=True)
    instance_id = models.CharField(max_length=128, blank=True)
    order_id = models.CharField(max_length=64, blank=True)
    event_id = models.CharField(max_length=64, blank=True)
    test_flag = models.BooleanField(null=True)

    verification = models.CharField(max_length=16, choices=Verification.choices)
    key_index = models.SmallIntegerField(
        null=True, blank=True, help_text="position of the active key that verified (never the key)"
    )
    result_code = models.CharField(max_length=6)
    result_msg = models.CharField(max_length=255, blank=True)
    duration_ms = models.FloatField(default=0)
    # Kit calls (spec §2.3 "Replays and late calls"): how many entities the call left as they
    # were because a newer call had already written them.
    stale_entities = models.PositiveIntegerField(
        default=0, help_text="entities skipped: a newer call had already written them"
    )

    query_string = models.TextField(blank=True)
    request_body = models.TextField(blank=True)
    request_size = models.PositiveIntegerField(default=0)
    request_sha256 = models.CharField(max_length=64, blank=True)
    # Replay protection (spec §2.3 step 5): a V2 call's nonce, unique per family among verified
    # calls (`replay_key`); V1 calls carry none.
    nonce = models.CharField(max_length=64, blank=True, default="")
    response_body = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name = "inbound call"
        # Written on every call: plain B-trees for what the admin filters and looks up exactly
        # (no varchar_pattern_ops twins, no endpoint index the composite one already covers).
        indexes = [
            models.Index(fields=["endpoint", "received_at"]),
            models.Index(fields=["received_at"], name="kg_inbound_received"),
            models.Index(fields=["tenant_id"], name="kg_inbound_tenant"),
            models.Index(fields=["instance_id"], name="kg_inbound_instance"),
            models.Index(fields=["order_id"], name="kg_inbound_order"),
            models.Index(fields=["event_id"], name="kg_inbound_event"),
            models.Index(fields=["result_code"], name="kg_inbound_result"),
        ]
        constraints = [
            # A verified call's nonce is accepted once: the row that records the call is the
            # claim, committed (or rolled back) with the call's own writes, so replay protection
            # needs no other store and holds across every worker and process.
            models.UniqueConstraint(
                fields=["family", "nonce"],
                condition=models.Q(verification="verified") & ~models.Q(nonce=""),
                name=NONCE_CONSTRAINT,
            )
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.result_code} @ {self.received_at:%Y-%m-%d %H:%M:%S}"

    def save(self, *args, **kwargs) -> None:
        self._strip_nul()
        super().save(*args, **kwargs)

    def _strip_nul(self) -> None:
        # PostgreSQL text cannot hold U+0000, which a hostile body or query string may carry;
        # the row is saved early by some handlers too, so every save cleans it (not only the
        # pipeline's last one), or the call's whole transaction would be lost.
        for field in self._meta.concrete_fields:
            value = getattr(self, field.attname)
            if isinstance(value, str) and "\x00" in value:
                setattr(self, field.attname, value.replace("\x00", "\ufffd"))

    # A new row may come with its id already reserved from the table's sequence (the lifecycle
    # statements do so on PostgreSQL, to point the instance's trail at the call's row before it
    # is written: koogallery/lifecycle_sql.py); `write` inserts it with that id.
    WRITES_RESERVED_ID = True

    def write(self) -> None:
        """Save the row; a new one with a single INSERT built once per database, not through
        the model's save machinery (the pipeline writes one row per call: it is on every
        call's path). No signal listens to this model."""
        if not self._state.adding:
            self.save()
            return
        self._strip_nul()
        connection = connections[router.db_for_write(InboundCall)]
        reserved = self.pk is not None
        sql, fields = _insert_statement(connection, with_id=reserved)
        values = [
            field.get_db_prep_save(getattr(self, field.attname), connection) for field in fields
        ]
        with connection.cursor() as cursor:
            cursor.execute(sql, values)
            if not reserved and connection.features.can_return_columns_from_insert:
                (self.pk,) = cursor.fetchone()
            elif not reserved:  # pragma: no cover - every backend we run returns columns
                self.pk = connection.ops.last_insert_id(cursor, self._meta.db_table, "id")
        self._state.adding = False
        self._state.db = connection.alias

    @property
    def accepted(self) -> bool:
        return self.result_code in ("000000", "000004")


_INSERTS: dict[tuple[str, bool], tuple[str, list]] = {}


def _insert_statement(connection, *, with_id: bool) -> tuple[str, list]:
    """`INSERT INTO koogallery_inboundcall (…) VALUES (%s, …) [RETURNING id]` for this database,
    and the fields in the order of its placeholders (the id among them `with_id`)."""
    cached = _INSERTS.get((connection.alias, with_id))
    if cached is None:
        meta = InboundCall._meta
        fields = [f for f in meta.concrete_fields if with_id or not f.primary_key]
        quote = connection.ops.quote_name
        # Identifiers from the model, quoted; values are parameters.
        sql = "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608
            quote(meta.db_table),
            ", ".join(quote(f.column) for f in fields),
            ", ".join(["%s"] * len(fields)),
        )
        if connection.features.can_return_columns_from_insert and not with_id:
            sql += f" RETURNING {quote(meta.pk.column)}"
        cached = _INSERTS[connection.alias, with_id] = (sql, fields)
    return cached


# Keys whose values never reach the journal, logs or admin, wherever they sit in a body.
SECRET_KEYS = frozenset(
    k.lower()
    for k in (
        "clientSecret",
        "client_secret",
        "password",
        "authToken",
        "signature",
        "access_token",
        "refresh_token",
        "token",
        "characters",
    )
)
REDACTED = "***"


def redact(value: Any, max_items: int | None = None) -> Any:
    """A copy with every secret-named value replaced; lists cut to `max_items` when given."""
    if isinstance(value, dict):
        return {
            k: (
                REDACTED
                if str(k).lower() in SECRET_KEYS and v not in (None, "")
                else redact(v, max_items)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        if max_items is not None and len(value) > max_items:
            kept = [redact(v, max_items) for v in value[:max_items]]
            return [*kept, f"… {len(value) - max_items} more items"]
        return [redact(v, max_items) for v in value]
    return value


_SECRET_KEY_BYTES = tuple(key.encode() for key in SECRET_KEYS)


def _secret_free(raw: bytes) -> bool:
    """No secret-named key can be in this JSON text: none appears in it, in any case, and no
    `\\u` escape could spell one."""
    lowered = raw.lower()
    return b"\\u" not in lowered and not any(key in lowered for key in _SECRET_KEY_BYTES)


def redacted_text(raw: bytes, parsed: Any) -> str:
    """The body as stored: redacted JSON when it parsed, else the raw text; truncated.

    A body that parsed and holds no secret-named key is stored as received (nothing to redact,
    and the exact text is what a replay signs)."""
    limit = settings.KOOGALLERY_JOURNAL_BODY_LIMIT
    # (`raw` empty: a V1 GET, whose parameters were parsed from the query string instead.)
    if isinstance(parsed, (dict, list)) and raw and len(raw) <= limit and _secret_free(raw):
        return raw.decode("utf-8", "replace")
    if isinstance(parsed, (dict, list)):
        # A 100k-department allOrgSync is kept as its first items: the journal shows the
        # shape of the call, its size and hash identify it; redacting it all would cost time.
        max_items = 200 if len(raw) > limit else None
        text = json.dumps(redact(parsed, max_items), ensure_ascii=False, separators=(",", ":"))
    else:
        # Unparseable: we cannot tell where secrets sit, so keep only a short prefix.
        text = raw[:512].decode("utf-8", "replace")
        limit = min(limit, 512)
    if len(text) > limit:
        text = text[:limit] + f"… [truncated, {len(raw)} bytes]"
    return text


def response_text(content: bytes) -> str:
    """Our own answer as stored: it is JSON we wrote, so it is parsed only to redact it."""
    if len(content) <= settings.KOOGALLERY_JOURNAL_BODY_LIMIT and _secret_free(content):
        return content.decode("utf-8", "replace")
    try:
        parsed = json.loads(content)
    except ValueError:
        parsed = None
    return redacted_text(content, parsed)


def body_digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()
