"""The dashboard's pages and action endpoints.

Pages are complete without JavaScript; live updates only refresh the numbers. Reads go through
``queues.selectors``, every change through ``queues.services`` (which checks permission and audits).
A page needs ``queues.view_dashboard``; an action's own permission is checked by its service so a
denied attempt is on record. Bad input answers 400 with the reason on the page, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, TooManyFieldsSent
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from queues import conf, engine, search, selectors, services, validation
from queues.forms import (
    BULK_ACTIONS,
    MAX_SELECTED,
    BulkError,
    ConfirmNameForm,
    PublishForm,
    QueueCreateForm,
    QueueSettingsForm,
    RedriveForm,
    parse_bulk,
)
from queues.models import Queue
from queues.permissions import Action, can_view, capabilities, check, is_read_only

View = Callable[..., HttpResponse]


# -- plumbing ---------------------------------------------------------------------------------------
def _remote_addr(request: HttpRequest) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is whatever the client says. Behind a proxy the host rewrites
    # REMOTE_ADDR from the entries its trusted proxies appended (the demo site: mqadmin.proxy).
    return request.META.get("REMOTE_ADDR", "")


def _page(request: HttpRequest, template: str, context: dict[str, Any], *, status: int = 200) -> HttpResponse:
    ctx = {
        "can": capabilities(request.user),
        "read_only": is_read_only(),
        "hide_bodies": bool(conf.get("HIDE_BODIES")),
    }
    ctx.update(context)
    response = render(request, template, ctx, status=status)
    # Every dashboard page, not only those showing bodies today: message content, queue names and
    # errors must not stay in a browser's or a proxy's cache after the operator leaves.
    add_never_cache_headers(response)
    return response


def _error(request: HttpRequest, message: str, *, status: int = 400, title: str = "That did not work") -> HttpResponse:
    return _page(request, "queues/error.html", {"title": title, "message": message, "status": status}, status=status)


def _logged_in(view: View) -> View:
    """Anonymous users go to the login page; inactive ones get 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper


def dashboard_page(view: View) -> View:
    """A page: logged in, with ``queues.view_dashboard`` (staff without it get 403 too)."""

    @_logged_in
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_view(request.user):
            raise PermissionDenied(
                "the dashboard needs the permission 'queues.view_dashboard': ask an administrator to grant it"
            )
        refused = _unstorable_input(request)
        if refused is not None:
            return refused
        return view(request, *args, **kwargs)

    return wrapper


def action_endpoint(view: View) -> View:
    """An action: logged in, POST; service errors become 400/404 pages (permission is the service's job)."""

    @_logged_in
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "GET":
            # A confirm page only reads; a POST's fields are checked by its form and service, after
            # the permission check, so a refused attempt is on record.
            refused = _unstorable_input(request)
            if refused is not None:
                return refused
        try:
            return view(request, *args, **kwargs)
        except services.NotFound as exc:
            raise Http404(str(exc))
        except (services.ActionFailed, validation.InvalidInput) as exc:
            return _error(request, str(exc))

    return wrapper


def _unstorable_input(request: HttpRequest) -> HttpResponse | None:
    """A 400 page if a query parameter holds text PostgreSQL cannot store (a NUL).

    Path segments are names or ids: a malformed one names nothing, so its page is a 404 (``_queue_or_404``).
    """
    try:
        problem = validation.unstorable_parameter(request.GET.lists())
    except TooManyFieldsSent:
        return _error(request, f"too many query parameters (Django allows {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:,}): "
                               "send many message ids as one comma-separated 'ids' field")
    if problem is None:
        return None
    return _error(request, f"{problem}: remove it and try again")


def _authorize(request: HttpRequest, action: Action, queue: str, **detail: Any) -> None:
    services.authorize(actor=request.user, action=action, queue=queue, remote_addr=_remote_addr(request),
                       detail=detail or None)


def _queue_or_404(name: str) -> Queue:
    try:
        engine.validate_name(name)
    except ValueError:
        raise Http404(f"there is no queue named {name!r} (it is not even a valid queue name)") from None
    queue = selectors.get_queue(name)
    if queue is None:
        raise Http404(f"there is no queue named {name!r}")
    return queue


