"""The schedule form: create and edit a periodic schedule from the dashboard, with a preview of its next
occurrences. Saving goes through ``services.save_schedule`` (permission ``operate_queues``, audit row);
a refused form is audited as every other refused action is.

Schedules declared in ``MQADMIN["SCHEDULES"]`` or by ``@periodic`` are read-only here: every scheduler
start writes the declaration back over them (``schedules.sync_declared``), so an edit made here would
not last. Pause, resume and run now still work on them (a pause survives the sync).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import available_timezones

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_safe

from queues import schedules, services
from queues.models import Schedule
from queues.permissions import Action, check
from queues.schedule_forms import ScheduleForm, form_values
from queues.views.common import (
    action_endpoint,
    authorize,
    dashboard_page,
    done,
    form_errors,
    refuse,
    remote_addr,
    render_page,
)

PREVIEW_COUNT = 5
"""How many upcoming occurrences the form previews."""
ZONES = sorted(available_timezones())
"""The IANA zones offered as suggestions by the time-zone field (any valid name is accepted)."""
DECLARED_BY = {"settings": "MQADMIN['SCHEDULES'] in the settings", "code": "@periodic in the code"}


@dataclass(frozen=True)
class Occurrence:
    """One upcoming occurrence as the preview shows it."""

    at: datetime
    """In UTC."""
    local: datetime
    """In the schedule's zone."""
    viewer: datetime
    """In the dashboard's zone (the page's script rewrites it into the browser's)."""


def preview(cron: Any, zone: Any, *, count: int = PREVIEW_COUNT) -> list[Occurrence]:
    """The next ``count`` occurrences of ``cron`` read in ``zone`` after now; [] if either is invalid."""
    try:
        cron = schedules.check_cron(cron)
        own = schedules.check_zone(zone)
    except ValueError:
        return []
    viewer: tzinfo = timezone.get_current_timezone()
    out: list[Occurrence] = []
    after = schedules.database_now()
    for _ in range(count):
        try:
            after = schedules.next_occurrence(cron, str(zone), after)
        except ValueError:
            break  # check_cron saw one occurrence; cronsim may still find no later one within its horizon
        out.append(Occurrence(after, after.astimezone(own), after.astimezone(viewer)))
    return out


def preview_context(cron: Any, zone: Any) -> dict[str, Any]:
    """What the preview partial shows: the occurrences, the zone, the cron in words, or what is wrong."""
    problem = ""
    try:
        schedules.check_cron(cron)
        schedules.check_zone(zone)
    except ValueError as exc:
        problem = str(exc)
    if not cron or not zone:
        problem = ""  # nothing typed yet: no complaint
    return {
        "preview": [] if problem else preview(cron, zone),
        "zone": zone,
        "words": "" if problem or not cron else schedules.describe(str(cron)),
        "problem": problem,
        "viewer_zone": timezone.get_current_timezone_name(),
    }


@require_safe
@dashboard_page
def schedule_preview(request: HttpRequest) -> HttpResponse:
    """The preview partial for ``?cron=&timezone=`` (the form's script fetches it as one types); reads only."""
    context = preview_context(request.GET.get("cron", ""), request.GET.get("timezone", ""))
    return render_page(request, "queues/partials/schedule_preview.html", context)


def declared_note(row: Schedule | None) -> str:
    """Why ``row`` is read-only here ("" when it is editable)."""
    if row is None or row.source not in DECLARED_BY:
        return ""
    return (
        f"The schedule {row.name} is declared by {DECLARED_BY[row.source]}: change it there. Every "
        "scheduler start writes the declaration back, so an edit made here would not last. Pause, resume "
        "and run now work here (a pause is kept)."
    )


def _render(request: HttpRequest, form: ScheduleForm, row: Schedule | None, *, status: int = 200) -> HttpResponse:
    values = form_values(form)
    note = declared_note(row)
    if note:
        for field in form.fields.values():
            field.disabled = True
    context = {
        "form": form,
        "schedule": row,
        "declared": note,
        "nav": "schedules",
        "zones": ZONES,
        **preview_context(values.get("cron"), values.get("timezone")),
        "action_url": reverse("queues:schedule-edit", args=[row.name]) if row else reverse("queues:schedule-create"),
    }
    return render_page(request, "queues/schedule_form.html", context, status=status)


def _row_or_404(name: str) -> Schedule:
    try:
        schedules.check_name(name)
    except ValueError:
        raise Http404(f"there is no schedule named {name!r} (it is not even a valid schedule name)") from None
    row = Schedule.objects.filter(name=name).first()
    if row is None:
        raise Http404(f"there is no schedule named {name!r}")
    return row


@require_http_methods(["GET", "POST"])
@action_endpoint
def schedule_create(request: HttpRequest) -> HttpResponse:
    """GET: the new-schedule form; POST with ``preview``: its next occurrences; POST: create it."""
    if request.method == "GET":
        check(request.user, Action.SAVE_SCHEDULE)
        return _render(request, ScheduleForm(), None)
    return _save(request, None)


@require_http_methods(["GET", "POST"])
@action_endpoint
def schedule_edit(request: HttpRequest, name: str) -> HttpResponse:
    """GET: the schedule's form (read-only for a declared one); POST with ``preview``: the next
    occurrences of what is typed; POST: save it."""
    if request.method == "GET":
        check(request.user, Action.SAVE_SCHEDULE)
        row = _row_or_404(name)
        return _render(request, ScheduleForm(schedule=row), row)
    return _save(request, name)


def _save(request: HttpRequest, name: str | None) -> HttpResponse:
    """The POST of either form: permission (audited), the row, the input, then the service."""
    action = Action.SAVE_SCHEDULE
    posted_name = request.POST.get("name", "") if name is None else name
    detail = {"schedule": posted_name[:100]}
    previewing = "preview" in request.POST
    if previewing:
        # A preview changes nothing: checked, not audited (as the bulk actions' previews).
        check(request.user, action)
    else:
        authorize(request, action, request.POST.get("queue", ""), **detail)
    row = None
    if name is not None:
        try:
            row = _row_or_404(name)
        except Http404 as exc:
            if not previewing:
                refuse(request, action, "", str(exc), **detail)
            raise
    note = declared_note(row)
    if note:
        if not previewing:
            refuse(request, action, row.queue if row else "", note, **detail)
        # The stored values, not the posted ones: the page shows what the declaration says, and why.
        return _render(request, ScheduleForm(schedule=row), row, status=200 if previewing else 400)
    form = ScheduleForm(request.POST, schedule=row)
    valid = form.is_valid()
    if valid and row is None and Schedule.objects.filter(name=form.cleaned_data["name"]).exists():
        form.add_error("name", f"A schedule named {form.cleaned_data['name']!r} exists already: edit it instead")
        valid = False
    if previewing:
        return _render(request, form, row)
    if not valid:
        refuse(request, action, request.POST.get("queue", ""), form_errors(form), **detail)
        return _render(request, form, row, status=400)
    saved_name = row.name if row is not None else form.cleaned_data["name"]
    try:
        saved = services.save_schedule(
            actor=request.user, name=saved_name, remote_addr=remote_addr(request), **form.spec()
        )
    except services.ActionFailed as exc:
        form.add_error(None, str(exc))
        return _render(request, form, row, status=400)
    when = "paused" if saved.paused else f"next run {saved.next_run_at:%Y-%m-%d %H:%M:%S} UTC"
    verb = "Saved" if row is not None else "Created"
    return done(request, f"{verb} the schedule {saved.name}; {when}.", reverse("queues:schedules"))
