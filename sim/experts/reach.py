"""Scripted expert for ``reach``: over the named object, then down until the tip touches it."""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.experts.base import Expert
from sim.tasks.reach import ReachTask


class ReachExpert(Expert):
    """Two waypoints: ``hover`` (4-6 cm above the object's top) then ``touch`` (tip just above it)."""

    def _reset_task(self) -> None:
        self.hover = float(self.rng.uniform(0.04, 0.06))
        self.offset = self.rng.uniform(-0.004, 0.004, 2)
        self.gripper = float(self.rng.uniform(5.0, 40.0))

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        """Joint targets for this tick, robot units ``(J,)``."""
        task = self.env.task
        assert isinstance(task, ReachTask)
        centre = self.scene.object_position(task.target)
        top = centre[2] + self.scene.object_half_height(task.target)
        xy = centre[:2] + self.offset
        yaw = float(np.arctan2(xy[1], xy[0]) + np.pi / 2)
        touch = np.array([xy[0], xy[1], top + 0.004])
        hover = touch + np.array([0.0, 0.0, self.hover])
        if self.phase in ("", "hover"):
            self.set_phase("hover")
            if self.command_error(hover) < 1e-3:
                self.set_phase("touch")
        target = hover if self.phase == "hover" else touch
        return self.move_toward(target, yaw, self.gripper)
