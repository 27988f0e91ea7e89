"""The client's address behind trusted reverse proxies (``DJANGO_BEHIND_PROXY``).

Behind a proxy, ``REMOTE_ADDR`` is the proxy's address, so the audit log and the login throttle
would see every operator as one machine. Each proxy appends the address it received the request
from to ``X-Forwarded-For``; the client is the entry ``TRUSTED_PROXY_COUNT`` places from the right.
Entries further left were written by the client itself and are never trusted.

The middleware rewrites ``REMOTE_ADDR`` once, first in the stack, so everything after it (the
``queues`` app's audit, django-axes, Django's own logging) reads one address by one rule.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest
from django.utils.deprecation import MiddlewareMixin


def forwarded_client(header: str, proxy_count: int) -> str | None:
    """The client address that ``proxy_count`` trusted proxies recorded in ``header``, if valid.

    ``None`` when the header has fewer entries than there are proxies (the request did not come
    through all of them) or when the entry is not an IP address.
    """
    entries = [part.strip() for part in header.split(",")]
    if proxy_count <= 0 or len(entries) < proxy_count:
        return None
    candidate = entries[-proxy_count]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


class ForwardedForMiddleware(MiddlewareMixin):
    """``REMOTE_ADDR`` := the client's address from ``X-Forwarded-For``, when behind trusted proxies."""

    def process_request(self, request: HttpRequest) -> None:
        count = int(getattr(settings, "TRUSTED_PROXY_COUNT", 0))
        header = request.META.get("HTTP_X_FORWARDED_FOR")
        if count <= 0 or not header:
            return
        client = forwarded_client(header, count)
        if client is not None:
            request.META["REMOTE_ADDR"] = client


def client_address(request: HttpRequest) -> str | None:
    """The client's address for django-axes (``AXES_CLIENT_IP_CALLABLE``): ``REMOTE_ADDR``.

    Named explicitly so that axes never reads ``X-Forwarded-For`` on its own (with django-ipware
    installed it would, trusting whatever a client sends and letting it dodge the lockout).
    """
    return request.META.get("REMOTE_ADDR") or None
