"""WebSocket routes, mounted by ``mqadmin/asgi.py`` under ``AllowedHostsOriginValidator(AuthMiddlewareStack(...))``."""

from __future__ import annotations

from django.urls import path

from queues.consumers import DashboardConsumer

websocket_urlpatterns = [
    path("ws/dashboard/", DashboardConsumer.as_asgi(), name="ws-dashboard"),
]
