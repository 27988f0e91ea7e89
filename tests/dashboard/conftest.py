"""Role fixtures for the dashboard tests: one logged-in client per role, and data factories."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

ROLES = {
    "viewer": "mq viewers",
    "operator": "mq operators",
    "purger": "mq purgers",
    "publisher": "mq publishers",
}


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    """Hashing six passwords per test with PBKDF2 would dominate the run time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_user(db) -> Callable[..., object]:
    """Factory: a user in the given role group (``None``: no permissions), optionally staff or superuser."""
    from django.contrib.auth.models import User

    from queues.permissions import ensure_role_groups

    groups = ensure_role_groups()

    def make(role: str | None, *, username: str | None = None, staff: bool = False, superuser: bool = False):
        name = username or (role or ("root" if superuser else "staffer" if staff else "nobody"))
        user = User.objects.create_user(name, password="pw-" + name, is_staff=staff or superuser,
                                        is_superuser=superuser)
        if role is not None:
            user.groups.add(groups[ROLES[role]])
        return User.objects.get(pk=user.pk)  # fresh: no stale permission cache

    return make


@pytest.fixture
def users(make_user) -> dict[str, object]:
    """One user per role, plus ``admin`` (superuser) and ``staff`` (staff, no permission)."""
    out = {role: make_user(role) for role in ROLES}
    out["admin"] = make_user(None, username="admin", superuser=True)
    out["staff"] = make_user(None, username="staff", staff=True)
    return out


@pytest.fixture
def client_for(users) -> Callable[[str], Client]:
    """Factory: a test client logged in as the user of a role (or ``"anonymous"``)."""

    def make(role: str, *, csrf: bool = False) -> Client:
        c = Client(enforce_csrf_checks=csrf)
        if role != "anonymous":
            c.force_login(users[role])
        return c

    return make


@pytest.fixture
def make_worker(db) -> Callable[..., object]:
    """Factory: a worker heartbeat row."""
    from queues.models import Worker

    counter = iter(range(1, 1_000_000))

    def make(queues: list[str], *, beat_ago: float = 0.0, state: str = "live", **fields):
        n = next(counter)
        now = timezone.now()
        return Worker.objects.create(
            name=f"host{n}:{1000 + n}:abc", host=f"host{n}", pid=1000 + n, queues=queues, state=state,
            started_at=now - timedelta(hours=1), last_beat_at=now - timedelta(seconds=beat_ago), **fields,
        )

    return make


@pytest.fixture
def make_sample(db) -> Callable[..., object]:
    """Factory: a QueueSample row ``ago`` seconds old."""
    from queues.models import QueueSample

    base = timezone.now()  # one clock for all samples of a test, so their spacing is exact

    def make(queue: str, *, ago: float, resolution: int = 1, **fields):
        return QueueSample.objects.create(
            queue_name=queue, at=base - timedelta(seconds=ago), resolution=resolution, **fields
        )

    return make
