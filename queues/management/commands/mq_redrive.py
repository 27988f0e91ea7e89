"""``mq_redrive DLQ``: move dead letters back to where they died (or to --to), at a chosen rate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.management.base import CommandParser
from django.db import connections
from django.db.models import Max

from queues import services
from queues.management.base import MQCommand, Progress, first_line, positive_float, positive_int, stop_on_signal
from queues.models import Redrive, RedriveState
from queues.permissions import Action

# How often the watcher reads the redrive's row for progress and a pending Ctrl-C.
WATCH_INTERVAL = 0.2


class Command(MQCommand):
    help = (
        "Move messages of a dead-letter queue back: each to the queue it died in, or all to --to QUEUE. "
        "They arrive ready, with a fresh receive count. Runs until the dead-letter queue is empty or "
        "--limit is reached; Ctrl-C stops it after the current batch (nothing is half-moved). "
        "Refused while another redrive of the same queue runs. The dashboard shows it while it runs and "
        "can stop it too; the start (and a refusal) is audited like the dashboard's, as cli:<OS user>@<host>."
    )

    audits = {"": Action.START_REDRIVE}

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queue", metavar="DLQ", help="The dead-letter queue to empty (e.g. orders.dlq).")
        parser.add_argument(
            "--to",
            metavar="QUEUE",
            help="Send every message to this queue instead of the queue it died in. "
            "Required when DLQ is not any queue's dead-letter queue.",
        )
        parser.add_argument(
            "--rate",
            type=positive_float,
            metavar="R",
            help="At most R messages per second (spare a struggling consumer). "
            "Default: as fast as possible, in batches of 100.",
        )
        parser.add_argument("--limit", type=positive_int, metavar="N", help="Move at most N messages.")

    def handle(self, *args: Any, **options: Any) -> None:
        name, to = options["queue"], options["to"]
        self.attempt(Action.START_REDRIVE, queue=name)
        progress = Progress(self, total=None, label=f"redriving {name}")
        started = time.monotonic()
        with stop_on_signal() as stopped:
            watcher = _Watcher(self, name, progress, stopped)
            watcher.start()
            try:
                # In this thread: the redrive ends with the command, and its row shows it meanwhile.
                job = services.start_redrive(
                    actor=self.actor, queue=name, to=to, rate=options["rate"], limit=options["limit"], background=False
                )
            finally:
                watcher.finish()
            by_signal = stopped()
        if job.total == 0 and job.moved == 0:
            self.stdout.write(f"{name!r} is empty: nothing to redrive.")
            return
        progress.total = job.total or None
        progress.update(job.moved, force=True)
        progress.finish()
        seconds = time.monotonic() - started
        where = f"to {to!r}" if to else "each back to the queue it died in"
        how = ""
        if job.state == RedriveState.STOPPED:
            how = ", stopped by a signal" if by_signal else ", stopped from elsewhere (the dashboard?)"
        self.stdout.write(f"Redrove {job.moved} messages from {name!r} ({where}) in {seconds:.1f} s{how}.")


class _Watcher(threading.Thread):
    """Shows the running redrive's progress from its row and, after Ctrl-C, asks it to stop.

    A thread, because the redrive runs in the command's own thread; with its own database connection,
    so it sees the batches the redrive commits.
    """

    def __init__(self, command: MQCommand, queue: str, progress: Progress, stopped: Callable[[], bool]) -> None:
        super().__init__(name=f"mq_redrive-watch-{queue}", daemon=True)
        self.command = command
        self.queue = queue
        self.progress = progress
        self.stopped = stopped
        self.after = Redrive.objects.aggregate(newest=Max("pk"))["newest"] or 0
        self.done = threading.Event()

    def run(self) -> None:
        asked = False
        try:
            while not self.done.wait(WATCH_INTERVAL):
                # Newer than any row before the start: a second redrive of this queue is refused.
                job = Redrive.objects.filter(source__name=self.queue, pk__gt=self.after).order_by("-pk").first()
                if job is None:
                    continue
                self.progress.total = job.total or None
                self.progress.update(job.moved)
                if self.stopped() and not asked:
                    # The redrive checks its row between batches: the batch in hand stays moved.
                    services.stop_redrive(actor=self.command.actor, redrive_id=job.pk)
                    asked = True
        except Exception as exc:  # a thread's traceback would garble the output; the redrive goes on
            self.command.write_plain_err(f"progress unavailable: {first_line(exc)}")
        finally:
            connections.close_all()

    def finish(self) -> None:
        """Stop watching and wait for the last read to end."""
        self.done.set()
        self.join()
