"""Settings, all read from the environment (django-environ).

Every variable is listed in the README. The embedded default (no variables at all) is SQLite,
a database-backed cache and Celery tasks run in-process, so a newcomer needs nothing installed.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated variable, each item stripped and empty ones dropped: "k1, k2," is two
    keys, not "k1" and " k2" (a key with a space would refuse every call signed with it)."""
    items = [item.strip() for item in env.list(name, default=default)]
    return [item for item in items if item]


# A local .env (never committed) is read when present; real environment variables win. The test
# suite sets DJANGO_IGNORE_DOTENV: a developer's .env (DEBUG, keys) must not change what it tests.
if not env.bool("DJANGO_IGNORE_DOTENV", default=False):
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

_DEV_SECRET_KEY = "dev-only-insecure-key-never-use-in-production"
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_prometheus",  # ops: HTTP metrics (see "security & observability" below)
    "ops.axes_config.AxesConfig",  # ops: admin login throttling (django-axes)
    "ops",
    "koogallery",
    "instances",
    "tenants",
    "orgsync",
    "licensing",
    "sso",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",  # ops: first, times everything
    "ops.middleware.RequestIdMiddleware",  # ops: request id for logs, X-Request-ID header
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # ops: answers locked-out admin logins (429)
    "django_prometheus.middleware.PrometheusAfterMiddleware",  # ops: last
]

ROOT_URLCONF = "config.urls"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL and a busy timeout let the dev server, the job runner and the shell share the file.
    # IMMEDIATE: a transaction takes the write lock when it begins, waiting its turn; begun as
    # a reader, it could not become a writer once another process had written since (SQLite
    # answers "database is locked" at once, whatever the timeout), and the call would fail.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL;",
            "transaction_mode": "IMMEDIATE",
        }
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 3)
    # Parameters bound by the server, and a statement run DB_PREPARE_THRESHOLD times on a
    # connection prepared there: PostgreSQL then stops parsing and planning every call's
    # statements again (a third to a half of its CPU per call). Off behind a transaction-mode
    # pooler that cannot keep prepared statements (PgBouncer before 1.21, or without
    # max_prepared_statements): docs/operations.md §1.
    if env.bool("DB_PREPARED_STATEMENTS", default=True):
        DATABASES["default"]["OPTIONS"].update(
            {"server_side_binding": True, "prepare_threshold": env.int("DB_PREPARE_THRESHOLD", 5)}
        )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    # A database table is shared by every process on the embedded default, so a nonce seen by
    # one runserver/worker process is seen by all (spec §2.3 step 5).
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "django_cache",
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# The largest KooGallery call is a 100k-department allOrgSync: 15.3 MB with 32-character codes
# and 12-character names sent as a string of JSON (built by
# tests/koogallery/inbound/test_hostile_input.py); the
# limit leaves 1.6x room. Larger bodies are answered 000002 unread
# (koogallery/inbound/endpoint.py), also
# when sent chunked, without a Content-Length (ops/wsgi.py).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=24 * 1024 * 1024)
# A request's head (request line and headers) must arrive within HTTP_HEADER_TIMEOUT_S of its
# first byte, and its body within HTTP_BODY_TIMEOUT_S of its head: a client dribbling either is
# cut, logged, and its call never processed (ops/server.py, ops/wsgi.py; docs/operations.md §1).
# KooGallery itself gives up on a call after 5 s (spec §1.3).
HTTP_HEADER_TIMEOUT_S = env.float("HTTP_HEADER_TIMEOUT_S", default=5.0)
HTTP_BODY_TIMEOUT_S = env.float("HTTP_BODY_TIMEOUT_S", default=10.0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "KooGallery merchant server",
    "VERSION": "0.1.0",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAdminUser"],
}

