"""The rules of the code's layout, checked on every run (docs/architecture.md describes the layout).

- no private name (``_x``) of one module is used by another;
- a module over 600 lines says at its top why it is one module;
- a function-local import says why it is deferred (a comment on its line or just above it).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 600


def _sources() -> list[Path]:
    paths = [*ROOT.joinpath("queues").rglob("*.py"), *ROOT.joinpath("mqadmin").rglob("*.py")]
    return sorted(p for p in paths if "migrations" not in p.parts)


def _private_uses(path: Path) -> list[str]:
    """``from queues… import _x`` and ``module._x`` where ``module`` was imported from our packages."""
    tree = ast.parse(path.read_text())
    modules: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("queues", "mqadmin")):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno} imports {alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(a.asname or a.name.split(".")[0] for a in node.names
                           if a.name.startswith(("queues", "mqadmin")))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_") and not node.attr.startswith("__")
                and node.attr != "_meta"):  # Django's public model metadata
            found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_no_private_name_crosses_a_module():
    found = [hit for path in _sources() for hit in _private_uses(path)]
    assert not found, f"make the name public (with a docstring) or move the caller: {found}"


def test_a_long_module_says_why_it_is_one():
    long = []
    for path in _sources():
        text = path.read_text()
        if text.count("\n") > MAX_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "one module" not in doc:
                long.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert not long, f"split these, or say in the module docstring why they are one module: {long}"


def _undocumented_deferred_imports(path: Path) -> list[str]:
    """Imports inside a function with no comment on their line or in the three lines above it."""
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import | ast.ImportFrom):
                i = sub.lineno - 1
                if not any("#" in line for line in lines[max(0, i - 3):i + 1]):
                    found.append(f"{path.name}:{sub.lineno}: {lines[i].strip()}")
    return found


def test_every_deferred_import_says_why():
    found = [hit for path in _sources() for hit in _undocumented_deferred_imports(path)]
    assert not found, f"move these imports to the top, or say on the line above why they wait: {found}"


def test_the_rules_catch_what_they_describe(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from queues.engine import connection, _hidden\n\n\ndef f():\n    import json\n"
                   "    return connection._cache, json, _hidden\n")
    assert len(_private_uses(bad)) == 2
    assert len(_undocumented_deferred_imports(bad)) == 1
    bad.write_text("def f():\n    import json  # deferred: for the test\n    return json\n")
    assert _undocumented_deferred_imports(bad) == []
