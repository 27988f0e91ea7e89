"""The engine's public surface: an async twin for every database function, no private names across modules."""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
from pathlib import Path

from queues.engine import aio, connection, delivery, operations, queues, validation

# `queues.engine.redrive` is the function; the module is reached by its full path.
redrive = importlib.import_module("queues.engine.redrive")

ENGINE = Path(aio.__file__).resolve().parent
ROOT = ENGINE.parent.parent

# Functions that never touch the database have no twin: awaiting them would only add a thread hop.
NO_TWIN = {
    "validate_name": "checks a string",
    "parse_receipt": "splits a string",
    "as_dict": "converts a dataclass",
    "clear_cache": "empties a dict in this process",
}


def _public_functions() -> list[str]:
    names = []
    for module in (connection, delivery, operations, queues, redrive, validation):
        names += [n for n in module.__all__ if inspect.isfunction(getattr(module, n))]
    return sorted(names)


def test_every_public_engine_function_has_an_async_twin():
    functions = _public_functions()
    assert len(functions) >= 37, functions  # the 36 of the old core.py, and start_redrive
    missing = [f for f in functions if f not in NO_TWIN and "a" + f not in aio.__all__]
    assert not missing, f"no async twin for {missing}: add a{missing[0]} to queues/engine/aio.py"
    for name in aio.__all__:
        assert asyncio.iscoroutinefunction(getattr(aio, name)), f"{name} is not awaitable"
        assert name[1:] in functions, f"{name} twins no public function"
    assert set(NO_TWIN) <= set(functions)


def _private_imports(path: Path) -> list[str]:
    """``from queues… import _x`` and ``module._x`` where ``module`` was imported from queues."""
    tree = ast.parse(path.read_text())
    modules: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("queues"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno} imports {alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(a.asname or a.name.split(".")[0] for a in node.names if a.name.startswith("queues"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_no_private_name_crosses_a_module_of_the_engine_or_its_users():
    paths = [*sorted(ENGINE.glob("*.py")), ROOT / "queues" / "checks.py", ROOT / "queues" / "forms.py"]
    found = [hit for path in paths for hit in _private_imports(path)]
    assert not found, found
