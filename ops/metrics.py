"""Prometheus metrics of the KooGallery boundary (docs/operations.md, "Reading the metrics").

HTTP-level metrics (requests, latency by view, exceptions) come from django-prometheus's
middleware; these add what an operator of a KooGallery product watches: calls by endpoint and
result code, their latency against KooGallery's 5 s timeout (spec §1.3), and how long kit
syncs take. The licence delivery backlog is read from the database at scrape time
(`collectors.py`).
"""

from prometheus_client import Counter, Histogram

# Label values are bounded: `endpoint` is a known interface/activity name or "other"
# (see `ops.calls.endpoint_label`), `result_code` one of spec §6.1's codes.
CALLS = Counter(
    "koogallery_calls_total",
    "KooGallery calls answered, by family, endpoint (interface or activity) and result code.",
    ["family", "endpoint", "result_code"],
)

# KooGallery gives up after 5 s (spec §1.3): buckets are dense below that.
CALL_LATENCY = Histogram(
    "koogallery_call_duration_seconds",
    "Time from receiving a KooGallery call to its answer (verification, processing, journal).",
    ["family", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0),
)

# Kit syncs (tenants, applications, users, departments) can be large: a 100k-department
# allOrgSync must still answer inside the 5 s window.
SYNC_DURATION = Histogram(
    "koogallery_sync_duration_seconds",
    "Duration of accepted kit sync calls (tenantSync … allOrgSync), by interface.",
    ["interface"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 30.0),
)
