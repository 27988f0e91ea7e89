"""Fixtures of the observability tests: the dashboard's role clients and the worker tests' real
``mq_worker`` processes, shared rather than copied."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.dashboard.conftest import _fast_passwords, client_for, make_user, users  # noqa: F401
from tests.worker.conftest import handled, scratch, start_worker, worker_env, wt_dir  # noqa: F401

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """``/metrics`` output read by prometheus_client's own parser: {(sample name, sorted labels): value}."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """One sample's value, or None if absent."""
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def scrape(client_for) -> Callable[..., Samples]:  # noqa: F811 (the fixture imported above)
    """Factory: GET /metrics as a viewer, check 200, return the parsed samples."""
    from django.urls import reverse

    viewer = client_for("viewer")

    def get() -> Samples:
        response = viewer.get(reverse("queues:metrics"))
        assert response.status_code == 200, response.content
        return parse(response.content.decode())

    return get
