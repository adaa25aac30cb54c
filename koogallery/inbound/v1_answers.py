"""Answers of accepted V1 calls, kept to answer their replays (spec §2.3, "Replays and late
calls").

V1 has no nonce: a captured call verifies as often as it is sent. So the first accepted call with
an `authToken` claims it for its endpoint, in the call's own transaction (a unique row per
family, endpoint and token digest, like the V2 nonce's journal row), and stores the exact bytes
it answered. A replay within KOOGALLERY_V1_MAX_AGE_S gets those bytes again and changes nothing.
Twins racing wait on the claim: the loser answers from the winner's row once it commits, or
runs itself if the winner was refused (rolled back, claim and all).

The stored answer may carry credentials (V1 newInstance `appInfo`), so it is kept encrypted with
the field encryption keys (secret_store.py), never in the journal, and purged past the max age.
"""

import hashlib
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from koogallery.inbound.journal import Family
from koogallery.protocol.secret_store import decrypt_secret, encrypt_secret

CLAIM_CONSTRAINT = "kg_v1_answer_once"


class V1Answer(models.Model):
    family = models.CharField(max_length=16, choices=Family.choices)
    endpoint = models.CharField(max_length=64, help_text="interface or activity")
    token_sha256 = models.CharField(max_length=64, help_text="SHA-256 of the authToken")
    answered_at = models.DateTimeField(db_index=True)
    # Fernet token of the answer's bytes ("" until the first call has answered, in its own
    # transaction: nobody else ever sees it empty).
    answer_encrypted = models.TextField(blank=True)

    class Meta:
        verbose_name = "V1 answer"
        constraints = [
            models.UniqueConstraint(
                fields=["family", "endpoint", "token_sha256"], name=CLAIM_CONSTRAINT
            )
        ]

    def __str__(self) -> str:
        return f"{self.family} {self.endpoint} @ {self.answered_at:%Y-%m-%d %H:%M:%S}"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _cutoff(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.KOOGALLERY_V1_MAX_AGE_S)


def stored_answer(*, family: str, endpoint: str, digest: str) -> bytes | None:
    """The bytes the first call with this token answered, if within the max age."""
    row = (
        V1Answer.objects.filter(
            family=family,
            endpoint=endpoint,
            token_sha256=digest,
            answered_at__gte=_cutoff(timezone.now()),
        )
        .exclude(answer_encrypted="")
        .only("answer_encrypted")
        .first()
    )
    return None if row is None else decrypt_secret(row.answer_encrypted).encode("ascii")


def claim(*, family: str, endpoint: str, digest: str) -> V1Answer:
    """Claim the token for this endpoint (in the caller's transaction). An IntegrityError on
    CLAIM_CONSTRAINT means another call holds it; on PostgreSQL this waits for that call's
    transaction first."""
    now = timezone.now()
    V1Answer.objects.filter(
        family=family, endpoint=endpoint, token_sha256=digest, answered_at__lt=_cutoff(now)
    ).delete()
    return V1Answer.objects.create(
        family=family, endpoint=endpoint, token_sha256=digest, answered_at=now
    )


def keep(row: V1Answer, content: bytes) -> None:
    """Store the answer the claiming call sends (our envelope: ASCII JSON)."""
    row.answer_encrypted = encrypt_secret(content.decode("ascii"))
    row.save(update_fields=["answer_encrypted"])


def is_claim_conflict(exc: Exception) -> bool:
    text = str(exc)
    return CLAIM_CONSTRAINT in text or "koogallery_v1answer.token_sha256" in text


def purge(*, now: datetime | None = None, dry_run: bool = False) -> int:
    """Delete the answers past the max age (their replays are answered anew, or refused)."""
    old = V1Answer.objects.filter(answered_at__lt=_cutoff(now or timezone.now()))
    return old.count() if dry_run else old.delete()[0]
