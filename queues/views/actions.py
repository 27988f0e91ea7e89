"""The dashboard's actions on queues and messages: a confirm page on GET where one is needed, the
change on POST through ``queues.services`` (permission check, engine call, audit row)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from queues import search, selectors, services
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
from queues.permissions import Action, check
from queues.views.common import (
    action_endpoint,
    action_queue,
    authorize,
    done,
    error_page,
    form_errors,
    hidden_terms,
    page_queue,
    refuse,
    remote_addr,
    render_page,
    safe_next,
)
from queues.views.pages import queue_page


@require_POST
@action_endpoint
def queue_pause(request: HttpRequest, name: str) -> HttpResponse:
    """Pause deliveries."""
    services.pause_queue(actor=request.user, queue=name, remote_addr=remote_addr(request))
    return done(request, f"Paused {name}: nothing is delivered until you resume it.",
                 reverse("queues:queue-detail", args=[name]))


@require_POST
@action_endpoint
def queue_resume(request: HttpRequest, name: str) -> HttpResponse:
    """Resume deliveries."""
    services.resume_queue(actor=request.user, queue=name, remote_addr=remote_addr(request))
    return done(request, f"Resumed {name}.", reverse("queues:queue-detail", args=[name]))


@require_POST
@action_endpoint
def queue_settings(request: HttpRequest, name: str) -> HttpResponse:
    """Save the settings form of the queue page; a change that deletes messages asks for the name typed."""
    queue = action_queue(request, Action.UPDATE_QUEUE_SETTINGS, name)
    form = QueueSettingsForm(request.POST, queue=queue)
    if not form.is_valid():
        refuse(request, Action.UPDATE_QUEUE_SETTINGS, name, form_errors(form))
        return queue_page(request, queue, settings_form=form, status=400)
    settings = form.settings()
    impact = services.settings_impact(queue=name, settings=settings)
    if impact.destructive:
        # Its own permission, checked (and a refusal audited) before the confirmation page is shown.
        authorize(request, Action.SHORTEN_RETENTION, name)
        if "confirm" not in request.POST:
            return render_page(request, "queues/queue_settings_confirm.html",
                         {"queue": queue, "form": form, "impact": impact, "nav": "queues"})
    try:
        services.update_queue_settings(actor=request.user, queue=name, settings=settings,
                                       confirm=request.POST.get("confirm", ""), remote_addr=remote_addr(request))
    except services.NotFound:
        raise
    except services.ConfirmationNeeded as exc:
        form.add_error(None, str(exc))
        return render_page(request, "queues/queue_settings_confirm.html",
                     {"queue": queue, "form": form, "impact": exc.impact, "nav": "queues"}, status=400)
    except services.ActionFailed as exc:
        form.add_error(None, str(exc))
        return queue_page(request, queue, settings_form=form, status=400)
    return done(request, f"Saved the settings of {name}.", reverse("queues:queue-detail", args=[name]))


def _confirm_name_view(
    request: HttpRequest, name: str, *, action: Action, template: str, perform: Callable[[str], int],
    done_message: Callable[[int], str], done_url: Callable[[], str],
) -> HttpResponse:
    if request.method == "GET":
        queue = page_queue(request, action, name)
        stats = selectors.get_queue_stats(name)
        context = {"queue": queue, "stats": stats, "form": ConfirmNameForm(), "nav": "queues"}
        return render_page(request, template, context)
    queue = action_queue(request, action, name)
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
        context = {"queue": queue, "stats": stats, "form": form, "nav": "queues"}
        return render_page(request, template, context, status=400)
    return done(request, done_message(count), done_url())


@require_http_methods(["GET", "POST"])
@action_endpoint
def queue_purge(request: HttpRequest, name: str) -> HttpResponse:
    """GET: confirm page (type the name); POST: purge."""
    return _confirm_name_view(
        request, name, action=Action.PURGE_QUEUE, template="queues/queue_purge.html",
        perform=lambda confirm: services.purge_queue(actor=request.user, queue=name, confirm=confirm,
                                                     remote_addr=remote_addr(request)),
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
                                                      remote_addr=remote_addr(request)),
        done_message=lambda n: f"Deleted queue {name} and its {n:,} messages.",
        done_url=lambda: reverse("queues:queue-list"),
    )


@require_http_methods(["GET", "POST"])
@action_endpoint
def queue_create(request: HttpRequest) -> HttpResponse:
    """GET: the new-queue form; POST: create it."""
    if request.method == "GET":
        check(request.user, Action.CREATE_QUEUE)
        return render_page(request, "queues/queue_create.html", {"form": QueueCreateForm(), "nav": "queues"})
    authorize(request, Action.CREATE_QUEUE, request.POST.get("name", ""))
    form = QueueCreateForm(request.POST)
    if not form.is_valid():
        refuse(request, Action.CREATE_QUEUE, request.POST.get("name", ""), form_errors(form))
        return render_page(request, "queues/queue_create.html", {"form": form, "nav": "queues"}, status=400)
    name = form.cleaned_data["name"]
    try:
        services.create_queue(actor=request.user, name=name, settings=form.settings(),
                              remote_addr=remote_addr(request))
    except services.ActionFailed as exc:
        form.add_error(None, str(exc))
        return render_page(request, "queues/queue_create.html", {"form": form, "nav": "queues"}, status=400)
    return done(request, f"Created queue {name}.", reverse("queues:queue-detail", args=[name]))


@require_http_methods(["GET", "POST"])
@action_endpoint
def queue_publish(request: HttpRequest, name: str) -> HttpResponse:
    """GET: the publish form; POST: send the message."""
    if request.method == "GET":
        queue = page_queue(request, Action.PUBLISH_MESSAGE, name)
        return render_page(request, "queues/publish.html", {"queue": queue, "form": PublishForm(), "nav": "queues"})
    queue = action_queue(request, Action.PUBLISH_MESSAGE, name)
    form = PublishForm(request.POST)
    if not form.is_valid():
        refuse(request, Action.PUBLISH_MESSAGE, name, form_errors(form))
        return render_page(request, "queues/publish.html", {"queue": queue, "form": form, "nav": "queues"}, status=400)
    try:
        message_id = services.publish_message(actor=request.user, queue=name, remote_addr=remote_addr(request),
                                              **form.message())
    except services.NotFound:
        raise
    except services.ActionFailed as exc:
        form.add_error(None, str(exc))
        return render_page(request, "queues/publish.html", {"queue": queue, "form": form, "nav": "queues"}, status=400)
    messages.success(request, f"Published message {message_id} to {name}.")
    return HttpResponseRedirect(reverse("queues:message-detail", args=[message_id]))


@require_http_methods(["GET", "POST"])
@action_endpoint
def queue_redrive(request: HttpRequest, name: str) -> HttpResponse:
    """GET: the redrive form for the dead-letter queue ``name`` (``?to=`` prefills the target); POST: start."""
    if request.method == "GET":
        queue = page_queue(request, Action.START_REDRIVE, name)
    else:
        queue = action_queue(request, Action.START_REDRIVE, name)
    stats = selectors.get_queue_stats(name)
    sources = list(Queue.objects.filter(dead_letter_queue=queue).values_list("name", flat=True))
    # Where to go afterwards: the queue the dead letters came from, as the GET's ?to= suggested.
    back = request.GET.get("to", "") if request.method == "GET" else request.POST.get("back", "")
    ctx = {"queue": queue, "stats": stats, "sources": sources, "nav": "queues", "back": back}
    if request.method == "GET":
        initial = {"to": request.GET.get("to", "")}
        return render_page(request, "queues/redrive.html", {**ctx, "form": RedriveForm(initial=initial, source=name)})
    form = RedriveForm(request.POST, source=name)
    if not form.is_valid():
        refuse(request, Action.START_REDRIVE, name, form_errors(form))
        return render_page(request, "queues/redrive.html", {**ctx, "form": form}, status=400)
    d = form.cleaned_data
    try:
        job = services.start_redrive(actor=request.user, queue=name, to=d.get("to") or None, rate=d.get("rate"),
                                     limit=d.get("limit"), remote_addr=remote_addr(request))
    except services.NotFound:
        raise
    except services.ActionFailed as exc:
        form.add_error(None, str(exc))
        return render_page(request, "queues/redrive.html", {**ctx, "form": form}, status=400)
    back = back or (sources[0] if len(sources) == 1 else name)
    if not selectors.is_queue_name(back) or not Queue.objects.filter(name=back).exists():
        back = name
    return done(request, f"Redrive {job.pk} started: {job.total:,} dead letters to move.",
                 reverse("queues:queue-detail", args=[back]))


@require_POST
@action_endpoint
def redrive_stop(request: HttpRequest, redrive_id: int) -> HttpResponse:
    """Ask a running redrive to stop after its current batch."""
    stopped = services.stop_redrive(actor=request.user, redrive_id=redrive_id, remote_addr=remote_addr(request))
    fallback = reverse("queues:overview")
    url = safe_next(request, request.POST.get("next", ""), fallback)
    if stopped:
        return done(request, f"Redrive {redrive_id} stops after its current batch.", url)
    messages.info(request, f"Redrive {redrive_id} was not running.")
    return HttpResponseRedirect(url)


# -- bulk message actions ---------------------------------------------------------------------------
BULK_PERMISSIONS = {"delete": Action.DELETE_MESSAGES, "retry": Action.RETRY_MESSAGES, "move": Action.MOVE_MESSAGES,
                    "cancel": Action.CANCEL_MESSAGES}


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
        return error_page(request, f"too many form fields: send the selected ids as one comma-separated 'ids' field "
                               f"(at most {MAX_SELECTED:,}), or use 'all matching'")
    previewing = request.method == "GET" or "preview" in data
    # Unknown actions are checked against the strictest permission so they cannot probe past a 403.
    action = BULK_PERMISSIONS.get(data.get("action", ""), Action.DELETE_MESSAGES)
    if previewing:
        check(request.user, action)
    else:
        authorize(request, action, "")
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
            refuse(request, action, "", str(exc))
        return error_page(request, str(exc))
    if match is not None and match.reads_bodies:
        authorize(request, Action.SEARCH_BODIES, match.single_queue or "", **hidden_terms(match))
    back = safe_next(request, bulk.next, reverse("queues:messages"))
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
            return error_page(request, str(exc))
        return render_page(request, "queues/bulk_confirm.html", {**context, "count": count, "max_id": max_id})
    common: dict[str, Any] = {"actor": request.user, "remote_addr": remote_addr(request)}
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
        elif bulk.action == "cancel":
            n = services.cancel_messages(**common)
            text = f"Cancelled {n:,} messages (waiting ones deleted; handlers of ones in flight asked to stop)."
        else:
            n = services.move_messages(to=bulk.to, **common)
            text = f"Moved {n:,} messages to {bulk.to}."
    except services.NotFound:
        raise
    except services.ActionFailed as exc:
        if match is None:
            raise
        return render_page(request, "queues/bulk_confirm.html",
                     {**context, "count": bulk.count, "max_id": bulk.max_id, "error": str(exc)}, status=400)
    return done(request, text, back)
