"""Same-origin check for WebSocket handshakes, as ASGI middleware.

Browsers attach cookies to a WebSocket handshake whatever page opened it, and CSRF protection does
not cover sockets; the ``Origin`` header is the only thing that tells the dashboard's own pages from a
page elsewhere. Channels' ``AllowedHostsOriginValidator`` compares only the origin's host with
``ALLOWED_HOSTS``, so ``http://dashboard.example:8081`` or ``http://`` where the site is ``https://``
pass. :class:`SameOriginValidator` applies the rule Django's CSRF check applies to a POST: the
origin's scheme, host and port must be the request's own (its ``Host`` header, which must itself be in
``ALLOWED_HOSTS``, and its scheme, ``SECURE_PROXY_SSL_HEADER`` honoured), or be listed in
``CSRF_TRUSTED_ORIGINS`` (wildcard subdomains as Django allows them). A handshake without an origin
is refused too: every browser sends one.

Use it in place of ``AllowedHostsOriginValidator``::

    "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(routes)))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import SplitResult, urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin1")
    return None


def _allowed_hosts() -> list[str]:
    # The same fallback as HttpRequest.get_host(): loopback names only, and only under DEBUG.
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def _port(parsed: SplitResult) -> int | None:
    try:
        return parsed.port or _DEFAULT_PORTS.get(parsed.scheme)
    except ValueError:  # a port that is not a number or out of range
        return None


class SameOriginValidator:
    """ASGI middleware: WebSocket handshakes pass only from the request's own origin or a trusted one.

    Anything else is denied at the handshake (HTTP 403), before authentication or routing run. Other
    connection types pass through untouched.
    """

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not self.allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)

    def request_scheme(self, scope: dict[str, Any]) -> str:
        """``https`` or ``http``: the scheme the browser used, as ``HttpRequest.is_secure()`` decides it."""
        proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
        if proxy:
            meta_name, expected = proxy
            name = meta_name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin1")
            sent = _header(scope.get("headers", ()), name)
            if sent is not None:
                return "https" if sent.split(",", 1)[0].strip() == expected else "http"
        return "https" if scope.get("scheme", "ws") in ("wss", "https") else "http"

    def allowed(self, scope: dict[str, Any]) -> bool:
        """Does the handshake in ``scope`` come from an origin allowed to open the dashboard's socket?"""
        headers = scope.get("headers", ())
        origin = _header(headers, b"origin")
        if not origin or origin == "null":
            return False
        parsed = urlsplit(origin)
        if parsed.scheme not in _DEFAULT_PORTS or not parsed.hostname:
            return False
        scheme = self.request_scheme(scope)
        if self._same_origin(parsed, _header(headers, b"host"), scheme):
            return True
        return self._trusted(origin, parsed)

    def _same_origin(self, origin: SplitResult, host: str | None, scheme: str) -> bool:
        if not host:
            return False
        domain, port = split_domain_port(host)
        if not domain or not validate_host(domain, _allowed_hosts()):
            return False
        try:
            request_port = int(port) if port else _DEFAULT_PORTS[scheme]
        except ValueError:
            return False
        return (origin.scheme == scheme and origin.hostname == domain.strip("[]")
                and _port(origin) == request_port)

    def _trusted(self, origin: str, parsed: SplitResult) -> bool:
        trusted = list(getattr(settings, "CSRF_TRUSTED_ORIGINS", ()))
        if origin in trusted:
            return True
        # Wildcards as Django's CsrfViewMiddleware reads them: "https://*.example.com".
        for entry in trusted:
            if "*" not in entry:
                continue
            allowed = urlsplit(entry)
            if allowed.scheme == parsed.scheme and is_same_domain(parsed.netloc, allowed.netloc.lstrip("*")):
                return True
        return False
