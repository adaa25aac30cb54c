"""Liveness, readiness and the Prometheus scrape endpoint.

- `/healthz`: the process answers (no dependency checked): restart it if this fails.
- `/readyz`: database, cache and broker answer: send traffic only while this is 200.
- `/metrics`: Prometheus text format, for staff or a bearer token (`METRICS_TOKEN`), never
  anonymous: it names endpoints, tenants' activity volumes and error rates.
"""

import hmac
import os
import time
import uuid

import prometheus_client
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import multiprocess

from . import collectors


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    key = f"ops:readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=10)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return the value just written")
    cache.delete(key)


def _check_broker() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "in-process"  # no broker: tasks run inside the web process (embedded default)
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=settings.CELERY_BROKER_CONNECTION_TIMEOUT)
    return "ok"


CHECKS = {"database": _check_database, "cache": _check_cache, "broker": _check_broker}


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when every dependency answers, else 503 naming the failing ones.

    Only the exception's class is shown: connection errors can carry host names and user
    names, and this endpoint is public.
    """
    results: dict[str, dict] = {}
    ready = True
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            status = check() or "ok"
        except Exception as exc:
            status, ready = f"error: {type(exc).__name__}", False
        results[name] = {
            "status": status,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
        }
    body = {"status": "ok" if ready else "unavailable", "checks": results}
    return JsonResponse(body, status=200 if ready else 503)


def _bearer_ok(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if not token or scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def _registry():
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        # Several gunicorn workers: each writes its samples to files in that directory; the
        # process that answers the scrape adds them up (prometheus_client multiprocess mode).
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        collectors.register(registry)
        return registry
    return prometheus_client.REGISTRY


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    user = getattr(request, "user", None)
    if not (_bearer_ok(request) or (user is not None and user.is_active and user.is_staff)):
        if user is not None and user.is_authenticated:
            return HttpResponse("staff only\n", status=403, content_type="text/plain")
        response = HttpResponse("authentication required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(
        prometheus_client.generate_latest(_registry()),
        content_type=prometheus_client.CONTENT_TYPE_LATEST,
    )
