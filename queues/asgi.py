"""Compose mqadmin's live dashboard with a host's ASGI application.

In the host's ``asgi.py``::

    import os
    from django.core.asgi import get_asgi_application

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    django_asgi_app = get_asgi_application()  # before anything that imports models

    from queues.asgi import dashboard_application  # noqa: E402

    application = dashboard_application(django_asgi_app)

HTTP goes to the host's application; WebSockets to the dashboard's consumer (plus any routes of the
host's own, passed as ``websocket_urlpatterns``), behind the session authentication and a same-origin check
(:class:`queues.origin.SameOriginValidator`: scheme, host and port, or ``CSRF_TRUSTED_ORIGINS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter

from queues.origin import SameOriginValidator


def dashboard_application(http_application: Any, *, websocket_urlpatterns: Sequence[Any] = ()) -> ProtocolTypeRouter:
    """An ASGI application: ``http_application`` for HTTP, the dashboard (and yours) for WebSockets."""
    # deferred: the routes import the consumer and reverse the URLconf, neither ready until the host has
    # called get_asgi_application(); importing this module stays safe before that
    from queues.routing import build_websocket_urlpatterns

    routes = [*build_websocket_urlpatterns(), *websocket_urlpatterns]
    return ProtocolTypeRouter({
        "http": http_application,
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(routes))),
    })
