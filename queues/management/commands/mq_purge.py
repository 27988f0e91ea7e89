"""``mq_purge QUEUE``: delete every message of a queue, after confirmation."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

import queues
from queues import conf
from queues.management.base import MQCommand, audit, confirm_by_name
from queues.permissions import Action


class Command(MQCommand):
    help = (
        "Delete every message of a queue: ready, delayed and in flight (workers holding one will find "
        "their receipt refused). The queue and its settings stay; the purge is audited. At a terminal "
        "you are asked to type the queue name; without a terminal (scripts, pipes, cron) --yes is "
        "required, so nothing is ever purged silently."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queue", help="The queue to purge.")
        parser.add_argument("--yes", action="store_true",
                            help="Do not ask for confirmation (required when stdin is not a terminal).")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["queue"]
        stats = queues.queue_stats(name)
        confirm_by_name(
            self, name=name, action="purge", yes=options["yes"],
            summary=(f"Queue {name!r} holds {stats.depth} messages "
                     f"({stats.ready} ready, {stats.delayed} delayed, {stats.in_flight} in flight)."),
        )
        with conf.atomic():
            count = queues.purge(name)
            audit(Action.PURGE_QUEUE, queue=name, count=count)
        self.stdout.write(f"Purged {count} messages from {name!r}.")
