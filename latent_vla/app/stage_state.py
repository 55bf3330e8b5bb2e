"""A run's record of its steps: ``<out>/<name>_state.json``, per step the command it ran, whether it
finished, its wall time (seconds) and when it finished (Unix seconds). ``latent-vla demo`` and
``latent-vla improve`` resume from it: a step that finished with the same command is not run again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from latent_vla.base.errors import UserError


class StageState:
    """The state file of one run folder; ``steps`` maps a step's name to its record.

    Args:
        path: the JSON file (read when it exists).

    Raises:
        UserError: the file exists but is not a state file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stages: dict[str, dict[str, Any]] = {}
        if path.is_file():
            try:
                self.stages = dict(json.loads(path.read_text())["stages"])
            except (ValueError, KeyError, TypeError) as exc:
                raise UserError(f"{path} is not a state file of ours ({exc}); remove it or give a new out=") from None

    def save(self) -> None:
        """Write the file (atomically: a crash leaves the old or the new state)."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": 1, "stages": self.stages}, indent=2))
        tmp.replace(self.path)

    def record(
        self, name: str, argv: list[str] | list[list[str]] | None, status: str, seconds: float | None = None
    ) -> None:
        """Record step ``name``'s command (or list of commands) and status (``started`` / ``done`` /
        ``failed``; with its wall time when done), then save."""
        rec: dict[str, Any] = {"argv": argv, "status": status}
        if seconds is not None:
            rec.update(seconds=round(seconds, 3), finished=time.time())
        self.stages[name] = rec
        self.save()

    def done_with(self, name: str, argv: list[str] | None) -> bool:
        """Whether step ``name`` finished with exactly this command."""
        rec = self.stages.get(name, {})
        return rec.get("status") == "done" and rec.get("argv") == argv
