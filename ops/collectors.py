"""Gauges computed at scrape time from the database: the licence delivery backlog (spec §2.8)
and the jobs waiting in the outbox (koogallery/outbound/jobs.py).

A gauge kept in memory would be wrong as soon as there are several web and worker processes;
the database knows the truth, and one grouped count per scrape is cheap (indexed on state).
"""

import logging
import time

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

logger = logging.getLogger(__name__)


class LicenseBacklogCollector(Collector):
    """`koogallery_license_delivery_backlog{state,test}`: licence requests not delivered yet
    (received, issued, uploading) and given up (failed, needs an operator);
    `koogallery_license_delivery_oldest_seconds{test}`: age of the oldest pending one."""

    def describe(self):
        # Names only: registering must not query the database (no database at `migrate` time).
        yield GaugeMetricFamily("koogallery_license_delivery_backlog", "", labels=["state", "test"])
        yield GaugeMetricFamily("koogallery_license_delivery_oldest_seconds", "", labels=["test"])
        yield GaugeMetricFamily("koogallery_license_backlog_scrape_ok", "")

    def collect(self):
        backlog = GaugeMetricFamily(
            "koogallery_license_delivery_backlog",
            "Licence requests awaiting delivery to KooGallery (pending states) or given up "
            "(failed), by state and test flag.",
            labels=["state", "test"],
        )
        oldest = GaugeMetricFamily(
            "koogallery_license_delivery_oldest_seconds",
            "Age of the oldest licence request still pending delivery (0 when none).",
            labels=["test"],
        )
        up = GaugeMetricFamily(
            "koogallery_license_backlog_scrape_ok",
            "1 when the backlog could be read from the database at this scrape, else 0.",
        )
        try:
            counts, ages = self.read()
        except Exception as exc:
            logger.warning("licence backlog unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        for (state, test), count in sorted(counts.items()):
            backlog.add_metric([state, test], count)
        for test, age in sorted(ages.items()):
            oldest.add_metric([test], age)
        up.add_metric([], 1)
        yield backlog
        yield oldest
        yield up

    @staticmethod
    def read() -> tuple[dict[tuple[str, str], int], dict[str, float]]:
        from django.db.models import Count, Min

        from licensing.models import LicenseRequest, RequestState

        watched = (*RequestState.pending(), RequestState.FAILED)
        counts = {(str(state), test): 0 for state in watched for test in ("false", "true")}
        rows = (
            LicenseRequest.objects.filter(state__in=watched)
            .values("state", "is_test")
            .annotate(n=Count("id"), first=Min("created_at"))
        )
        firsts: dict[str, float] = {}
        for row in rows:
            test = "true" if row["is_test"] else "false"
            counts[(row["state"], test)] = row["n"]
            if row["state"] in RequestState.pending() and row["first"] is not None:
                created = row["first"].timestamp()
                firsts[test] = min(firsts.get(test, created), created)
        now = time.time()
        ages = {test: max(0.0, now - firsts.get(test, now)) for test in ("false", "true")}
        return counts, ages


class OutboxCollector(Collector):
    """`koogallery_job_outbox_backlog{task}`: jobs committed by calls and not yet published;
    `koogallery_job_outbox_oldest_seconds`: age of the oldest (0 when none). A backlog that only
    grows means beat or the broker is down."""

    def describe(self):
        yield GaugeMetricFamily("koogallery_job_outbox_backlog", "", labels=["task"])
        yield GaugeMetricFamily("koogallery_job_outbox_oldest_seconds", "")

    def collect(self):
        from django.db.models import Count, Min

        from koogallery.outbound.jobs import QueuedJob

        try:
            rows = list(
                QueuedJob.objects.values("task").annotate(n=Count("id"), first=Min("created_at"))
            )
        except Exception as exc:
            logger.warning("outbox backlog unavailable: %s", type(exc).__name__)
            return
        backlog = GaugeMetricFamily(
            "koogallery_job_outbox_backlog",
            "Jobs committed by KooGallery calls and not yet handed to the broker, by task.",
            labels=["task"],
        )
        for row in sorted(rows, key=lambda r: r["task"]):
            backlog.add_metric([row["task"]], row["n"])
        firsts = [row["first"].timestamp() for row in rows if row["first"] is not None]
        oldest = GaugeMetricFamily(
            "koogallery_job_outbox_oldest_seconds",
            "Age of the oldest job waiting in the outbox (0 when none).",
        )
        oldest.add_metric([], max(0.0, time.time() - min(firsts)) if firsts else 0.0)
        yield backlog
        yield oldest


_backlog = LicenseBacklogCollector()
_outbox = OutboxCollector()
_registered = False


def register(registry=REGISTRY) -> None:
    """Add the scrape-time collectors to `registry` (the default one once, at app start)."""
    global _registered
    if registry is REGISTRY:
        if _registered:
            return
        _registered = True
    registry.register(_backlog)
    registry.register(_outbox)
