from django.apps import AppConfig


class DemoSiteConfig(AppConfig):
    """The demo site as an app, for its commands: ``mq_demo`` (``make demo``) and ``mq_db``.

    They belong to this repository's site (its embedded PostgreSQL, its demo handlers), not to the
    ``queues`` app that hosts install, so a host's ``manage.py help`` never lists them.
    """

    name = "mqadmin"
    verbose_name = "mqadmin demo site"
