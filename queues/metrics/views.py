"""``/metrics``: the Prometheus endpoint (URL name ``queues:metrics``), mounted with the dashboard's URLs.

Who may scrape, checked on every request:

- a scraper sending ``Authorization: Bearer <MQADMIN["METRICS_TOKEN"]>`` (compared in constant time);
- a logged-in user with ``queues.view_dashboard`` (the same numbers the dashboard shows);
- anyone, only when ``MQADMIN["METRICS_PUBLIC"]`` is True.

Anonymous scrapes get 401 with a ``WWW-Authenticate: Bearer`` challenge, a wrong token 401, a user
without the permission 403. GET only: nothing here changes state, so there is no CSRF to check.
"""

from __future__ import annotations

import hmac
import logging

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from queues import conf
from queues.permissions import can_view

logger = logging.getLogger("queues.metrics")


def _token_matches(given: str) -> bool:
    expected = conf.get("METRICS_TOKEN")
    if not isinstance(expected, str) or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """The response refusing this scrape, or None if it may proceed."""
    if conf.get("METRICS_PUBLIC") is True:
        return None
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        if _token_matches(credentials.strip()):
            return None
        logger.warning("refused a /metrics scrape with a wrong bearer token from %s", request.META.get("REMOTE_ADDR"))
        response = HttpResponse("the bearer token is not MQADMIN['METRICS_TOKEN']\n", status=401,
                                content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="mqadmin", error="invalid_token"'
        return response
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        if can_view(user):
            return None
        return HttpResponse("/metrics needs the permission 'queues.view_dashboard'\n", status=403,
                            content_type="text/plain; charset=utf-8")
    response = HttpResponse(
        "/metrics needs a bearer token (MQADMIN['METRICS_TOKEN'], sent as 'Authorization: Bearer ...') or a "
        "login with the permission 'queues.view_dashboard'\n", status=401, content_type="text/plain; charset=utf-8")
    response["WWW-Authenticate"] = 'Bearer realm="mqadmin"'
    return response


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Every mqadmin metric in the format the scraper asks for (Prometheus text or OpenMetrics)."""
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    try:
        # Deferred: prometheus-client is the optional extra "prometheus"; without it only this URL fails,
        # not the URLconf that includes it.
        from prometheus_client.exposition import choose_encoder

        from queues.metrics.prometheus import registry
    except ImportError:
        return HttpResponse("/metrics needs the prometheus-client package: pip install 'django-mqadmin[prometheus]'\n",
                            status=501, content_type="text/plain; charset=utf-8")
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry()), content_type=content_type)
