"""``mq_cancel QUEUE ID…`` or ``mq_cancel QUEUE --filter SEARCH``: cancel messages (docs/flow-control.md)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from queues import search, services
from queues.management.base import MQCommand
from queues.permissions import Action


def _message_id(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) < 2**63:
        raise ValueError(text)
    return int(text)


class Command(MQCommand):
    help = (
        "Cancel messages of a queue: waiting ones (ready or delayed) are deleted and never run; for ones in "
        "flight the handler is asked to stop (it sees delivery.cancel_requested within about a second; one "
        "that stops ends as cancelled, never retried). `mq_cancel orders 12 13` or "
        "`mq_cancel orders --filter 'state:delayed header:tenant=acme'` (the message browser's search). "
        "Audited like the dashboard's bulk cancel, as cli:<OS user>@<host>."
    )

    audits = {"": Action.CANCEL_MESSAGES}

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queue", help="The queue whose messages to cancel.")
        parser.add_argument("ids", nargs="*", type=_message_id, metavar="ID", help="Message ids (whole numbers).")
        parser.add_argument(
            "--filter",
            metavar="SEARCH",
            help="Cancel every message of the queue that the message browser's search SEARCH matches "
            "('' for all of them); instead of ids.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        queue, ids, text = options["queue"], options["ids"], options["filter"]
        self.attempt(Action.CANCEL_MESSAGES, queue=queue)
        if bool(ids) == (text is not None):
            raise CommandError(
                "give message ids or --filter SEARCH (one of them): "
                "`mq_cancel orders 12 13` or `mq_cancel orders --filter 'state:delayed'`"
            )
        if ids:
            n = services.cancel_messages(actor=self.actor, ids=ids, queue=queue)
            if n < len(ids):
                self.stderr.write(f"{len(ids) - n} of the ids are not in {queue!r} (done, moved or never there).")
        else:
            try:
                match = search.parse_search(text, queue=queue)
            except search.SearchError as exc:
                services.refuse(actor=self.actor, action=Action.CANCEL_MESSAGES, queue=queue, error=str(exc))
                raise CommandError(f"--filter: {exc}") from None
            n = services.cancel_messages(actor=self.actor, match=match, queue=queue)
        self.stdout.write(
            f"Cancelled {n} messages of {queue!r} (waiting ones deleted; handlers of ones in flight asked to stop)."
        )
