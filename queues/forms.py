"""Forms of the dashboard's actions. They parse and bound-check input; the engine has the last word
(its errors are shown on the same form)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django import forms
from django.http import QueryDict

from queues import queue_health, validation
from queues.engine import limits as flow_limits
from queues.engine import validation as limits
from queues.engine.validation import validate_name
from queues.formatting import format_duration, format_size
from queues.models import ExpiryAction, Overflow, Queue, QueueKind


class StrictIntegerField(forms.IntegerField):
    """A whole number in ASCII digits within the column's bounds (PostgreSQL ``integer`` by default).

    Django's ``IntegerField`` takes ``"١٢"`` (Unicode digits) as 12 and leaves the upper bound to the
    database, which answers ``integer out of range`` as a 500.
    """

    def __init__(self, *, min_value: int | None = None, max_value: int | None = None, **kwargs: Any) -> None:
        super().__init__(min_value=min_value, max_value=validation.INT32_MAX if max_value is None else max_value,
                         **kwargs)

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values:
            return None
        try:
            return validation.parse_int(str(value), "the value", minimum=validation.BIGINT_MIN,
                                        maximum=validation.BIGINT_MAX)
        except validation.InvalidInput:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None


class DurationInput(forms.CharField):
    """A duration as people write it (``30s``, ``5m``, ``1h30m``, ``4d``, or plain seconds), within bounds.

    Parsed by :func:`queues.validation.parse_duration` (the ``mq_*`` commands' parser), shown by
    :func:`queues.formatting.format_duration`; cleans to float seconds. Empty is None when not required
    (the default).
    """

    def __init__(self, *, minimum: float = 0.0, maximum: float = validation.MAX_DURATION, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_value, self.max_value = minimum, maximum
        self.widget.attrs.update({"inputmode": "text", "spellcheck": "false", "autocomplete": "off"})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, timedelta | int | float) and not isinstance(value, bool):
            return format_duration(value)
        return value

    def to_python(self, value: Any) -> float | None:  # type: ignore[override]
        text = super().to_python(value)
        if text in self.empty_values:
            return None
        out_of_range = forms.ValidationError(
            f"Use a duration from {format_duration(self.min_value)} to {format_duration(self.max_value)}, "
            f"got {text[:40]!r}", code="range")
        if text.startswith("-"):
            raise out_of_range  # -1d: a unit's error would hide that no negative duration is allowed
        try:
            seconds = validation.parse_duration(text)
        except validation.InvalidInput as exc:
            if "it must be from" in str(exc):  # past ten years: this field's own bounds say more
                raise out_of_range from None
            raise forms.ValidationError(sentence(str(exc)), code="invalid") from None
        if not self.min_value <= seconds <= self.max_value:
            raise out_of_range
        return seconds


class SizeInput(forms.CharField):
    """A size in bytes as people write it (``262144``, ``256 KiB``, ``1 MiB``), within bounds; cleans to int."""

    def __init__(self, *, minimum: int, maximum: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_value, self.max_value = minimum, maximum
        self.widget.attrs.update({"spellcheck": "false", "autocomplete": "off"})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return format_size(value)
        return value

    def to_python(self, value: Any) -> int | None:  # type: ignore[override]
        text = super().to_python(value)
        if text in self.empty_values:
            return None
        try:
            size = validation.parse_size(text)
        except validation.InvalidInput as exc:
            raise forms.ValidationError(sentence(str(exc)), code="invalid") from None
        if not self.min_value <= size <= self.max_value:
            raise forms.ValidationError(
                f"Use a size from {format_size(self.min_value)} to {format_size(self.max_value)}, got {text!r}",
                code="range")
        return size


def queue_choices(blank: str, *, exclude: str | None = None) -> list[tuple[str, str]]:
    names = Queue.objects.order_by("name").values_list("name", flat=True)
    return [("", blank)] + [(n, n) for n in names if n != exclude]


DURATION_HELP = "30s, 5m, 1h30m, 4d (or seconds)."


class QueueSettingsForm(forms.Form):
    """A queue's editable settings; durations and sizes as people write them (``4d``, ``256 KiB``)."""

    kind = forms.ChoiceField(choices=QueueKind.choices, help_text="Can change only while the queue is empty.")
    visibility_timeout = DurationInput(
        minimum=limits.MIN_VISIBILITY_TIMEOUT, maximum=limits.MAX_VISIBILITY_TIMEOUT,
        help_text="How long a received message stays leased. " + DURATION_HELP,
    )
    max_receives = StrictIntegerField(min_value=0, max_value=limits.INT_MAX,
                                      help_text="Receives before dead-lettering; 0 means never.")
    dead_letter_queue = forms.ChoiceField(required=False, help_text="Empty: none (messages are redelivered forever).")
    default_delay = DurationInput(maximum=limits.MAX_DELAY, help_text="Delay of messages sent without one. "
                                                                    + DURATION_HELP)
    retention = DurationInput(minimum=limits.MIN_RETENTION, maximum=limits.MAX_RETENTION,
                              help_text="How long an unreceived message is kept (4d). Shortening it deletes older "
                                        "messages: it needs the purge permission and a confirmation.")
    max_message_size = SizeInput(minimum=limits.MIN_MESSAGE_SIZE, maximum=limits.MAX_MESSAGE_SIZE,
                                 help_text="Body + headers: 256 KiB, 1 MiB, or bytes.")
    dedup_window = DurationInput(maximum=limits.MAX_DEDUP_WINDOW, help_text="How long a dedup id is remembered. "
                                                                          + DURATION_HELP)
    # Health thresholds (queues/queue_health.py); empty means the default, shown as the placeholder.
    health_backing_up_after = DurationInput(
        required=False, minimum=limits.MIN_HEALTH_THRESHOLD, maximum=limits.MAX_HEALTH_THRESHOLD,
        label="Backing up after", help_text="Health: the oldest ready message waited this long. Empty: default.")
    health_stalled_after = DurationInput(
        required=False, minimum=limits.MIN_HEALTH_THRESHOLD, maximum=limits.MAX_HEALTH_THRESHOLD,
        label="Stalled after", help_text="Health: ready work waited this long with no live worker, or nothing "
                                         "acked or failed in that time. Empty: default.")
    health_dead_letter_window = DurationInput(
        required=False, minimum=limits.MIN_HEALTH_THRESHOLD, maximum=limits.MAX_HEALTH_THRESHOLD,
        label="Dead letters growing over", help_text="Health: more dead letters now than this long ago. "
                                                     "Empty: default.")
    health_retention_warning = DurationInput(
        required=False, minimum=limits.MIN_HEALTH_THRESHOLD, maximum=limits.MAX_HEALTH_THRESHOLD,
        label="Retention warning", help_text="Health: retention deletes the oldest ready message within this "
                                             "(at most half the retention). Empty: default.")
    rate_limit = forms.CharField(
        required=False, max_length=32,
        help_text="Most deliveries per period across every worker: 100/s, 5000/min, 10/h. Empty: no limit. "
                  "Standard queues only.",
    )
    rate_burst = StrictIntegerField(
        required=False, min_value=1, max_value=flow_limits.MAX_RATE_COUNT,
        help_text="Most deliveries at once after a quiet spell. Empty: one second's worth.",
    )
    concurrency_limit = StrictIntegerField(
        required=False, min_value=1, max_value=flow_limits.MAX_CONCURRENCY,
        help_text="Most messages in flight at once across every worker. Empty: no limit. Standard queues only.",
    )
    limits_per_group = forms.BooleanField(
        required=False, label="Limits per group key",
        help_text="The rate and concurrency limits apply to each group key separately (for example per customer).",
    )
    # Flow control (docs/flow-control.md, "Expiry" and "Bounded queues").
    message_ttl = DurationInput(required=False, minimum=limits.MIN_TTL, maximum=limits.MAX_TTL,
                                label="Message TTL", help_text="How long a message may wait once available "
                                                               "before it expires (10m, 1d); empty: never.")
    # Not required: a form posted without them (an older page, a script) leaves them as they are.
    expiry_action = forms.ChoiceField(choices=ExpiryAction.choices, required=False,
                                      help_text="An expired message is dropped or dead-lettered.")
    max_length = StrictIntegerField(required=False, min_value=1, max_value=limits.MAX_QUEUE_LENGTH,
                                    help_text="Most live messages; empty: unbounded. Only sends are held to it.")
    overflow = forms.ChoiceField(choices=Overflow.choices, required=False,
                                 help_text="A send to a full queue is refused, or the oldest waiting messages "
                                           "make room (to the dead-letter queue, or dropped without one).")

    def __init__(self, *args: Any, queue: Queue | None = None, **kwargs: Any) -> None:
        if queue is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "kind": queue.kind,
                "visibility_timeout": queue.visibility_timeout,
                "max_receives": queue.max_receives,
                "dead_letter_queue": queue.dead_letter_queue.name if queue.dead_letter_queue_id else "",
                "default_delay": queue.default_delay,
                "retention": queue.retention,
                "max_message_size": queue.max_message_size,
                "dedup_window": queue.dedup_window,
                **{key: getattr(queue, key) for key in limits.HEALTH_SETTINGS},
                "rate_limit": str(flow_limits.rate_of(queue) or ""),
                "rate_burst": queue.rate_burst,
                "concurrency_limit": queue.concurrency_limit,
                "limits_per_group": queue.limits_per_group,
                "message_ttl": queue.message_ttl,
                "expiry_action": queue.expiry_action,
                "max_length": queue.max_length,
                "overflow": queue.overflow,
            }
        super().__init__(*args, **kwargs)
        defaults = queue_health.DEFAULTS
        for key, seconds in (("health_backing_up_after", defaults.backing_up_after),
                             ("health_stalled_after", defaults.stalled_after),
                             ("health_dead_letter_window", defaults.dead_letter_window),
                             ("health_retention_warning", defaults.retention_warning)):
            self.fields[key].widget.attrs["placeholder"] = f"{format_duration(seconds)} (default)"
        self.fields["dead_letter_queue"].choices = queue_choices(
            "— none —", exclude=queue.name if queue is not None else None
        )

    def clean_rate_limit(self) -> str | None:
        raw = self.cleaned_data.get("rate_limit", "").strip()
        if not raw:
            return None
        try:
            return str(flow_limits.parse_rate(raw))
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def settings(self) -> dict[str, Any]:
        """The cleaned values as keywords of :func:`queues.update_queue`."""
        data = dict(self.cleaned_data)
        data["dead_letter_queue"] = data.get("dead_letter_queue") or None
        for key in ("expiry_action", "overflow"):
            if not data.get(key):
                data.pop(key, None)
        return data


