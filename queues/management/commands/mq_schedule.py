"""``mq_schedule list|add|pause|resume|remove|run-now``: periodic schedules from the command line.

Every change goes through ``queues.services`` as the command-line actor, so it is audited like the
dashboard's (refusals included).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from queues import schedules, services
from queues.engine import text
from queues.engine.types import JSONText
from queues.management.base import MQCommand, format_table, to_json
from queues.permissions import Action


def _json_option(value: str | None, option: str, kind: type) -> Any:
    """A JSON option's value, checked to be a ``kind``; ``CommandError`` naming the option and the fix."""
    if value is None:
        return None
    try:
        parsed = text.parse_json_text(value, option, error=ValueError)
    except ValueError as exc:
        raise CommandError(
            f"{exc}: give {option} as JSON, e.g. {option} " + ('\'{"key": "value"}\'' if kind is dict else "'[1, 2]'")
        ) from None
    if not isinstance(parsed, kind):
        raise CommandError(f"{option} must be a JSON {'object' if kind is dict else 'array'}, got {value!r}")
    return parsed


def schedule_as_dict(row: Any) -> dict[str, Any]:
    """A schedule as JSON-ready values."""
    return {
        "name": row.name,
        "cron": row.cron,
        "timezone": row.timezone,
        "queue": row.queue or None,
        "task": row.task_path or None,
        "paused": row.paused,
        "catch_up": row.catch_up,
        "source": row.source,
        "next_run_at": row.next_run_at,
        "last_run_at": row.last_run_at,
        "last_message_id": row.last_message_id,
        "last_error": row.last_error or None,
    }


