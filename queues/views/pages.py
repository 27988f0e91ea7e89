"""The dashboard's pages: read-only views over ``queues.selectors`` (and the message search), plus the
two page-bound actions (reveal a hidden body, end a database session)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from queues import audit, conf, deadletters, flow_pages, search, selectors, services, validation, workload
from queues.forms import (
    BULK_ACTIONS,
    QueueSettingsForm,
)
from queues.models import Queue
from queues.permissions import Action, capabilities, check
from queues.views.common import (
    action_endpoint,
    authorize,
    dashboard_page,
    done,
    error_page,
    hidden_terms,
    int_param,
    queue_or_404,
    remote_addr,
    render_page,
)


@require_safe
@dashboard_page
def overview(request: HttpRequest) -> HttpResponse:
    """Totals, throughput, the backlog of every queue."""
    return render_page(request, "queues/overview.html", {
        "overview": selectors.get_overview(), "db": selectors.get_database_health(holders=1), "nav": "overview"})


@require_safe
@dashboard_page
def queue_list(request: HttpRequest) -> HttpResponse:
    """Every queue with its live numbers; sortable, filterable by name."""
    sort = request.GET.get("sort", "health") or "health"
    name_filter = request.GET.get("name", "")
    try:
        rows = selectors.list_queue_rows(name_filter=name_filter, sort=sort)
    except selectors.SortError as exc:
        return error_page(request, str(exc))
    columns = [
        ("name", "Queue"), ("kind", "Kind"), ("state", "State"), ("health", "Health"), ("ready", "Ready"),
        ("in_flight", "In flight"),
        ("delayed", "Delayed"), ("dead", "Dead"), ("oldest_ready_age", "Oldest"), ("rate_in", "In/s"),
        ("rate_out", "Out/s"), ("workers", "Workers"),
    ]
    headers = []
    for key, label in columns:
        current = sort.removeprefix("-") == key
        descending = sort.startswith("-")
        next_sort = key if not current or descending else f"-{key}"
        if not current and key not in ("name", "kind", "state", "health"):
            next_sort = f"-{key}"  # numbers: biggest first on the first click
        query = urlencode({k: v for k, v in {"sort": next_sort, "name": name_filter}.items() if v})
        headers.append({"key": key, "label": label, "query": query, "current": current, "descending": descending,
                        "numeric": key not in ("name", "kind", "state", "health")})
    return render_page(request, "queues/queue_list.html",
                 {"rows": rows, "headers": headers, "sort": sort, "name_filter": name_filter, "nav": "queues"})


@require_safe
@dashboard_page
def queue_detail(request: HttpRequest, name: str) -> HttpResponse:
    """One queue: numbers, charts, settings, workers, dead letters, redrives, actions."""
    queue = queue_or_404(name)
    return queue_page(request, queue)


def queue_page(
    request: HttpRequest, queue: Queue, *, settings_form: QueueSettingsForm | None = None, status: int = 200
) -> HttpResponse:
    """The queue page, also re-rendered by the settings action with its form's errors."""
    raw_window = request.GET.get("window", "3600")
    try:
        window = validation.parse_int(raw_window, "window")
    except validation.InvalidInput:
        window = None
    if window not in selectors.CHART_WINDOWS:
        return error_page(request, f"unknown chart window {raw_window!r}: use one of "
                               f"{', '.join(str(w) for w in selectors.CHART_WINDOWS)} (seconds)")
    detail = selectors.get_queue_detail(queue)
    form = settings_form or QueueSettingsForm(queue=queue)
    if not capabilities(request.user)[Action.UPDATE_QUEUE_SETTINGS]:
        for field in form.fields.values():
            field.disabled = True
    return render_page(request, "queues/queue_detail.html", {
        "d": detail, "queue": queue, "row": detail.row, "form": form, "window": window,
        "windows": selectors.CHART_WINDOWS.items(), "nav": "queues",
        "dlq_browse": browse_url(detail.dead_letter_queue.name) if detail.dead_letter_queue else "",
        "dead": deadletters.get_view(queue, limit=0) if detail.sources else None,
        "dead_count": deadletters.count_dead_letters(queue) if detail.dead_letter_queue and not detail.sources else 0,
        "flow": flow_pages.get_flow_limits(queue),
        "flow_totals": flow_pages.get_flow_totals(queue.name),
    }, status=status)


@require_safe
@dashboard_page
def dead_letters(request: HttpRequest, name: str) -> HttpResponse:
    """The dead letters of a queue (a dead-letter queue's own, or a source queue's in its dead-letter
    queue): groups by error signature, the newest first; ``?origin=&sig=`` picks one group."""
    queue = queue_or_404(name)
    selected = None
    holder, _origin = deadletters.holder_of(queue)
    try:
        if "sig" in request.GET:
            if holder is None:
                raise ValueError(f"{name!r} has no dead-letter queue, so it has no dead-letter groups")
            selected = deadletters.GroupKey.from_params(holder.name, request.GET)
        view = deadletters.get_view(queue, selected=selected)
    except LookupError as exc:
        raise Http404(str(exc)) from None
    except ValueError as exc:
        return error_page(request, str(exc))
    return render_page(request, "queues/dead_letters.html", {"v": view, "queue": queue, "nav": "queues"})