class QueueCreateForm(forms.Form):
    """A new queue: its name and the settings that differ from the defaults."""

    name = forms.CharField(max_length=limits.MAX_NAME_LENGTH,
                           help_text="a-z, 0-9, '.', '_' or '-', starting with a letter or digit.")
    kind = forms.ChoiceField(choices=QueueKind.choices, initial=QueueKind.STANDARD)
    visibility_timeout = DurationInput(
        minimum=limits.MIN_VISIBILITY_TIMEOUT, maximum=limits.MAX_VISIBILITY_TIMEOUT, initial=30,
        help_text=DURATION_HELP,
    )
    max_receives = StrictIntegerField(min_value=0, max_value=limits.INT_MAX, initial=5)
    dead_letter_queue = forms.CharField(
        max_length=limits.MAX_NAME_LENGTH, required=False, help_text="Empty: <name>.dlq, created with the queue."
    )
    no_dead_letter_queue = forms.BooleanField(required=False, label="No dead-letter queue")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        try:
            return validate_name(name)
        except ValueError as exc:
            raise forms.ValidationError(str(exc))

    def settings(self) -> dict[str, Any]:
        """Keywords of :func:`queues.create_queue` (besides the name)."""
        data = self.cleaned_data
        out: dict[str, Any] = {k: data[k] for k in ("kind", "visibility_timeout", "max_receives")}
        if data.get("no_dead_letter_queue"):
            out["dead_letter_queue"] = None
        elif data.get("dead_letter_queue"):
            out["dead_letter_queue"] = data["dead_letter_queue"].strip()
        return out


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


