"""WebSocket routes of the dashboard, for a host's ASGI application.

``websocket_urlpatterns`` follows wherever the host mounted ``include("queues.urls")``: the socket's
path is the reverse of ``queues:ws-dashboard`` (``<prefix>ws/dashboard/``), the very URL the pages
dial. It is computed on first access, when the URLconf can be loaded (after ``get_asgi_application()``).
A proxy's ``SCRIPT_NAME`` arrives as the ASGI ``root_path``, which Channels' ``URLRouter`` strips.

Most hosts use :func:`queues.asgi.dashboard_application` rather than these routes directly.
"""

from __future__ import annotations

from typing import Any

from django.urls import path, reverse
from django.urls.base import get_script_prefix

from queues.consumers import DashboardConsumer


def dashboard_websocket_path() -> str:
    """The socket's path below the site root, without a leading slash (e.g. ``ops/queues/ws/dashboard/``)."""
    url = reverse("queues:ws-dashboard")
    # reverse() prepends the script prefix of the current thread; routes match below root_path.
    prefix = get_script_prefix()
    if url.startswith(prefix):
        url = url[len(prefix):]
    return url.lstrip("/")


def build_websocket_urlpatterns() -> list[Any]:
    """The dashboard's WebSocket routes at the current mount of ``queues.urls``."""
    return [path(dashboard_websocket_path(), DashboardConsumer.as_asgi(), name="ws-dashboard")]


def __getattr__(name: str) -> Any:
    # A module attribute computed on first use: the URLconf is not importable while settings load.
    if name == "websocket_urlpatterns":
        patterns = build_websocket_urlpatterns()
        globals()["websocket_urlpatterns"] = patterns
        return patterns
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