def _refuse(request: HttpRequest, action: Action, queue: str, error: str, **detail: Any) -> None:
    """Audit an attempt refused for its input: every attempt leaves its row, not only the valid ones."""
    services.refuse(actor=request.user, action=action, queue=queue, error=error, remote_addr=_remote_addr(request),
                    detail=detail or None)


def _hidden_terms(match: search.MessageFilter) -> dict[str, Any]:
    """What a refused body search asked for, for its audit row: the paths, never the values (a value
    typed there may be the very secret that ``HIDE_BODIES`` keeps out of sight, and viewers read the log)."""
    return {"body_paths": [".".join(path) for path, _ in match.body]}


def _form_errors(form: Any) -> str:
    return "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items())


def _action_queue(request: HttpRequest, action: Action, name: str) -> Queue:
    """The queue a POSTed action names, after the permission check (audited), so a user who may not act
    learns nothing about which names exist; a malformed or unknown name is refused and audited too."""
    _authorize(request, action, name)
    try:
        engine.validate_name(name)
    except ValueError as exc:
        _refuse(request, action, name, str(exc))
        raise services.ActionFailed(str(exc)) from None
    queue = selectors.get_queue(name)
    if queue is None:
        message = f"there is no queue named {name!r}"
        _refuse(request, action, name, message)
        raise Http404(message)
    return queue


def _page_queue(request: HttpRequest, action: Action, name: str) -> Queue:
    """The queue of an action's GET form, after the (unaudited: nothing is attempted yet) permission check."""
    check(request.user, action)
    return _queue_or_404(name)


def _int_param(request: HttpRequest, key: str) -> int | None:
    raw = request.GET.get(key)
    if raw in (None, ""):
        return None
    return validation.parse_int(raw, f"{key} (a message id)", minimum=1, maximum=validation.BIGINT_MAX)


def _safe_next(request: HttpRequest, candidate: str, fallback: str) -> str:
    allowed = {request.get_host()}
    if candidate and url_has_allowed_host_and_scheme(candidate, allowed, require_https=request.is_secure()):
        return candidate
    return fallback


# -- pages ------------------------------------------------------------------------------------------
@require_safe
@dashboard_page
def overview(request: HttpRequest) -> HttpResponse:
    """Totals, throughput, the backlog of every queue."""
    return _page(request, "queues/overview.html", {
        "overview": selectors.get_overview(), "db": selectors.get_database_health(holders=1), "nav": "overview"})


@require_safe
@dashboard_page
def queue_list(request: HttpRequest) -> HttpResponse:
    """Every queue with its live numbers; sortable, filterable by name."""
    sort = request.GET.get("sort", "name") or "name"
    name_filter = request.GET.get("name", "")
    try:
        rows = selectors.list_queue_rows(name_filter=name_filter, sort=sort)
    except selectors.SortError as exc:
        return _error(request, str(exc))
    columns = [
        ("name", "Queue"), ("kind", "Kind"), ("state", "State"), ("ready", "Ready"), ("in_flight", "In flight"),
        ("delayed", "Delayed"), ("dead", "Dead"), ("oldest_ready_age", "Oldest"), ("rate_in", "In/s"),
        ("rate_out", "Out/s"), ("workers", "Workers"),
    ]
    headers = []
    for key, label in columns:
        current = sort.removeprefix("-") == key
        descending = sort.startswith("-")
        next_sort = key if not current or descending else f"-{key}"
        if not current and key not in ("name", "kind", "state"):
            next_sort = f"-{key}"  # numbers: biggest first on the first click
        query = urlencode({k: v for k, v in {"sort": next_sort, "name": name_filter}.items() if v})
        headers.append({"key": key, "label": label, "query": query, "current": current, "descending": descending,
                        "numeric": key not in ("name", "kind", "state")})
    return _page(request, "queues/queue_list.html",
                 {"rows": rows, "headers": headers, "sort": sort, "name_filter": name_filter, "nav": "queues"})


