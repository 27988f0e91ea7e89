"""Human units: one parser (queues/validation.py) and one formatter (queues/formatting.py) for durations and
sizes, so what a page or a command shows can be typed back; action names for the audit log."""

from __future__ import annotations

import pytest

from queues import validation
from queues.formatting import ACTION_NAMES, action_name, display_kind, format_duration, format_size
from queues.permissions import Action


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("4d", 345600.0),
        ("1h 30m", 5400.0),
        ("4 d", 345600.0),
        ("500ms", 0.5),
        (" 2.5 ", 2.5),
        ("1D", 86400.0),
    ],
)
def test_durations_read_as_people_write_them(text, seconds):
    assert validation.parse_duration(text) == seconds


@pytest.mark.parametrize("seconds", [0.0, 0.5, 30.0, 90.0, 300.0, 5400.0, 86400.0, 345600.0, 93784.0, 31536000.0])
def test_a_shown_duration_reads_back_as_the_same_value(seconds):
    assert validation.parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("size", [16, 1000, 1024, 262144, 1048576, 16 * 1024 * 1024, 262145])
def test_a_shown_size_reads_back_as_the_same_value(size):
    assert validation.parse_size(format_size(size)) == size
    assert validation.parse_size(format_size(size).replace("KiB", " KiB").replace("MiB", " MiB")) == size


@pytest.mark.parametrize(
    "text",
    ["4x", "-1d", "1e400s", "1e400", "4\x00d", "\u0664d", "\u00b2s", "", "d", "1h-30m", "9" * 5000 + "d", "nan", "inf"],
)
def test_bad_durations_are_refused_with_the_value_named(text):
    with pytest.raises(validation.InvalidInput, match="invalid duration"):
        validation.parse_duration(text)


@pytest.mark.parametrize("text", ["256x", "-1KiB", "1.5MiB", "\u0664KiB", "256 K iB", "1e3", "9" * 13])
def test_bad_sizes_are_refused_with_the_value_named(text):
    with pytest.raises(validation.InvalidInput, match="invalid size"):
        validation.parse_size(text)


def test_every_audited_action_has_a_name_in_words():
    assert set(ACTION_NAMES) == {a.value for a in Action}
    assert action_name("purge_queue") == "Purged queue"
    assert action_name("some_new_action") == "Some new action"  # never blank, never snake_case


def test_a_dead_letter_queue_is_called_one_whatever_its_ordering():
    assert display_kind("standard", is_dead_letter_queue=True) == "dead-letter"
    assert display_kind("fifo", is_dead_letter_queue=True) == "dead-letter"
    assert display_kind("fifo", is_dead_letter_queue=False) == "fifo"
