"""What the inbound pipeline reports once a KooGallery call is answered: metrics and one
structured log line carrying the call's business keys (spec §2.4 result codes).

Called by `koogallery.inbound.endpoint` right after the journal row is written. It must never break
an
answer: any failure here is logged and swallowed.
"""

import logging

from .context import call_logged_var
from .metrics import CALL_LATENCY, CALLS, SYNC_DURATION

logger = logging.getLogger("koogallery.calls")

KIT_INTERFACES = frozenset(
    {"tenantSync", "applicationSync", "authSync", "singleOrgSync", "allOrgSync"}
)
ACCEPTED = frozenset({"000000", "000004"})


def endpoint_label(family: str, endpoint: str) -> str:
    """The endpoint as a metric label: a served interface or activity, else "other".

    `activity` comes from the body, so an unknown name must not create a new time series.
    """
    from koogallery.inbound import activities
    from koogallery.inbound.journal import Family

    if endpoint in KIT_INTERFACES or endpoint == "basic":
        return endpoint
    try:
        known = activities.lookup(Family(family), endpoint) is not None
    except ValueError:
        known = False
    return endpoint if known else "other"


def call_finished(journal) -> None:
    """Count, time and log one answered call (`journal` is its InboundCall row)."""
    try:
        endpoint = endpoint_label(journal.family, journal.endpoint)
        seconds = (journal.duration_ms or 0) / 1000
        CALLS.labels(journal.family, endpoint, journal.result_code).inc()
        CALL_LATENCY.labels(journal.family, endpoint).observe(seconds)
        accepted = journal.result_code in ACCEPTED
        if accepted and endpoint in KIT_INTERFACES:
            SYNC_DURATION.labels(endpoint).observe(seconds)
        logger.log(
            logging.INFO if accepted else logging.WARNING,
            "%s %s → %s %s",
            journal.family,
            journal.endpoint,
            journal.result_code,
            journal.result_msg,
            extra={
                "endpoint": journal.endpoint,
                "family": journal.family,
                "result_code": journal.result_code,
                "result_msg": journal.result_msg,
                "verification": journal.verification,
                "tenant_id": journal.tenant_id,
                "instance_id": journal.instance_id,
                "order_id": journal.order_id,
                "event_id": journal.event_id,
                "test": journal.test_flag,
                "duration_ms": journal.duration_ms,
                "journal_id": journal.pk,
                "method": journal.method,
                "path": journal.path,
            },
        )
        call_logged_var.set(True)
    except Exception:
        logger.exception("could not report the call to metrics and logs")