# --- KooGallery (spec §2.2) -------------------------------------------------------------------
KOOGALLERY_BASIC_KEY = env_list("KOOGALLERY_BASIC_KEY", default=[])
KOOGALLERY_KIT_KEY = env_list("KOOGALLERY_KIT_KEY", default=[])
KOOGALLERY_AK = env.str("KOOGALLERY_AK", default="")
KOOGALLERY_SK = env.str("KOOGALLERY_SK", default="")
KOOGALLERY_API_BASE = env.str("KOOGALLERY_API_BASE", default="https://mkt.myhuaweicloud.com")
KOOGALLERY_API_FALLBACK = env.str("KOOGALLERY_API_FALLBACK", default="https://mkt.myhuaweicloud.cn")
KOOGALLERY_RSA_PRIVATE_KEY = env.str("KOOGALLERY_RSA_PRIVATE_KEY", default="", multiline=True)
KOOGALLERY_MAX_CLOCK_SKEW_S = env.int("KOOGALLERY_MAX_CLOCK_SKEW_S", default=60)
# V1 basic GET has no freshness rule of its own; ±24 h bounds replays of captured URLs (§4.4).
# A V1 call replayed within it is answered from the first call's kept answer (§2.3).
KOOGALLERY_V1_MAX_AGE_S = env.int("KOOGALLERY_V1_MAX_AGE_S", default=24 * 3600)
# Journal keeps at most this much of each raw body (the rest is summarised by size and hash).
KOOGALLERY_JOURNAL_BODY_LIMIT = env.int("KOOGALLERY_JOURNAL_BODY_LIMIT", default=64 * 1024)
# Journal retention (koogallery/inbound/retention.py): bodies cleared after, rows deleted after
# (0 = never).
KOOGALLERY_JOURNAL_BODY_RETENTION_DAYS = env.int(
    "KOOGALLERY_JOURNAL_BODY_RETENTION_DAYS", default=90
)
KOOGALLERY_JOURNAL_RETENTION_DAYS = env.int("KOOGALLERY_JOURNAL_RETENTION_DAYS", default=0)
# Query Order jobs lost with the broker are queued again (instances/sweep.py): rows left
# unfetched this long (more than the job's 30 min longest backoff), up to this age.
KOOGALLERY_ORDER_SWEEP_INTERVAL_S = env.int("KOOGALLERY_ORDER_SWEEP_INTERVAL_S", default=600)
KOOGALLERY_ORDER_SWEEP_AFTER_S = env.int("KOOGALLERY_ORDER_SWEEP_AFTER_S", default=35 * 60)
KOOGALLERY_ORDER_SWEEP_MAX_AGE_S = env.int("KOOGALLERY_ORDER_SWEEP_MAX_AGE_S", default=3 * 86400)
KOOGALLERY_ORDER_SWEEP_BATCH = env.int("KOOGALLERY_ORDER_SWEEP_BATCH", default=500)
LICENSE_SIGNING_KEY = env.str("LICENSE_SIGNING_KEY", default="", multiline=True)

# Fernet keys (comma-separated, first encrypts) for secrets at rest such as clientSecret.
# On DEBUG without a key, one is derived from SECRET_KEY so the embedded default just works.
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS", default=[])
if not FIELD_ENCRYPTION_KEYS and not DEBUG:
    raise environ.ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set when DEBUG is off")

# --- Celery -----------------------------------------------------------------------------------
# memory:// names its host: kombu warns "No hostname was supplied" on every publish otherwise.
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_TIMEOUT = 2
# socket_timeout: a Redis that accepts connections but does not answer (frozen, overloaded) must
# not hold a KooGallery call past its 5 s (tests/system/test_faults.py); workers' BRPOP waits 1 s.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": 2,
    "socket_timeout": 2,
    "visibility_timeout": 3600,
}
CELERY_TIMEZONE = "UTC"
# How a call's follow-up jobs (Query Order, licence delivery) reach what runs them
# (koogallery/outbound/jobs.py). "outbox" commits them as rows with the call; beat publishes them
# to the
# broker every KOOGALLERY_JOB_DISPATCH_INTERVAL_S (the call never waits on the broker, and a job
# is never lost between commit and publish), and without a broker the runner started next to
# the server (scripts/run: manage.py koogallery_run_jobs) runs them. "on_commit" publishes
# after the commit; it needs a broker: without one the job would run inside the call (§2.7).
KOOGALLERY_JOB_DISPATCH = env.str("KOOGALLERY_JOB_DISPATCH", default="outbox")
if KOOGALLERY_JOB_DISPATCH not in ("outbox", "on_commit"):
    raise environ.ImproperlyConfigured("KOOGALLERY_JOB_DISPATCH must be outbox or on_commit")
if KOOGALLERY_JOB_DISPATCH == "on_commit" and not REDIS_URL:
    raise environ.ImproperlyConfigured(
        "KOOGALLERY_JOB_DISPATCH=on_commit needs REDIS_URL: without a broker the job would run "
        "inside the KooGallery call (use outbox, the default, and manage.py koogallery_run_jobs)"
    )
# How often beat publishes the outbox, and the runner looks at it.
KOOGALLERY_JOB_DISPATCH_INTERVAL_S = env.float("KOOGALLERY_JOB_DISPATCH_INTERVAL_S", default=1.0)
KOOGALLERY_JOB_DISPATCH_BATCH = env.int("KOOGALLERY_JOB_DISPATCH_BATCH", default=500)

