"""``mq_stats``: live counts of every queue, once or refreshed with --watch; ``--database`` adds the
database's health (dead rows, vacuum, the oldest snapshot holding vacuum back)."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import close_old_connections

import queues
from queues import conf, health, queue_health
from queues.formatting import display_kind, format_age
from queues.management.base import (
    MQCommand,
    format_table,
    positive_float,
    sleep_unless,
    stop_on_signal,
    to_json,
)
from queues.metrics.numbers import rate

CLEAR = "\033[H\033[2J"


class Command(MQCommand):
    help = (
        "Show every queue's live counts: ready, delayed, in flight, dead (messages in its dead-letter "
        "queue), the age of the oldest ready message, and totals sent / acked / failed / dead-lettered "
        "since the queue was made, and its health (healthy, backing up, stalled, dead letters growing, "
        "retention risk; see docs/dashboard.md). Reads counters, never count(*): cheap to run every second."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queues", nargs="*", metavar="QUEUE", help="Only these queues (default: all).")
        parser.add_argument("--watch", nargs="?", type=positive_float, const=2.0, default=None, metavar="SECONDS",
                            help="Refresh every SECONDS (default 2) until Ctrl-C, with sent/s and acked/s "
                                 "rates; clears the screen on a terminal.")
        parser.add_argument("--json", action="store_true",
                            help="Print JSON (with --watch: one JSON document per line per refresh).")
        parser.add_argument("--database", action="store_true",
                            help="Also show the database's health: live and dead rows, size and last vacuum of each "
                                 "queue table, the oldest open transaction holding vacuum back (pid, application, "
                                 "state, age) and replication slots, with a warning and the fix when a held "
                                 "snapshot makes the queue tables grow. Reads catalog views only.")

    def handle(self, *args: Any, **options: Any) -> None:
        names = options["queues"] or None
        self.database = options["database"]
        if options["watch"] is None:
            self._show(self._read(names), None, 0.0, as_json=options["json"], watching=False, clear=False)
            return
        interval = options["watch"]
        clear = self.stdout.isatty() and not options["json"]
        previous: list[Any] | None = None
        last = time.monotonic()
        with stop_on_signal() as stopped:
            while not stopped():
                rows = self._read(names)
                now = time.monotonic()
                self._show(rows, previous, now - last, as_json=options["json"], watching=True, clear=clear)
                previous, last = rows, now
                sleep_unless(stopped, interval)
                # A watch runs for hours: do not hold a connection the server has dropped.
                if not conf.db().in_atomic_block:
                    close_old_connections()

    def _read(self, names: list[str] | None) -> list[Any]:
        rows = queues.stats(names)
        if names:
            missing = sorted(set(names) - {r.queue for r in rows})
            if missing:
                raise CommandError(
                    f"no queue named {', '.join(map(repr, missing))}: list queues with `mq_queue list`"
                )
        return rows

    def _show(self, rows: list[Any], previous: list[Any] | None, elapsed: float, *, as_json: bool,
              watching: bool, clear: bool) -> None:
        before = {r.queue: r for r in previous or []}

        def rates(row: Any) -> tuple[float | None, float | None]:
            old = before.get(row.queue)
            if old is None:
                return None, None
            return rate(row.sent_total, old.sent_total, elapsed), rate(row.acked_total, old.acked_total, elapsed)

        now = datetime.now(UTC)
        # Flow control's counters (expired, cancelled, dropped for room): one small read for all rows.
        flow = queues.flow_totals([r.queue for r in rows]) if rows else {}
        healths = queue_health.assess_all(rows)
        if as_json:
            out = []
            for row in rows:
                item = queues.as_dict(row)
                totals = flow.get(row.queue)
                item["expired_total"] = totals.expired if totals else 0
                item["cancelled_total"] = totals.cancelled if totals else 0
                item["overflowed_total"] = totals.overflowed if totals else 0
                item["health"] = healths[row.queue].as_dict()
                if watching:
                    item["sent_per_second"], item["acked_per_second"] = rates(row)
                out.append(item)
            if self.database:
                self.stdout.write(to_json({"at": now, "queues": out, "database": self._health_json()}))
            else:
                self.stdout.write(to_json({"at": now, "queues": out}) if watching else to_json(out))
            self.stdout.flush()
            return
        headers = ["QUEUE", "KIND", "STATE", "READY", "DELAYED", "IN FLIGHT", "DEAD", "OLDEST", "SENT", "ACKED",
                   "FAILED", "DEAD-LETTERED", "EXPIRED", "CANCELLED"]
        headers += ["HEALTH"]
        if watching:
            headers += ["SENT/S", "ACKED/S"]
        table = []
        for row in rows:
            line = [
                row.queue, display_kind(row.kind, is_dead_letter_queue=row.is_dead_letter_queue),
                "paused" if row.paused else "active", row.ready, row.delayed, row.in_flight, row.dead,
                format_age(row.oldest_ready_age), row.sent_total, row.acked_total, row.failed_total,
                row.dead_lettered_total,
                flow[row.queue].expired if row.queue in flow else 0,
                flow[row.queue].cancelled if row.queue in flow else 0,
                # One word per column (dashes for spaces), like the ages.
                healths[row.queue].label.replace(" ", "-"),
            ]
            if watching:
                sent, acked = rates(row)
                line += ["-" if sent is None else f"{sent:,.1f}", "-" if acked is None else f"{acked:,.1f}"]
            table.append(line)
        right = [i for i, h in enumerate(headers) if i >= 3 and h != "HEALTH"]
        text = format_table(headers, table, right=right) if rows else (
            "No queues yet. Create one: python manage.py mq_queue create orders")
        reasons = [f"{row.queue}: {healths[row.queue].label}: {healths[row.queue].detail}"
                   for row in sorted(rows, key=lambda r: -healths[r.queue].severity)
                   if healths[row.queue].reasons]
        if reasons:
            text += "\n\n" + "\n".join(reasons)
        if clear:
            self.stdout.write(CLEAR + f"mq_stats  {now:%Y-%m-%d %H:%M:%S} UTC  (Ctrl-C to stop)\n", ending="")
        elif watching:
            self.stdout.write(f"{now:%Y-%m-%d %H:%M:%S} UTC")
        if self.database:
            text += "\n\n" + self._health_text()
        self.stdout.write(text + ("\n" if watching and not clear else ""))
        self.stdout.flush()

    def _health_json(self) -> dict[str, Any]:
        h = health.read()
        return {"tables": [dataclasses.asdict(t) for t in h.tables],
                "holders": [dataclasses.asdict(x) for x in h.holders],
                "slots": [dataclasses.asdict(x) for x in h.slots], "warnings": h.warnings}

    def _health_text(self) -> str:
        h = health.read()
        lines = ["DATABASE", format_table(
            ["TABLE", "LIVE", "DEAD", "SIZE", "LAST VACUUM"],
            [[t.table, t.live_tuples, t.dead_tuples, f"{t.size_bytes / 1024:,.0f} KiB", t.vacuumed_ago_text]
             for t in h.tables], right=range(1, 4))]
        if h.holders:
            lines += ["", "OLDEST OPEN SNAPSHOTS (the first pins the xmin horizon)", format_table(
                ["PID", "USER", "APPLICATION", "STATE", "AGE", "XIDS HELD", "QUERY START"],
                [[x.pid, x.user or "-", x.application or "-", x.state or x.backend_type, format_age(x.age_seconds),
                  "-" if x.xid_age is None else x.xid_age,
                  f"{x.query_start:%Y-%m-%d %H:%M:%S}" if x.query_start else "-"] for x in h.holders],
                right=(0, 4, 5))]
        else:
            lines += ["", "No other session holds a snapshot."]
        if h.slots:
            lines += ["", "REPLICATION SLOTS HOLDING THE HORIZON", format_table(
                ["SLOT", "TYPE", "ACTIVE", "XMIN AGE"],
                [[x.name, x.slot_type, "yes" if x.active else "no", "-" if x.xmin_age is None else x.xmin_age]
                 for x in h.slots], right=(3,))]
        lines += [f"\nWARNING: {w}" for w in h.warnings]
        return "\n".join(lines)