class PublishForm(forms.Form):
    """One message to send by hand."""

    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false"}), strip=False,
                           help_text='JSON, for example {"order_id": 42}.')
    headers = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}), required=False,
                              help_text='A JSON object of strings, for example {"tenant": "acme"}.')
    delay = DurationInput(required=False, maximum=limits.MAX_DELAY,
                          help_text="Empty for the queue's default delay. " + DURATION_HELP)
    priority = StrictIntegerField(min_value=limits.PRIORITY_MIN, max_value=limits.PRIORITY_MAX, initial=0)
    group = forms.CharField(max_length=limits.MAX_KEY_LENGTH, required=False, help_text="Group key (fifo queues).")
    dedup_id = forms.CharField(max_length=limits.MAX_KEY_LENGTH, required=False,
                               help_text="A repeat inside the dedup window stores nothing new.")

    def clean_body(self) -> Any:
        try:
            return validation.loads_json(self.cleaned_data["body"], "the body", check_strings=False)
        except validation.InvalidInput as exc:
            raise forms.ValidationError(sentence(str(exc))) from None

    def clean_headers(self) -> dict[str, str]:
        text = self.cleaned_data.get("headers", "").strip()
        if not text:
            return {}
        try:
            value = validation.loads_json(text, "the headers", check_strings=False)
        except validation.InvalidInput as exc:
            raise forms.ValidationError(sentence(str(exc))) from None
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise forms.ValidationError('headers must be a JSON object of strings, like {"tenant": "acme"}')
        return value

    def message(self) -> dict[str, Any]:
        """Keywords of ``services.publish_message`` (besides actor and queue)."""
        d = self.cleaned_data
        return {
            "body": d["body"], "headers": d["headers"], "delay": d.get("delay"), "priority": d.get("priority") or 0,
            "group": d.get("group") or None, "dedup_id": d.get("dedup_id") or None,
        }