@require_safe
@dashboard_page
def queue_detail(request: HttpRequest, name: str) -> HttpResponse:
    """One queue: numbers, charts, settings, workers, dead letters, redrives, actions."""
    queue = _queue_or_404(name)
    return _queue_page(request, queue)


def _queue_page(
    request: HttpRequest, queue: Queue, *, settings_form: QueueSettingsForm | None = None, status: int = 200
) -> HttpResponse:
    raw_window = request.GET.get("window", "3600")
    try:
        window = validation.parse_int(raw_window, "window")
    except validation.InvalidInput:
        window = None
    if window not in selectors.CHART_WINDOWS:
        return _error(request, f"unknown chart window {raw_window!r}: use one of "
                               f"{', '.join(str(w) for w in selectors.CHART_WINDOWS)} (seconds)")
    detail = selectors.get_queue_detail(queue)
    form = settings_form or QueueSettingsForm(queue=queue)
    if not capabilities(request.user)[Action.UPDATE_QUEUE_SETTINGS]:
        for field in form.fields.values():
            field.disabled = True
    return _page(request, "queues/queue_detail.html", {
        "d": detail, "queue": queue, "row": detail.row, "form": form, "window": window,
        "windows": selectors.CHART_WINDOWS.items(), "nav": "queues",
        "dlq_browse": _browse_url(detail.dead_letter_queue.name) if detail.dead_letter_queue else "",
    }, status=status)


def _browse_url(queue: str, q: str = "", state: str = "") -> str:
    query = urlencode({k: v for k, v in {"q": q, "state": state}.items() if v})
    return reverse("queues:queue-messages", args=[queue]) + (f"?{query}" if query else "")


@require_safe
@dashboard_page
def message_browser(request: HttpRequest, name: str | None = None) -> HttpResponse:
    """Browse messages of one queue or all, filtered by state and qualifiers, keyset-paged by id."""
    queue = _queue_or_404(name) if name is not None else None
    q = request.GET.get("q", "")
    state = request.GET.get("state", "")
    context: dict[str, Any] = {
        "queue": queue, "q": q, "state": state, "states": search.STATES, "help": search.QUALIFIER_HELP,
        "nav": "messages", "queue_names": selectors.queue_names(), "bulk_actions": BULK_ACTIONS,
    }
    try:
        after = _int_param(request, "after")
        before = _int_param(request, "before")
        match = search.parse_search(q, queue=queue.name if queue else None, state=state or None)
        if match.reads_bodies:
            _authorize(request, Action.SEARCH_BODIES, match.single_queue or "", **_hidden_terms(match))
        page = selectors.search_messages(match, after=after, before=before)
    except ValueError as exc:  # SearchError and bad cursors
        context.update(error=str(exc), page=selectors.MessagePage())
        return _page(request, "queues/message_browser.html", context, status=400)
    base = {"q": q, "state": state}
    context.update(
        page=page, match=match, filter_text=match.text(),
        next_query=urlencode({**base, "after": page.next_after}) if page.next_after else "",
        prev_query=urlencode({**base, "before": page.prev_before}) if page.prev_before else "",
        here=request.get_full_path(),
    )
    if queue is not None:
        context["stats"] = selectors.get_queue_stats(queue.name)
    return _page(request, "queues/message_browser.html", context)


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
    return _page(request, "queues/message_detail.html", {
        "m": detail, "info": detail.info, "revealed": not conf.get("HIDE_BODIES"), "nav": "messages",
        "queue_names": selectors.queue_names(),
    })


@require_POST
@action_endpoint
def message_reveal(request: HttpRequest, message_id: int) -> HttpResponse:
    """Show a hidden body once (the reveal is audited); the page is not cached as revealed."""
    detail = services.reveal_body(actor=request.user, message_id=message_id, remote_addr=_remote_addr(request))
    return _page(request, "queues/message_detail.html", {
        "m": detail, "info": detail.info, "revealed": True, "nav": "messages", "queue_names": selectors.queue_names(),
    })


@require_safe
@dashboard_page
def worker_list(request: HttpRequest) -> HttpResponse:
    """Every running worker and the latest stopped or dead ones."""
    return _page(request, "queues/workers.html", {
        "workers": selectors.list_workers(), "nav": "workers",
        "stale_after": conf.worker_stale_after(),
    })


