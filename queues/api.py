"""JSON for the dashboard's scripts: ``GET /api/series/?queue=NAME&window=SECONDS``.

``queue`` empty or absent means all queues together. Errors are JSON too, ``{"error": "..."}``: 400 for
a bad parameter, 403 without login or ``queues.view_dashboard``, 404 for an unknown queue, 405 for a
method other than GET.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from queues.engine.errors import InvalidQueueName
from queues.engine.validation import validate_name
from queues.metrics.series import SeriesError, check_window, get_series
from queues.models import Queue
from queues.permissions import can_view


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@never_cache
def series(request: HttpRequest) -> JsonResponse:
    """The history series of one queue (or the totals) over a window, for a chart."""
    if request.method != "GET":
        response = _error(405, f"use GET, not {request.method}")
        response["Allow"] = "GET"
        return response
    if not request.user.is_authenticated:
        return _error(403, "log in first")
    if not can_view(request.user):
        return _error(403, "viewing the dashboard needs the permission 'queues.view_dashboard'; ask an administrator")
    queue = request.GET.get("queue", "").strip()
    try:
        window = check_window(request.GET.get("window", "300"))
        if queue:
            validate_name(queue)
    except (SeriesError, InvalidQueueName) as exc:
        return _error(400, str(exc))
    if queue and not Queue.objects.filter(name=queue).exists():
        return _error(404, f"queue {queue!r} does not exist")
    return JsonResponse(get_series(queue=queue, window=window).as_json())
