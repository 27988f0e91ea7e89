"""The handler-duration histogram: however observations are split across workers and folded, the
sums are those of one histogram that saw them all."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from queues.metrics import durations

seconds = st.floats(min_value=0, max_value=1000, allow_nan=False)
observation = st.tuples(st.sampled_from(["orders", "mail"]), st.sampled_from(["a.h", "b.h"]), seconds)


@pytest.mark.property
@given(st.lists(st.lists(observation, max_size=30), max_size=6))
def test_merged_worker_histograms_equal_one_histogram(workers: list[list[tuple[str, str, float]]]) -> None:
    one = durations.DurationHistogram()
    snapshots = []
    for observations in workers:
        h = durations.DurationHistogram()
        for queue, handler, x in observations:
            h.observe(queue, handler, x)
            one.observe(queue, handler, x)
        snapshots.append(h.snapshot())
    merged = {(s.queue, s.handler): s for s in durations.merge(snapshots)}
    expected = {(s.queue, s.handler): s for s in durations.merge([one.snapshot()])}
    assert merged.keys() == expected.keys()
    for key, s in merged.items():
        assert s.counts == expected[key].counts
        assert s.count == sum(s.counts)
        assert s.sum == pytest.approx(expected[key].sum)
        le = durations.cumulative(s.counts)
        assert le == sorted(le) and le[-1] == s.count
        for bound, below in zip(durations.BUCKETS, le, strict=False):
            observed = [x for w in workers for q, h, x in w if (q, h) == key]
            assert below == sum(1 for x in observed if x <= bound)