@require_safe
@dashboard_page
def database(request: HttpRequest) -> HttpResponse:
    """The queue tables' dead rows and size, the oldest open snapshot and who holds it, replication slots."""
    return _page(request, "queues/database.html", {"health": selectors.get_database_health(), "nav": "database"})


@require_http_methods(["GET", "POST"])
@action_endpoint
def database_session_end(request: HttpRequest, pid: int) -> HttpResponse:
    """GET: confirm page for ending (or cancelling the query of) a database session; POST: do it."""
    if request.method == "GET":
        check(request.user, Action.CANCEL_BACKEND)
        session = selectors.get_database_session(pid)
        if session is None:
            raise Http404(f"no session with pid {pid} in this database: it may have ended already")
        return _page(request, "queues/database_end_session.html", {"session": session, "nav": "database"})
    mode = request.POST.get("mode", "terminate")
    services.cancel_backend(actor=request.user, pid=pid, mode=mode, backend_start=request.POST.get("backend_start"),
                            remote_addr=_remote_addr(request))
    done = "Ended session" if mode == "terminate" else "Cancelled the running query of session"
    return _done(request, f"{done} {pid}.", reverse("queues:database"))


@require_safe
@dashboard_page
def audit_log(request: HttpRequest) -> HttpResponse:
    """Who did what to which queue or messages, when, from where, and how it ended."""
    filters = {k: request.GET.get(k, "").strip() for k in ("actor", "action", "queue", "outcome")}
    try:
        before = _int_param(request, "before")
    except ValueError as exc:
        return _error(request, str(exc))
    if filters["action"] and filters["action"] not in {a.value for a in Action}:
        return _error(request, f"unknown action {filters['action']!r}: pick one from the list")
    if filters["outcome"] and filters["outcome"] not in ("ok", "denied", "error"):
        return _error(request, f"unknown outcome {filters['outcome']!r}: use ok, denied or error")
    page = selectors.list_audit_events(before=before, **filters)
    next_query = urlencode({**{k: v for k, v in filters.items() if v}, "before": page.next_before}) \
        if page.next_before else ""
    return _page(request, "queues/audit.html", {
        "page": page, "filters": filters, "actions": [a.value for a in Action], "nav": "audit",
        "actors": selectors.audit_actor_names(), "next_query": next_query,
    })


# -- queue actions ----------------------------------------------------------------------------------
def _done(request: HttpRequest, message: str, url: str) -> HttpResponse:
    messages.success(request, message)
    return HttpResponseRedirect(url)


@require_POST
@action_endpoint
def queue_pause(request: HttpRequest, name: str) -> HttpResponse:
    """Pause deliveries."""
    services.pause_queue(actor=request.user, queue=name, remote_addr=_remote_addr(request))
    return _done(request, f"Paused {name}: nothing is delivered until you resume it.",
                 reverse("queues:queue-detail", args=[name]))


@require_POST
@action_endpoint
def queue_resume(request: HttpRequest, name: str) -> HttpResponse:
    """Resume deliveries."""
    services.resume_queue(actor=request.user, queue=name, remote_addr=_remote_addr(request))
    return _done(request, f"Resumed {name}.", reverse("queues:queue-detail", args=[name]))


@require_POST
@action_endpoint
def queue_settings(request: HttpRequest, name: str) -> HttpResponse:
    """Save the settings form of the queue page; a change that deletes messages asks for the name typed."""
    queue = _action_queue(request, Action.UPDATE_QUEUE_SETTINGS, name)
    form = QueueSettingsForm(request.POST, queue=queue)
    if not form.is_valid():
        _refuse(request, Action.UPDATE_QUEUE_SETTINGS, name, _form_errors(form))
        return _queue_page(request, queue, settings_form=form, status=400)
    settings = form.settings()
    impact = services.settings_impact(queue=name, settings=settings)
    if impact.destructive:
        # Its own permission, checked (and a refusal audited) before the confirmation page is shown.
        _authorize(request, Action.SHORTEN_RETENTION, name)
        if "confirm" not in request.POST:
            return _page(request, "queues/queue_settings_confirm.html",
                         {"queue": queue, "form": form, "impact": impact, "nav": "queues"})
    try:
        services.update_queue_settings(actor=request.user, queue=name, settings=settings,
                                       confirm=request.POST.get("confirm", ""), remote_addr=_remote_addr(request))
    except services.NotFound:
        raise
    except services.ConfirmationNeeded as exc:
        form.add_error(None, str(exc))
        return _page(request, "queues/queue_settings_confirm.html",
                     {"queue": queue, "form": form, "impact": exc.impact, "nav": "queues"}, status=400)
    except services.ActionFailed as exc:
        form.add_error(None, str(exc))
        return _queue_page(request, queue, settings_form=form, status=400)
    return _done(request, f"Saved the settings of {name}.", reverse("queues:queue-detail", args=[name]))


