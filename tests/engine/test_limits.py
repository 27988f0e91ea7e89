"""Each limit of a queue setting has one home, the engine's: the dashboard's forms take theirs from it."""

from __future__ import annotations

import pytest

from queues.engine.errors import InvalidQueueSettings
from queues.engine.validation import (
    INT_MAX,
    MAX_DEDUP_WINDOW,
    MAX_DELAY,
    MAX_HEALTH_THRESHOLD,
    MAX_MESSAGE_SIZE,
    MAX_RETENTION,
    MAX_VISIBILITY_TIMEOUT,
    MIN_HEALTH_THRESHOLD,
    MIN_MESSAGE_SIZE,
    MIN_RETENTION,
    MIN_VISIBILITY_TIMEOUT,
    clean_settings,
)
from queues.forms import QueueCreateForm, QueueSettingsForm

# setting -> (lowest accepted, highest accepted, a step past either end)
BOUNDS = {
    "visibility_timeout": (MIN_VISIBILITY_TIMEOUT, MAX_VISIBILITY_TIMEOUT, 0.01),
    "default_delay": (0, MAX_DELAY, 1),
    "retention": (MIN_RETENTION, MAX_RETENTION, 1),
    "dedup_window": (0, MAX_DEDUP_WINDOW, 1),
    "max_message_size": (MIN_MESSAGE_SIZE, MAX_MESSAGE_SIZE, 1),
    "max_receives": (0, INT_MAX, 1),
    "health_backing_up_after": (MIN_HEALTH_THRESHOLD, MAX_HEALTH_THRESHOLD, 0.5),
    "health_stalled_after": (MIN_HEALTH_THRESHOLD, MAX_HEALTH_THRESHOLD, 0.5),
    "health_dead_letter_window": (MIN_HEALTH_THRESHOLD, MAX_HEALTH_THRESHOLD, 0.5),
    "health_retention_warning": (MIN_HEALTH_THRESHOLD, MAX_HEALTH_THRESHOLD, 0.5),
}


@pytest.mark.parametrize("setting", sorted(BOUNDS))
def test_the_settings_form_bounds_each_setting_where_the_engine_does(setting):
    low, high, step = BOUNDS[setting]
    field = QueueSettingsForm.base_fields[setting]
    assert (field.min_value, field.max_value) == (low, high)
    assert clean_settings({setting: low}) and clean_settings({setting: high})
    for outside in (low - step, high + step):
        with pytest.raises(InvalidQueueSettings):
            clean_settings({setting: outside})


def test_the_create_form_shares_the_visibility_timeout_bounds():
    field = QueueCreateForm.base_fields["visibility_timeout"]
    assert (field.min_value, field.max_value) == (MIN_VISIBILITY_TIMEOUT, MAX_VISIBILITY_TIMEOUT)
