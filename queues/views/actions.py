"""The dashboard's actions on queues and messages: a confirm page on GET where one is needed, the
change on POST through ``queues.services`` (permission check, engine call, audit row)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.core.exceptions import TooManyFieldsSent
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from queues import conf, deadletters, schedules, search, selectors, services, validation
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
from queues.models import Queue, Schedule
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
    """GET: the publish form (``?copy=ID``: prefilled from that message); POST: send the message."""
    if request.method == "GET":
        queue = page_queue(request, Action.PUBLISH_MESSAGE, name)
        copied = copy_source(request)
        initial = copy_initial(copied) if copied is not None else None
        return render_page(request, "queues/publish.html", {
            "queue": queue, "form": publish_form(queue, initial=initial), "nav": "queues",
            "copied_from": copied.info.id if copied is not None else None})
    queue = action_queue(request, Action.PUBLISH_MESSAGE, name)
    form = publish_form(queue, data=request.POST)
    copied_from = request.POST.get("copied_from", "")
    context = {"queue": queue, "form": form, "nav": "queues", "copied_from": copied_from}
    if not form.is_valid():
        refuse(request, Action.PUBLISH_MESSAGE, name, form_errors(form))
        return render_page(request, "queues/publish.html", context, status=400)
    try:
        source = validation.parse_int(copied_from, "copied_from (a message id)", minimum=1,
                                      maximum=validation.BIGINT_MAX) if copied_from else None
        message_id = services.publish_message(actor=request.user, queue=name, remote_addr=remote_addr(request),
                                              copied_from=source, **form.message())
    except services.NotFound:
        raise
    except (services.ActionFailed, validation.InvalidInput) as exc:
        form.add_error(None, str(exc))
        return render_page(request, "queues/publish.html", context, status=400)
    messages.success(request, f"Published message {message_id} to {name}.")
    return HttpResponseRedirect(reverse("queues:message-detail", args=[message_id]))


def publish_form(queue: Queue, **kwargs: Any) -> PublishForm:
    """The publish form of ``queue``: without the group key on a standard queue (groups order fifo queues only)."""
    form = PublishForm(**kwargs)
    if queue.kind != "fifo":
        del form.fields["group"]
    return form


def copy_source(request: HttpRequest) -> selectors.MessageDetail | None:
    """The message ``?copy=ID`` names, or None; 404 when it is gone. With ``HIDE_BODIES`` on, copying
    shows the body, so it goes through the audited reveal."""
    raw = request.GET.get("copy", "")
    if not raw:
        return None
    message_id = validation.parse_int(raw, "copy (a message id)", minimum=1, maximum=validation.BIGINT_MAX)
    if conf.get("HIDE_BODIES"):
        return services.reveal_body(actor=request.user, message_id=message_id, remote_addr=remote_addr(request))
    detail = selectors.get_message(message_id)
    if detail is None:
        raise Http404(f"message {message_id} does not exist: it was acked, deleted or never sent")
    return detail


def copy_initial(detail: selectors.MessageDetail) -> dict[str, Any]:
    """The publish form's fields filled from a message: body, headers, priority, group (not its dedup id:
    a copy with the same id inside the window would store nothing)."""
    headers = dict(detail.headers)
    return {
        "body": detail.body_json, "headers": json.dumps(headers, indent=2, ensure_ascii=False) if headers else "",
        "priority": detail.info.priority, "group": detail.info.group or "",
    }


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


# -- queue list and workers page ---------------------------------------------------------------------
BULK_QUEUE_ACTIONS = {"pause": Action.PAUSE_QUEUE, "resume": Action.RESUME_QUEUE}


@require_POST
@action_endpoint
def queue_bulk(request: HttpRequest) -> HttpResponse:
    """Pause or resume the queues ticked on the queue list, each through its service (one audit row each)."""
    verb = request.POST.get("action", "")
    action = BULK_QUEUE_ACTIONS.get(verb, Action.PAUSE_QUEUE)
    authorize(request, action, "")
    names = list(dict.fromkeys(request.POST.getlist("name")))
    if verb not in BULK_QUEUE_ACTIONS:
        refuse(request, action, "", f"unknown bulk action {verb!r}")
        return error_page(request, f"unknown bulk action {verb!r}: use pause or resume")
    if not names:
        refuse(request, action, "", "no queue selected")
        return error_page(request, "no queue selected: tick the queues to pause or resume, then press the button")
    # Every name is checked before any queue changes, so a typo does not leave half the selection paused.
    for name in names:
        action_queue(request, action, name)
    service = services.pause_queue if verb == "pause" else services.resume_queue
    for name in names:
        service(actor=request.user, queue=name, remote_addr=remote_addr(request))
    done_verb = "Paused" if verb == "pause" else "Resumed"
    back = safe_next(request, request.POST.get("next", ""), reverse("queues:queue-list"))
    return done(request, f"{done_verb} {len(names)} queue{'s' if len(names) != 1 else ''}: {', '.join(names)}.", back)


@require_POST
@action_endpoint
def worker_stop(request: HttpRequest, worker_id: int) -> HttpResponse:
    """Ask a worker to stop gracefully (it finishes what it holds, then exits)."""
    name = services.stop_worker(actor=request.user, worker_id=worker_id, remote_addr=remote_addr(request))
    return done(request, f"Asked worker {name} to stop: it finishes the messages it holds, then exits.",
                reverse("queues:workers"))



# -- schedules ------------------------------------------------------------------------------------
def _schedule_done(request: HttpRequest, message: str) -> HttpResponse:
    return done(request, message, reverse("queues:schedules"))


@require_POST
@action_endpoint
def schedule_pause(request: HttpRequest, name: str) -> HttpResponse:
    """Pause a schedule: no occurrence is enqueued until it is resumed."""
    services.pause_schedule(actor=request.user, name=name, remote_addr=remote_addr(request))
    return _schedule_done(request, f"Paused the schedule {name}.")


@require_POST
@action_endpoint
def schedule_resume(request: HttpRequest, name: str) -> HttpResponse:
    """Resume a schedule from its next occurrence after now."""
    row = services.resume_schedule(actor=request.user, name=name, remote_addr=remote_addr(request))
    return _schedule_done(request, f"Resumed the schedule {name}; next run {row.next_run_at:%Y-%m-%d %H:%M:%S} UTC.")


@require_POST
@action_endpoint
def schedule_run(request: HttpRequest, name: str) -> HttpResponse:
    """Enqueue a schedule's message once now."""
    message_id = services.run_schedule(actor=request.user, name=name, remote_addr=remote_addr(request))
    return _schedule_done(request, f"Ran the schedule {name} now: message {message_id}.")


