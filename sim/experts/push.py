"""Scripted expert for ``push``: get behind the cube, then push it along the line to the zone.

Closed loop: every tick the push line is recomputed from the cube's true position, so a cube
that turns or drifts is followed; when the pusher ends up off the line it lifts, re-approaches
and pushes again. Once the cube is well inside the zone the gripper lifts away.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.experts.base import Expert
from sim.tasks.push import PushTask

CUBE_HALF = 0.015  # metres
PUSHER_HALF = 0.011  # metres: half the width of the closed jaws


class PushExpert(Expert):
    """Phases ``above`` -> ``descend`` -> ``push`` (-> ``retreat`` and again) -> ``done``."""

    yaw_period = np.pi / 2  # the closed jaws are a near-square pusher
    push_height = 0.012  # tip height while pushing, metres
    travel_height = 0.05  # tip height while moving over the table, metres
    push_speed = 0.09  # metres per second
    done_distance = 0.018  # stop pushing once the cube centre is this close to the zone centre, metres

    def _reset_task(self) -> None:
        self.standoff = float(self.rng.uniform(0.035, 0.045))  # behind the cube face, metres
        self.lateral = float(self.rng.uniform(-0.003, 0.003))
        self.bite = float(self.rng.uniform(0.012, 0.018))  # how far ahead of contact the pusher aims
        self._u: np.ndarray | None = None

    def _line(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        task = self.env.task
        assert isinstance(task, PushTask) and task.zone is not None
        cube = self.scene.object_position(task.target)[:2]
        zone = self.scene.zone_position(task.zone)[:2]
        u = zone - cube
        u = u / max(float(np.linalg.norm(u)), 1e-9)
        return cube, zone, u

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        """Joint targets for this tick, robot units ``(J,)``."""
        task = self.env.task
        assert isinstance(task, PushTask)
        cube, zone, u = self._line()
        if self.phase == "push" and task.zone_distance() < 0.04 and self._u is not None:
            u = self._u  # near the zone the cube -> zone direction is ill-conditioned: keep the last one
        else:
            self._u = u
        n = np.array([-u[1], u[0]])
        yaw = float(np.arctan2(u[1], u[0]) + np.pi / 2)  # jaws across the push direction
        contact = CUBE_HALF + PUSHER_HALF
        start_xy = cube - u * (contact + self.standoff) + n * self.lateral
        tip = self.scene.tip_position()
        closed = 0.0

        if self.phase == "":
            self.set_phase("above")
        if self.phase != "done" and task.zone_distance() < self.done_distance:
            self.set_phase("done")

        if self.phase == "above":
            target = np.array([*start_xy, self.travel_height])
            reached = self.command_error(target) < 2e-3 and self.site_error(target) < 0.01
            if reached or (self.command_error(target) < 2e-3 and self.phase_steps > 40):
                self.set_phase("descend")
            return self.move_toward(target, yaw, closed)
        if self.phase == "descend":
            target = np.array([*start_xy, self.push_height])
            reached = self.command_error(target) < 1e-3 and self.site_error(target) < 0.008
            if reached or (self.command_error(target) < 1e-3 and self.phase_steps > 20):
                self.set_phase("push")
            return self.move_toward(target, yaw, closed)
        if self.phase == "push":
            rel = tip[:2] - cube
            along = float(np.dot(rel, u))  # negative: behind the cube
            across = float(np.dot(rel, n))
            if abs(across) > 0.02 or along > -0.6 * contact:
                self.set_phase("retreat")
            else:
                # chase a point just inside the cube on the current cube -> zone line: the pusher
                # slides sideways back onto the line as the cube drifts
                # off the line: mostly slide sideways, advance less; near the zone: slow down
                advance = self.bite * max(0.0, 1.0 - abs(across) / 0.012)
                goal = cube - u * (contact - advance)
                target = np.array([*goal, self.push_height])
                speed = self.push_speed * float(np.clip(task.zone_distance() / 0.04, 0.4, 1.0))
                return self.move_toward(target, yaw, closed, speed=speed)
        if self.phase == "retreat":
            back = self._command[:2] if self._command is not None else tip[:2]
            target = np.array([back[0], back[1], self.travel_height])
            if self.command_error(target) < 2e-3:
                self.set_phase("above")
            return self.move_toward(target, yaw, closed)
        # done: lift straight up away from the cube
        target = np.array([tip[0], tip[1], self.travel_height])
        return self.move_toward(target, yaw, closed, speed=0.1)