def _confirm_name_view(
    request: HttpRequest, name: str, *, action: Action, template: str, perform: Callable[[str], int],
    done_message: Callable[[int], str], done_url: Callable[[], str],
) -> HttpResponse:
    if request.method == "GET":
        queue = _page_queue(request, action, name)
        stats = selectors.get_queue_stats(name)
        return _page(request, template, {"queue": queue, "stats": stats, "form": ConfirmNameForm(), "nav": "queues"})
    queue = _action_queue(request, action, name)
    form = ConfirmNameForm(request.POST)
    confirm = form.data.get("confirm", "")
    try:
        count = perform(confirm)
    except services.NotFound:
        raise
    except services.ActionFailed as exc:
        form.is_valid()
        form.add_error(None, str(exc))
        stats = selectors.get_queue_stats(name)
        return _page(request, template, {"queue": queue, "stats": stats, "form": form, "nav": "queues"}, status=400)
    return _done(request, done_message(count), done_url())


@require_http_methods(["GET", "POST"])
@action_endpoint
def queue_purge(request: HttpRequest, name: str) -> HttpResponse:
    """GET: confirm page (type the name); POST: purge."""
    return _confirm_name_view(
        request, name, action=Action.PURGE_QUEUE, template="queues/queue_purge.html",
        perform=lambda confirm: services.purge_queue(actor=request.user, queue=name, confirm=confirm,
                                                     remote_addr=_remote_addr(request)),
        done_message=lambda n: f"Purged {name}: {n:,} messages deleted.",
        done_url=lambda: reverse("queues:queue-detail", args=[name]),
    )


@require_http_methods(["GET", "POST"])
@action_endpoint
def queue_delete(request: HttpRequest, name: str) -> HttpResponse:
    """GET: confirm page (type the name); POST: delete the queue and its messages."""
    return _confirm_name_view(
        request, name, action=Action.DELETE_QUEUE, template="queues/queue_delete.html",
        perform=lambda confirm: services.delete_queue(actor=request.user, queue=name, confirm=confirm,
                                                      remote_addr=_remote_addr(request)),
        done_message=lambda n: f"Deleted queue {name} and its {n:,} messages.",
        done_url=lambda: reverse("queues:queue-list"),
    )


@require_http_methods(["GET", "POST"])
@action_endpoint
def queue_create(request: HttpRequest) -> HttpResponse:
    """GET: the new-queue form; POST: create it."""
    if request.method == "GET":
        check(request.user, Action.CREATE_QUEUE)
        return _page(request, "queues/queue_create.html", {"form": QueueCreateForm(), "nav": "queues"})
    _authorize(request, Action.CREATE_QUEUE, request.POST.get("name", ""))
    form = QueueCreateForm(request.POST)
    if not form.is_valid():
        _refuse(request, Action.CREATE_QUEUE, request.POST.get("name", ""), _form_errors(form))
        return _page(request, "queues/queue_create.html", {"form": form, "nav": "queues"}, status=400)
    name = form.cleaned_data["name"]
    try:
        services.create_queue(actor=request.user, name=name, settings=form.settings(),
                              remote_addr=_remote_addr(request))
    except services.ActionFailed as exc:
        form.add_error(None, str(exc))
        return _page(request, "queues/queue_create.html", {"form": form, "nav": "queues"}, status=400)
    return _done(request, f"Created queue {name}.", reverse("queues:queue-detail", args=[name]))


