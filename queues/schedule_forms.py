"""The dashboard's schedule form: create or edit a periodic schedule (``queues.schedules.schedule``).

Apart from ``queues.forms`` (the queue and message forms) because it validates against the schedules
module's own rules (cron, zone, target) and nothing else uses it.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms

from queues import schedules, validation
from queues.engine import validation as limits
from queues.engine.types import JSONText
from queues.engine.validation import encode_body, validate_name
from queues.forms import queue_choices, sentence
from queues.models import Queue, Schedule


class ScheduleForm(forms.Form):
    """A periodic schedule to create or edit (``queues.schedules.schedule``): cron and zone, then either a
    queue with a body and headers, or a ``django.tasks`` task with its arguments."""

    name = forms.CharField(
        max_length=limits.MAX_NAME_LENGTH, help_text="a-z, 0-9, '.', '_' or '-'; it cannot change once created."
    )
    cron = forms.CharField(
        max_length=schedules.MAX_CRON_LENGTH,
        label="Cron",
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
        help_text="Five fields (minute hour day month weekday), e.g. 0 3 * * *; or six with "
        "seconds first, e.g. */10 * * * * *.",
    )
    timezone = forms.CharField(
        max_length=schedules.MAX_ZONE_LENGTH,
        initial="UTC",
        label="Time zone",
        widget=forms.TextInput(attrs={"list": "zones", "autocomplete": "off"}),
        help_text="The IANA zone the cron is read in (Europe/Paris); a new schedule starts in yours.",
    )
    queue = forms.CharField(
        max_length=limits.MAX_NAME_LENGTH,
        required=False,
        widget=forms.Select,
        help_text="Where each occurrence sends its message.",
    )
    body = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        required=False,
        strip=False,
        max_length=limits.MAX_MESSAGE_SIZE,
        initial="{}",
        help_text='JSON, sent as written, for example {"report": "daily"}. Empty: null.',
    )
    headers = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        required=False,
        max_length=limits.MAX_MESSAGE_SIZE,
        help_text='A JSON object of strings, for example {"tenant": "acme"}.',
    )
    task = forms.CharField(
        max_length=255,
        required=False,
        label="Or a task",
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
        help_text="The dotted path of a @task (myapp.tasks.report) to enqueue instead of a "
        "message: leave the queue empty; the task's own queue is used.",
    )
    args = forms.CharField(
        required=False,
        max_length=limits.MAX_MESSAGE_SIZE,
        label="Task args",
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
        help_text="A JSON list.",
    )
    kwargs = forms.CharField(
        required=False,
        max_length=limits.MAX_MESSAGE_SIZE,
        label="Task kwargs",
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
        help_text="A JSON object.",
    )
    catch_up = forms.BooleanField(
        required=False,
        initial=True,
        label="Catch up",
        help_text="After downtime, enqueue the latest missed occurrence once (else skip "
        "occurrences found more than a minute late).",
    )
    paused = forms.BooleanField(required=False, help_text="Saved without enqueueing anything until resumed.")

    def __init__(self, *args: Any, schedule: Schedule | None = None, **kwargs: Any) -> None:
        if schedule is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": schedule.name,
                "cron": schedule.cron,
                "timezone": schedule.timezone,
                "queue": "" if schedule.task_path else schedule.queue,
                "body": schedule.body,
                "headers": json.dumps(schedule.headers, ensure_ascii=False) if schedule.headers else "",
                "task": schedule.task_path,
                "args": json.dumps(schedule.args, ensure_ascii=False) if schedule.task_path else "",
                "kwargs": json.dumps(schedule.kwargs, ensure_ascii=False) if schedule.task_path else "",
                "catch_up": schedule.catch_up,
                "paused": schedule.paused,
            }
        super().__init__(*args, **kwargs)
        self.editing = schedule
        choices = queue_choices("— none (a task schedule) —")
        if schedule is not None and schedule.queue and not schedule.task_path:
            if schedule.queue not in (value for value, _ in choices):
                # Deleted since: shown as it is, so saving says so instead of silently picking another.
                choices.append((schedule.queue, f"{schedule.queue} (deleted)"))
        self.fields["queue"].widget.choices = choices
        if schedule is not None:
            # The name is the schedule's key: the URL names it, a posted one is ignored.
            self.fields["name"].disabled = True

    def clean_name(self) -> str:
        try:
            return schedules.check_name(self.cleaned_data["name"])
        except ValueError as exc:
            raise forms.ValidationError(sentence(str(exc))) from None

    def clean_cron(self) -> str:
        try:
            return schedules.check_cron(self.cleaned_data["cron"])
        except ValueError as exc:
            raise forms.ValidationError(sentence(str(exc))) from None

    def clean_timezone(self) -> str:
        zone = self.cleaned_data["timezone"]
        try:
            schedules.check_zone(zone)
        except ValueError as exc:
            raise forms.ValidationError(sentence(str(exc))) from None
        return zone

    def clean_queue(self) -> Queue | None:
        name = self.cleaned_data.get("queue", "")
        if not name:
            return None
        try:
            validate_name(name)
        except ValueError as exc:
            raise forms.ValidationError(sentence(str(exc))) from None
        queue = Queue.objects.filter(name=name).first()
        if queue is None:
            raise forms.ValidationError(f"Queue {name!r} does not exist: create it first, or choose another")
        return queue

    def clean_body(self) -> JSONText:
        text = self.cleaned_data.get("body", "").strip() or "null"
        try:
            validation.loads_json(text, "the body", check_strings=False)
            encode_body(JSONText(text))
        except ValueError as exc:
            raise forms.ValidationError(sentence(str(exc))) from None
        return JSONText(text)

    def clean_headers(self) -> dict[str, str]:
        return _json_field(
            self.cleaned_data.get("headers", ""),
            "the headers",
            dict,
            {},
            'headers must be a JSON object of strings, like {"tenant": "acme"}',
            strings=True,
        )

    def clean_args(self) -> list[Any]:
        return _json_field(
            self.cleaned_data.get("args", ""), "the task args", list, [], 'task args must be a JSON list, like [1, "a"]'
        )

    def clean_kwargs(self) -> dict[str, Any]:
        return _json_field(
            self.cleaned_data.get("kwargs", ""),
            "the task kwargs",
            dict,
            {},
            'task kwargs must be a JSON object, like {"day": "monday"}',
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        queue, task = data.get("queue"), (data.get("task") or "").strip()
        if "queue" not in data or "task" not in data:
            return data  # already refused field by field
        if queue is not None and task:
            self.add_error("task", "Give either a queue (and a body) or a task, not both: a task's queue is its own")
        elif queue is None and not task:
            self.add_error("queue", "Choose the queue each occurrence sends to (or give a task path below)")
        elif task:
            for key in ("body", "headers"):
                if data.get(key) not in (None, {}, JSONText("null"), JSONText("{}")):
                    self.add_error(key, f"A task schedule sends no {key}: clear it, or choose a queue instead")
        else:
            if data.get("args") or data.get("kwargs"):
                self.add_error("args", "Task args and kwargs are for task schedules: a message schedule sends its body")
            body, headers = data.get("body"), data.get("headers")
            if body is not None and headers is not None and queue is not None:
                size = len(body.encode()) + len(json.dumps(headers, ensure_ascii=False).encode())
                if size > queue.max_message_size:
                    self.add_error(
                        "body",
                        f"Body and headers are {size:,} bytes; queue {queue.name} takes at "
                        f"most {queue.max_message_size:,}: shorten them",
                    )
        return data

    def spec(self) -> dict[str, Any]:
        """Keywords of ``services.save_schedule`` (besides actor and name)."""
        d = self.cleaned_data
        out: dict[str, Any] = {
            "cron": d["cron"],
            "timezone": d["timezone"],
            "catch_up": d["catch_up"],
            "paused": d["paused"],
        }
        if d.get("task"):
            out.update(task=d["task"].strip(), args=d["args"], kwargs=d["kwargs"])
        else:
            out.update(queue=d["queue"].name, body=d["body"], headers=d["headers"])
        return out


def _json_field(raw: str, what: str, kind: type, empty: Any, wrong: str, *, strings: bool = False) -> Any:
    """A small JSON form field: ``empty`` when blank, else a value of ``kind`` (a dict of strings if ``strings``)."""
    raw = raw.strip()
    if not raw:
        return empty
    try:
        value = validation.loads_json(raw, what)
    except validation.InvalidInput as exc:
        raise forms.ValidationError(sentence(str(exc))) from None
    if not isinstance(value, kind) or (
        strings and not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        raise forms.ValidationError(sentence(wrong))
    return value


def form_values(form: forms.Form) -> dict[str, Any]:
    """What a form shows in each field: the posted value when bound, else the initial one."""
    return {name: form[name].value() for name in form.fields}
