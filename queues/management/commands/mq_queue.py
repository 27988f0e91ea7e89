"""``mq_queue create|list|update|delete``: manage queues and their settings from the command line."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import CommandError, CommandParser

import queues
from queues import queue_health, services
from queues.engine.limits import parse_rate, rate_of
from queues.engine.validation import HEALTH_SETTINGS
from queues.formatting import format_duration, format_size
from queues.management.base import (
    MQCommand,
    confirm_by_name,
    format_table,
    non_negative_int,
    parse_duration,
    parse_size,
    positive_int,
    to_json,
)
from queues.permissions import Action

# Option dest -> engine keyword, in the order the table and messages show them.
SETTINGS = (
    "kind", "visibility_timeout", "max_receives", "dead_letter_queue", "default_delay", "retention",
    "max_message_size", "dedup_window", "paused", "rate_limit", "rate_burst", "concurrency_limit",
    "limits_per_group", "message_ttl", "expiry_action", "max_length", "overflow", *HEALTH_SETTINGS,
)
# What --rate-limit, --burst and --concurrency take to remove a limit.
NO_LIMIT = "none"


def _rate(text: str) -> str:
    """A rate limit (``100/s``) checked by the engine's parser, or ``none``."""
    if text.strip().lower() == NO_LIMIT:
        return NO_LIMIT
    try:
        return str(parse_rate(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _limit(text: str) -> int | str:
    """A positive count, or ``none``."""
    return NO_LIMIT if text.strip().lower() == NO_LIMIT else positive_int(text)


DEFAULT = "default"
"""What a health threshold option takes to go back to the documented default."""


def health_threshold(text: str) -> float | str:
    """A health threshold: a duration (``90s``, ``10m``, ``1d``), or ``default``."""
    return DEFAULT if text.strip().lower() == DEFAULT else parse_duration(text)


def _add_settings(parser: CommandParser, *, creating: bool) -> None:
    when = "Default" if creating else "Unchanged if not given"
    group = parser.add_argument_group("queue settings")
    group.add_argument("--kind", choices=["standard", "fifo"],
                       help="standard: by priority, any number in flight. fifo: strict send order within a "
                            f"--group key, one in flight per group; changeable only while empty. {when}: "
                            + ("standard." if creating else "as is."))
    group.add_argument("--visibility-timeout", type=parse_duration, metavar="DURATION",
                       help="How long a received message stays leased before it is redelivered "
                            f"(30, 30s, 5m; 0.1s to 12h). {when}" + (": 30s." if creating else "."))
    group.add_argument("--max-receives", type=non_negative_int, metavar="N",
                       help="Receives before a message moves to the dead-letter queue; 0 means never. "
                            f"{when}" + (": 5." if creating else "."))
    dlq = group.add_mutually_exclusive_group()
    dlq.add_argument("--dead-letter-queue", metavar="QUEUE",
                     help="Where messages go after --max-receives receives. "
                          + ("Default: <name>.dlq, created if missing." if creating
                             else "It must exist already (create it with mq_queue create)."))
    dlq.add_argument("--no-dead-letter-queue", action="store_true",
                     help="No dead-letter queue: failing messages are redelivered forever.")
    group.add_argument("--default-delay", type=parse_duration, metavar="DURATION",
                       help="Delay of messages sent without their own (0 to 15d). "
                            f"{when}" + (": 0s." if creating else "."))
    group.add_argument("--retention", type=parse_duration, metavar="DURATION",
                       help="Unreceived messages older than this are removed when pruning (mq_prune; "
                            "workers prune too; 1m to 365d). "
                            f"{when}" + (": 4d." if creating else "."))
    group.add_argument("--max-message-size", type=parse_size, metavar="SIZE",
                       help="Largest body plus headers accepted (bytes, or 256KiB, 1MiB; 16B to 16MiB). "
                            f"{when}" + (": 256KiB." if creating else "."))
    group.add_argument("--dedup-window", type=parse_duration, metavar="DURATION",
                       help="How long a dedup id is remembered (0 to 7d). "
                            f"{when}" + (": 5m." if creating else "."))
    group.add_argument("--rate-limit", type=_rate, metavar="N/UNIT",
                       help="Most deliveries per period across every worker: 100/s, 5000/min, 10/h, 1/day; "
                            f"'none' removes it. Standard queues only. {when}" + (": none." if creating else "."))
    group.add_argument("--burst", dest="rate_burst", type=_limit, metavar="N",
                       help="Most deliveries at once after a quiet spell (needs --rate-limit); 'none': one "
                            f"second's worth. {when}" + (": one second's worth." if creating else "."))
    group.add_argument("--concurrency", dest="concurrency_limit", type=_limit, metavar="N",
                       help="Most messages in flight at once across every worker; 'none' removes it. Standard "
                            f"queues only. {when}" + (": none." if creating else "."))
    per_group = group.add_mutually_exclusive_group()
    per_group.add_argument("--per-group", dest="limits_per_group", action="store_const", const=True,
                           help="Apply --rate-limit and --concurrency to each group key (--group of mq_send) "
                                "separately, for example per customer.")
    per_group.add_argument("--per-queue", dest="limits_per_group", action="store_const", const=False,
                           help="Apply the limits to the queue as a whole" + (" (the default)." if creating else "."))
    ttl = group.add_mutually_exclusive_group()
    ttl.add_argument("--message-ttl", type=parse_duration, metavar="DURATION",
                     help="Time to live of messages sent without their own: how long one may wait once available "
                          "before it expires (1s, 10m, 1d; up to 365d). " + ("Default: none." if creating
                                                                              else "Unchanged if not given."))
    ttl.add_argument("--no-message-ttl", action="store_true", help="Messages never expire (the default).")
    group.add_argument("--expiry-action", choices=["drop", "dead_letter"],
                       help="What happens to an expired message: dropped, or moved to the dead-letter queue "
                            f"(dropped without one). {when}" + (": drop." if creating else "."))
    bound = group.add_mutually_exclusive_group()
    bound.add_argument("--max-length", type=non_negative_int, metavar="N",
                       help="Most live messages the queue holds (1 or more); sends beyond it follow --overflow. "
                            + ("Default: unbounded." if creating else "Unchanged if not given."))
    bound.add_argument("--unbounded", action="store_true", help="No max length (the default).")
    group.add_argument("--overflow", choices=["reject", "drop_oldest"],
                       help="A send to a full queue: reject (the send fails, nothing written) or drop_oldest "
                            "(the oldest waiting messages go to the dead-letter queue, or are dropped without one). "
                            f"{when}" + (": reject." if creating else "."))
    health = parser.add_argument_group(
        "health thresholds", "When the dashboard, mq_stats and the metrics call the queue unhealthy (1s to 365d, "
        "or 'default'; docs/dashboard.md, Health).")
    d = queue_health.DEFAULTS
    for option, default, what in (
        ("--health-backing-up-after", d.backing_up_after, "backing up: the oldest ready message waited this long"),
        ("--health-stalled-after", d.stalled_after,
         "stalled: ready work waited this long with no live worker, or nothing acked or failed in that time"),
        ("--health-dead-letter-window", d.dead_letter_window,
         "dead letters growing: more dead letters now than this long ago"),
        ("--health-retention-warning", d.retention_warning,
         "retention risk: retention deletes the oldest ready message within this (at most half the retention)"),
    ):
        health.add_argument(option, type=health_threshold, metavar="DURATION",
                            help=f"{what.capitalize()}. Default: {format_duration(default)}.")
    state = group.add_mutually_exclusive_group()
    state.add_argument("--paused", dest="paused", action="store_const", const=True,
                       help="Deliver nothing (sends are still accepted).")
    state.add_argument("--active", dest="paused", action="store_const", const=False,
                       help="Deliver messages" + (" (the default)." if creating else " again."))


def _settings_from(options: dict[str, Any]) -> dict[str, Any]:
    """Engine keywords for the settings the user gave (absent options are left out)."""
    out = {key: options[key] for key in SETTINGS if key != "dead_letter_queue" and options.get(key) is not None}
    for key in ("rate_burst", "concurrency_limit"):
        if out.get(key) == NO_LIMIT:
            out[key] = None
    if options.get("no_message_ttl"):
        out["message_ttl"] = None
    if options.get("unbounded"):
        out["max_length"] = None
    out.update({key: None for key in HEALTH_SETTINGS if out.get(key) == DEFAULT})
    if options.get("no_dead_letter_queue"):
        out["dead_letter_queue"] = None
    elif options.get("dead_letter_queue") is not None:
        out["dead_letter_queue"] = options["dead_letter_queue"]
    return out


def _describe(settings: dict[str, Any]) -> str:
    parts = []
    for key, value in settings.items():
        if key in HEALTH_SETTINGS and value is None:
            value = DEFAULT
        elif key in ("visibility_timeout", "default_delay", "retention", "dedup_window", *HEALTH_SETTINGS) or (
                key == "message_ttl" and value is not None):
            value = format_duration(value)
        elif key in ("message_ttl", "max_length") and value is None:
            value = "none"
        elif key == "max_message_size":
            value = format_size(value)
        elif key == "dead_letter_queue" and value is None:
            value = "none"
        elif key == "paused":
            key, value = "state", "paused" if value else "active"
        elif key in ("rate_burst", "concurrency_limit") and value is None:
            value = NO_LIMIT
        elif key == "limits_per_group":
            key, value = "limits", "per group" if value else "per queue"
        parts.append(f"{key.replace('_', '-')}={value}")
    return ", ".join(parts)


def queue_as_dict(queue: Any) -> dict[str, Any]:
    """A queue's settings as JSON-ready values (durations in seconds)."""
    return {
        "name": queue.name,
        "kind": queue.kind,
        "paused": queue.paused,
        "visibility_timeout": queue.visibility_timeout.total_seconds(),
        "max_receives": queue.max_receives,
        "dead_letter_queue": queue.dead_letter_queue.name if queue.dead_letter_queue_id else None,
        "default_delay": queue.default_delay.total_seconds(),
        "retention": queue.retention.total_seconds(),
        "max_message_size": queue.max_message_size,
        "dedup_window": queue.dedup_window.total_seconds(),
        "rate_limit": str(rate_of(queue)) if queue.rate_limit is not None else None,
        "rate_burst": queue.rate_burst,
        "concurrency_limit": queue.concurrency_limit,
        "limits_per_group": queue.limits_per_group,
        "message_ttl": queue.message_ttl.total_seconds() if queue.message_ttl else None,
        "expiry_action": queue.expiry_action,
        "max_length": queue.max_length,
        "overflow": queue.overflow,
        # Health thresholds in seconds; null: the default (queues.queue_health.DEFAULTS).
        **{key: None if getattr(queue, key) is None else getattr(queue, key).total_seconds()
           for key in HEALTH_SETTINGS},
        "created_at": queue.created_at,
    }


class Command(MQCommand):
    help = (
        "Create, list, update or delete queues. `mq_queue create orders --visibility-timeout 60`, "
        "`mq_queue list`, `mq_queue update orders --paused`, `mq_queue delete orders --yes`. "
        "Durations take 30, 30s, 5m, 2h or 4d; sizes take bytes, 256KiB or 1MiB."
    )

    audits = {"create": Action.CREATE_QUEUE, "update": Action.UPDATE_QUEUE_SETTINGS, "delete": Action.DELETE_QUEUE}

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{create,list,update,delete}")

        create = sub.add_parser("create", help="Create a queue (and its dead-letter queue <name>.dlq).",
                                description="Create a queue. Its dead-letter queue <name>.dlq is created too "
                                            "unless --dead-letter-queue or --no-dead-letter-queue says otherwise.")
        create.add_argument("name", help="Queue name: 1-80 of a-z 0-9 . _ -, starting with a letter or digit.")
        _add_settings(create, creating=True)
        create.add_argument("--exist-ok", action="store_true",
                            help="Succeed without changes if the queue exists already (for provisioning scripts).")

        listing = sub.add_parser("list", help="List queues and their settings.",
                                 description="List every queue and its settings (mq_stats shows the counts).")
        listing.add_argument("--json", action="store_true", help="Print a JSON array instead of a table.")

        update = sub.add_parser("update", help="Change settings of a queue.",
                                description="Change settings of a queue; settings not given stay as they are.")
        update.add_argument("name", help="The queue to change.")
        _add_settings(update, creating=False)
        update.add_argument("--yes", action="store_true",
                            help="Do not ask for confirmation when the change deletes messages (a shorter "
                                 "--retention: the next prune deletes what is older). Without a terminal to ask "
                                 "at, such a change needs --yes.")

        delete = sub.add_parser("delete", help="Delete a queue and its messages.",
                                description="Delete a queue and every message in it (audited). Its dead-letter "
                                            "queue stays. Asks you to type the name unless --yes is given; "
                                            "without a terminal to ask at, --yes is required.")
        delete.add_argument("name", help="The queue to delete.")
        delete.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        getattr(self, f"_{action}")(options)

    def _create(self, options: dict[str, Any]) -> None:
        name = options["name"]
        settings = _settings_from(options)
        self.attempt(Action.CREATE_QUEUE, queue=name)
        if options["exist_ok"] and _exists(name):
            self.stdout.write(f"Queue {name!r} exists already; left unchanged.")
            return
        try:
            queue = services.create_queue(actor=self.actor, name=name, settings=settings)
        except services.ActionFailed as exc:
            if isinstance(exc.__cause__, queues.QueueExists):
                raise CommandError(
                    f"queue {name!r} exists already: change it with `mq_queue update {name} ...`, "
                    "or pass --exist-ok to accept it as it is"
                ) from None
            raise
        dlq = queue.dead_letter_queue.name if queue.dead_letter_queue_id else None
        where = f"dead letters to {dlq!r}" if dlq else "no dead-letter queue"
        self.stdout.write(f"Created {queue.kind} queue {name!r} ({where}).")

    def _list(self, options: dict[str, Any]) -> None:
        rows = [queue_as_dict(q) for q in queues.list_queues()]
        if options["json"]:
            self.stdout.write(to_json(rows))
            return
        if not rows:
            self.stdout.write("No queues yet. Create one: python manage.py mq_queue create orders")
            return
        table = [
            [r["name"], r["kind"], "paused" if r["paused"] else "active", format_duration(r["visibility_timeout"]),
             r["max_receives"], r["dead_letter_queue"] or "-", format_duration(r["default_delay"]),
             format_duration(r["retention"]), format_size(r["max_message_size"]), format_duration(r["dedup_window"]),
             _limits_text(r)]
            for r in rows
        ]
        headers = ["QUEUE", "KIND", "STATE", "VISIBILITY", "MAX RECEIVES", "DEAD LETTERS TO", "DELAY", "RETENTION",
                   "MAX SIZE", "DEDUP WINDOW", "LIMITS"]
        self.stdout.write(format_table(headers, table, right=(3, 4, 6, 7, 8, 9)))

    def _update(self, options: dict[str, Any]) -> None:
        name = options["name"]
        settings = _settings_from(options)
        self.attempt(Action.UPDATE_QUEUE_SETTINGS, queue=name)
        if not settings:
            raise CommandError(
                "nothing to change: pass at least one setting, for example "
                f"`mq_queue update {name} --visibility-timeout 60` (see mq_queue update --help)"
            )
        # Pausing is its own action on the dashboard too (pause_queue / resume_queue), audited as such.
        changes = {key: value for key, value in settings.items() if key != "paused"}
        if changes:
            confirm = ""
            impact = services.settings_impact(queue=name, settings=changes)
            if impact.destructive:
                # The same weight as purging: the consequence spelled out, the name typed (or --yes).
                self.attempt(Action.SHORTEN_RETENTION, queue=name)
                confirm_by_name(self, name=name, action="shorten the retention of", yes=options["yes"],
                                summary=impact.consequence())
                confirm = name
            services.update_queue_settings(actor=self.actor, queue=name, settings=changes, confirm=confirm)
        if settings.get("paused") is not None:
            change_state = services.pause_queue if settings["paused"] else services.resume_queue
            change_state(actor=self.actor, queue=name)
        self.stdout.write(f"Updated queue {name!r}: {_describe(settings)}.")

    def _delete(self, options: dict[str, Any]) -> None:
        name = options["name"]
        self.attempt(Action.DELETE_QUEUE, queue=name)
        queue = queues.get_queue(name)
        stats = queues.queue_stats(name)
        confirm_by_name(
            self, name=name, action="delete", yes=options["yes"],
            summary=f"Queue {name!r} holds {stats.depth} messages; deleting it deletes them too.",
        )
        count = services.delete_queue(actor=self.actor, queue=name, confirm=name)
        kept = (f" Its dead-letter queue {queue.dead_letter_queue.name!r} stays."
                if queue.dead_letter_queue_id else "")
        self.stdout.write(f"Deleted queue {name!r} and its {count} messages.{kept}")


def _limits_text(row: dict[str, Any]) -> str:
    """``100/s burst 20, 3 in flight``, or ``-``."""
    parts = []
    if row["rate_limit"]:
        parts.append(row["rate_limit"] + (f" burst {row['rate_burst']}" if row["rate_burst"] else ""))
    if row["concurrency_limit"]:
        parts.append(f"{row['concurrency_limit']} in flight")
    if parts and row["limits_per_group"]:
        parts.append("per group")
    return ", ".join(parts) or "-"


def _exists(name: str) -> bool:
    try:
        queues.get_queue(name)
    except queues.QueueNotFound:
        return False
    return True


__all__ = ["Command", "queue_as_dict"]
