"""What every dashboard view shares: the page and error renderers, the two view decorators (a page,
an action), and the checks of a request's input, user and queue."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, TooManyFieldsSent
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme

from queues import conf, engine, search, selectors, services, validation
from queues.models import Queue
from queues.permissions import Action, can_view, capabilities, check, is_read_only

View = Callable[..., HttpResponse]


def remote_addr(request: HttpRequest) -> str:
    """The client's address for the audit log."""
    # REMOTE_ADDR only: X-Forwarded-For is whatever the client says. Behind a proxy the host rewrites
    # REMOTE_ADDR from the entries its trusted proxies appended (the demo site: mqadmin.proxy).
    return request.META.get("REMOTE_ADDR", "")


def render_page(request: HttpRequest, template: str, context: dict[str, Any], *, status: int = 200) -> HttpResponse:
    """A dashboard page: ``context`` plus what every page shows (capabilities, read-only banner), never cached."""
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


def error_page(
    request: HttpRequest, message: str, *, status: int = 400, title: str = "That did not work"
) -> HttpResponse:
    """The error page with ``message`` (the reason and the fix), 400 unless told."""
    context = {"title": title, "message": message, "status": status}
    return render_page(request, "queues/error.html", context, status=status)


def logged_in(view: View) -> View:
    """Anonymous users go to the login page; inactive ones get 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper


def dashboard_page(view: View) -> View:
    """A page: logged in, with ``queues.view_dashboard`` (staff without it get 403 too)."""

    @logged_in
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_view(request.user):
            raise PermissionDenied(
                "the dashboard needs the permission 'queues.view_dashboard': ask an administrator to grant it"
            )
        refused = unstorable_input(request)
        if refused is not None:
            return refused
        return view(request, *args, **kwargs)

    return wrapper


def action_endpoint(view: View) -> View:
    """An action: logged in, POST; service errors become 400/404 pages (permission is the service's job)."""

    @logged_in
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "GET":
            # A confirm page only reads; a POST's fields are checked by its form and service, after
            # the permission check, so a refused attempt is on record.
            refused = unstorable_input(request)
            if refused is not None:
                return refused
        try:
            return view(request, *args, **kwargs)
        except services.NotFound as exc:
            raise Http404(str(exc))
        except (services.ActionFailed, validation.InvalidInput) as exc:
            return error_page(request, str(exc))

    return wrapper


def unstorable_input(request: HttpRequest) -> HttpResponse | None:
    """A 400 page if a query parameter holds text PostgreSQL cannot store (a NUL).

    Path segments are names or ids: a malformed one names nothing, so its page is a 404 (``queue_or_404``).
    """
    try:
        problem = validation.unstorable_parameter(request.GET.lists())
    except TooManyFieldsSent:
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        return error_page(request, f"too many query parameters (Django allows {limit:,}): "
                                   "send many message ids as one comma-separated 'ids' field")
    if problem is None:
        return None
    return error_page(request, f"{problem}: remove it and try again")


def authorize(request: HttpRequest, action: Action, queue: str, **detail: Any) -> None:
    """The permission check of ``action`` by this request's user, audited when refused (``services.authorize``)."""
    services.authorize(actor=request.user, action=action, queue=queue, remote_addr=remote_addr(request),
                       detail=detail or None)


def queue_or_404(name: str) -> Queue:
    """The queue a page's path names, or 404 (a malformed name names nothing)."""
    try:
        engine.validate_name(name)
    except ValueError:
        raise Http404(f"there is no queue named {name!r} (it is not even a valid queue name)") from None
    queue = selectors.get_queue(name)
    if queue is None:
        raise Http404(f"there is no queue named {name!r}")
    return queue


def refuse(request: HttpRequest, action: Action, queue: str, error: str, **detail: Any) -> None:
    """Audit an attempt refused for its input: every attempt leaves its row, not only the valid ones."""
    services.refuse(actor=request.user, action=action, queue=queue, error=error, remote_addr=remote_addr(request),
                    detail=detail or None)


def hidden_terms(match: search.MessageFilter) -> dict[str, Any]:
    """What a refused body search asked for, for its audit row: the paths, never the values (a value
    typed there may be the very secret that ``HIDE_BODIES`` keeps out of sight, and viewers read the log)."""
    return {"body_paths": [".".join(path) for path, _ in match.body]}


def form_errors(form: Any) -> str:
    """A form's errors in one line, for the audit row of a refused attempt."""
    return "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items())


def action_queue(request: HttpRequest, action: Action, name: str) -> Queue:
    """The queue a POSTed action names, after the permission check (audited), so a user who may not act
    learns nothing about which names exist; a malformed or unknown name is refused and audited too."""
    authorize(request, action, name)
    try:
        engine.validate_name(name)
    except ValueError as exc:
        refuse(request, action, name, str(exc))
        raise services.ActionFailed(str(exc)) from None
    queue = selectors.get_queue(name)
    if queue is None:
        message = f"there is no queue named {name!r}"
        refuse(request, action, name, message)
        raise Http404(message)
    return queue


def page_queue(request: HttpRequest, action: Action, name: str) -> Queue:
    """The queue of an action's GET form, after the (unaudited: nothing is attempted yet) permission check."""
    check(request.user, action)
    return queue_or_404(name)


def int_param(request: HttpRequest, key: str) -> int | None:
    """The query parameter ``key`` as a message id, None when absent; ``InvalidInput`` when malformed."""
    raw = request.GET.get(key)
    if raw in (None, ""):
        return None
    return validation.parse_int(raw, f"{key} (a message id)", minimum=1, maximum=validation.BIGINT_MAX)


def safe_next(request: HttpRequest, candidate: str, fallback: str) -> str:
    """``candidate`` if it points back into this site, else ``fallback`` (no open redirects)."""
    allowed = {request.get_host()}
    if candidate and url_has_allowed_host_and_scheme(candidate, allowed, require_https=request.is_secure()):
        return candidate
    return fallback


def done(request: HttpRequest, message: str, url: str) -> HttpResponse:
    """After an action: a success message and a redirect to ``url``."""
    messages.success(request, message)
    return HttpResponseRedirect(url)
