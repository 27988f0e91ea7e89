"""The marked snippets of ``docs/quickstart.md``: the packaging test applies them literally.

A fenced block preceded by an HTML comment is a step:

- ``<!-- quickstart:run -->``: shell commands, one a line;
- ``<!-- quickstart:append PATH -->`` / ``<!-- quickstart:write PATH -->``: append the block to (or
  write it as) that file of the project made by ``django-admin startproject mysite``;
- ``dedicated-append`` / ``dedicated-run``: the same, only for the dedicated queue database set-up.

Unknown actions and markers without a block after them are errors, so a typo in the doc fails the
test instead of silently skipping a step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "quickstart.md"
ACTIONS = {"run", "append", "write", "dedicated-append", "dedicated-run", "size"}
MARKER = re.compile(r"^<!-- quickstart:(?P<action>[\w-]+)(?: (?P<path>\S+))? -->\s*$")
FENCE = re.compile(r"^```(?P<lang>\w*)\s*$")


@dataclass(frozen=True)
class Step:
    """One marked block of the doc: ``action`` (``run``, ``append``...), ``path`` for file steps."""

    action: str
    path: str | None
    text: str
    line: int

    @property
    def commands(self) -> list[str]:
        """The command lines of a ``run`` block."""
        return [c.strip() for c in self.text.splitlines() if c.strip() and not c.strip().startswith("#")]


def steps(doc: Path = DOC) -> list[Step]:
    """Every marked block of ``doc``, in order (``size`` markers carry the paragraph that follows)."""
    lines = doc.read_text().splitlines()
    found: list[Step] = []
    i = 0
    while i < len(lines):
        m = MARKER.match(lines[i])
        if not m:
            if "quickstart:" in lines[i]:
                raise ValueError(f"{doc.name}:{i + 1}: malformed quickstart marker {lines[i]!r}")
            i += 1
            continue
        action, path = m["action"], m["path"]
        if action not in ACTIONS:
            raise ValueError(f"{doc.name}:{i + 1}: unknown quickstart action {action!r}")
        if action.endswith(("append", "write")) != (path is not None):
            raise ValueError(f"{doc.name}:{i + 1}: {action!r} takes a path exactly when it writes a file")
        if action == "size":
            end = next((j for j in range(i + 1, len(lines)) if not lines[j].strip()), len(lines))
            found.append(Step(action, None, "\n".join(lines[i + 1:end]), i + 1))
            i = end
            continue
        if i + 1 >= len(lines) or not FENCE.match(lines[i + 1]):
            raise ValueError(f"{doc.name}:{i + 1}: the marker must be followed directly by a fenced block")
        end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"{doc.name}:{i + 2}: unterminated code block")
        found.append(Step(action, path, "\n".join(lines[i + 2:end]) + "\n", i + 1))
        i = end + 1
    return found
