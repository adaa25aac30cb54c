"""Models of the KooGallery boundary (Django finds an app's models here): the call journal and
the answers kept for V1 replays (inbound/), outbound attempts and the job outbox (outbound/)."""

from koogallery.inbound.journal import Family, InboundCall, Verification
from koogallery.inbound.v1_answers import V1Answer
from koogallery.outbound.attempts import AttemptOutcome, OutboundAttempt, OutboundPurpose
from koogallery.outbound.jobs import QueuedJob

__all__ = [
    "AttemptOutcome",
    "Family",
    "InboundCall",
    "OutboundAttempt",
    "OutboundPurpose",
    "QueuedJob",
    "V1Answer",
    "Verification",
]
