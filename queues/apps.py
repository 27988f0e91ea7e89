from __future__ import annotations

from django.apps import AppConfig


class QueuesConfig(AppConfig):
    """The mqadmin queues app."""

    name = "queues"
    verbose_name = "Message queues"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register mqadmin's system checks (queues/checks.py)."""
        # deferred: apps.py is imported while Django populates the registry, before models may be; the
        # checks and the broadcaster import the engine and the sampler, which reach them
        from queues import checks

        checks.register_checks()

        # The metrics sampler runs in web processes only: the hook fires when daphne's reactor starts,
        # which management commands and tests never do (see queues/metrics/broadcaster.py).
        # deferred: as above
        from queues.metrics.broadcaster import start_when_daphne_runs

        start_when_daphne_runs()
