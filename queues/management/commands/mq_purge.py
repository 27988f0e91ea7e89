"""``mq_purge QUEUE``: delete every message of a queue, after confirmation."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

import queues
from queues import services
from queues.management.base import MQCommand, confirm_by_name
from queues.permissions import Action


class Command(MQCommand):
    help = (
        "Delete every message of a queue: ready, delayed and in flight (workers holding one will find "
        "their receipt refused). The queue and its settings stay. The purge is audited like the dashboard's, "
        "as cli:<OS user>@<host>, and so is a refusal (unknown queue, not confirmed). At a terminal "
        "you are asked to type the queue name; without a terminal (scripts, pipes, cron) --yes is "
        "required, so nothing is ever purged silently."
    )

    audits = {"": Action.PURGE_QUEUE}

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queue", help="The queue to purge.")
        parser.add_argument(
            "--yes", action="store_true", help="Do not ask for confirmation (required when stdin is not a terminal)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["queue"]
        self.attempt(Action.PURGE_QUEUE, queue=name)
        if not options["yes"]:
            stats = queues.queue_stats(name)
            confirm_by_name(
                self,
                name=name,
                action="purge",
                yes=False,
                summary=(
                    f"Queue {name!r} holds {stats.depth} messages "
                    f"({stats.ready} ready, {stats.delayed} delayed, {stats.in_flight} in flight)."
                ),
            )
        count = services.purge_queue(actor=self.actor, queue=name, confirm=name)
        self.stdout.write(f"Purged {count} messages from {name!r}.")
