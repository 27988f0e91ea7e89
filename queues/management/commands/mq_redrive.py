"""``mq_redrive DLQ``: move dead letters back to where they died (or to --to), at a chosen rate."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import CommandError, CommandParser

import queues
from queues.management.base import MQCommand, Progress, audit, cli_actor, positive_float, positive_int, stop_on_signal
from queues.permissions import Action


class Command(MQCommand):
    help = (
        "Move messages of a dead-letter queue back: each to the queue it died in, or all to --to QUEUE. "
        "They arrive ready, with a fresh receive count. Runs until the dead-letter queue is empty or "
        "--limit is reached; Ctrl-C stops it after the current batch (nothing is half-moved). The "
        "dashboard shows it while it runs and can stop it too."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queue", metavar="DLQ", help="The dead-letter queue to empty (e.g. orders.dlq).")
        parser.add_argument("--to", metavar="QUEUE",
                            help="Send every message to this queue instead of the queue it died in. "
                                 "Required when DLQ is not any queue's dead-letter queue.")
        parser.add_argument("--rate", type=positive_float, metavar="R",
                            help="At most R messages per second (spare a struggling consumer). "
                                 "Default: as fast as possible, in batches of 100.")
        parser.add_argument("--limit", type=positive_int, metavar="N", help="Move at most N messages.")

    def handle(self, *args: Any, **options: Any) -> None:
        from queues.models import Queue

        name, to = options["queue"], options["to"]
        source = queues.get_queue(name)
        if to is not None:
            queues.get_queue(to)
            if to == name:
                raise CommandError(f"--to {to!r} is the dead-letter queue itself: name another queue")
        elif not Queue.objects.filter(dead_letter_queue=source).exists():
            raise CommandError(
                f"{name!r} is not a dead-letter queue, so its messages have no queue to go back to: "
                f"pass --to QUEUE to choose one"
            )
        if queues.queue_stats(name).depth == 0:
            self.stdout.write(f"{name!r} is empty: nothing to redrive.")
            return
        progress = Progress(self, total=None, label=f"redriving {name}")
        started = time.monotonic()
        with stop_on_signal() as stopped:

            def on_batch(job: Any) -> None:
                progress.total = job.total or None
                progress.update(job.moved)
                if stopped():
                    # The engine checks this row between batches: the batch just moved stays moved.
                    queues.stop_redrive(job.pk)

            job = queues.redrive(name, to=to, rate=options["rate"], limit=options["limit"],
                                 requested_by=cli_actor(), progress=on_batch)
            by_signal = stopped()
        progress.update(job.moved, force=True)
        progress.finish()
        seconds = time.monotonic() - started
        audit(Action.START_REDRIVE, queue=name, count=job.moved,
              detail={"to": to, "rate": options["rate"], "limit": options["limit"], "state": job.state})
        where = f"to {to!r}" if to else "each back to the queue it died in"
        how = ""
        if job.state == "stopped":
            how = ", stopped by a signal" if by_signal else ", stopped from elsewhere (the dashboard?)"
        self.stdout.write(f"Redrove {job.moved} messages from {name!r} ({where}) in {seconds:.1f} s{how}.")
