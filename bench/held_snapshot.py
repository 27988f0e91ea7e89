"""Held snapshot: a steady producer and ``mq_worker`` processes while another session pins the xmin horizon.

    .venv/bin/python bench/held_snapshot.py                                   # 120 / 240 / 120 s at 300 msg/s
    .venv/bin/python bench/held_snapshot.py --clean 20 --held 40 --after 20   # a short run
    .venv/bin/python bench/held_snapshot.py --find-limit --held 240           # step the rate up while held
    .venv/bin/python bench/held_snapshot.py --dsn postgresql://postgres@127.0.0.1:5432/bench_held

A producer (this process) offers a fixed rate, one ``queues.send`` per message (a batch only when it
has fallen behind), to WORKERS real ``manage.py mq_worker`` processes running the no-op handler
``bench.held_snapshot.record``. Three phases:

1. clean: nothing else runs;
2. held: another session runs ``BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1;`` and stays idle in
   transaction, so no dead tuple newer than its snapshot can be removed (vacuum or page pruning);
3. after: that session has rolled back.

Every message carries its send time (``t``, wall clock taken just before the send); the handler appends
``t`` and the time it ran to a per-process file, which gives send -> handled latency. Per 10 s window
(of handled time): offered/s, handled/s, p50/p99 latency, backlog (queue depth at the window's end),
``n_dead_tup`` and total size of ``queues_message``, ``queues_counter``, ``queues_group`` and ``queues_lease``, and the
share of the window a vacuum was running on ``queues_message`` (polled every second). Printed as
markdown, written as JSON (``--out``) for ``bench/held_snapshot_chart.py``.

``--find-limit``: during the held phase the offered rate rises by ``--step`` every ``--step-seconds``;
the report says at which step handled/s fell below 95% of offered or the backlog grew by more than
5% of what the step offered.

Without ``--dsn`` the project's embedded server is used, in a fresh database ``bench_held``. With
``--dsn`` that database is migrated and only the bench queue is recreated. Importing this module does
nothing (the workers import it for the handler).
Django and the app are imported inside functions: they can only be imported after ``django.setup()``,
which runs once the database is known.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: bench/ is on the path, the project is not
    sys.path.insert(0, str(ROOT))

from bench.benchdb import fresh_database, migrate, setup_django  # noqa: E402 (needs ROOT on the path)

# The benchmarks name their database (DATABASE_URL), so the settings want a key: one for benchmarks only,
# inherited by the processes they start (docs/deploy.md, "The secret key").
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret-" + "b" * 40)
QUEUE = "bench-held"
DB_NAME = "bench_held"
TABLES = ("queues_message", "queues_counter", "queues_group", "queues_lease")
WINDOW = 10.0
HANDLERS = {QUEUE: "bench.held_snapshot.record"}
RECORD_DIR_ENV = "HELD_BENCH_DIR"


# -- the handler the workers run ----------------------------------------------------------------------
_record_fd: int | None = None
_record_lock = threading.Lock()


def record(message: Any) -> None:
    """No work: appends "<sent> <handled>" (epoch seconds) to this process's file (one write per line,
    O_APPEND, so handler threads never interleave)."""
    global _record_fd
    handled = time.time()
    if _record_fd is None:
        with _record_lock:
            if _record_fd is None:
                path = Path(os.environ[RECORD_DIR_ENV]) / f"{os.getpid()}.txt"
                _record_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(_record_fd, f"{message.body['t']:.6f} {handled:.6f}\n".encode())


# -- setup --------------------------------------------------------------------------------------------
def prepare_database(dsn: str | None) -> str:
    """The URL of the bench database: ``dsn`` as given (migrated), or a fresh ``bench_held`` on the embedded
    server."""
    if dsn is None:
        return fresh_database(None, DB_NAME)
    migrate(dsn)
    return dsn


def child_env(dsn: str, record_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=dsn, PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="mqadmin.settings", PYTHONUNBUFFERED="1",
        MQADMIN_SETTINGS=json.dumps({"HANDLERS": HANDLERS}), MQADMIN_LOG_LEVEL="WARNING",
        **{RECORD_DIR_ENV: record_dir},
    )
    return env


def fresh_queue() -> None:
    import queues
    from queues.models import Queue

    if Queue.objects.filter(name=QUEUE).exists():
        queues.delete_queue(QUEUE)
    queues.create_queue(QUEUE, visibility_timeout=60, max_receives=0, dead_letter_queue=None)


def start_workers(dsn: str, record_dir: str, count: int, extra: list[str]) -> list[subprocess.Popen]:
    """``count`` live ``mq_worker`` processes (waits for each one's heartbeat row)."""
    from queues.models import Worker

    args = [sys.executable, str(ROOT / "manage.py"), "mq_worker", QUEUE, "--log-interval", "0", *extra]
    procs = [subprocess.Popen(args, env=child_env(dsn, record_dir), cwd=ROOT) for _ in range(count)]
    pids = [p.pid for p in procs]
    deadline = time.monotonic() + 120
    while Worker.objects.filter(pid__in=pids, state="live").count() < count:
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            stop_workers(procs)
            raise SystemExit("workers did not start")
        time.sleep(0.05)
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()


# -- the parts that run during the phases ---------------------------------------------------------------
class Holder:
    """A session that holds a REPEATABLE READ snapshot, idle in transaction, until ``release``."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        self.conn.execute("SELECT 1")
        self.pid = self.conn.info.backend_pid

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


# Whether a vacuum (auto or not) is working on queues_message now: under a held snapshot autovacuum passes
# can remove nothing but still scan the growing table, and the 2026-12-04 runs had slow episodes to explain.
VACUUM_RUNNING = ("SELECT EXISTS (SELECT 1 FROM pg_stat_progress_vacuum WHERE datname = current_database() "
                  "AND relid = 'queues_message'::regclass)")
VACUUM_POLL = 1.0


class Monitor(threading.Thread):
    """At every window boundary: backlog, dead tuples and sizes of the queue tables, the holder's xmin; every
    second: whether a vacuum is running on the message table."""

    def __init__(self, dsn: str, start: float) -> None:
        super().__init__(daemon=True)
        self.dsn, self.start_at = dsn, start
        self.samples: list[dict] = []
        self.vacuum_seen: list[tuple[float, bool]] = []
        self.stopping = threading.Event()

    def sample(self, conn: Any) -> dict:
        row: dict[str, Any] = {"t": round(time.time() - self.start_at, 2)}
        # Depth from the engine's own counters (what queues.queue_stats reads), not a count(*) of a bloated table.
        import queues

        row["backlog"] = queues.queue_stats(QUEUE).depth
        for table in TABLES:
            dead, live, size = conn.execute(
                "SELECT n_dead_tup, n_live_tup, pg_total_relation_size(relid) FROM pg_stat_user_tables "
                "WHERE relname = %s", [table]).fetchone()
            row[table] = {"n_dead_tup": dead, "n_live_tup": live, "bytes": size}
        xmin = conn.execute("SELECT max(age(backend_xmin)) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND state = 'idle in transaction'").fetchone()[0]
        row["held_xmin_age"] = xmin
        row["load1"] = os.getloadavg()[0]  # the machine's 1-minute load: other work shows here
        return row

    def run(self) -> None:
        import psycopg
        from django.db import connection

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            self.samples.append(self.sample(conn))
            n = 1
            # Wake once a second (is a vacuum running on the message table? its share of each window) and
            # exactly at each window boundary, where the window's sample is taken.
            while not self.stopping.wait(min(VACUUM_POLL, max(0.0, self.start_at + n * WINDOW - time.time()))):
                self.vacuum_seen.append((time.time() - self.start_at, conn.execute(VACUUM_RUNNING).fetchone()[0]))
                if time.time() >= self.start_at + n * WINDOW:
                    self.samples.append(self.sample(conn))
                    n += 1
        connection.close()


def produce(plan: list[tuple[float, float]], start: float, sent: list[float]) -> None:
    """Offer messages on schedule: ``plan`` is (until, rate) steps in seconds from ``start``. One send per
    message; when behind, the messages owed go in one send_batch (at most 500)."""
    import queues

    due = start
    step = 0
    i = 0
    while step < len(plan):
        until, rate = plan[step]
        if due >= start + until:
            step += 1
            continue
        now = time.time()
        if now < due:
            time.sleep(due - now)
            continue
        owed = []
        while due <= now and due < start + until and len(owed) < 500:
            owed.append(due)
            due += 1.0 / rate
        t = time.time()
        if len(owed) == 1:
            queues.send(QUEUE, {"t": t, "i": i})
        else:
            queues.send_batch(QUEUE, [{"t": t, "i": i + k} for k in range(len(owed))])
        sent.extend([t] * len(owed))
        i += len(owed)


# -- report ---------------------------------------------------------------------------------------------
def read_records(record_dir: Path) -> list[tuple[float, float]]:
    out = []
    for path in record_dir.glob("*.txt"):
        for line in path.read_text().splitlines():
            a, b = line.split()
            out.append((float(a), float(b)))
    return out


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def windows(start: float, total: float, plan: list[tuple[float, float]], phases: list[tuple[str, float]],
            sent: list[float], handled: list[tuple[float, float]], samples: list[dict],
            vacuum_seen: list[tuple[float, bool]] = ()) -> list[dict]:
    count = int(-(-total // WINDOW))
    polls, vacuuming = [0] * count, [0] * count
    for t, running in vacuum_seen:
        k = int(t // WINDOW)
        if 0 <= k < count:
            polls[k] += 1
            vacuuming[k] += running
    offered = [0] * count
    lat: list[list[float]] = [[] for _ in range(count)]
    for t in sent:
        k = int((t - start) // WINDOW)
        if 0 <= k < count:
            offered[k] += 1
    for s, h in handled:
        k = int((h - start) // WINDOW)
        if 0 <= k < count:
            lat[k].append((h - s) * 1e3)
    rows = []
    for k in range(count):
        lo, hi = k * WINDOW, min(total, (k + 1) * WINDOW)
        phase = next(name for name, end in phases if lo < end)
        rate = next(r for until, r in plan if lo < until)
        sample = min(samples, key=lambda x: abs(x["t"] - hi)) if samples else {}
        rows.append({
            "window": k, "from": lo, "to": hi, "phase": phase, "target_rate": rate,
            "offered_per_s": round(offered[k] / (hi - lo), 1), "handled_per_s": round(len(lat[k]) / (hi - lo), 1),
            "p50_ms": _r(pct(lat[k], 0.5)), "p99_ms": _r(pct(lat[k], 0.99)), "max_ms": _r(max(lat[k], default=None)),
            "backlog": sample.get("backlog"), "held_xmin_age": sample.get("held_xmin_age"),
            "load1": sample.get("load1"),
            "vacuum_share": round(vacuuming[k] / polls[k], 2) if polls[k] else None,
            **{t: sample.get(t) for t in TABLES},
        })
    return rows


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def summarize(rows: list[dict], handled: list[tuple[float, float]], start: float,
              phases: list[tuple[str, float]]) -> dict:
    out: dict[str, dict] = {}
    lo = 0.0
    for name, end in phases:
        part = [r for r in rows if lo <= r["from"] < end]
        lat = [(h - s) * 1e3 for s, h in handled if lo <= h - start < end]
        secs = end - lo
        offered = sum(r["offered_per_s"] * (r["to"] - r["from"]) for r in part)
        out[name] = {
            "seconds": secs, "offered_per_s": round(offered / secs, 1), "handled_per_s": round(len(lat) / secs, 1),
            "handled_share": round(len(lat) / offered, 3) if offered else None,
            "p50_ms": _r(pct(lat, 0.5)), "p99_ms": _r(pct(lat, 0.99)), "max_ms": _r(max(lat, default=None)),
            "worst_window_p99_ms": max((r["p99_ms"] for r in part if r["p99_ms"] is not None), default=None),
            "backlog_end": part[-1]["backlog"] if part else None,
            "message_mb_end": round(part[-1]["queues_message"]["bytes"] / 2**20, 1) if part else None,
        }
        lo = end
    if "clean" in out and "held" in out and out["clean"]["p99_ms"]:
        out["held"]["p99_vs_clean"] = round(out["held"]["p99_ms"] / out["clean"]["p99_ms"], 2)
    return out


def find_limit(rows: list[dict], plan: list[tuple[float, float]], held: tuple[float, float]) -> list[dict]:
    """Per rate step of the held phase: offered, handled, share, backlog growth and p99."""
    steps = []
    lo = held[0]
    for until, rate in plan:
        if until <= held[0] or lo >= held[1]:
            lo = max(lo, until)
            continue
        part = [r for r in rows if lo <= r["from"] < until]
        if part:
            offered = statistics.mean(r["offered_per_s"] for r in part)
            handled = statistics.mean(r["handled_per_s"] for r in part)
            before = rows[part[0]["window"] - 1]["backlog"] if part[0]["window"] else 0  # at the step's start
            grew = (part[-1]["backlog"] or 0) - (before or 0)
            steps.append({"rate": rate, "offered_per_s": round(offered, 1), "handled_per_s": round(handled, 1),
                          "share": round(handled / offered, 3) if offered else None, "backlog_growth": grew,
                          "worst_p99_ms": max((r["p99_ms"] for r in part if r["p99_ms"] is not None), default=None),
                          "keeps_up": bool(offered and handled / offered >= 0.95
                                           and grew <= 0.05 * offered * (until - lo))})
        lo = until
    return steps


def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [
        f"{meta['date']}, {meta['machine']} ({meta['cores']} cores, load {meta['load_before']:.2f} before), "
        f"PostgreSQL {meta['postgres']}, commit {meta['commit']}; {meta['workers']} workers, "
        f"rate {meta['rate']} msg/s, phases {meta['clean']}/{meta['held']}/{meta['after']} s.",
        "",
        "| s | phase | offered/s | handled/s | p50 ms | p99 ms | backlog | message dead / MB | counter dead / kB "
        "| group dead / kB | lease dead / kB | load | vacuuming |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["windows"]:
        m, c, g, b = (r.get(t) or {} for t in TABLES)
        lines.append(
            f"| {r['to']:.0f} | {r['phase']} | {r['offered_per_s']:.0f} | {r['handled_per_s']:.0f} | "
            f"{_fmt(r['p50_ms'])} | {_fmt(r['p99_ms'])} | {r['backlog']} | "
            f"{m.get('n_dead_tup')} / {m.get('bytes', 0) / 2**20:.1f} | {c.get('n_dead_tup')} / "
            f"{c.get('bytes', 0) / 1024:.0f} | {g.get('n_dead_tup')} / {g.get('bytes', 0) / 1024:.0f} | "
            f"{b.get('n_dead_tup')} / {b.get('bytes', 0) / 1024:.0f} | "
            f"{_fmt(r.get('load1'))} | {_fmt(r.get('vacuum_share'), '.0%')} |")
    lines += ["", "| phase | offered/s | handled/s | handled / offered | p50 ms | p99 ms | worst window p99 | "
              "backlog at end | message table MB at end |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in result["phases"].items():
        lines.append(f"| {name} | {s['offered_per_s']} | {s['handled_per_s']} | {_fmt(s['handled_share'], '.1%')} | "
                     f"{_fmt(s['p50_ms'])} | {_fmt(s['p99_ms'])} | {_fmt(s['worst_window_p99_ms'])} | "
                     f"{s['backlog_end']} | {s['message_mb_end']} |")
    held = result["phases"].get("held", {})
    if "p99_vs_clean" in held:
        lines += ["", f"Held p99 / clean p99: {held['p99_vs_clean']}x (goal <= 3x); held handled / offered: "
                      f"{_fmt(held['handled_share'], '.1%')} (goal >= 95%); backlog at the end: "
                      f"{result['phases']['after']['backlog_end']}."]
    if result.get("steps"):
        lines += ["", "| offered rate (held) | offered/s | handled/s | share | backlog growth | worst p99 ms "
                      "| keeps up |", "|---:|---:|---:|---:|---:|---:|---|"]
        for s in result["steps"]:
            lines.append(f"| {s['rate']} | {s['offered_per_s']} | {s['handled_per_s']} | {_fmt(s['share'], '.1%')} | "
                         f"{s['backlog_growth']} | {_fmt(s['worst_p99_ms'])} | {'yes' if s['keeps_up'] else 'no'} |")
    return "\n".join(lines)


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


# -- main -----------------------------------------------------------------------------------------------
def make_plan(opts: argparse.Namespace) -> list[tuple[float, float]]:
    """(until, rate) steps over the whole run."""
    clean_end, held_end = opts.clean, opts.clean + opts.held
    total = held_end + opts.after
    if not opts.find_limit:
        return [(total, opts.rate)]
    plan = [(clean_end, opts.rate)]
    t, rate = clean_end, opts.rate
    while t < held_end:
        t = min(held_end, t + opts.step_seconds)
        plan.append((t, rate))
        rate += opts.step
    plan.append((total, opts.rate))
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", help="Database to use (migrated here); default: a fresh bench_held on the "
                                      "embedded server.")
    parser.add_argument("--rate", type=float, default=300.0, help="Offered messages per second (default 300).")
    parser.add_argument("--workers", type=int, default=2, help="mq_worker processes (default 2).")
    parser.add_argument("--clean", type=float, default=120.0, help="Seconds before the snapshot (default 120).")
    parser.add_argument("--held", type=float, default=240.0, help="Seconds the snapshot is held (default 240).")
    parser.add_argument("--after", type=float, default=120.0, help="Seconds after it ends (default 120).")
    parser.add_argument("--worker-arg", action="append", default=[], metavar="ARG",
                        help="Extra mq_worker argument (repeatable), e.g. --worker-arg=--prefetch=100.")
    parser.add_argument("--find-limit", action="store_true",
                        help="During the held phase, raise the offered rate by --step every --step-seconds.")
    parser.add_argument("--step", type=float, default=300.0, help="Rate increase per step (default 300 msg/s).")
    parser.add_argument("--step-seconds", type=float, default=30.0, help="Length of a step (default 30 s).")
    parser.add_argument("--out", type=Path, default=Path("bench-results/held_snapshot.json"),
                        help="JSON result (default bench-results/held_snapshot.json).")
    opts = parser.parse_args()
    for name in ("clean", "held", "after", "step_seconds"):
        value = getattr(opts, name)
        if value < WINDOW or value % WINDOW:
            parser.error(f"--{name.replace('_', '-')} must be a multiple of {WINDOW:.0f} s (the report's window)")

    dsn = prepare_database(opts.dsn)
    setup_django(dsn)
    from django.db import connection

    import queues

    fresh_queue()
    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        version = cur.fetchone()[0].split()[0]
        cur.execute("VACUUM ANALYZE queues_message, queues_counter, queues_group, queues_lease")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": platform.node() or "unknown",
            "cores": os.cpu_count(), "postgres": version, "python": platform.python_version(), "commit": commit,
            "load_before": os.getloadavg()[0], "rate": opts.rate, "workers": opts.workers, "clean": opts.clean,
            "held": opts.held, "after": opts.after, "find_limit": opts.find_limit, "worker_args": opts.worker_arg,
            "command": " ".join(["bench/held_snapshot.py", *sys.argv[1:]])}
    phases = [("clean", opts.clean), ("held", opts.clean + opts.held), ("after", opts.clean + opts.held + opts.after)]
    total = phases[-1][1]
    plan = make_plan(opts)

    record_dir = Path(tempfile.mkdtemp(prefix="held-bench-"))
    procs = start_workers(dsn, str(record_dir), opts.workers, opts.worker_arg)
    sent: list[float] = []
    holder = None
    try:
        time.sleep(1.0)  # every worker reaches its idle wait before the first message
        start = time.time()
        monitor = Monitor(dsn, start)
        monitor.start()
        producer = threading.Thread(target=lambda: (produce(plan, start, sent), connection.close()), daemon=True)
        producer.start()
        print(f"clean phase: {opts.clean:.0f} s", flush=True)
        time.sleep(max(0.0, start + opts.clean - time.time()))
        holder = Holder(dsn)
        print(f"held phase: {opts.held:.0f} s (pid {holder.pid} idle in transaction)", flush=True)
        time.sleep(max(0.0, start + phases[1][1] - time.time()))
        holder.release()
        holder = None
        print(f"after phase: {opts.after:.0f} s", flush=True)
        producer.join()
        time.sleep(max(0.0, start + total - time.time()))
        monitor.stopping.set()
        monitor.join()
        deadline = time.monotonic() + 120  # let the tail drain, so every sent message has a latency
        while queues.queue_stats(QUEUE).depth and time.monotonic() < deadline:
            time.sleep(0.1)
        left = queues.queue_stats(QUEUE).depth
    finally:
        if holder is not None:
            holder.release()
        stop_workers(procs)
    handled = read_records(record_dir)
    shutil.rmtree(record_dir)
    meta["load_after"] = os.getloadavg()[0]
    rows = windows(start, total, plan, phases, sent, handled, monitor.samples, monitor.vacuum_seen)
    result = {"meta": meta, "sent": len(sent), "handled": len(handled), "left_after_drain": left, "plan": plan,
              "phases": summarize(rows, handled, start, phases), "windows": rows, "samples": monitor.samples}
    if opts.find_limit:
        result["steps"] = find_limit(rows, plan, (phases[0][1], phases[1][1]))
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=1))
    print()
    print(markdown(result))
    print(f"\nsent {len(sent)}, handled {len(handled)} (duplicates possible only after a lost lease), "
          f"left {left}; JSON: {opts.out}")


if __name__ == "__main__":
    main()
