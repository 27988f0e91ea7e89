"""Login throttling (django-axes): the site's login and the admin's lock a username out per address."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

LOGIN_URLS = ["login", "admin:login"]


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user("ops", password="right-password", is_staff=True)


def _attempt(client, url_name: str, password: str, **extra):
    return client.post(reverse(url_name), {"username": "ops", "password": password}, **extra)


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("url_name", LOGIN_URLS)
def test_wrong_passwords_lock_the_login_and_the_right_one_is_then_refused(client, settings, operator, url_name):
    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _attempt(client, url_name, f"guess-{n}").status_code == 200  # the form again, with its error
    locked = _attempt(client, url_name, "guess-last")
    assert locked.status_code == 429
    right = _attempt(client, url_name, "right-password")
    assert right.status_code == 429
    assert b"Too many failed logins" in right.content and b"Try again in" in right.content
    assert not _logged_in(client)


@pytest.mark.parametrize("url_name", LOGIN_URLS)
def test_the_right_password_works_again_after_the_cool_off(client, settings, operator, url_name):
    from axes.models import AccessAttempt

    for n in range(settings.AXES_FAILURE_LIMIT):
        _attempt(client, url_name, f"guess-{n}")
    assert _attempt(client, url_name, "right-password").status_code == 429
    # The lockout window passes: the failures are now older than the cool-off.
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time
                                 - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    response = _attempt(client, url_name, "right-password")
    assert response.status_code == 302
    assert _logged_in(client)


def test_a_lockout_from_one_address_does_not_lock_out_the_operator_elsewhere(client, settings, operator):
    for n in range(settings.AXES_FAILURE_LIMIT):
        _attempt(client, "login", f"guess-{n}", REMOTE_ADDR="203.0.113.66")
    assert _attempt(client, "login", "right-password", REMOTE_ADDR="203.0.113.66").status_code == 429
    assert _attempt(client, "login", "right-password", REMOTE_ADDR="198.51.100.7").status_code == 302


def test_a_forged_forwarded_for_header_does_not_dodge_the_lockout(client, settings, operator):
    # No proxy configured: X-Forwarded-For is the client's own say-so and must not change its address.
    for n in range(settings.AXES_FAILURE_LIMIT):
        _attempt(client, "login", f"guess-{n}", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    response = _attempt(client, "login", "right-password", HTTP_X_FORWARDED_FOR="192.0.2.200")
    assert response.status_code == 429 and not _logged_in(client)


def test_behind_a_proxy_the_lockout_follows_the_client_not_the_proxy(client, settings, operator):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    for n in range(settings.AXES_FAILURE_LIMIT):
        _attempt(client, "login", f"guess-{n}", HTTP_X_FORWARDED_FOR="203.0.113.66", **proxy)
    attacker = _attempt(client, "login", "right-password", HTTP_X_FORWARDED_FOR="203.0.113.66", **proxy)
    assert attacker.status_code == 429
    # The same proxy, another client: the operator logs in.
    assert _attempt(client, "login", "right-password", HTTP_X_FORWARDED_FOR="198.51.100.7", **proxy).status_code == 302