# --- logging (ops/logs.py) --------------------------------------------------------------------
# One JSON object per line in production (time, level, logger, message, request_id and the
# business keys of KooGallery calls); readable text for development. Secrets are scrubbed by
# both formatters (SECURITY.md).
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG else "json")
if LOG_FORMAT not in ("json", "plain"):
    raise environ.ImproperlyConfigured("LOG_FORMAT must be json or plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "ops.logs.JsonFormatter"},
        "plain": {"()": "ops.logs.PlainFormatter"},
    },
    "filters": {
        "strip_query": {"()": "ops.logs.StripQueryFilter"},
        "quiet_dispatch": {"()": "ops.logs.QuietDispatchFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["quiet_dispatch"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own console/mail handlers are replaced by ours, so every record is scrubbed.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        # runserver's access lines carry the query string (signature, authToken): cut it.
        "django.server": {
            "handlers": ["console"],
            "level": "INFO",
            "propagate": False,
            "filters": ["strip_query"],
        },
    },
}

# --- outbound (koogallery/outbound/client.py, spec §2.9) -----------------------------------------
# KOOGALLERY_API_BASE / KOOGALLERY_API_FALLBACK are defined in the KooGallery block above.
KOOGALLERY_API_TIMEOUT_S = env.float("KOOGALLERY_API_TIMEOUT_S", default=10.0)
# Optional CA bundle path for TLS verification (verification itself is never disabled).
KOOGALLERY_CA_BUNDLE = env.str("KOOGALLERY_CA_BUNDLE", default="")

# --- instances (instances/services.py, spec §2.7, §4.2, §4.4) ----------------------------
# queryInstance / V1 newInstance `appInfo` (§4.2.2). Placeholders: {instance_id}, {tenant_id},
# {tenant_code} (the tenant bound by tenantSync; empty until it arrives), URL-encoded.
KOOGALLERY_FRONTEND_URL_TEMPLATE = env.str(
    "KOOGALLERY_FRONTEND_URL_TEMPLATE",
    default="http://127.0.0.1:8000/sso/login?instance={instance_id}",
)
KOOGALLERY_ADMIN_URL = env.str("KOOGALLERY_ADMIN_URL", default="")
KOOGALLERY_APP_MEMO = env.str("KOOGALLERY_APP_MEMO", default="")
# V1 newInstance hands out an admin account per instance, AES-encrypted (§3.5, §4.4).
KOOGALLERY_PROVISION_CREDENTIALS = env.bool("KOOGALLERY_PROVISION_CREDENTIALS", default=False)

# --- licensing (licensing/, spec §2.8, §4.5, §5.4) ------------------------------------------
# §2.8: no deviceFingerprint → 000903. Off only for products licensed without a device binding.
LICENSE_REQUIRE_FINGERPRINT = env.bool("LICENSE_REQUIRE_FINGERPRINT", default=True)
# Tolerance when comparing a licence window with the order's validity (rounding, clocks).
LICENSE_VALIDITY_SLACK_S = env.int("LICENSE_VALIDITY_SLACK_S", default=300)
# Upload retries: exponential backoff from BASE to MAX seconds with jitter, for at least WINDOW
# seconds (KooGallery waits 2 h for a licence, §1.3); after GIVE_UP seconds of transient
# failures the request is marked failed (an operator can retry it in admin).
LICENSE_RETRY_BASE_S = env.float("LICENSE_RETRY_BASE_S", default=15.0)
LICENSE_RETRY_MAX_S = env.float("LICENSE_RETRY_MAX_S", default=600.0)
LICENSE_RETRY_WINDOW_S = env.int("LICENSE_RETRY_WINDOW_S", default=2 * 3600)
LICENSE_GIVE_UP_S = env.int("LICENSE_GIVE_UP_S", default=24 * 3600)
# An upload owns its request this long (≥ 2 × KOOGALLERY_API_TIMEOUT_S: primary + fallback).
LICENSE_UPLOAD_LEASE_S = env.int("LICENSE_UPLOAD_LEASE_S", default=120)
# The sweep re-enqueues requests left in a non-final state this long past their due time.
LICENSE_SWEEP_AFTER_S = env.int("LICENSE_SWEEP_AFTER_S", default=120)
LICENSE_SWEEP_BATCH = env.int("LICENSE_SWEEP_BATCH", default=500)
CELERY_BEAT_SCHEDULE = {
    **globals().get("CELERY_BEAT_SCHEDULE", {}),
    "licensing-sweep": {"task": "licensing.tasks.sweep_license_requests", "schedule": 60.0},
    "koogallery-journal-retention": {
        "task": "koogallery.tasks.purge_journal",
        "schedule": 24 * 3600.0,
    },
    "koogallery-dispatch-jobs": {
        "task": "koogallery.tasks.dispatch_jobs",
        "schedule": KOOGALLERY_JOB_DISPATCH_INTERVAL_S,
        # Each dispatch drains the outbox: ticks queued behind busy workers need not all run.
        "options": {"expires": max(5.0, 5 * KOOGALLERY_JOB_DISPATCH_INTERVAL_S)},
    },
    "koogallery-order-sweep": {
        "task": "instances.tasks.sweep_order_fetches",
        "schedule": float(KOOGALLERY_ORDER_SWEEP_INTERVAL_S),
    },
    # §5.4 project decision: query every licence code in use once a day.
    "licensing-query-codes": {
        "task": "licensing.tasks.query_license_codes",
        "schedule": env.int("LICENSE_CODE_QUERY_INTERVAL_S", default=24 * 3600),
    },
}

