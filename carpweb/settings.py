"""Settings: embedded defaults (SQLite, a filesystem broker) unless the environment names real services.

Environment: DATABASE_URL, CELERY_BROKER_URL, CARPWEB_SECRET_KEY, CARPWEB_ENCRYPTION_KEYS (comma-separated
Fernet keys, newest first), CARPWEB_DEBUG, CARPWEB_ALLOWED_HOSTS, CARPWEB_DATA_DIR.
"""

import json
import os
import secrets
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.management.utils import get_random_secret_key
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
# Everything carpweb writes lives here: database, broker folders, keys of embedded mode, logs, static files.
DATA_DIR = Path(os.environ.get("CARPWEB_DATA_DIR") or BASE_DIR / "var").resolve()
DEBUG = os.environ.get("CARPWEB_DEBUG", "0") == "1"
PRODUCTION = "CARPWEB_SECRET_KEY" in os.environ


def _dev_keys() -> dict[str, str]:
    """Embedded mode only: keys generated once and kept in DATA_DIR, so a restart can still decrypt."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / "dev-keys.json"
    keys = json.loads(path.read_text()) if path.exists() else {}
    fresh = {"secret_key": get_random_secret_key, "encryption_key": lambda: Fernet.generate_key().decode(),
             "audit_key": lambda: secrets.token_hex(32)}
    missing = {name: make() for name, make in fresh.items() if name not in keys}
    if missing:  # a data directory made before a key existed gets it added, the others kept
        keys.update(missing)
        path.write_text(json.dumps(keys))
        path.chmod(0o600)
    return keys


for _needed in ("CARPWEB_ENCRYPTION_KEYS", "CARPWEB_AUDIT_KEY"):
    if PRODUCTION and not os.environ.get(_needed):
        # A key generated beside the data would sit with what it protects: production names its own.
        raise SystemExit(f"CARPWEB_SECRET_KEY is set (production) but {_needed} is not: set it (see README, "
                         "'Configuration'). carpweb does not generate keys in production.")
_need_dev = not PRODUCTION
_dev = _dev_keys() if _need_dev else {}
SECRET_KEY = os.environ.get("CARPWEB_SECRET_KEY") or _dev["secret_key"]
CARPWEB_ENCRYPTION_KEYS = [
    k.strip() for k in (os.environ.get("CARPWEB_ENCRYPTION_KEYS") or _dev["encryption_key"]).split(",") if k.strip()
]
# The audit chain's HMAC keys, newest first (comma-separated): kept outside the database, so someone who can write
# the database cannot re-seal an edited entry.
CARPWEB_AUDIT_KEYS = [
    k.strip() for k in (os.environ.get("CARPWEB_AUDIT_KEY") or _dev["audit_key"]).split(",") if k.strip()
]
ALLOWED_HOSTS = os.environ.get("CARPWEB_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CARPWEB_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "axes",
    "django_celery_beat",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "wizard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "wizard.middleware.AuditContextMiddleware",
    "wizard.middleware.PasswordChangeRequiredMiddleware",
    "axes.middleware.AxesMiddleware",
]
# The REST API (wizard.api): bearer tokens or the pages' session, roles as on the pages, a rate per token.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["wizard.api.auth.BearerTokenAuthentication",
                                       "rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["wizard.api.auth.HasRole"],
    "DEFAULT_THROTTLE_CLASSES": ["wizard.api.auth.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"token": os.environ.get("CARPWEB_API_RATE", "600/min")},
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],  # JSON in, JSON out
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "carpweb API",
    "DESCRIPTION": "CARP service IPs for FreeBSD: the inventory, runs and their steps. Authenticate with "
                   "`Authorization: Bearer carpweb_<id>_<secret>` (manage.py token_create, or POST /api/v1/tokens/).",
    "VERSION": "1",
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "AUTHENTICATION_WHITELIST": ["wizard.api.auth.BearerTokenAuthentication"],  # the session is for /api/docs/ only
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "wizard.api.schema.add_error_responses"],
    "ENUM_NAME_OVERRIDES": {"RunStatusEnum": "wizard.models.Run.Status", "StepStatusEnum": "wizard.models.Step.Status",
                            "ServerRoleEnum": "wizard.models.Server.Role", "UserRoleEnum": "wizard.roles.ROLES",
                            "RunKindEnum": "wizard.models.Run.Kind", "NoticeKindEnum": "wizard.models.Notice.Kind",
                            "TargetKindEnum": "wizard.models.NotificationTarget.Kind"},
}
AUTHENTICATION_BACKENDS = ["wizard.auth_backends.AddressLimitBackend", "axes.backends.AxesStandaloneBackend",
                           "django.contrib.auth.backends.ModelBackend"]
# Login attempts: 5 failures per user name and address lock it for 15 minutes (django-axes); 30 failures from one
# address, whatever the user names, lock the address (wizard.auth_backends).
AXES_FAILURE_LIMIT = int(os.environ.get("CARPWEB_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = 0.25  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
CARPWEB_LOGIN_ADDRESS_LIMIT = int(os.environ.get("CARPWEB_LOGIN_ADDRESS_LIMIT", "30"))
# The client's address comes from X-Forwarded-For only when the connection is from one of these proxies (CIDRs).
CARPWEB_TRUSTED_PROXIES = os.environ.get("CARPWEB_TRUSTED_PROXIES", "")
AXES_CLIENT_IP_CALLABLE = "wizard.clientip.client_ip"

ROOT_URLCONF = "carpweb.urls"
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
                "wizard.context_processors.role",
                "wizard.context_processors.live",
            ],
        },
    },
]
WSGI_APPLICATION = "carpweb.wsgi.application"

DATABASES = {
    "default": dj_database_url.config(
        default="sqlite:///" + str(DATA_DIR / "carpweb.sqlite3"), conn_max_age=60, conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL lets the web process read while the worker writes step rows; synchronous=NORMAL (WAL's recommended
    # setting) syncs at checkpoints instead of every commit, which a worker with dozens of runs in flight needs;
    # a crash of carpweb loses nothing, a power cut at most the last commits.
    DATABASES["default"]["OPTIONS"] = {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                                       "transaction_mode": "IMMEDIATE", "timeout": 60}
    DATABASES["default"]["ENGINE"] = "carpweb.sqlite_backend"  # a process's writers queue on a lock (see there)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-carpweb.sqlite3")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "cluster-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Pico and htmx come from their npm packages (package.json), never from a CDN.
STATICFILES_DIRS: list[Path | tuple[str, Path]] = [BASE_DIR / "static"]
if (BASE_DIR / "node_modules").exists():
    STATICFILES_DIRS.append(("vendor", BASE_DIR / "node_modules"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Celery: the broker from the environment, else kombu's filesystem transport (no server needed), in the
# atomic-publish variant of carpweb/broker.py ("carpfs").
_broker_dir = DATA_DIR / "broker"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "carpfs://")
if CELERY_BROKER_URL.startswith("filesystem"):
    CELERY_BROKER_URL = "carpfs://"
if CELERY_BROKER_URL.startswith("carpfs"):
    for sub in ("queue", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Broadcasts (worker pings, remote control) keep their exchange tables here, not in ./control.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.05,
    }
CELERY_TASK_IGNORE_RESULT = True
# Notifications wait on mail servers and webhooks: their own queue, so they never delay runs.
CELERY_TASK_ROUTES = {"wizard.deliver": {"queue": "notifications"}}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Save each task's last_run_at as soon as beat sends it: /health/ reports it as beat's last run.
CELERY_BEAT_SYNC_EVERY = 1
# Drift checks: scripts/start runs celery beat only with CARPWEB_DRIFT_CHECK=1 (off in embedded mode).
CARPWEB_DRIFT_CHECK = os.environ.get("CARPWEB_DRIFT_CHECK", "0") == "1"

# Notifications: links in them point here; email goes through Django's backend (the console unless SMTP is set).
CARPWEB_BASE_URL = os.environ.get("CARPWEB_BASE_URL", "http://127.0.0.1:8000")
EMAIL_BACKEND = ("django.core.mail.backends.smtp.EmailBackend" if os.environ.get("CARPWEB_SMTP_HOST")
                 else "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("CARPWEB_SMTP_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("CARPWEB_SMTP_PORT", "587"))
EMAIL_HOST_USER = os.environ.get("CARPWEB_SMTP_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("CARPWEB_SMTP_PASSWORD", "")
EMAIL_USE_TLS = os.environ.get("CARPWEB_SMTP_TLS", "1") == "1"
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = os.environ.get("CARPWEB_MAIL_FROM", "carpweb@localhost")
# A delivery that fails is tried again this many times, waiting BACKOFF, 2 x BACKOFF, 4 x BACKOFF ... seconds.
CARPWEB_NOTIFY_RETRIES = int(os.environ.get("CARPWEB_NOTIFY_RETRIES", "5"))
CARPWEB_NOTIFY_BACKOFF = float(os.environ.get("CARPWEB_NOTIFY_BACKOFF", "2"))
# More than CARPWEB_FLAP_LOSSES losses of MASTER within CARPWEB_FLAP_MINUTES make a cluster "flapping": one notice,
# then silence until it calms down (a drill or a maintenance window is two losses; a link that keeps bouncing, many).
CARPWEB_FLAP_LOSSES = int(os.environ.get("CARPWEB_FLAP_LOSSES", "4"))
CARPWEB_FLAP_MINUTES = float(os.environ.get("CARPWEB_FLAP_MINUTES", "10"))
# Webhooks connect to public addresses only; a chat relay on a private network is listed here (comma-separated
# CIDRs, e.g. "10.20.0.0/16,fd00:1::/64").
CARPWEB_WEBHOOK_ALLOWED_NETWORKS = os.environ.get("CARPWEB_WEBHOOK_ALLOWED_NETWORKS", "")
# Live streams one web process holds: per session (a person's tabs) and in all; past either, 429 with a sentence.
CARPWEB_STREAMS_PER_SESSION = int(os.environ.get("CARPWEB_STREAMS_PER_SESSION", "12"))
CARPWEB_STREAMS_PER_PROCESS = int(os.environ.get("CARPWEB_STREAMS_PER_PROCESS", "2000"))
# A live page that has had no event from its stream after this many milliseconds polls instead (a proxy that
# strips or buffers event streams); tests lower it.
CARPWEB_LIVE_FALLBACK_MS = int(os.environ.get("CARPWEB_LIVE_FALLBACK_MS", "4000"))
# Metrics (GET /metrics, Prometheus text format): served only when a bearer token is set.
CARPWEB_METRICS_TOKEN = os.environ.get("CARPWEB_METRICS_TOKEN", "")

# SSH: every operation has a bound (seconds).
CARPWEB_SSH_CONNECT_TIMEOUT = float(os.environ.get("CARPWEB_SSH_CONNECT_TIMEOUT", "10"))
CARPWEB_SSH_COMMAND_TIMEOUT = float(os.environ.get("CARPWEB_SSH_COMMAND_TIMEOUT", "30"))
# SSH connections one worker process holds at once, over all the runs it carries (each run takes one per server).
CARPWEB_SSH_MAX_CONNECTIONS = int(os.environ.get("CARPWEB_SSH_MAX_CONNECTIONS", "128"))
# Warm connections (wizard/sshpool.py): a worker keeps each connection it opened for later runs, closing it after
# CARPWEB_SSH_IDLE_SECONDS unused (0: no pool, every run opens and closes its own). At most CARPWEB_SSH_MAX_SESSIONS
# commands at once on one connection (OpenSSH's MaxSessions is 10 by default).
CARPWEB_SSH_IDLE_SECONDS = float(os.environ.get("CARPWEB_SSH_IDLE_SECONDS", "120"))
CARPWEB_SSH_MAX_SESSIONS = int(os.environ.get("CARPWEB_SSH_MAX_SESSIONS", "8"))
CARPWEB_RUN_TIMEOUT = float(os.environ.get("CARPWEB_RUN_TIMEOUT", "900"))
# The runner enforces CARPWEB_RUN_TIMEOUT itself (the thread pool cannot enforce a Celery time limit; with a
# prefork worker, wizard.tasks.run_execute's hard limit is a backstop).

# Content Security Policy (Django's own): scripts and styles only from carpweb itself. htmx works under it
# because no page uses inline scripts, inline handlers or hx-on, and htmx's indicator styles are turned off
# (the htmx-config meta tag in base.html); Pico's icons are data: images.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "object-src": [CSP.NONE],
}

SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
if PRODUCTION and not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_SSL_REDIRECT = os.environ.get("CARPWEB_SSL_REDIRECT", "1") == "1"
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_PRELOAD = os.environ.get("CARPWEB_HSTS_PRELOAD", "1") == "1"
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "wizard": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "paramiko": {"level": "WARNING"},
        # paramiko logs, from its own thread, the handshakes cut short when a node is out of reach; the collector
        # and runs report those themselves, as sentences.
        "paramiko.transport": {"level": "CRITICAL"},
    },
}
