"""Reads for licences: what the sweep, the daily licence-code job and admin look at."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet

from koogallery.outbound_models import OutboundAttempt, OutboundPurpose

from .models import LicenseCode, LicenseCodeStatus, LicenseRequest, RequestState


def due_request_ids(*, now: datetime, limit: int) -> list[int]:
    """Requests in a non-final state, without a live lease, past due by the sweep's grace.

    Due: a scheduled retry time long gone, or, without one, no change for the grace period
    (never enqueued, message lost, worker killed before it could record anything).
    """
    cutoff = now - timedelta(seconds=settings.LICENSE_SWEEP_AFTER_S)
    return list(
        LicenseRequest.objects.filter(state__in=RequestState.pending())
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
        .filter(
            Q(next_attempt_at__lte=cutoff) | Q(next_attempt_at__isnull=True, updated_at__lte=cutoff)
        )
        .order_by("updated_at")
        .values_list("pk", flat=True)[:limit]
    )


def upload_attempts(request: LicenseRequest) -> QuerySet[OutboundAttempt]:
    """The upload attempts for the request's event (OutboundAttempt subject = eventId)."""
    return OutboundAttempt.objects.filter(
        purpose=OutboundPurpose.LICENSE_UPLOAD, subject=request.event_id[:128]
    ).order_by("started_at", "id")


def license_codes_in_use() -> QuerySet[LicenseCode]:
    """Activated codes KooGallery has not released: the daily query covers these (§5.4)."""
    return LicenseCode.objects.filter(activated_at__isnull=False).exclude(
        status=LicenseCodeStatus.RELEASED
    )