@require_safe
@dashboard_page
def dead_letter_export(request: HttpRequest, name: str) -> HttpResponse:
    """One group's messages as a JSON lines download (bodies left out while ``HIDE_BODIES`` is on)."""
    queue = queue_or_404(name)
    holder, _origin = deadletters.holder_of(queue)
    if holder is None:
        return error_page(request, f"{name!r} has no dead-letter queue, so there is nothing to export")
    try:
        key = deadletters.GroupKey.from_params(holder.name, request.GET)
        deadletters.count_group(key)  # unknown queues answer 404 before the download starts
    except LookupError as exc:
        raise Http404(str(exc)) from None
    except ValueError as exc:
        return error_page(request, str(exc))
    lines = deadletters.export_lines(key, with_bodies=not conf.get("HIDE_BODIES"))
    response = StreamingHttpResponse(lines, content_type="application/x-ndjson; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{holder.name}-dead-letters.jsonl"'
    response["Cache-Control"] = "no-store"
    return response


def browse_url(queue: str, q: str = "", state: str = "") -> str:
    """The message browser of ``queue``, with a search and a state when given."""
    query = urlencode({k: v for k, v in {"q": q, "state": state}.items() if v})
    return reverse("queues:queue-messages", args=[queue]) + (f"?{query}" if query else "")


@require_safe
@dashboard_page
def message_browser(request: HttpRequest, name: str | None = None) -> HttpResponse:
    """Browse messages of one queue or all, filtered by state and qualifiers, keyset-paged by id."""
    queue = queue_or_404(name) if name is not None else None
    q = request.GET.get("q", "")
    state = request.GET.get("state", "")
    order = request.GET.get("order", "") or "oldest"
    context: dict[str, Any] = {
        "queue": queue, "q": q, "state": state, "states": search.STATES, "help": search.QUALIFIER_HELP,
        "nav": "messages", "queue_names": selectors.queue_names(), "bulk_actions": BULK_ACTIONS, "order": order,
    }
    try:
        if order not in ("oldest", "newest"):
            raise ValueError(f"unknown order {order!r}: use oldest or newest")
        after = int_param(request, "after")
        before = int_param(request, "before")
        match = search.parse_search(q, queue=queue.name if queue else None, state=state or None)
        if match.reads_bodies:
            authorize(request, Action.SEARCH_BODIES, match.single_queue or "", **hidden_terms(match))
        page = selectors.search_messages(match, after=after, before=before, newest_first=order == "newest")
    except ValueError as exc:  # SearchError, bad cursors, an unknown order
        context.update(error=str(exc), page=selectors.MessagePage())
        return render_page(request, "queues/message_browser.html", context, status=400)
    base = {k: v for k, v in {"q": q, "state": state, "order": "newest" if order == "newest" else ""}.items() if v}
    stats = selectors.get_queue_stats(queue.name) if queue is not None else None
    context.update(
        page=page, match=match, filter_text=match.text(),
        next_query=urlencode({**base, "after": page.next_after}) if page.next_after else "",
        prev_query=urlencode({**base, "before": page.prev_before}) if page.prev_before else "",
        here=request.get_full_path(), stats=stats, total=selectors.count_messages(match, stats=stats),
        # The other order starts again at its first page: a cursor of one order means nothing in the other.
        flip_query=urlencode({**{k: v for k, v in base.items() if k != "order"},
                              **({} if order == "newest" else {"order": "newest"})}),
    )
    return render_page(request, "queues/message_browser.html", context)


def _message_or_404(message_id: int) -> selectors.MessageDetail:
    detail = selectors.get_message(message_id)
    if detail is None:
        raise Http404(f"message {message_id} does not exist: it was acked, deleted or never sent")
    return detail


@require_safe
@dashboard_page
def message_detail(request: HttpRequest, message_id: int) -> HttpResponse:
    """One message: body, headers, receive count, timestamps, attempts and errors."""
    detail = _message_or_404(message_id)
    return render_page(request, "queues/message_detail.html",
                       message_context(detail, revealed=not conf.get("HIDE_BODIES")))


def message_context(detail: selectors.MessageDetail, *, revealed: bool) -> dict[str, Any]:
    """What the message page shows besides the message: its neighbours in the queue, the queue pickers."""
    origin = detail.info.origin_queue
    return {
        "m": detail, "info": detail.info, "revealed": revealed, "nav": "messages",
        "queue_names": selectors.queue_names(),
        "around": selectors.get_message_neighbours(detail.queue, detail.info.id),
        # A copy of a dead letter goes back where it died (while that queue exists); others to their own queue.
        "copy_to": origin if origin and selectors.get_queue(origin) else detail.queue.name,
    }


@require_POST
@action_endpoint
def message_reveal(request: HttpRequest, message_id: int) -> HttpResponse:
    """Show a hidden body once (the reveal is audited); the page is not cached as revealed."""
    detail = services.reveal_body(actor=request.user, message_id=message_id, remote_addr=remote_addr(request))
    return render_page(request, "queues/message_detail.html", message_context(detail, revealed=True))


@require_safe
@dashboard_page
def worker_list(request: HttpRequest) -> HttpResponse:
    """Every running worker and the latest stopped or dead ones."""
    return render_page(request, "queues/workers.html", {
        "workers": workload.with_load(workload.list_workers()), "nav": "workers",
        "stale_after": conf.worker_stale_after(),
    })


@require_safe
@dashboard_page
def database(request: HttpRequest) -> HttpResponse:
    """The queue tables' dead rows and size, the oldest open snapshot and who holds it, replication slots."""
    return render_page(request, "queues/database.html", {"health": selectors.get_database_health(), "nav": "database"})


@require_http_methods(["GET", "POST"])
@action_endpoint
def database_session_end(request: HttpRequest, pid: int) -> HttpResponse:
    """GET: confirm page for ending (or cancelling the query of) a database session; POST: do it."""
    if request.method == "GET":
        check(request.user, Action.CANCEL_BACKEND)
        session = selectors.get_database_session(pid)
        if session is None:
            raise Http404(f"no session with pid {pid} in this database: it may have ended already")
        return render_page(request, "queues/database_end_session.html", {"session": session, "nav": "database"})
    mode = request.POST.get("mode", "terminate")
    services.cancel_backend(actor=request.user, pid=pid, mode=mode, backend_start=request.POST.get("backend_start"),
                            remote_addr=remote_addr(request))
    what = "Ended session" if mode == "terminate" else "Cancelled the running query of session"
    return done(request, f"{what} {pid}.", reverse("queues:database"))


@require_safe
@dashboard_page
def audit_log(request: HttpRequest) -> HttpResponse:
    """Who did what to which queue or messages, when, from where, and how it ended.

    ``from`` and ``to`` bound the time (``to`` exclusive; a date alone is the whole day), read in
    ``tz`` (the zone the page showed times in, set by clock.js; UTC without script) unless they carry
    an offset. A bad date, zone or an empty range is a 400 that says so.
    """
    filters = {k: request.GET.get(k, "").strip() for k in ("actor", "action", "queue", "outcome", "from", "to", "tz")}
    try:
        before = int_param(request, "before")
        zone = filters["tz"] or "UTC"
        since = validation.parse_instant(filters["from"], "start (from)", zone=zone) if filters["from"] else None
        until = (validation.parse_instant(filters["to"], "end (to)", zone=zone, end_of_day=True)
                 if filters["to"] else None)
    except ValueError as exc:
        return error_page(request, str(exc))
    if since is not None and until is not None and since >= until:
        return error_page(request, f"the range from {filters['from']!r} to {filters['to']!r} is empty: "
                                   "the start must be before the end")
    if filters["action"] and filters["action"] not in {a.value for a in Action}:
        return error_page(request, f"unknown action {filters['action']!r}: pick one from the list")
    if filters["outcome"] and filters["outcome"] not in ("ok", "denied", "error"):
        return error_page(request, f"unknown outcome {filters['outcome']!r}: use ok, denied or error")
    page = audit.list_audit_events(
        before=before, since=since, until=until, **{k: filters[k] for k in ("actor", "action", "queue", "outcome")})
    next_query = urlencode({**{k: v for k, v in filters.items() if v}, "before": page.next_before}) \
        if page.next_before else ""
    return render_page(request, "queues/audit.html", {
        "page": page, "filters": filters, "actions": [a.value for a in Action], "nav": "audit",
        "actors": audit.audit_actor_names(), "next_query": next_query,
    })


def websocket_endpoint(request: HttpRequest) -> HttpResponse:
    """Plain HTTP to the dashboard socket's address (a WebSocket-only route, see ``queues/routing.py``).

    The URL exists in the HTTP URLconf so that pages can reverse it: the socket then follows the
    dashboard's mount prefix and ``SCRIPT_NAME``, and the ASGI routes are derived from the same name.
    """
    response = HttpResponse("This address serves the dashboard's live updates over a WebSocket.\n",
                            status=426, content_type="text/plain; charset=utf-8")
    response["Upgrade"] = "websocket"
    return response


@require_safe
@dashboard_page
def schedule_list(request: HttpRequest) -> HttpResponse:
    """Every periodic schedule: cron in words, zone, target, next and last run, paused; with its actions."""
    return render_page(request, "queues/schedules.html", {"schedules": flow_pages.list_schedule_rows(),
                                                          "nav": "schedules"})