@require_http_methods(["GET", "POST"])
@action_endpoint
def schedule_delete(request: HttpRequest, name: str) -> HttpResponse:
    """GET: confirm page; POST: delete the schedule (the messages it sent stay)."""
    if request.method == "GET":
        check(request.user, Action.DELETE_SCHEDULE)
        row = Schedule.objects.filter(name=name).first() if _named(name) else None
        if row is None:
            raise Http404(f"there is no schedule named {name!r}")
        return render_page(request, "queues/schedule_delete.html", {"schedule": row, "nav": "schedules"})
    services.delete_schedule(actor=request.user, name=name, remote_addr=remote_addr(request))
    return _schedule_done(request, f"Deleted the schedule {name}.")


def _named(name: str) -> bool:
    """Whether ``name`` could name a schedule (a malformed one, a NUL, must not reach SQL)."""
    try:
        schedules.check_name(name)
    except ValueError:
        return False
    return True


# -- dead-letter groups -----------------------------------------------------------------------------
GROUP_ACTIONS = {"redrive": Action.MOVE_MESSAGES, "delete": Action.DELETE_MESSAGES}


def _confirmed_time(text: str) -> datetime:
    """The confirmation page's moment (``as_of``, ISO with its offset), or ``InvalidInput`` saying so."""
    try:
        moment = datetime.fromisoformat(text) if text else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise validation.InvalidInput(f"as_of must be the time the confirmation page showed (ISO with offset), "
                                      f"got {text[:60]!r}: open the confirmation page again")
    return moment


@require_http_methods(["GET", "POST"])
@action_endpoint
def dead_letter_group(request: HttpRequest, name: str) -> HttpResponse:
    """GET: how many messages of one dead-letter group (``origin``, ``sig``) the action would touch and a
    confirm button; POST: redrive them to the queue they died in, or delete them (count typed)."""
    data = request.GET if request.method == "GET" else request.POST
    verb = data.get("action", "")
    # Unknown actions are checked against the strictest permission so they cannot probe past a 403.
    action = GROUP_ACTIONS.get(verb, Action.DELETE_MESSAGES)
    if request.method == "GET":
        queue = page_queue(request, action, name)
    else:
        queue = action_queue(request, action, name)
    holder, _origin = deadletters.holder_of(queue)
    back = reverse("queues:dead-letters", args=[name])
    try:
        if verb not in GROUP_ACTIONS:
            raise ValueError(f"unknown action {verb!r}: use redrive or delete")
        if holder is None:
            raise ValueError(f"{name!r} has no dead-letter queue, so it has no dead-letter groups")
        key = deadletters.GroupKey.from_params(holder.name, data)
        if request.method == "POST":
            as_of = _confirmed_time(data.get("as_of", ""))
            count = validation.parse_int(data.get("count", ""), "count", minimum=0, maximum=validation.BIGINT_MAX)
    except ValueError as exc:
        if request.method == "POST":
            refuse(request, action, name, str(exc))
        return error_page(request, str(exc))
    context: dict[str, Any] = {"queue": queue, "key": key, "verb": verb, "back": back, "nav": "queues"}
    if request.method == "GET":
        as_of = timezone.now()
        try:
            count = deadletters.count_group(key, as_of=as_of)
        except LookupError as exc:
            raise Http404(str(exc)) from None
        return render_page(request, "queues/dead_letter_group_confirm.html",
                           {**context, "count": count, "as_of": as_of.isoformat()})
    common = {"actor": request.user, "key": key, "as_of": as_of, "count": count, "remote_addr": remote_addr(request)}
    try:
        if verb == "redrive":
            n = services.redrive_dead_letter_group(**common)
            text = f"Sent {n:,} dead letters back to {key.origin}."
        else:
            n = services.delete_dead_letter_group(confirm=data.get("confirm", ""), **common)
            text = f"Deleted {n:,} dead letters."
    except services.NotFound:
        raise
    except services.ActionFailed as exc:
        return render_page(request, "queues/dead_letter_group_confirm.html",
                           {**context, "count": count, "as_of": as_of.isoformat(), "error": str(exc)}, status=400)
    return done(request, text, back)
