"""``mq_prune``: remove messages past their queue's retention, expired dedup ids and old task results."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

import queues
from queues.management.base import MQCommand, positive_int, to_json
from queues.tasks import prune_results


class Command(MQCommand):
    help = (
        "Remove messages older than their queue's retention (never ones in flight), dedup ids past "
        "their window and finished django.tasks results past RESULT_RETENTION, and print how many went. "
        "Workers prune on their own; run this from cron when no "
        "worker runs. Works in small batches, so it is safe on a busy database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=positive_int, default=5000, metavar="N",
                            help="Rows removed per statement (smaller holds locks for less time). Default: 5000.")
        parser.add_argument("--json", action="store_true", help="Print the counts as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        result = queues.prune(batch=options["batch"])
        results = prune_results(batch=options["batch"])
        if options["json"]:
            self.stdout.write(to_json({**queues.as_dict(result), "expired_task_results": results}))
            return
        self.stdout.write(
            f"Removed {result.expired_messages} expired messages, {result.expired_dedup_ids} expired dedup ids "
            f"and {results} expired task results."
        )
