"""Browser tests: Debian's Chromium driven by Playwright against a real daphne on the test database.

- The browser is ``/usr/bin/chromium`` (``apt-get install chromium``), never a Playwright download.
  Where it cannot be had the tests are skipped with a loud reason, and only there.
- Each test gets its own daphne process (``server``) serving committed data (``transactional_db``).
- Screenshots go to ``test-artifacts/`` (gitignored) for people to look at.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.servers import ROOT, Daphne

CHROMIUM = os.environ.get("MQADMIN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"

# Roles as the issue names them, as Django permissions (queues/permissions.py).
ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "viewer": ("view_dashboard",),
    "operator": ("view_dashboard", "operate_queues"),
    "nobody": (),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder drives a browser and is slow."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


def _why_no_browser() -> str | None:
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return (f"NO BROWSER: {CHROMIUM} is missing. Install Debian's Chromium (apt-get update && apt-get install -y "
                "chromium) or set MQADMIN_CHROMIUM; the dashboard's browser tests did NOT run")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"NO PLAYWRIGHT ({exc}): pip install -r requirements-dev.txt; the browser tests did NOT run"
    return None


@pytest.fixture(scope="module")
def browser(django_db_setup: None) -> Iterator[Any]:
    """One Chromium per test module.

    Playwright's sync API keeps an event loop running on this thread while it is open, so Django
    would refuse the (plain, synchronous) ORM calls of these tests and their database teardown:
    ``DJANGO_ALLOW_ASYNC_UNSAFE`` is set for exactly that span. Module scope, so no other test of the
    session ever runs beside that loop (async_to_sync would refuse to); started after the test
    database exists.
    """
    reason = _why_no_browser()
    if reason:
        print(f"\n{'!' * 100}\n{reason}\n{'!' * 100}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"
    try:
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture
def server(subprocess_env: dict[str, str]) -> Iterator[Daphne]:
    """daphne serving the app (and its static files) on the test database, sampling once a second."""
    server = Daphne(subprocess_env).start()
    yield server
    server.stop()
    server.discard_log()


@pytest.fixture
def make_user(transactional_db) -> Callable[..., Any]:
    """Factory: a user with a role's permissions (or a superuser); the password is ``pw-<username>``."""
    from django.contrib.auth.models import Permission, User

    def make(role: str, *, username: str | None = None) -> Any:
        name = username or role
        if role == "superuser":
            return User.objects.create_superuser(name, f"{name}@example.com", f"pw-{name}")
        user = User.objects.create_user(name, password=f"pw-{name}")
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label="queues", codename__in=ROLE_PERMISSIONS[role])
        )
        return user

    return make


@pytest.fixture
def make_queue(transactional_db) -> Callable[..., str]:
    """Factory: a queue with the given settings, committed (the server sees it); a name if none is given."""
    import queues  # deferred like the root conftest's: the app is imported once Django is set up

    counter = iter(range(1_000_000))

    def make(name: str | None = None, **settings: Any) -> str:
        name = name or f"q{next(counter)}"
        queues.create_queue(name, **settings)
        return name

    return make


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser context (cookies, storage) per test; it fails the test on any CSP violation.

    The server sends the production Content-Security-Policy (mqadmin/settings.py). Chromium reports
    whatever the policy blocked (an inline script, a style attribute, a socket) on the console, so
    every browser test also proves its pages work under the policy.
    """
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(15_000)
    violations: list[str] = []
    ctx.on("console", lambda message: violations.append(message.text)
           if "Content Security Policy" in message.text else None)
    yield ctx
    ctx.close()
    assert not violations, f"the page broke its Content-Security-Policy: {violations}"


@pytest.fixture
def login(context: Any, server: Daphne, make_user: Callable[..., Any]) -> Callable[..., Any]:
    """Factory: a page logged in through the login form as a new user of ``role``."""

    def log_in(role: str, *, username: str | None = None) -> Any:
        user = make_user(role, username=username)
        page = context.new_page()
        page.goto(f"{server.url}/accounts/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", f"pw-{user.username}")
        page.click("button[type=submit]")
        page.wait_for_load_state()
        assert "/accounts/login/" not in page.url, page.content()[:2000]
        return page

    return log_in


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``test-artifacts/`` (each run overwrites its files)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
