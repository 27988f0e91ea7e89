"""A schedule every 2 s, with 3 worker processes and 2 web processes each running the scheduler, enqueued
each occurrence exactly once over a minute (issue 13: "What it must show")."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest

import queues
from queues import schedules
from queues.models import Message, Schedule
from tests.conftest import ROOT, stop_process

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RUN_SECONDS = 60.0

# What a daphne process runs for schedules (queues.metrics.broadcaster starts it beside the sampler):
# the scheduler thread, here without the HTTP server around it.
WEB_PROCESS = """
import os, signal, threading, django
django.setup()
from queues import schedules
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
thread = schedules.start_scheduler(stop, name="mq-schedules-web")
print("scheduler started", flush=True)
thread.join()
"""


def test_every_occurrence_is_enqueued_once_by_five_competing_processes(start_worker, worker_env, scratch):
    # No dedup window: the dedup id cannot hide a double send, so this checks the scheduler itself.
    queues.create_queue("ticks", dedup_window=0)
    queues.create_queue("wt-a")  # the workers serve a queue of their own; "ticks" keeps every message
    schedules.schedule("every-2s", cron="*/2 * * * * *", queue="ticks", body={"tick": True})
    workers = [start_worker("wt-a", wait=False) for _ in range(3)]
    webs = []
    for n in range(2):
        with open(scratch / f"web-{n}.log", "wb") as out:
            webs.append(
                subprocess.Popen(
                    [sys.executable, "-c", WEB_PROCESS],
                    env=worker_env,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
    try:
        for worker in workers:
            worker.started()
        started = schedules.database_now()
        time.sleep(RUN_SECONDS)  # the test is the minute itself: nothing to poll for
        ended = schedules.database_now()
    finally:
        for web in webs:
            stop_process(web)
        for worker in workers:
            worker.send_signal()
        for worker in workers:
            worker.wait(30)

    occurrences = sorted(
        datetime.fromisoformat(h["schedule-occurrence"])
        for h in Message.objects.filter(queue__name="ticks").values_list("headers", flat=True)
    )
    webs_out = [(scratch / f"web-{n}.log").read_text() for n in range(2)]
    logs = "\n".join(webs_out)
    assert len(occurrences) == len(set(occurrences)), f"an occurrence was enqueued twice: {occurrences}"
    # Every 2 s step from the first to the last, none missing (a gap would be a lost occurrence).
    steps = {b - a for a, b in itertools.pairwise(occurrences)}
    assert steps == {timedelta(seconds=2)}, occurrences
    inside = [o for o in occurrences if started <= o <= ended - timedelta(seconds=2)]
    assert len(inside) >= RUN_SECONDS / 2 - 2, (len(inside), logs)
    row = Schedule.objects.get(name="every-2s")
    assert row.last_run_at == occurrences[-1] and row.last_error == ""
    # Every message is accounted for by exactly one "fired" line of one of the five processes' logs.
    fired = [out.count("event=schedule_fired schedule=every-2s") for out in [w.output() for w in workers] + webs_out]
    assert sum(fired) == len(occurrences), fired
    assert all("scheduler started" in out for out in webs_out), webs_out
