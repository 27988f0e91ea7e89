"""mqadmin's queues: ``import queues; queues.send("orders", {...})``.

The public API is loaded lazily so that ``import queues`` works before Django's apps are ready
(Django imports this package to find the app).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    if name.startswith("__") or name in ("engine", "worker", "models"):
        raise AttributeError(name)
    engine = importlib.import_module("queues.engine")

    try:
        value = getattr(engine, name)
    except AttributeError:
        pass
    else:
        # The engine's submodules are not the API: `from queues import validation` means queues/validation.py.
        if not isinstance(value, ModuleType):
            return value
    if name in ("handler", "register"):
        return getattr(importlib.import_module("queues.worker.registry"), name)
    if name in ("schedule", "unschedule", "pause_schedule", "resume_schedule", "run_schedule_now"):
        module = importlib.import_module("queues.schedules")
        return getattr(module, "run_now" if name == "run_schedule_now" else name)
    if name in ("periodic",):
        return importlib.import_module("queues.tasks.periodic").periodic
    if name in ("Reject", "Retry"):
        return getattr(importlib.import_module("queues.worker.errors"), name)
    raise AttributeError(f"module 'queues' has no attribute {name!r}")