@require_http_methods(["GET", "POST"])
@action_endpoint
def queue_publish(request: HttpRequest, name: str) -> HttpResponse:
    """GET: the publish form; POST: send the message."""
    if request.method == "GET":
        queue = _page_queue(request, Action.PUBLISH_MESSAGE, name)
        return _page(request, "queues/publish.html", {"queue": queue, "form": PublishForm(), "nav": "queues"})
    queue = _action_queue(request, Action.PUBLISH_MESSAGE, name)
    form = PublishForm(request.POST)
    if not form.is_valid():
        _refuse(request, Action.PUBLISH_MESSAGE, name, _form_errors(form))
        return _page(request, "queues/publish.html", {"queue": queue, "form": form, "nav": "queues"}, status=400)
    try:
        message_id = services.publish_message(actor=request.user, queue=name, remote_addr=_remote_addr(request),
                                              **form.message())
    except services.NotFound:
        raise
    except services.ActionFailed as exc:
        form.add_error(None, str(exc))
        return _page(request, "queues/publish.html", {"queue": queue, "form": form, "nav": "queues"}, status=400)
    messages.success(request, f"Published message {message_id} to {name}.")
    return HttpResponseRedirect(reverse("queues:message-detail", args=[message_id]))


@require_http_methods(["GET", "POST"])
@action_endpoint
def queue_redrive(request: HttpRequest, name: str) -> HttpResponse:
    """GET: the redrive form for the dead-letter queue ``name`` (``?to=`` prefills the target); POST: start."""
    if request.method == "GET":
        queue = _page_queue(request, Action.START_REDRIVE, name)
    else:
        queue = _action_queue(request, Action.START_REDRIVE, name)
    stats = selectors.get_queue_stats(name)
    sources = list(Queue.objects.filter(dead_letter_queue=queue).values_list("name", flat=True))
    # Where to go afterwards: the queue the dead letters came from, as the GET's ?to= suggested.
    back = request.GET.get("to", "") if request.method == "GET" else request.POST.get("back", "")
    ctx = {"queue": queue, "stats": stats, "sources": sources, "nav": "queues", "back": back}
    if request.method == "GET":
        initial = {"to": request.GET.get("to", "")}
        return _page(request, "queues/redrive.html", {**ctx, "form": RedriveForm(initial=initial, source=name)})
    form = RedriveForm(request.POST, source=name)
    if not form.is_valid():
        _refuse(request, Action.START_REDRIVE, name, _form_errors(form))
        return _page(request, "queues/redrive.html", {**ctx, "form": form}, status=400)
    d = form.cleaned_data
    try:
        job = services.start_redrive(actor=request.user, queue=name, to=d.get("to") or None, rate=d.get("rate"),
                                     limit=d.get("limit"), remote_addr=_remote_addr(request))
    except services.NotFound:
        raise
    except services.ActionFailed as exc:
        form.add_error(None, str(exc))
        return _page(request, "queues/redrive.html", {**ctx, "form": form}, status=400)
    back = back or (sources[0] if len(sources) == 1 else name)
    if not selectors.is_queue_name(back) or not Queue.objects.filter(name=back).exists():
        back = name
    return _done(request, f"Redrive {job.pk} started: {job.total:,} dead letters to move.",
                 reverse("queues:queue-detail", args=[back]))


@require_POST
@action_endpoint
def redrive_stop(request: HttpRequest, redrive_id: int) -> HttpResponse:
    """Ask a running redrive to stop after its current batch."""
    stopped = services.stop_redrive(actor=request.user, redrive_id=redrive_id, remote_addr=_remote_addr(request))
    fallback = reverse("queues:overview")
    url = _safe_next(request, request.POST.get("next", ""), fallback)
    if stopped:
        return _done(request, f"Redrive {redrive_id} stops after its current batch.", url)
    messages.info(request, f"Redrive {redrive_id} was not running.")
    return HttpResponseRedirect(url)


# -- bulk message actions ---------------------------------------------------------------------------
BULK_PERMISSIONS = {"delete": Action.DELETE_MESSAGES, "retry": Action.RETRY_MESSAGES, "move": Action.MOVE_MESSAGES}


