"""``mq_prune``: run every upkeep job once (:func:`queues.upkeep.sweep`), for cron when no worker runs."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from queues import upkeep
from queues.management.base import MQCommand, positive_int, to_json

LOCK_WAIT = 60.0
"""Seconds to wait for a sweep running in another process (a worker's, the sampler's) to end."""

class Command(MQCommand):
    help = (
        "Run every upkeep job once and print what each did: remove messages older than their queue's "
        "retention (never ones in flight), dedup ids past their window and finished django.tasks results "
        "past RESULT_RETENTION; mark workers silent for WORKER_DEAD_AFTER dead and release their leases; "
        "fail redrives whose process went silent; delete day-old worker rows; downsample and prune history "
        "samples. Workers and the dashboard's sampler run the same sweep on their own (one process at a "
        "time); run this from cron when neither runs. Works in small batches, so it is safe on a busy database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=positive_int, default=5000, metavar="N",
                            help="Rows removed per statement (smaller holds locks for less time). Default: 5000.")
        parser.add_argument("--json", action="store_true", help="Print the counts as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        result = upkeep.sweep(batch=options["batch"], wait=LOCK_WAIT)
        if not result.ran:
            raise CommandError(f"another process has been sweeping for over {LOCK_WAIT:g}s; nothing was done: "
                               "try again later")
        counts = result.counts
        if options["json"]:
            self.stdout.write(to_json(counts))
        else:
            self.stdout.write(
                f"Removed {counts.get('expired_messages', 0)} expired messages, "
                f"{counts.get('expired_dedup_ids', 0)} expired dedup ids "
                f"and {counts.get('expired_task_results', 0)} expired task results."
            )
            other = _other_work(counts)
            if other:
                self.stdout.write(f"Also: {other}.")
        if result.errors:
            failed = "; ".join(f"{job}: {error}" for job, error in result.errors.items())
            raise CommandError(f"upkeep job(s) failed (the others ran): {failed}")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _other_work(counts: dict[str, int]) -> str:
    """What the jobs beyond retention did, in words; empty when they found nothing."""
    parts = []
    if dead := counts.get("dead_workers", 0):
        parts.append(f"{_plural(dead, 'dead worker')} ({_plural(counts.get('released_leases', 0), 'lease')} released)")
    for key, word in (("abandoned_redrives", "abandoned redrive"), ("worker_rows", "old worker row"),
                      ("old_samples", "old history sample"), ("scheduled_messages", "scheduled message")):
        if n := counts.get(key, 0):
            parts.append(_plural(n, word))
    return ", ".join(parts)