# --- sso (sso/, spec §5.3) ----------------------------------------------------------------------
# The unified login page; `{app_id}` is the applicationSync appId. Its parameters sit in the
# fragment; the page 302s to the app's login URL (/sso/callback) with `code` and `tenant`.
KOOGALLERY_UNIFIED_LOGIN_URL = env.str(
    "KOOGALLERY_UNIFIED_LOGIN_URL",
    default="https://macroverse.huaweicloud.com/unified-login/#/portal-login?ind=UNOP&appId={app_id}",
)
# Let users of test-data (testFlag 1) tenants sign in (spec §2.5); off in production.
SSO_ALLOW_TEST_TENANTS = env.bool("SSO_ALLOW_TEST_TENANTS", default=False)
# The app's login URL as registered in KooGallery (absolute); sent as `redirect_uri` when set.
SSO_REDIRECT_URI = env.str("SSO_REDIRECT_URI", default="")
SSO_HTTP_TIMEOUT_S = env.float("SSO_HTTP_TIMEOUT_S", default=5.0)

# --- security & observability (ops/, SECURITY.md, docs/operations.md) -------------------------
# TLS is normally terminated by a proxy: name the header it sets, e.g.
# SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https (only if the proxy always sets it).
_proxy_ssl_header = env_list("SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_ssl_header:
    if len(_proxy_ssl_header) != 2:
        raise environ.ImproperlyConfigured("SECURE_PROXY_SSL_HEADER must be HEADER,value")
    SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header[0], _proxy_ssl_header[1])
# Proxies in front of the app that append to X-Forwarded-For (client address for throttling).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    # The directive only makes the domain eligible; submitting it to browsers' lists is manual.
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
# Never redirected to HTTPS: a redirected KooGallery POST is a failed call (spec §2.4: every call
# gets 200 + envelope; signatures, not the transport, authenticate it), and probes speak HTTP.
SECURE_REDIRECT_EXEMPT = [
    r"^koogallery(/|$)",
    r"^healthz$",
    r"^readyz$",
    *env_list("SECURE_REDIRECT_EXEMPT", default=[]),
]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

from datetime import timedelta as _timedelta  # noqa: E402

