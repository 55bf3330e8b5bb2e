"""Shared machinery of the scripted experts: Cartesian waypoints, speed limits, IK, action noise.

An expert reads the true simulator state through ``env.unwrapped`` (allowed for experts only,
docs/architecture.md section 2) and returns absolute joint targets in robot units.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import gymnasium as gym
import numpy as np

from sim.env import SO101Env
from sim.experts.ik import DLSIK, down_rotation
from sim.scene import SO101Scene


class Expert(ABC):
    yaw_period: float = np.pi
    """Jaw yaws this far apart count as the same grip (pi: the jaw line; pi/2 for a square pusher)."""

    """A scripted controller for one task: ``reset(seed)`` then ``act(obs)`` each control tick.

    Motion model: a commanded gripper point moves toward the current waypoint at most
    ``speed / fps`` metres per tick; damped least squares IK turns it (plus "jaws down at yaw")
    into arm joint targets. Per-episode diversity comes from a random speed, small waypoint
    offsets and Gaussian joint-target noise (``noise_deg``), all drawn from the expert's own
    generator seeded by :meth:`reset`.

    Args:
        env: the env (any wrapper of an :class:`SO101Env`).
        noise_deg: standard deviation of the joint-target noise, degrees (0 for a clean expert).
        speed_range: range of the per-episode Cartesian speed, metres per second.
        site: scene site the waypoints are for (``"tip"`` or ``"grasp"``).
    """

    def __init__(
        self,
        env: gym.Env,
        noise_deg: float = 0.5,
        speed_range: tuple[float, float] = (0.2, 0.3),
        site: str = "tip",
    ) -> None:
        unwrapped = env.unwrapped
        if not isinstance(unwrapped, SO101Env):
            raise TypeError(f"experts drive SO101Env, got {type(unwrapped).__name__}")
        self.env: SO101Env = unwrapped
        self.scene: SO101Scene = unwrapped.scene
        self.spec = unwrapped.spec_robot
        self.noise_deg = float(noise_deg)
        self.speed_range = speed_range
        self.ik = DLSIK(self.scene, site=site)
        self.site = site
        self.rng = np.random.default_rng()
        self.speed = float(np.mean(speed_range))
        self._command: np.ndarray | None = None  # commanded site position, metres (3,)
        self._q_arm: np.ndarray | None = None  # last IK solution, radians (5,)
        self._yaw_prev: float | None = None  # last commanded jaw yaw, radians
        self.phase = ""
        self.phase_steps = 0

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode (call after ``env.reset``); ``seed`` fixes the expert's noise."""
        self.rng = np.random.default_rng(seed)
        self.speed = float(self.rng.uniform(*self.speed_range))
        self._command = None
        self._q_arm = None
        self._yaw_prev = None
        self.phase = ""
        self.phase_steps = 0
        self._reset_task()

    def resync(self, max_gap: float = 0.0) -> bool:
        """Forget the commanded point when it is more than ``max_gap`` metres from the measured site.

        The expert integrates its own commanded point, so it follows its plan whatever the arm does;
        after another controller moved the arm (exploration, a brain) that point can be far away and
        the next action a jump. Forgotten, the next :meth:`act` restarts from where the arm is (the
        phase machine is kept). Returns whether it forgot.
        """
        if self._command is None or float(np.linalg.norm(self._command - self._site_position())) <= max_gap:
            return False
        self._command = None
        self._q_arm = None
        return True

    @abstractmethod
    def _reset_task(self) -> None:
        """Per-episode set-up of a task expert (waypoint offsets and so on)."""

    @abstractmethod
    def act(self, obs: dict[str, Any]) -> np.ndarray:
        """Joint targets for this tick, robot units ``(J,)``."""

    # -- helpers for subclasses ----------------------------------------------------------------
    def _site_position(self) -> np.ndarray:
        return self.scene.tip_position() if self.site == "tip" else self.scene.grasp_position()

    def set_phase(self, phase: str) -> None:
        """Switch to a new phase and restart its step counter."""
        if phase != self.phase:
            self.phase = phase
            self.phase_steps = 0

    def command_error(self, waypoint: np.ndarray) -> float:
        """Distance from the commanded point to ``waypoint``, metres."""
        if self._command is None:
            return float(np.linalg.norm(self._site_position() - waypoint))
        return float(np.linalg.norm(self._command - waypoint))

    def site_error(self, waypoint: np.ndarray) -> float:
        """Distance from the measured site to ``waypoint``, metres."""
        return float(np.linalg.norm(self._site_position() - waypoint))

    def move_toward(self, waypoint: np.ndarray, yaw: float, gripper: float, speed: float | None = None) -> np.ndarray:
        """Joint targets (robot units, ``(J,)``) one speed-limited step toward ``waypoint``.

        Args:
            waypoint: target site position, metres ``(3,)``.
            yaw: jaw-opening direction in the table plane, radians (jaws point down).
            gripper: gripper opening, percent 0..100.
            speed: Cartesian speed for this step, metres per second (default: the episode's).
        """
        self.phase_steps += 1
        if self._command is None:
            self._command = self._site_position()
        if self._q_arm is None:
            self._q_arm = self.scene.data.qpos[self.scene.qpos_ids[:5]].copy()
        step = (self.speed if speed is None else speed) / self.spec.fps
        delta = np.asarray(waypoint, dtype=np.float64) - self._command
        dist = float(np.linalg.norm(delta))
        self._command = self._command + (delta if dist <= step else delta * (step / dist))
        q_arm, _ = self.ik.solve(self._q_arm, self._command, down_rotation(self._closest_yaw(yaw)))
        self._q_arm = q_arm
        q = np.concatenate([q_arm, [0.0]])
        action = self.spec.from_sim(q)
        action[-1] = gripper
        if self.noise_deg > 0:
            action[:5] += self.rng.normal(0.0, self.noise_deg, 5)
        return np.clip(action, self.spec.lower, self.spec.upper).astype(np.float32)

    def _closest_yaw(self, yaw: float) -> float:
        """The equivalent of ``yaw`` (modulo ``yaw_period``) to command, radians.

        Continuity first: the candidate nearest the previously commanded yaw, among those that
        keep the wrist roll within +-150 degrees; the first choice of an episode needs the least
        roll. With the jaws down, opening yaw = pan + pi/2 - roll (checked numerically).
        """
        pan = float(self.scene.data.qpos[self.scene.qpos_ids[0]])
        cands = yaw + self.yaw_period * np.arange(-4, 5)
        rolls = np.abs(np.angle(np.exp(1j * (pan + np.pi / 2 - cands))))
        valid = rolls < np.radians(150.0)
        if self._yaw_prev is None or not np.any(valid):
            best = float(cands[int(np.argmin(rolls))])
        else:
            jumps = np.abs(cands - self._yaw_prev)
            jumps[~valid] = np.inf
            best = float(cands[int(np.argmin(jumps))])
        self._yaw_prev = best
        return best

    def hold(self, gripper: float) -> np.ndarray:
        """Keep the commanded point, set the gripper opening (percent)."""
        if self._command is None:
            self._command = self._site_position()
        return self.move_toward(self._command, self._last_yaw(), gripper)

    def _last_yaw(self) -> float:
        rot = self.scene.gripper_rotation()
        return float(np.arctan2(rot[1, 1], rot[0, 1]))
