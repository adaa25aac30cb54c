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

from koogallery.protocol import redaction


class Family(models.TextChoices):
    KIT_V2 = "kit_v2", "Kit V2 (x-sign)"
    KIT_V1 = "kit_v1", "Kit V1 (authToken)"
    BASIC_V2 = "basic_v2", "Basic V2 (signature)"
    BASIC_V1 = "basic_v1", "Basic V1 (GET, authToken)"


class Verification(models.TextChoices):
    VERIFIED = "verified", "verified"
    MISSING = "missing", "credentials missing"
    MALFORMED = "malformed", "timestamp, nonce or signed parameters malformed"
    STALE = "stale", "timestamp outside the window"
    BAD_SIGNATURE = "bad_signature", "no active key matches"
    REPLAYED = "replayed", "nonce replayed"
    # A V1 call whose authToken was accepted before (spec §2.3): verified, changed nothing.
    ANSWERED_AGAIN = "answered_again", "replayed (answered from the first call)"
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
    # is written: instances/sql.py); `write` inserts it with that id.
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


def redact(value: Any) -> Any:
    """A parsed body as the journal keeps it: the spec's allow-list
    (koogallery/protocol/redaction.py)."""
    return redaction.redact(value)


def redacted_text(raw: bytes, parsed: Any) -> str:
    """The body as stored: its text with every value the spec's allow-list does not keep masked
    (spec §2.4; koogallery/protocol/redaction.py), whether or not it is valid JSON; truncated.

    Text that needs no masking is stored exactly as received (what a replay signs); `parsed`
    is used only for a V1 GET, whose parameters were parsed from the query string (no body):
    they are the call's fields (§4.4) and kept by the body's rule, so that the call can be
    replayed (the `query_string` column keeps activity, ids and times only)."""
    limit = settings.KOOGALLERY_JOURNAL_BODY_LIMIT
    if raw:
        # (a UTF-8 character is at most 4 bytes: enough of the body to fill the limit)
        text = raw[: 4 * limit + 4].decode("utf-8", "replace")
        size = len(raw)
    elif isinstance(parsed, (dict, list)):
        text = json.dumps(parsed, ensure_ascii=False, separators=(",", ":"))
        size = len(text.encode("utf-8", "surrogatepass"))
    else:
        return ""
    cut = len(text) > limit
    if cut:
        # Up to the last value that ends within the limit, when no key there needs a mask
        # (a big list of named fields, as allOrgSync and authSync send); otherwise the
        # tokenizer masks what the limit keeps.
        masked = redaction.kept_prefix(text[:limit]) or redaction.mask_text(text[:limit])
    else:
        masked = redaction.mask_text(text)
    if len(masked) > limit:  # masks can be longer than what they replace
        masked, cut = masked[:limit], True
    return masked + f"… [truncated, {size} bytes]" if cut else masked


def redacted_query(params: Any) -> str:
    """A query string as stored: `activity`, ids and times only (spec §2.4)."""
    return "&".join(f"{k}={v}" for k, v in redaction.redact_query(params))[:2000]


def response_text(content: bytes) -> str:
    """Our own answer as stored, by the same rule (it may carry a password, §4.2.2)."""
    return redacted_text(content, None)


def body_digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()
