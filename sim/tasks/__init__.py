"""Tabletop tasks, one file each; ``TASKS`` maps a task name to its class."""

from __future__ import annotations

from sim.tasks.base import Evaluation, Task
from sim.tasks.pick import PickTask
from sim.tasks.push import PushTask
from sim.tasks.reach import ReachTask

TASKS: dict[str, type[Task]] = {t.name: t for t in (ReachTask, PushTask, PickTask)}

__all__ = ["TASKS", "Evaluation", "PickTask", "PushTask", "ReachTask", "Task"]