class RedriveForm(forms.Form):
    """Dead letters back: where, how fast, how many."""

    to = forms.ChoiceField(required=False, label="Send to")
    rate = forms.FloatField(required=False, min_value=limits.MIN_REDRIVE_RATE,
                            help_text="Messages per second; empty for full speed.")
    limit = StrictIntegerField(required=False, min_value=1, help_text="At most this many; empty for all.")

    def __init__(self, *args: Any, source: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["to"].choices = queue_choices("each back to the queue it died in", exclude=source)


class ConfirmNameForm(forms.Form):
    """Type the queue's name to confirm a destructive action."""

    confirm = forms.CharField(max_length=limits.MAX_NAME_LENGTH, required=False,
                              label="Type the queue's name to confirm")


BULK_ACTIONS = {"delete": "Delete", "retry": "Retry now", "move": "Move", "cancel": "Cancel"}
MAX_SELECTED = 10_000
"""Most messages one "Selected…" action takes (docs/dashboard.md); more go through "all matching"."""


class BulkError(ValueError):
    """A bulk request the dashboard cannot run (missing selection, unknown action, bad ids)."""


@dataclass
class BulkRequest:
    """A bulk message action from the browser: which verb, on which messages."""

    action: str
    scope: str  # "selected" or "matching"
    ids: list[int]
    q: str
    to: str
    next: str
    #: What the confirmation page showed of an "all matching" action (None on the GET that computes them).
    count: int | None = None
    max_id: int | None = None
    confirm: str = ""

    @property
    def ids_field(self) -> str:
        """The ids as one comma-separated form field (what the confirm page posts back)."""
        return ",".join(map(str, self.ids))


def _selected_ids(data: QueryDict) -> list[int]:
    """Ids from ``ids`` (one comma-separated field) and ``id`` (a field per ticked box), in order, once each.

    One field carries any number of ids: a field per id would run into Django's
    ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` (1,000) long before ``MAX_SELECTED``, and a host should not
    have to raise a global limit for one form.
    """
    raw = data.getlist("id") + [part for field in data.getlist("ids") for part in field.split(",")]
    raw = [part.strip() for part in raw if part.strip()]
    if len(raw) > MAX_SELECTED:
        raise BulkError(f"at most {MAX_SELECTED:,} selected messages at once, got {len(raw):,}: "
                        "use 'all matching' instead")
    ids: dict[int, None] = {}
    for part in raw:
        # isascii(): "²" passes isdigit() but is no number; bigint bounds: the column's own.
        if not (part.isascii() and part.isdigit()) or not 1 <= int(part) <= limits.BIGINT_MAX:
            raise BulkError(f"message ids must be whole numbers, got {part[:40]!r}")
        ids[int(part)] = None
    return list(ids)


def parse_bulk(data: QueryDict) -> BulkRequest:
    """Read a bulk action from GET (the confirm page) or POST (doing it); :class:`BulkError` if malformed."""
    action = data.get("action", "")
    if action not in BULK_ACTIONS:
        raise BulkError(f"unknown bulk action {action!r}: use one of {', '.join(BULK_ACTIONS)}")
    scope = data.get("scope", "selected")
    if scope not in ("selected", "matching"):
        raise BulkError(f"unknown scope {scope!r}: use 'selected' or 'matching'")
    ids = _selected_ids(data)
    if scope == "selected" and not ids:
        raise BulkError("select at least one message (tick its box), or apply the action to all matching messages")
    to = data.get("to", "").strip()
    if to:
        try:
            validate_name(to)
        except ValueError as exc:
            raise BulkError(f"cannot move messages there: {exc}") from None
    bounds: dict[str, int | None] = {}
    for key in ("count", "max_id"):
        raw = data.get(key, "")
        if raw == "":
            bounds[key] = None
        elif raw.isascii() and raw.isdigit() and len(raw) <= 18:
            bounds[key] = int(raw)
        else:
            raise BulkError(f"{key} must be a whole number, got {raw!r}: open the confirmation page again")
    return BulkRequest(action=action, scope=scope, ids=ids, q=data.get("q", ""), to=to,
                       next=data.get("next", ""), count=bounds["count"], max_id=bounds["max_id"],
                       confirm=data.get("confirm", "").strip())
