"""One wording per number: an age, a rate or a count reads the same on every page, in live updates,
in ``mq_stats`` and on the Database page (``queues.formatting``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone

import queues
from queues import health
from queues.formatting import format_age, format_count, format_rate
from queues.models import Message

LIVE_JS = Path(__file__).resolve().parents[2] / "queues" / "static" / "queues" / "live.js"

AGES = [None, 0, 0.4, 9.9, 42, 59.99, 60, 302, 3599, 3600, 11100, 86399, 86400, 187200, 10 * 86400 + 5, -3]
RATES = [None, 0, 0.04, 2.5, 99.94, 99.96, 100, 1234.4, 1234567.8]
COUNTS = [None, 0, 7, 999, 1000, 1497, 1234567]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (0.4, "0s"),
        (42, "42s"),
        (302, "5m02s"),
        (11100, "3h05m"),
        (187200, "2d04h"),
        (timedelta(minutes=17), "17m00s"),
        (-3, "0s"),
    ],
)
def test_an_age_has_one_wording_without_spaces(seconds, text):
    assert format_age(seconds) == text


def test_template_filters_are_the_formatting_functions():
    for name, function, values in (
        ("age", format_age, AGES),
        ("rate", format_rate, RATES),
        ("count", format_count, COUNTS),
    ):
        template = Template(f"{{% load queues_tags %}}{{{{ x|{name} }}}}")
        assert [template.render(Context({"x": x})) for x in values] == [function(x) for x in values]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run live.js")
def test_live_updates_write_numbers_as_the_server_renders_them():
    # live.js rewrites the server-rendered cells every second: a different wording would flicker.
    script = (
        "global.window = {}; global.document = {getElementById: () => null};"
        f"require({json.dumps(str(LIVE_JS))});"
        "const f = window.mqFormat;"
        f"console.log(JSON.stringify([{json.dumps(AGES)}.map(f.age), {json.dumps(RATES)}.map(f.rate),"
        f" {json.dumps(COUNTS)}.map(f.count)]));"
    )
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True, timeout=30).stdout
    ages, rates, counts = json.loads(out)
    assert ages == [format_age(a) for a in AGES]
    assert rates == [format_rate(r) for r in RATES]
    assert counts == [format_count(n) for n in COUNTS]


@pytest.mark.django_db
def test_an_age_reads_the_same_on_the_overview_and_in_mq_stats(make_queue, client_for):
    make_queue("orders")
    queues.send("orders", {"n": 1})
    # Ready for 2 h 05 min 30 s: both reads land inside the same minute of age.
    Message.objects.filter(queue__name="orders").update(
        available_at=timezone.now() - timedelta(hours=2, minutes=5, seconds=30)
    )
    html = client_for("viewer").get(reverse("queues:overview")).content.decode()
    assert 'data-live="_total.oldest_ready_age">2h05m<' in html
    out = StringIO()
    call_command("mq_stats", "orders", stdout=out)
    assert out.getvalue().splitlines()[1].split()[7] == "2h05m"


def test_the_database_page_says_ages_the_same_way():
    holder = health.SnapshotHolder(
        pid=1,
        user="u",
        application="a",
        client="",
        state="idle in transaction",
        backend_start=None,
        xact_start=None,
        query_start=None,
        age_seconds=1020.0,
        xid_age=1,
        query="",
        superuser=False,
        own_role=False,
        backend_type="client backend",
    )
    table = health.TableHealth(
        table="queues_message",
        live_tuples=1,
        dead_tuples=0,
        size_bytes=0,
        last_autovacuum=None,
        last_vacuum=None,
        autovacuum_count=0,
        vacuumed_ago=302.0,
    )
    template = Template("{% load queues_tags %}{{ h.age_seconds|age }}")
    assert template.render(Context({"h": holder})) == format_age(1020.0) == "17m00s"
    assert table.vacuumed_ago_text == "5m02s ago"


def test_every_action_has_a_name_in_the_audit_log():
    from queues.formatting import ACTION_NAMES
    from queues.permissions import Action

    assert {a.value for a in Action} <= set(ACTION_NAMES), "name every new Action in queues.formatting.ACTION_NAMES"
