"""``mq_worker QUEUE[:WEIGHT] ...``: run the handlers of the named queues until stopped."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from django.core.management.base import CommandParser

from queues.management.base import MQCommand, parse_duration, positive_int
from queues.worker.config import WorkerConfig, parse_queue_weight
from queues.worker.errors import WorkerConfigError


def _queue_arg(text: str) -> tuple[str, int]:
    try:
        return parse_queue_weight(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds_at_least(minimum: float) -> Any:
    def parse(text: str) -> float:
        value = parse_duration(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"invalid duration {text!r}: it must be at least {minimum:g}s")
        return value

    return parse


class _NotLoggedYet(logging.Filter):
    """Passes records that no handler of the project's own logging set-up has printed on their way up."""

    def filter(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        root = logging.getLogger()
        while logger is not None and logger is not root:
            if logger.handlers:
                return False
            if not logger.propagate:
                break
            logger = logger.parent
        return True


def _log_to_console_unless_configured() -> None:
    """A worker says what it and its handlers do: INFO and up print to stderr unless the project routes them.

    Handlers log through their own modules' loggers (``orders.handlers``), not only ``queues``: a host
    without a ``LOGGING`` set-up for them would otherwise see nothing below WARNING. A project that
    configured the root logger keeps its own set-up; a logger the project gave a handler of its own
    (``queues`` in many projects) is printed by that handler only, never twice.
    """
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(_NotLoggedYet())
    root.addHandler(handler)
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)


class Command(MQCommand):
    help = (
        "Run the handlers of the named queues: claim messages in batches, run each handler (sync handlers "
        "in threads, async ones as tasks), ack on return, retry with exponential backoff on an exception, "
        "dead-letter after the queue's max receives (or the handler's retries). Wakes on NOTIFY and polls "
        "as a fallback. Handlers are registered with @queues.handler('QUEUE') in an app's handlers.py or "
        "in MQADMIN['HANDLERS']. The first SIGTERM or Ctrl-C stops claiming, lets running handlers finish "
        "for --grace and gives the rest back; a second one exits at once. Run as many workers, on as many "
        "machines, as the load needs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "queues", nargs="+", type=_queue_arg, metavar="QUEUE[:WEIGHT]",
            help="Queues to work on. A weight (orders:3 emails:1) splits each claim between busy queues in that "
                 "ratio, so one busy queue cannot starve another. Default weight: 1.",
        )
        parser.add_argument(
            "--concurrency", type=positive_int, default=4, metavar="N",
            help="Handlers running at once: N threads for sync handlers, N tasks for async ones. Default: 4.",
        )
        parser.add_argument(
            "--prefetch", type=positive_int, metavar="N",
            help="The most messages this worker holds at once (running, waiting and being acked); claims are "
                 "batches of up to N in one statement. Larger is faster for quick handlers, smaller spreads "
                 "slow ones fairer between workers. Default: max(10, 2 x concurrency).",
        )
        parser.add_argument(
            "--visibility-timeout", type=_seconds_at_least(1.0), metavar="DURATION",
            help="Lease length of each claim (30, 30s, 5m). While a handler runs past half of it the lease is "
                 "extended. Default: each queue's own visibility timeout.",
        )
        parser.add_argument(
            "--max-messages", type=positive_int, metavar="N",
            help="Exit cleanly after handling N messages (to recycle workers that may leak memory).",
        )
        parser.add_argument(
            "--max-seconds", type=_seconds_at_least(0.1), metavar="DURATION",
            help="Exit cleanly after running this long (10m, 1h), finishing what is running first.",
        )
        parser.add_argument(
            "--burst", action="store_true",
            help="Drain: exit once every queue has nothing ready and nothing is held (batch jobs, CI).",
        )
        parser.add_argument(
            "--grace", type=parse_duration, default=30.0, metavar="DURATION",
            help="On shutdown, how long running handlers may still take; messages still running then are "
                 "given back (ready at once for other workers). Default: 30s.",
        )
        parser.add_argument(
            "--poll-interval", type=_seconds_at_least(0.05), default=2.0, metavar="DURATION",
            help="The longest pause between polls of an idle queue; NOTIFY wakes the worker sooner, polls "
                 "find delayed messages and expired leases. Default: 2s.",
        )
        parser.add_argument(
            "--log-interval", type=parse_duration, default=10.0, metavar="DURATION",
            help="Seconds between stats lines (processed, rate, failed, backlog as key=value); 0: none. "
                 "Default: 10s.",
        )
        parser.add_argument(
            "--prune-interval", type=parse_duration, default=60.0, metavar="DURATION",
            help="How often to try an upkeep sweep (queues.upkeep: retention, dead workers, stale redrives, old "
                 "task results and samples); one process at a time runs it. 0: never (then run mq_prune from "
                 "cron). Default: 60s.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        _log_to_console_unless_configured()
        try:
            config = WorkerConfig(
                queues=options["queues"], concurrency=options["concurrency"], prefetch=options["prefetch"],
                visibility_timeout=options["visibility_timeout"], max_messages=options["max_messages"],
                max_seconds=options["max_seconds"], burst=options["burst"], grace=options["grace"],
                poll_interval=options["poll_interval"], log_interval=options["log_interval"],
                prune_interval=options["prune_interval"],
            )
        except WorkerConfigError as exc:
            raise WorkerConfigError(f"{exc} (see python manage.py mq_worker --help)") from None
        # deferred: the runtime loads queues.models, and this module must import without the app being
        # installed (hosts and tests use its console set-up on its own)
        from queues.worker.runtime import WorkerProcess

        worker = WorkerProcess(config)
        worker.prepare()
        worker.run()
