"""A host project made the way a newcomer would: ``startproject``, ``startapp``, then docs/quickstart.md.

What the test adds is only what any existing project already has (its database, its app in
``INSTALLED_APPS``, its login page, templates and 404 page, its static file serving); everything
mqadmin needs comes from the doc's marked snippets, applied literally.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.packaging import quickstart
from tests.packaging.conftest import HostVenv, PgServer, run

# Text only the host's own templates contain: seeing it proves mqadmin did not replace them.
HOST_BASE = "MYSITE-HOST-BASE-TEMPLATE"
HOST_LOGIN = "MYSITE-HOST-LOGIN-PAGE"
HOST_404 = "MYSITE-HOST-NOT-FOUND-PAGE"
USERNAME, PASSWORD = "boss", "pw-boss-7Hq"

HOST_TEMPLATES = {
    "templates/base.html": f"""<!doctype html>
<html><head><title>{{% block title %}}mysite{{% endblock %}}</title></head>
<body><header>{HOST_BASE}</header>{{% block content %}}{{% endblock %}}</body></html>
""",
    "templates/registration/login.html": f"""{{% extends "base.html" %}}
{{% block content %}}<h1>{HOST_LOGIN}</h1>
<form method="post" action="{{% url 'login' %}}">{{% csrf_token %}}
{{{{ form.username }}}} {{{{ form.password }}}}
<input type="hidden" name="next" value="{{{{ next }}}}"><button type="submit">Sign in</button></form>
{{% endblock %}}
""",
    "templates/404.html": f"""{{% extends "base.html" %}}{{% block content %}}<h1>{HOST_404}</h1>{{% endblock %}}
""",
}


def _host_settings(databases: dict) -> str:
    """What the host's settings.py already says before mqadmin arrives."""
    return f"""
# --- the host's own settings (tests/packaging/host.py): what the project had before mqadmin ---
DATABASES = {databases!r}
INSTALLED_APPS += ["orders"]
TEMPLATES[0]["DIRS"] = [BASE_DIR / "templates"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")  # how this host serves collectstatic's output
"""


HOST_URLS = """
# --- the host's own URLs (tests/packaging/host.py) ---
from django.urls import include  # noqa: E402

urlpatterns += [path("accounts/", include("django.contrib.auth.urls"))]
"""

HOST_ORDER_URL = """
# --- the host wires the view it wrote (tests/packaging/host.py) ---
from orders.views import place_order  # noqa: E402

urlpatterns += [path("orders/place/", place_order)]
"""

HOST_PYTEST_INI = "[pytest]\nDJANGO_SETTINGS_MODULE = mysite.settings\n"


