"""The demo site's settings that come from the environment: the secret key, HTTPS, a proxy in front.

``mqadmin/settings.py`` calls these with ``os.environ``; tests call them with a plain dict. Each
reader refuses a malformed value with :class:`~django.core.exceptions.ImproperlyConfigured` naming
the variable, the value and what it accepts, so a typo stops the process at start rather than
quietly weakening it. ``docs/deploy.md`` documents every variable.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# The key that settings.py used to fall back on: it is in the public repository's history, so a
# cookie signed with it proves nothing. Refused even when set explicitly.
PUBLIC_KEYS = frozenset({"dev-only-insecure-key-change-me-in-production"})

SECRET_KEY_HELP = (
    "Set DJANGO_SECRET_KEY to a long random value kept secret and the same on every web process, e.g.\n"
    "    export DJANGO_SECRET_KEY=\"$(python -c 'import secrets; print(secrets.token_urlsafe(50))')\"\n"
    "For development on this machine set DJANGO_DEBUG=1 (or leave DATABASE_URL unset for the embedded "
    "database) and a key is generated and kept in var/secret-key. See docs/deploy.md."
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A yes/no variable: ``1/true/yes/on`` or ``0/false/no/off`` (unset: ``default``)."""
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a yes/no value: use 1 or 0")


def whole_number(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    """A variable holding a whole number ≥ ``minimum`` (ASCII digits only: ``²`` passes ``isdigit()``)."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip()
    if not (value.isascii() and value.isdigit()) or int(value) < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number ≥ {minimum}")
    return int(value)


def comma_list(env: Mapping[str, str], name: str, default: list[str]) -> list[str]:
    """A comma-separated variable, blanks dropped (unset: ``default``)."""
    raw = env.get(name)
    if raw is None:
        return list(default)
    return [part.strip() for part in raw.split(",") if part.strip()]


def kept_secret_key(path: Path) -> str:
    """The key stored at ``path`` (mode 0600), generated there on first use.

    Several processes of one checkout (web, workers, the demo's children) start at once: the file
    is created with ``O_EXCL`` so exactly one writes it and the others read what it wrote.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # A writer that lost the race may still be writing: its key is one short write away.
        for _ in range(50):
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.02)
        raise ImproperlyConfigured(f"{path} is empty: delete it and a new key is generated") from None
    key = secrets.token_urlsafe(50)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def secret_key(env: Mapping[str, str], *, development: bool, key_file: Path) -> str:
    """``DJANGO_SECRET_KEY``; in development a key kept in ``key_file``; otherwise refuse to start.

    Never a built-in default: anything that ships with the code is public, and a session or CSRF
    cookie signed with a public key can be forged.
    """
    key = env.get("DJANGO_SECRET_KEY", "").strip()
    if key in PUBLIC_KEYS:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is the old published example key, which anyone can sign cookies with.\n"
            + SECRET_KEY_HELP
        )
    if key:
        return key
    if development:
        return kept_secret_key(key_file)
    raise ImproperlyConfigured("DJANGO_SECRET_KEY is not set, and this is not a development run.\n" + SECRET_KEY_HELP)


@dataclass(frozen=True)
class Transport:
    """How requests reach daphne: directly, or through reverse proxies; over HTTP or HTTPS.

    Each field maps onto the Django setting of the same meaning in ``settings.py``.
    """

    proxy_count: int
    """Reverse proxies in front of daphne, each appending the address it saw to X-Forwarded-For."""
    https: bool
    """Browsers reach the site over HTTPS (TLS ends here or at the proxy)."""
    proxy_ssl_header: tuple[str, str] | None
    """``SECURE_PROXY_SSL_HEADER``: the proxy's header saying the browser used HTTPS."""
    ssl_redirect: bool
    hsts_seconds: int
    hsts_include_subdomains: bool
    hsts_preload: bool
    csrf_trusted_origins: list[str]


def transport(env: Mapping[str, str]) -> Transport:
    """Read ``DJANGO_BEHIND_PROXY``, ``DJANGO_HTTPS``, the HSTS variables and trusted CSRF origins."""
    proxy_count = whole_number(env, "DJANGO_BEHIND_PROXY", 0)
    # Behind a proxy the usual arrangement is TLS at the proxy: say so unless told otherwise.
    https = flag(env, "DJANGO_HTTPS", proxy_count > 0)
    header = env.get("DJANGO_SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto: https")
    name, sep, value = header.partition(":")
    if not sep or not name.strip() or not value.strip():
        raise ImproperlyConfigured(
            f"DJANGO_SECURE_PROXY_SSL_HEADER={header!r} must look like 'X-Forwarded-Proto: https'"
        )
    if "DJANGO_SECURE_PROXY_SSL_HEADER" in env and not proxy_count:
        # Without a proxy that overwrites it, the header is whatever the client sends.
        raise ImproperlyConfigured(
            "DJANGO_SECURE_PROXY_SSL_HEADER is set but DJANGO_BEHIND_PROXY is not: set DJANGO_BEHIND_PROXY to "
            "the number of proxies in front (usually 1), or unset the header"
        )
    proxy_ssl_header = ("HTTP_" + name.strip().upper().replace("-", "_"), value.strip()) if proxy_count else None
    origins = comma_list(env, "DJANGO_CSRF_TRUSTED_ORIGINS", [])
    for origin in origins:
        if not origin.startswith(("https://", "http://")):
            raise ImproperlyConfigured(
                f"DJANGO_CSRF_TRUSTED_ORIGINS entry {origin!r} needs its scheme, e.g. https://{origin}"
            )
    # Read (and so checked) even when HTTPS is off: a typo should not wait for the day it is switched on.
    ssl_redirect = flag(env, "DJANGO_SSL_REDIRECT", True)
    # A year, as `check --deploy` and the preload list ask; start lower while trying HTTPS out.
    hsts_seconds = whole_number(env, "DJANGO_HSTS_SECONDS", 31_536_000)
    hsts_include_subdomains = flag(env, "DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    hsts_preload = flag(env, "DJANGO_HSTS_PRELOAD", False)
    return Transport(
        proxy_count=proxy_count,
        https=https,
        proxy_ssl_header=proxy_ssl_header,
        ssl_redirect=https and ssl_redirect,
        hsts_seconds=hsts_seconds if https else 0,
        hsts_include_subdomains=https and hsts_include_subdomains,
        hsts_preload=https and hsts_preload,
        csrf_trusted_origins=origins,
    )


def load_settings_or_exit(program: str) -> None:
    """Load the settings now; if they refuse (a missing key, a malformed variable), exit with the reason.

    Called first by ``manage.py`` and ``mqadmin/asgi.py`` so that an operator sees the message and
    how to fix it, not a traceback ending in it.
    """
    try:
        settings.INSTALLED_APPS  # noqa: B018 - the first access imports the settings module
    except ImproperlyConfigured as exc:
        raise SystemExit(f"{program}: cannot start: {exc}") from None
