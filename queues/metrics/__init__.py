"""Metrics: the elected sampler that turns live counts into history and live pushes.

- :mod:`queues.metrics.sampler`: one tick = the engine's live counts -> ``QueueSample`` rows (1 s) + the
  message browsers receive; once a minute, downsampling into 60 s / 3600 s rows and pruning.
- :mod:`queues.metrics.election`: an advisory lock so one process samples however many web processes run.
- :mod:`queues.metrics.broadcaster`: the asyncio service that runs the two above in a dedicated thread and
  pushes each sample to the channel-layer group :data:`GROUP`; started in daphne processes only.
- :mod:`queues.metrics.series`: the read side of the history, for the charts' JSON endpoint.

See docs/dashboard-live.md.
"""

from __future__ import annotations

GROUP = "mq.dashboard"
"""The channel-layer group every dashboard socket joins; the sampler sends one message per tick to it."""

EVENT_TYPE = "dashboard.sample"
"""The channel-layer event type of a pushed sample (handled by ``DashboardConsumer.dashboard_sample``)."""
