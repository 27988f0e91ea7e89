"""Metrics: the elected sampler that turns live counts into history and live pushes.

- :mod:`queues.metrics.sampler`: one tick = the engine's live counts -> ``QueueSample`` rows (1 s) + the
  message browsers receive; once a minute, downsampling into 60 s / 3600 s rows and pruning.
- :mod:`queues.metrics.election`: an advisory lock so one process samples however many web processes run.
- :mod:`queues.metrics.broadcaster`: the asyncio service that runs the two above in a dedicated thread and
  pushes each sample to the channel-layer group of its database (:func:`group`); started in daphne processes only.
- :mod:`queues.metrics.series`: the read side of the history, for the charts' JSON endpoint.

See docs/dashboard-live.md.
"""

from __future__ import annotations

import hashlib
import re

from queues import conf

GROUP = "mq.dashboard"
"""The start of every dashboard group's name (see :func:`group`)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def group() -> str:
    """The channel-layer group of this process's queue database: every dashboard socket joins it and the
    sampler, elected per database, sends one message per tick to it: ``mq.dashboard.<database name>``.

    Per database because the samples describe one database's queues: two sites, or staging and production,
    sharing one Redis must not push their numbers to each other's dashboards (they did, with one fixed
    name). A name that a group cannot hold (characters outside ``[A-Za-z0-9_.-]``, or long) becomes its
    safe characters plus a digest, so distinct names stay distinct.
    """
    name = str(conf.db().settings_dict.get("NAME") or "")
    safe = _UNSAFE.sub("_", name)
    if safe != name or not safe or len(safe) > 60:
        safe = safe[:40] + "." + hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{GROUP}.{safe}"

EVENT_TYPE = "dashboard.sample"
"""The channel-layer event type of a pushed sample (handled by ``DashboardConsumer.dashboard_sample``)."""
