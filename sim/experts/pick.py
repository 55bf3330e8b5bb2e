"""Scripted expert for ``pick``: open above the cube, descend around it, close, lift.

The jaw line is aligned with one pair of the cube's faces (the one needing the least wrist
roll), so the fixed and the moving jaw close on flat faces. If the cube is not held after the
lift starts, the expert opens and tries again from above.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from sim.experts.base import Expert
from sim.tasks.pick import PickTask


def _cube_yaw(quat: np.ndarray) -> float:
    """Yaw (radians) of an upright cube from its quaternion ``(w, x, y, z)``."""
    w, x, y, z = quat
    return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))


class PickExpert(Expert):
    """Phases ``above`` -> ``descend`` -> ``close`` -> ``lift`` (-> ``regrasp``)."""

    open_percent = 90.0
    carry_radius = (0.15, 0.19)  # metres from the base axis the cube is carried within while lifting
    closed_percent = 0.0

    def __init__(self, env: gym.Env, **kwargs: Any) -> None:
        kwargs.setdefault("site", "grasp")  # waypoints are for the grasp point between the jaws
        super().__init__(env, **kwargs)

    def _reset_task(self) -> None:
        self.hover = float(self.rng.uniform(0.05, 0.07))  # above the grasp height, metres
        self.depth = float(self.rng.uniform(0.004, 0.008))  # grasp point above the cube centre
        self.close_steps = int(self.rng.integers(8, 12))
        self.lift_to = float(self.rng.uniform(0.09, 0.11))  # grasp point height at the end
        self.grasp_yaw: float | None = None

    def _yaw(self, cube: np.ndarray, quat: np.ndarray) -> float:
        natural = float(np.arctan2(cube[1], cube[0]) + np.pi / 2)
        face = _cube_yaw(quat)
        cands = face + np.arange(4) * (np.pi / 2)
        diffs = np.abs(np.angle(np.exp(1j * (cands - natural))))
        return float(cands[int(np.argmin(diffs))])

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        """Joint targets for this tick, robot units ``(J,)``."""
        task = self.env.task
        assert isinstance(task, PickTask)
        name = task.target
        cube = self.scene.object_position(name)
        adr = self.scene.object_qpos[name]
        quat = self.scene.data.qpos[adr + 3 : adr + 7]
        if self.phase == "":
            self.set_phase("above")
        if self.phase in ("above", "descend"):
            self.grasp_yaw = self._yaw(cube, quat)
        yaw = self.grasp_yaw if self.grasp_yaw is not None else self._yaw(cube, quat)
        grasp = np.array([cube[0], cube[1], cube[2] + self.depth])
        above = grasp + np.array([0.0, 0.0, self.hover])

        if self.phase == "above":
            reached = self.command_error(above) < 2e-3 and self.site_error(above) < 0.01
            if reached or (self.command_error(above) < 2e-3 and self.phase_steps > 40):
                self.set_phase("descend")
            return self.move_toward(above, yaw, self.open_percent)
        if self.phase == "descend":
            reached = self.command_error(grasp) < 1e-3 and self.site_error(grasp) < 0.006
            if reached or (self.command_error(grasp) < 1e-3 and self.phase_steps > 25):
                self.set_phase("close")
            return self.move_toward(grasp, yaw, self.open_percent, speed=0.15)
        if self.phase == "close":
            if self.phase_steps >= self.close_steps:
                self.set_phase("lift")
            return self.hold(self.closed_percent)
        if self.phase == "lift":
            held = float(np.linalg.norm(self.scene.grasp_position() - cube)) < 0.03
            if not held and self.phase_steps > 5:
                self.set_phase("regrasp")
            else:
                target = self._command.copy() if self._command is not None else self.scene.grasp_position()
                target[2] = self.lift_to
                # carry it to mid-reach, where the jaws-down arm can lift highest
                radius = float(np.hypot(target[0], target[1]))
                target[:2] *= float(np.clip(radius, *self.carry_radius)) / max(radius, 1e-9)
                return self.move_toward(target, yaw, self.closed_percent, speed=0.12)
        # regrasp: open, rise and start over
        target = self.scene.grasp_position()
        target[2] = max(target[2], cube[2] + self.depth + self.hover)
        if self.phase_steps > 8:
            self.set_phase("above")
        return self.move_toward(target, yaw, self.open_percent)