@dataclass
class HostProject:
    """A startproject'ed site with mqadmin added by the quickstart, in ``venv``."""

    venv: HostVenv
    dir: Path
    mode: str  # "default" or "dedicated" (the queue database on its own alias)
    databases: dict[str, str]  # alias -> database name
    long_running: list[list[str]] = field(default_factory=list)  # the doc's worker and server commands
    outputs: dict[str, str] = field(default_factory=dict)  # the doc's one-shot command -> its output

    def command(self, line: str) -> list[str]:
        """A command line of the doc as argv in the host venv (``python`` and scripts from its ``bin``)."""
        args = shlex.split(line)
        if args[0] == "python":
            return [str(self.venv.python), *args[1:]]
        script = self.venv.bin / args[0]
        assert script.exists(), f"the quickstart runs {args[0]!r}, which the wheel's install does not provide"
        return [str(script), *args[1:]]

    def manage(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        """``python manage.py ARGS`` in the host project."""
        argv = [str(self.venv.python), "manage.py", *args]
        if check:
            return run(argv, cwd=self.dir, env=self.venv.env(), timeout=timeout)
        return subprocess.run(argv, cwd=self.dir, env=self.venv.env(), capture_output=True, text=True,
                              timeout=timeout)

    def shell(self, code: str) -> object:
        """Run ``code`` with ``manage.py shell -c``; it must print one JSON value on its last line."""
        out = self.manage("shell", "-c", code).stdout.strip().splitlines()
        assert out, "the shell script printed nothing"
        return json.loads(out[-1])

    def worker_command(self, queue: str) -> list[str]:
        """The doc's ``mq_worker QUEUE`` command."""
        for argv in self.long_running:
            if argv[-2:] == ["mq_worker", queue]:
                return list(argv)
        raise AssertionError(f"the quickstart has no `python manage.py mq_worker {queue}` step")

    def daphne_command(self) -> list[str]:
        """The doc's ``daphne ...`` command."""
        found = [argv for argv in self.long_running if Path(argv[0]).name == "daphne"]
        assert len(found) == 1, f"the quickstart should start daphne once, found {found}"
        return list(found[0])


def _is_long_running(argv: list[str]) -> bool:
    return Path(argv[0]).name == "daphne" or (len(argv) > 2 and argv[1:3] == ["manage.py", "mq_worker"])


def build_host(venv: HostVenv, base: Path, pg: PgServer, mode: str, created: list[str]) -> HostProject:
    """startproject + startapp + the host's own set-up + every quickstart step (``dedicated-*`` in that mode).

    The databases it creates are added to ``created`` as soon as they exist, for the caller to drop.
    """
    tag = uuid.uuid4().hex[:10]
    databases = {"default": f"hostproj_{tag}"}
    if mode == "dedicated":
        databases["queues"] = f"hostq_{tag}"
    for name in databases.values():
        pg.create(name)
        created.append(name)
    run([venv.bin / "django-admin", "startproject", "mysite"], cwd=base, env=venv.env())
    host = HostProject(venv, base / "mysite", mode, databases)
    host.manage("startapp", "orders")

    settings, urls = host.dir / "mysite" / "settings.py", host.dir / "mysite" / "urls.py"
    with settings.open("a") as f:
        f.write(_host_settings({"default": pg.django_database(databases["default"])}))
    with urls.open("a") as f:
        f.write(HOST_URLS)
    for rel, text in HOST_TEMPLATES.items():
        (host.dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (host.dir / rel).write_text(text)
    (host.dir / "pytest.ini").write_text(HOST_PYTEST_INI)

    # Files first, in the doc's order; then the commands (the dedicated set-up's migrations before the
    # rest, since `mq_queue create` needs mqadmin's tables on the queue database).
    runs: list[str] = []
    dedicated_runs: list[str] = []
    for step in quickstart.steps():
        if step.action.startswith("dedicated-") and mode != "dedicated":
            continue
        action = step.action.removeprefix("dedicated-")
        if action in ("append", "write"):
            text = step.text
            if step.action == "dedicated-append":
                assert text.count("{...}") == 1, "the dedicated set-up should leave one `{...}` for the database"
                text = text.replace("{...}", repr(pg.django_database(databases["queues"])))
            target = host.dir / step.path
            assert action == "write" or target.exists(), f"quickstart line {step.line}: {step.path} does not exist"
            with target.open("a" if action == "append" else "w") as f:
                f.write(("\n" if action == "append" else "") + text)
        elif action == "run":
            (dedicated_runs if step.action == "dedicated-run" else runs).extend(
                c for c in step.commands if not c.startswith("pip ")  # installed by the host_venv fixture
            )
    with urls.open("a") as f:
        f.write(HOST_ORDER_URL)

    for line in [*dedicated_runs, *runs]:
        argv = host.command(line)
        if _is_long_running(argv):
            host.long_running.append(argv)
            continue
        proc = run(argv, cwd=host.dir, env=venv.env(), timeout=300)
        host.outputs[line] = proc.stdout + proc.stderr

    # What the host does to deploy: its static files, and a user to look at the dashboard.
    host.manage("collectstatic", "--noinput")
    host.shell(
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_superuser({USERNAME!r}, 'boss@example.com', {PASSWORD!r}); print(1)"
    )
    return host
