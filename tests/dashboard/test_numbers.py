"""One rule for rates and totals (``queues.metrics.numbers``): the overview's cards and the sampler's
pushed ``total`` are the same numbers, and a rate is never negative."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

import queues
from queues.formatting import format_age, format_count, format_rate
from queues.metrics.numbers import rate
from queues.metrics.sampler import Sampler

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("now", "before", "seconds", "expected"),
    [(130, 100, 2.0, 15.0), (0, 30, 0.3, 0.0), (5, 5, 1.0, 0.0), (10, 0, 0.0, None), (10, 0, -1.0, None)],
)
def test_a_rate_is_a_counter_delta_per_second_never_negative(now, before, seconds, expected):
    assert rate(now, before, seconds) == expected


def test_overview_cards_show_the_totals_the_sampler_pushes(make_queue, client_for, make_worker):
    make_queue("a", max_receives=1, dead_letter_queue="shared.dlq")
    make_queue("b", max_receives=1, dead_letter_queue="shared.dlq")
    queues.send_batch("a", [1, 2, 3])
    queues.send("b", 4, delay=600)
    [d] = queues.receive("a")
    queues.nack(d.receipt, error="boom")  # to shared.dlq
    queues.receive("a", max_messages=1, visibility_timeout=600)
    make_worker(["a"])

    total = Sampler().tick()["total"]
    html = client_for("viewer").get(reverse("queues:overview")).content.decode()

    def card(field: str) -> str:
        found = re.search(rf'data-live="_total\.{field}"[^>]*>([^<]*)<', html)
        assert found, field
        return found.group(1)

    assert (total["ready"], total["in_flight"], total["delayed"], total["dead"]) == (1, 1, 1, 1)
    for field in ("ready", "in_flight", "delayed", "dead", "workers"):
        assert card(field) == format_count(total[field])
    assert card("oldest_ready_age") == format_age(total["oldest_ready_age"])
    assert card("rate_in") == format_rate(total["rate_in"]) == "—"  # one tick: no rate yet
