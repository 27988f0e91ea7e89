"""queues.upkeep: one sweep at a time however many processes sweep, and every job in one place."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.db import connections

from queues import conf, upkeep


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """An extra upkeep job that counts its runs and, while ``hold`` is clear, waits for it."""
    state = {"runs": 0, "started": threading.Event(), "hold": threading.Event()}

    def job(batch: int) -> dict[str, int]:
        state["runs"] += 1
        state["started"].set()
        assert state["hold"].wait(20), "the test never released the probe job"
        return {"probed": 1}

    monkeypatch.setitem(upkeep.JOBS, "probe", job)
    yield state
    state["hold"].set()


def _sweep_in_thread(results: list[upkeep.Sweep]) -> None:
    try:
        results.append(upkeep.sweep(only=["probe"]))
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sweeps_do_not_both_run_a_job(probe):
    results: list[upkeep.Sweep] = []
    first = threading.Thread(target=_sweep_in_thread, args=(results,))
    first.start()
    try:
        assert probe["started"].wait(10)
        # Another session (this thread's connection) while the first sweep holds the lock.
        second = upkeep.sweep(only=["probe"])
    finally:
        probe["hold"].set()
        first.join(20)
    assert not second.ran and second.counts == {}
    assert results[0].ran and results[0].counts == {"probed": 1}
    assert probe["runs"] == 1
    # The lock went with the first sweep: the next one runs.
    assert upkeep.sweep(only=["probe"]).ran
    assert probe["runs"] == 2


@pytest.mark.django_db(transaction=True)
def test_a_waiting_sweep_runs_once_the_running_one_ends(probe):
    results: list[upkeep.Sweep] = []
    first = threading.Thread(target=_sweep_in_thread, args=(results,))
    first.start()
    assert probe["started"].wait(10)
    threading.Timer(0.3, probe["hold"].set).start()
    second = upkeep.sweep(only=["probe"], wait=10)
    first.join(20)
    assert results[0].ran and second.ran and probe["runs"] == 2


def test_a_failing_job_does_not_stop_the_others(db, monkeypatch):
    ran = []

    def broken(batch: int) -> dict[str, int]:
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(upkeep, "JOBS", {"broken": broken, "after": lambda batch: ran.append(batch) or {"after": 1}})
    result = upkeep.sweep(batch=7)
    assert result.ran and result.errors == {"broken": "RuntimeError: broken on purpose"}
    assert result.counts == {"after": 1} and ran == [7]


def test_unknown_job_and_bad_batch_are_refused(db):
    with pytest.raises(ValueError, match=r"unknown upkeep job\(s\) \['nope'\]"):
        upkeep.sweep(only=["nope"])
    with pytest.raises(ValueError, match="batch must be a positive integer, got 0"):
        upkeep.sweep(batch=0)


@pytest.mark.django_db(transaction=True)
def test_the_lock_is_free_after_a_sweep(probe):
    probe["hold"].set()
    upkeep.sweep(only=["probe"])
    with conf.db().cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s", [upkeep.LOCK_KEY & 0xFFFFFFFF]
        )
        assert cur.fetchone()[0] == 0