@require_http_methods(["GET", "POST"])
@action_endpoint
def message_bulk(request: HttpRequest) -> HttpResponse:
    """GET, or POST with ``preview``: how many messages the action would touch, and a confirm button.

    POST without ``preview``: do it. The message browser previews by POST because a page of ticked
    ids (up to ``MAX_SELECTED``) does not fit in a URL; the preview changes nothing.
    """
    try:
        # Parsed on first access: a field per id past Django's DATA_UPLOAD_MAX_NUMBER_FIELDS fails here.
        data = request.GET if request.method == "GET" else request.POST
    except TooManyFieldsSent:
        return _error(request, f"too many form fields: send the selected ids as one comma-separated 'ids' field "
                               f"(at most {MAX_SELECTED:,}), or use 'all matching'")
    previewing = request.method == "GET" or "preview" in data
    # Unknown actions are checked against the strictest permission so they cannot probe past a 403.
    action = BULK_PERMISSIONS.get(data.get("action", ""), Action.DELETE_MESSAGES)
    if previewing:
        check(request.user, action)
    else:
        _authorize(request, action, "")
    try:
        bulk = parse_bulk(data)
        match = search.parse_search(bulk.q) if bulk.scope == "matching" else None
        if bulk.action == "move" and not bulk.to and not previewing:
            raise BulkError("choose the queue to move the messages to")
        if not previewing and match is not None and (bulk.count is None or bulk.max_id is None):
            raise BulkError("an action on every matching message needs the count and highest id its confirmation "
                            "page showed: open the confirmation page again")
    except ValueError as exc:
        if not previewing:
            _refuse(request, action, "", str(exc))
        return _error(request, str(exc))
    if match is not None and match.reads_bodies:
        _authorize(request, Action.SEARCH_BODIES, match.single_queue or "", **_hidden_terms(match))
    back = _safe_next(request, bulk.next, reverse("queues:messages"))
    context = {"bulk": bulk, "match": match, "verb": BULK_ACTIONS[bulk.action], "back": back,
               "queue_names": selectors.queue_names(), "nav": "messages"}
    if previewing:
        max_id = None
        try:
            if match is not None:
                count, max_id = search.matching_bounds(match)
            else:
                count = search.count_existing(bulk.ids)
        except search.SearchError as exc:
            return _error(request, str(exc))
        return _page(request, "queues/bulk_confirm.html", {**context, "count": count, "max_id": max_id})
    common: dict[str, Any] = {"actor": request.user, "remote_addr": _remote_addr(request)}
    if match is not None:
        assert bulk.count is not None and bulk.max_id is not None
        common.update(match=match, bound=services.Bound(count=bulk.count, max_id=bulk.max_id))
    else:
        common["ids"] = bulk.ids
    try:
        if bulk.action == "delete":
            n = services.delete_messages(confirm=bulk.confirm, **common)
            text = f"Deleted {n:,} messages."
        elif bulk.action == "retry":
            n = services.retry_messages(**common)
            text = f"{n:,} messages are ready now."
        else:
            n = services.move_messages(to=bulk.to, **common)
            text = f"Moved {n:,} messages to {bulk.to}."
    except services.NotFound:
        raise
    except services.ActionFailed as exc:
        if match is None:
            raise
        return _page(request, "queues/bulk_confirm.html",
                     {**context, "count": bulk.count, "max_id": bulk.max_id, "error": str(exc)}, status=400)
    return _done(request, text, back)


def websocket_endpoint(request: HttpRequest) -> HttpResponse:
    """Plain HTTP to the dashboard socket's address (a WebSocket-only route, see ``queues/routing.py``).

    The URL exists in the HTTP URLconf so that pages can reverse it: the socket then follows the
    dashboard's mount prefix and ``SCRIPT_NAME``, and the ASGI routes are derived from the same name.
    """
    response = HttpResponse("This address serves the dashboard's live updates over a WebSocket.\n",
                            status=426, content_type="text/plain; charset=utf-8")
    response["Upgrade"] = "websocket"
    return response

