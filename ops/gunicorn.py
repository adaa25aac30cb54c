"""gunicorn settings for production: `gunicorn -c python:ops.gunicorn config.wsgi:application`.

Everything can be overridden on the command line or with GUNICORN_CMD_ARGS. With several
workers, Prometheus samples are shared through PROMETHEUS_MULTIPROC_DIR (prometheus_client's
multiprocess mode): emptied at start, and each dead worker's live gauges are dropped.
"""

import gc
import os
import shutil
from pathlib import Path

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
# Threads, with deadlines on reading a request (ops/server.py, ops/wsgi.py): a client that
# dribbles its request holds one thread for HTTP_HEADER_TIMEOUT_S + HTTP_BODY_TIMEOUT_S at most,
# and the worker's other threads serve on (a sync worker would be taken whole). Each thread keeps
# its own database connection (DB_CONN_MAX_AGE): WEB_CONCURRENCY x GUNICORN_THREADS, plus the
# Celery processes, must stay under PostgreSQL's max_connections (100 by default).
worker_class = "ops.server.ThreadWorker"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# With threads, a worker is restarted when its main loop stops answering for this long (it
# accepts and watches connections); a slow request in a thread does not count. KooGallery gives
# up after 5 s (spec §1.3).
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5
# The address of a TLS-terminating proxy whose X-Forwarded-* headers gunicorn trusts.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# No gunicorn access log: its request line carries the query string (KooGallery's `signature`
# and `authToken`); ops.middleware logs each request as JSON with its id and path instead.
accesslog = None
errorlog = "-"
capture_output = True


# The cyclic collector's thresholds in a worker. CPython's (700, 10, 10) start a collection
# every 700 new containers and a full one every 100 of those (while enough survived): a 100k
# department allOrgSync, which creates a million containers and keeps most of them to the end,
# paid ~13% of its Python time walking them again and again (py-spy, issue 17); at these
# thresholds, ~2%. Requests create few cycles; the ones they do are still collected.
GC_THRESHOLDS = (100_000, 50, 50)


# Python's small-object heap each worker keeps mapped between requests, in MiB
# (WORKER_HEAP_RESERVE_MB; 0: none). CPython hands a 1 MiB arena back to the kernel as soon as
# its last object dies, so a big call (a 100k-department allOrgSync allocates ~100 MB of small
# objects and frees them at its end) page-faulted its way through fresh memory each time:
# ~15,000 faults, ~3 µs each on a 2-core VM, and parsing its body took twice as long as in
# memory already mapped (issue 17). An arena that keeps one object is never handed back: the
# next call reuses its pages. The worker's resident memory stays that much larger.
HEAP_RESERVE_MB = int(os.environ.get("WORKER_HEAP_RESERVE_MB", "256"))
_BLOCK = 48  # bytes of a 1-tuple: one of pymalloc's size classes
_KEPT_EVERY = 4096  # of the reserve's objects, one in this many is kept: ~5 in each arena
_heap_reserve: list = []


def reserve_heap(megabytes: int) -> list:
    """Fill `megabytes` of the small-object heap and free it but for one object in 4,096,
    which keeps every arena it touched mapped (and its pages faulted in); what is kept."""
    filled = [(n & 0xFF,) for n in range(megabytes * 1024 * 1024 // _BLOCK)]  # small ints: cached
    return filled[::_KEPT_EVERY]


def on_starting(server) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True, exist_ok=True)


def post_worker_init(worker) -> None:
    # The application is loaded: its modules, settings, URL patterns and schema objects live as
    # long as the worker. Frozen, the cyclic collector stops walking them (~130,000 objects) on
    # every full collection, which a request allocating as much as a batch of 1,000 usage
    # events triggers (a third of its Python time before this).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    _heap_reserve.extend(reserve_heap(HEAP_RESERVE_MB))


def child_exit(server, worker) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
