"""Replay protection: a nonce is accepted once per family (spec §2.3 step 5).

The Django cache is shared by every process and worker: Redis in production, a database table on
the embedded default. `cache.add` is atomic on both, so two simultaneous replays cannot both pass.
"""

from django.conf import settings
from django.core.cache import cache


def nonce_ttl() -> int:
    # A nonce must be remembered at least as long as its timestamp stays acceptable on either
    # side of now: 2 × skew, plus a margin.
    return 2 * settings.KOOGALLERY_MAX_CLOCK_SKEW_S + 60


def claim_nonce(family: str, nonce: str) -> bool:
    """Record the nonce; False when it was already seen."""
    return cache.add(f"kg:nonce:{family}:{nonce}", 1, timeout=nonce_ttl())
