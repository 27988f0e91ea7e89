"""A worker given bad input says what to fix in one line before it starts; it never crashes later."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from tests.worker.handlers import HANDLERS

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _test_handlers():
    with override_settings(MQADMIN={"HANDLERS": HANDLERS}):
        yield


def refused(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        call_command("mq_worker", *args)
    return str(caught.value)


def test_unknown_queue(make_queue):
    assert "queue 'wt-record' does not exist: create it first" in refused("wt-record")


def test_queue_without_handler_lists_the_registered_ones(make_queue):
    make_queue("orders")
    message = refused("orders")
    assert "no handler is registered for queue 'orders'" in message
    assert "@queues.handler('orders')" in message and "wt-record" in message


def test_handler_that_cannot_take_a_message(make_queue):
    make_queue("wt-badsig")
    message = refused("wt-badsig")
    assert "cannot take the message" in message and "takes_nothing()" in message


def test_async_atomic_handler(make_queue):
    make_queue("wt-badatomic")
    assert "async and atomic=True" in refused("wt-badatomic")


def test_unimportable_handler_path(make_queue):
    make_queue("orders")
    with override_settings(MQADMIN={"HANDLERS": {"orders": "shop.nowhere.handle"}}):
        assert "MQADMIN['HANDLERS']['orders'] = 'shop.nowhere.handle' cannot be imported" in refused("orders")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["wt-record", "--concurrency", "0"], "invalid number '0': it must be at least 1"),
        (["wt-record", "--concurrency", "many"], "invalid number 'many'"),
        (["wt-record", "--prefetch", "-3"], "invalid number '-3'"),
        (["wt-record", "--grace", "soon"], "invalid duration 'soon'"),
        (["wt-record", "--visibility-timeout", "0.5"], "it must be at least 1s"),
        (["wt-record", "--max-seconds", "0"], "it must be at least 0.1s"),
        (["wt-record:x"], "invalid queue weight in 'wt-record:x'"),
        (["wt-record:0"], "the weight must be from 1 to 1000"),
        (["Bad Queue"], "invalid queue name 'Bad Queue'"),
        (["wt-record", "wt-record:2"], "queue 'wt-record' is named twice"),
        (["wt-record", "--prefetch", "20000"], "prefetch must be at least 1 and at most 10000"),
    ],
)
def test_bad_option_values(args, expected, make_queue):
    make_queue("wt-record")
    assert expected in refused(*args)


def test_command_line_errors_are_one_line_without_traceback(make_queue, run_manage):
    result = run_manage("mq_worker", "nosuchqueue")
    assert result.returncode == 1
    assert "CommandError: queue 'nosuchqueue' does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    usage = run_manage("mq_worker", "nosuchqueue", "--concurrency", "0")
    assert usage.returncode == 2 and "invalid number '0'" in usage.stderr and "Traceback" not in usage.stderr


def test_help_explains_every_option(run_manage):
    text = run_manage("mq_worker", "--help").stdout
    for option in ("--concurrency", "--prefetch", "--visibility-timeout", "--max-messages", "--max-seconds",
                   "--burst", "--grace", "--poll-interval", "--log-interval", "--prune-interval", "QUEUE[:WEIGHT]",
                   "orders:3"):
        assert option in text


def test_a_database_without_this_releases_migrations(make_queue):
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    # The release's newest migration, as if the code were deployed before `migrate` ran.
    [(_, latest)] = [key for key in MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes()
                     if key[0] == "queues"]
    make_queue("wt-record")
    with connection.cursor() as cur:
        cur.execute("DELETE FROM django_migrations WHERE app = 'queues' AND name = %s", [latest])
    try:
        message = refused("wt-record", "--burst")  # (--burst: a worker that starts would stop, not hang)
    finally:
        with connection.cursor() as cur:
            cur.execute("INSERT INTO django_migrations (app, name, applied) VALUES ('queues', %s, now())", [latest])
    assert f"lacks mqadmin's migrations {latest}" in message
    assert "run python manage.py migrate before starting workers" in message


def test_a_database_without_mqadmin_at_all(make_queue):
    from django.db import connection

    make_queue("wt-record")
    with connection.cursor() as cur:
        cur.execute("SELECT name, applied FROM django_migrations WHERE app = 'queues'")
        rows = cur.fetchall()
        cur.execute("DELETE FROM django_migrations WHERE app = 'queues'")
    try:
        message = refused("wt-record", "--burst")  # (--burst: a worker that starts would stop, not hang)
    finally:
        with connection.cursor() as cur:
            for name, applied in rows:
                cur.execute("INSERT INTO django_migrations (app, name, applied) VALUES ('queues', %s, %s)",
                            [name, applied])
    assert "has none of mqadmin's tables yet: run python manage.py migrate before starting workers" in message
