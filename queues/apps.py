from django.apps import AppConfig


class QueuesConfig(AppConfig):
    """The mqadmin queues app."""

    name = "queues"
    verbose_name = "Message queues"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register mqadmin's system checks (queues/checks.py)."""
        from queues import checks

        checks.register_checks()

        # The metrics sampler runs in web processes only: the hook fires when daphne's reactor starts,
        # which management commands and tests never do (see queues/metrics/broadcaster.py).
        from queues.metrics.broadcaster import start_when_daphne_runs

        start_when_daphne_runs()
