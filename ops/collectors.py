"""Gauges computed at scrape time from the database: the licence delivery backlog (spec §2.8).

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


_backlog = LicenseBacklogCollector()
_registered = False


def register(registry=REGISTRY) -> None:
    """Add the scrape-time collectors to `registry` (the default one once, at app start)."""
    global _registered
    if registry is REGISTRY:
        if _registered:
            return
        _registered = True
    registry.register(_backlog)