# Admin login throttling (django-axes): FAILURE_LIMIT failed logins for one user name from one
# address lock that pair out for COOLOFF minutes; the lockout answers 429.
AUTHENTICATION_BACKENDS = [
    "ops.security.AdminLoginThrottle",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ONLY_ADMIN_SITE = True
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = _timedelta(minutes=env.float("ADMIN_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "ops.security.client_ip"
AXES_VERBOSE = False  # fewer axes lines; attempts and lockouts are listed in the admin

# Celery workers log through LOGGING above (JSON, request ids, scrubbing), not Celery's format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# /metrics: staff session or `Authorization: Bearer <METRICS_TOKEN>`; never anonymous.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# django-prometheus: no applied/unapplied migration gauges (they query the database at start).
PROMETHEUS_EXPORT_MIGRATIONS = False

# --- orgsync staff API (orgsync/api.py; schema at /api/schema/, staff only) --------------------
SPECTACULAR_SETTINGS["SERVE_INCLUDE_SCHEMA"] = False  # the schema view is not part of the API
SPECTACULAR_SETTINGS["DESCRIPTION"] = (
    "Staff-only, read-only API (session of a staff user). A tenant is its KooGallery tenantId; "
    "add ?test=1 for the debug tenant of the same id (testFlag 1 data), production otherwise."
)

# --- metering (metering/, spec §5.5, issue 8) ---------------------------------------------------
from celery.schedules import crontab as _crontab  # noqa: E402

INSTALLED_APPS += ["metering"]
# Bearer token(s) of POST /api/usage (comma-separated: any may be used, for rotation). Empty:
# the API refuses every call (401).
METERING_API_TOKEN = env_list("METERING_API_TOKEN", default=[])
METERING_API_MAX_EVENTS = env.int("METERING_API_MAX_EVENTS", default=1000)
# occurredAt may lie this far ahead of our clock (the product's clock may run fast).
METERING_FUTURE_TOLERANCE_S = env.int("METERING_FUTURE_TOLERANCE_S", default=60)
# An hour [HH:00, HH+1:00) closes this long after its end (late events may still arrive), and
# its records should be pushed by minute METERING_PUSH_WINDOW_MIN of the next hour (KooGallery
# collects at minute 15); later first pushes are logged as late.
METERING_CLOSE_DELAY_S = env.int("METERING_CLOSE_DELAY_S", default=60)
METERING_PUSH_WINDOW_MIN = env.int("METERING_PUSH_WINDOW_MIN", default=10)
if not 0 <= METERING_CLOSE_DELAY_S < METERING_PUSH_WINDOW_MIN * 60:
    raise environ.ImproperlyConfigured(
        "METERING_CLOSE_DELAY_S must be shorter than METERING_PUSH_WINDOW_MIN minutes"
    )
# Records per usage-data call (≤ 1000, §5.5) and retries of 5xx/transport failures: exponential
# backoff with jitter from BASE to MAX seconds; records older than MAX_AGE_DAYS are dropped.
METERING_BATCH_SIZE = min(env.int("METERING_BATCH_SIZE", default=1000), 1000)
METERING_RETRY_BASE_S = env.float("METERING_RETRY_BASE_S", default=15.0)
METERING_RETRY_MAX_S = env.float("METERING_RETRY_MAX_S", default=300.0)
METERING_MAX_AGE_DAYS = env.int("METERING_MAX_AGE_DAYS", default=21)
# A push owns its claimed records this long (≥ 2 × KOOGALLERY_API_TIMEOUT_S: primary + fallback).
METERING_PUSH_LEASE_S = env.int("METERING_PUSH_LEASE_S", default=120)
# §5.5: APIG AK/SK signing on top of the basic-key signature (Huawei's pages disagree).
KOOGALLERY_USAGE_APIG = env.bool("KOOGALLERY_USAGE_APIG", default=False)
# §5.5 `relate_pkg_instance`: only for stop-before-excess (用完即停) packages.
KOOGALLERY_USAGE_RELATE_PACKAGE = env.bool("KOOGALLERY_USAGE_RELATE_PACKAGE", default=False)
# queryInstance `usageInfo.dashboardUrl` (§4.2.2); `{instance_id}` is replaced, URL-encoded.
KOOGALLERY_USAGE_DASHBOARD_URL = env.str("KOOGALLERY_USAGE_DASHBOARD_URL", default="")
CELERY_BEAT_SCHEDULE = {
    **CELERY_BEAT_SCHEDULE,
    # Every minute: close finished hours, push what is due (minutes 0–10 of the next hour).
    "metering-close-and-push": {
        "task": "metering.tasks.run_metering",
        "schedule": _crontab(minute="*"),
    },
}

# --- keys pasted as the README shows them ---------------------------------------------------------
# `KOOGALLERY_KIT_KEY=<联营kit key from …>` copied literally is a key KooGallery never signs with,
# yet the local simulator signs with it and the journey passes: refused when DEBUG is off (the
# message names the variable), said at start when it is on. A key has no angle brackets and no
# whitespace; these settings' values are never printed.
_KEY_SETTINGS = (
    "KOOGALLERY_KIT_KEY",
    "KOOGALLERY_BASIC_KEY",
    "KOOGALLERY_AK",
    "KOOGALLERY_SK",
    "SECRET_KEY",
    "FIELD_ENCRYPTION_KEYS",
    "METERING_API_TOKEN",
    "METRICS_TOKEN",
)


def _looks_like_a_placeholder(value: str) -> bool:
    return "<" in value or ">" in value or any(c.isspace() for c in value)


def _placeholder_keys() -> list[str]:
    found = []
    for name in _KEY_SETTINGS:
        value = globals()[name]
        values = value if isinstance(value, list) else [value]
        if any(_looks_like_a_placeholder(item) for item in values):
            found.append(name)
    return found


if _placeholders := _placeholder_keys():
    _message = (
        f"{', '.join(_placeholders)}: looks like a placeholder (angle brackets or whitespace), "
        "not a key; paste the key itself (README: Keys and first deployment check)"
    )
    if not DEBUG:
        raise environ.ImproperlyConfigured(_message)
    import warnings as _warnings

    _warnings.warn(_message, stacklevel=1)
