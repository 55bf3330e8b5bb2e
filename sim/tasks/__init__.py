"""Tabletop tasks, one file each; ``TASKS`` maps a task name to its class."""

from __future__ import annotations

from sim.tasks.base import Evaluation, Task
from sim.tasks.reach import ReachTask

TASKS: dict[str, type[Task]] = {ReachTask.name: ReachTask}

__all__ = ["TASKS", "Evaluation", "ReachTask", "Task"]
