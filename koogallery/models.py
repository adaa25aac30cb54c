"""Models of the KooGallery boundary, one concept per module."""

from .instances import ChargingMode, Instance, InstanceState, InstanceTransition
from .jobs import QueuedJob
from .journal import Family, InboundCall, Verification
from .outbound_models import AttemptOutcome, OutboundAttempt, OutboundPurpose
from .v1_answers import V1Answer

__all__ = [
    "AttemptOutcome",
    "ChargingMode",
    "Family",
    "InboundCall",
    "Instance",
    "InstanceState",
    "InstanceTransition",
    "OutboundAttempt",
    "OutboundPurpose",
    "QueuedJob",
    "V1Answer",
    "Verification",
]
