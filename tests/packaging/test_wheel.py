"""The distributions: what the wheel and the sdist hold, and what installing the wheel costs."""

from __future__ import annotations

import re
import tarfile
import zipfile
from email.parser import Parser

import pytest

from tests.packaging import quickstart
from tests.packaging.conftest import Dists, HostVenv

APP_FILES = {
    "queues/__init__.py", "queues/apps.py", "queues/asgi.py", "queues/routing.py", "queues/routers.py",
    "queues/testing.py", "queues/checks.py", "queues/py.typed", "queues/migrations/0001_initial.py",
    "queues/management/commands/mq_worker.py", "queues/management/commands/mq_queue.py",
    "queues/templates/queues/base.html", "queues/templates/queues/overview.html",
    "queues/templates/queues/queue_detail.html", "queues/templates/queues/partials/live_scripts.html",
    "queues/static/queues/live.js", "queues/static/queues/charts.js", "queues/static/queues/dashboard.css",
}
CHART_FILES = {
    "queues/static/queues/vendor/uplot/uPlot.iife.min.js",
    "queues/static/queues/vendor/uplot/uPlot.min.css",
    "queues/static/queues/vendor/uplot/LICENSE",
}


def _wheel_names(dists: Dists, which: str = "wheel") -> set[str]:
    with zipfile.ZipFile(getattr(dists, which)) as z:
        return set(z.namelist())


def test_wheel_holds_the_app_its_templates_static_files_and_charts(dists: Dists) -> None:
    names = _wheel_names(dists)
    assert APP_FILES <= names, sorted(APP_FILES - names)
    assert CHART_FILES <= names, sorted(CHART_FILES - names)
    with zipfile.ZipFile(dists.wheel) as z:
        chart = z.read("queues/static/queues/vendor/uplot/uPlot.iife.min.js")
    assert len(chart) > 20_000 and b"uPlot" in chart, "the chart library in the wheel is not uPlot's build"


def test_wheel_holds_nothing_of_the_demo_site_tests_or_tools(dists: Dists) -> None:
    names = _wheel_names(dists)
    top = {n.split("/", 1)[0] for n in names}
    assert top == {"queues", dists.wheel.name.split("-py3")[0] + ".dist-info"}, sorted(top)
    assert not [n for n in names if re.search(r"(^|/)(mqadmin|tests|bench|node_modules|__pycache__)/", n)]
    commands = {n.rsplit("/", 1)[1] for n in names if "/management/commands/" in n}
    assert "mq_demo.py" not in commands and "mq_db.py" not in commands, sorted(commands)
    # No root-level template that could shadow a host's: everything lives under a queues/ (or admin/queues/) folder.
    templates = [n.split("/templates/", 1)[1] for n in names if "/templates/" in n]
    assert templates and all(t.startswith(("queues/", "admin/queues/")) for t in templates), templates


def test_wheel_metadata_names_the_distribution_dependencies_and_extras(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as z:
        meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(meta_name).decode())
    assert meta["Name"] == "django-mqadmin"
    requires = meta.get_all("Requires-Dist")
    base = sorted(r.split(">=")[0].lower() for r in requires if "extra ==" not in r)
    assert base == ["channels", "cronsim", "django", "psycopg"], requires
    # The quickstart lists every extra there is, and no other.
    doc = quickstart.DOC.read_text()
    listed = re.search(r"^Extras: (.*?)\. Without extras", doc, re.S | re.M)
    assert listed, "docs/quickstart.md should list the extras in a paragraph starting 'Extras:'"
    named = set(re.findall(r"(?:^|, )`(\w+)`", listed[1].replace("\n", " ")))
    assert named == set(meta.get_all("Provides-Extra")), (named, meta.get_all("Provides-Extra"))


def test_wheel_built_from_the_sdist_equals_the_wheel_built_from_the_tree(dists: Dists) -> None:
    """The sdist carries the chart files, so building from it needs no node_modules and no npm."""
    with tarfile.open(dists.sdist) as t:
        sdist_names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"_vendor/uplot/uPlot.iife.min.js", "_vendor/uplot/uPlot.min.css", "_vendor/uplot/LICENSE"} <= sdist_names
    assert not [n for n in sdist_names if n.startswith(("node_modules/", "tests/", "mqadmin/", "bench/"))]

    def strip_record(names: set[str]) -> set[str]:
        return {n for n in names if not n.endswith("/RECORD")}

    assert strip_record(_wheel_names(dists)) == strip_record(_wheel_names(dists, "tree_wheel"))
    assert "npm ci" not in dists.log and "front-end packages" not in dists.log, dists.log[-2000:]


def _figure(text: str, pattern: str) -> float:
    m = re.search(pattern, text)
    assert m, f"docs/quickstart.md's size paragraph should match {pattern!r}:\n{text}"
    return float(m[1])


def test_installed_size_in_the_quickstart_is_the_measured_one(dists: Dists, host_venv: HostVenv) -> None:
    """The doc's "What gets installed" figures are the ones measured here (within 15%: dependencies move)."""
    (size,) = [s for s in quickstart.steps() if s.action == "size"]
    text = " ".join(size.text.split())
    assert dists.wheel.name in text, f"the doc should name the wheel {dists.wheel.name}"
    measured = host_venv.sizes
    assert _figure(text, r"is about ([\d.]+) KB") * 1e3 == pytest.approx(measured["wheel_bytes"], rel=0.15), measured
    assert _figure(text, r"mqadmin itself takes about ([\d.]+) MB") * 1e6 == pytest.approx(
        measured["queues_package_bytes"], rel=0.15), measured
    assert _figure(text, r"grows by about ([\d.]+) MB") * 1e6 == pytest.approx(
        measured["venv_growth_bytes"], rel=0.15), measured
