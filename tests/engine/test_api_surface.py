"""The engine's public surface: an async twin for every database function (the layout rules: tests/test_layout.py)."""

from __future__ import annotations

import asyncio
import importlib
import inspect

from queues.engine import aio, connection, delivery, expiry, operations, queues, validation

# `queues.engine.redrive` is the function; the module is reached by its full path.
redrive = importlib.import_module("queues.engine.redrive")
cancel = importlib.import_module("queues.engine.cancel")


# Functions that never touch the database have no twin: awaiting them would only add a thread hop.
NO_TWIN = {
    "validate_name": "checks a string",
    "parse_receipt": "splits a string",
    "as_dict": "converts a dataclass",
    "clear_cache": "empties a dict in this process",
}


def _public_functions() -> list[str]:
    names = []
    for module in (cancel, connection, delivery, expiry, operations, queues, redrive, validation):
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