class Command(MQCommand):
    help = (
        "List, add, pause, resume, remove or run periodic schedules. "
        "`mq_schedule add nightly-report --cron '0 3 * * *' --timezone Europe/Paris --queue reports "
        '--body \'{"kind": "daily"}\'`, `mq_schedule pause nightly-report`, `mq_schedule run-now nightly-report`. '
        "Cron: five fields (minute hour day month weekday) or six with seconds first ('*/10 * * * * *'). "
        "Each occurrence is enqueued once by the scheduler that runs in every worker."
    )

    audits = {
        "add": Action.SAVE_SCHEDULE,
        "pause": Action.PAUSE_SCHEDULE,
        "resume": Action.RESUME_SCHEDULE,
        "remove": Action.DELETE_SCHEDULE,
        "run-now": Action.RUN_SCHEDULE,
    }

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{list,add,pause,resume,remove,run-now}")
        listing = sub.add_parser("list", help="List schedules with their next and last run.")
        listing.add_argument("--json", action="store_true", help="Print a JSON array instead of a table.")

        add = sub.add_parser(
            "add",
            help="Create a schedule, or update the one of that name.",
            description="Create a schedule, or update the one of that name (its occurrence clock restarts "
            "when --cron or --timezone change). Give --queue and --body, or --task.",
        )
        add.add_argument("name", help="Schedule name: 1-80 of a-z 0-9 . _ -, starting with a letter or digit.")
        add.add_argument(
            "--cron",
            required=True,
            help="When: '0 3 * * *' (03:00 daily), '*/15 * * * *', or six fields with seconds first.",
        )
        add.add_argument(
            "--timezone",
            default="UTC",
            help="IANA zone the cron is read in (Europe/Paris). Default: UTC. A time skipped by a "
            "DST change runs at the first minute after it; a repeated one runs once.",
        )
        add.add_argument("--queue", help="The queue each occurrence sends to (it must exist).")
        add.add_argument("--body", help="The message body as JSON text, sent exactly as written. Default: null.")
        add.add_argument("--headers", metavar="JSON", help="Message headers as a JSON object of strings.")
        add.add_argument(
            "--task",
            metavar="DOTTED.PATH",
            help="A django.tasks @task to enqueue instead of a message (its queue is its own).",
        )
        add.add_argument(
            "--args", dest="task_args", metavar="JSON", help="The task's positional arguments as a JSON array."
        )
        add.add_argument(
            "--kwargs", dest="task_kwargs", metavar="JSON", help="The task's keyword arguments as a JSON object."
        )
        add.add_argument(
            "--no-catch-up",
            dest="catch_up",
            action="store_false",
            help="After downtime, skip missed occurrences. Default: enqueue the latest missed "
            "occurrence once (older ones are skipped).",
        )
        add.add_argument("--paused", action="store_true", default=None, help="Create (or leave) it paused.")

        for verb, text_ in (
            ("pause", "Stop enqueueing occurrences until resumed."),
            ("resume", "Enqueue occurrences again, from the next one after now."),
            ("remove", "Delete the schedule (messages it sent stay)."),
            ("run-now", "Enqueue its message (or task) once now; occurrences are unchanged."),
        ):
            p = sub.add_parser(verb, help=text_, description=text_)
            p.add_argument("name", help="The schedule.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            return self._list(options)
        name = options["name"]
        self.attempt(self.audits[action], queue=schedules.queue_of(name))
        if action == "add":
            return self._add(name, options)
        if action == "pause":
            services.pause_schedule(actor=self.actor, name=name)
            self.stdout.write(f"Paused schedule {name!r}.")
        elif action == "resume":
            row = services.resume_schedule(actor=self.actor, name=name)
            self.stdout.write(f"Resumed schedule {name!r}; next run {row.next_run_at.isoformat()}.")
        elif action == "remove":
            services.delete_schedule(actor=self.actor, name=name)
            self.stdout.write(f"Removed schedule {name!r}.")
        else:
            message_id = services.run_schedule(actor=self.actor, name=name)
            self.stdout.write(f"Ran schedule {name!r} now: message {message_id}.")
        return None

    def _add(self, name: str, options: dict[str, Any]) -> None:
        self.attempt(Action.SAVE_SCHEDULE, queue=options["queue"] or schedules.queue_of(name))
        if options["task"] and (options["queue"] or options["body"] is not None or options["headers"]):
            raise CommandError("give either --queue with --body/--headers, or --task (a task's queue is its own)")
        if not options["task"] and (options["task_args"] or options["task_kwargs"]):
            raise CommandError("--args and --kwargs are for --task schedules: a message schedule sends --body")
        if not options["task"] and not options["queue"]:
            raise CommandError("say what to enqueue: --queue QUEUE (with --body JSON) or --task DOTTED.PATH")
        if options["body"] is not None:
            try:
                text.parse_json_text(options["body"], "--body", error=ValueError)
            except ValueError as exc:
                raise CommandError(
                    f'{exc}: give --body as JSON text, e.g. --body \'{{"report": "daily"}}\' '
                    "(a string needs its quotes: --body '\"hello\"')"
                ) from None
        spec: dict[str, Any] = {
            "cron": options["cron"],
            "timezone": options["timezone"],
            "catch_up": options["catch_up"],
            "paused": options["paused"],
        }
        if options["task"]:
            spec.update(
                task=options["task"],
                args=_json_option(options["task_args"], "--args", list),
                kwargs=_json_option(options["task_kwargs"], "--kwargs", dict),
            )
        else:
            spec.update(
                queue=options["queue"],
                headers=_json_option(options["headers"], "--headers", dict),
                body=JSONText(options["body"]) if options["body"] is not None else None,
            )
        row = services.save_schedule(actor=self.actor, name=name, **spec)
        target = f"task {row.task_path}" if row.task_path else f"queue {row.queue!r}"
        state = "paused" if row.paused else f"next run {row.next_run_at.isoformat()}"
        self.stdout.write(f"Saved schedule {name!r}: {row.cron} ({row.timezone}) to {target}; {state}.")

    def _list(self, options: dict[str, Any]) -> None:
        rows = [schedule_as_dict(r) for r in schedules.list_schedules()]
        if options["json"]:
            self.stdout.write(to_json(rows))
            return
        if not rows:
            self.stdout.write(
                "No schedules yet. Add one: python manage.py mq_schedule add nightly --cron '0 3 * * *' "
                "--queue reports --body '{}'"
            )
            return
        table = [
            [
                r["name"],
                r["cron"],
                r["timezone"],
                f"task {r['task']}" if r["task"] else r["queue"],
                "paused" if r["paused"] else "active",
                r["next_run_at"].isoformat(timespec="seconds") if r["next_run_at"] and not r["paused"] else "-",
                r["last_run_at"].isoformat(timespec="seconds") if r["last_run_at"] else "never",
                r["last_message_id"] or "-",
            ]
            for r in rows
        ]
        headers = ["SCHEDULE", "CRON", "ZONE", "SENDS TO", "STATE", "NEXT RUN (UTC)", "LAST RUN (UTC)", "LAST MESSAGE"]
        self.stdout.write(format_table(headers, table, right=(7,)))


__all__ = ["Command", "schedule_as_dict"]
