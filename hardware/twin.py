"""The MuJoCo twin: the simulated SO-101 behind LeRobot's ``Robot`` interface.

Same observation and action features as LeRobot's SO-101 follower (``"<joint>.pos"`` floats in
degrees / gripper percent, one ``(H, W, 3)`` uint8 image per camera), so the control loop, the
safety layer and every brain run on it unchanged before they meet a real arm. On top of the sim
engineer's :class:`sim.scene.SO101Scene` it adds what real hardware does to a controller:
latency, sensor noise, camera dropouts and serial timeouts (random, from the config, or injected
for a number of calls with :meth:`LatentVLATwin.inject_fault`), and a motor bus whose torque can
be disabled (the arm then goes limp under gravity).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from functools import cached_property
from typing import Any

import numpy as np
from lerobot.robots.robot import Robot
from lerobot.robots.utils import ensure_safe_goal_position

from hardware.config_twin import LatentVLATwinConfig
from latent_vla.base.robot_spec import get_robot_spec

logger = logging.getLogger(__name__)

FAULT_KINDS = ("serial_timeout", "camera_dropout", "missing_key", "send_timeout")


class TwinBus:
    """The twin's motor bus: connection and torque state, like LeRobot's ``MotorsBus``.

    Disabling torque zeroes the simulated position servos' gains, so the arm goes limp.
    """

    def __init__(self, twin: LatentVLATwin) -> None:
        self._twin = twin
        self.is_connected = False
        self.torque_enabled = False

    def connect(self) -> None:
        self.is_connected = True

    def enable_torque(self) -> None:
        self.torque_enabled = True
        self._twin._apply_torque(True)

    def disable_torque(self) -> None:
        self.torque_enabled = False
        self._twin._apply_torque(False)

    def disconnect(self, disable_torque: bool = True) -> None:
        if disable_torque:
            self.disable_torque()
        self.is_connected = False


class LatentVLATwin(Robot):
    """A LeRobot robot backed by MuJoCo physics (see :class:`~hardware.config_twin.LatentVLATwinConfig`)."""

    config_class = LatentVLATwinConfig
    name = "latent_vla_twin"

    def __init__(self, config: LatentVLATwinConfig) -> None:
        super().__init__(config)
        self.config = config
        self.spec = get_robot_spec(config.spec)
        if config.cameras:
            self.camera_sizes = {k: (int(v[0]), int(v[1])) for k, v in config.cameras.items()}
        else:
            self.camera_sizes = {c.name: (c.height, c.width) for c in self.spec.cameras}
        self.fps = float(config.fps or self.spec.fps)
        self.bus = TwinBus(self)
        self.scene: Any = None
        self.task: Any = None
        self.instruction = ""
        self.rng = np.random.default_rng(config.seed)
        self._pending_faults: Counter[str] = Counter()
        self.fault_counts: Counter[str] = Counter()
        self._last_advance = 0.0
        self._gains: tuple[np.ndarray, np.ndarray] | None = None
        self.last_task_evaluation: dict[str, Any] | None = None

    # -- features ------------------------------------------------------------------------------
    @cached_property
    def observation_features(self) -> dict[str, type | tuple]:
        """``{"<joint>.pos": float}`` then ``{camera: (H, W, 3)}``, like the SO-101 follower."""
        motors: dict[str, type | tuple] = {k: float for k in self.spec.action_keys}
        return motors | {cam: (h, w, 3) for cam, (h, w) in self.camera_sizes.items()}

    @cached_property
    def action_features(self) -> dict[str, type]:
        """``{"<joint>.pos": float}`` in motor order."""
        return {k: float for k in self.spec.action_keys}

    @property
    def is_connected(self) -> bool:
        return self.bus.is_connected and self.scene is not None

    @property
    def is_calibrated(self) -> bool:
        return True

    def calibrate(self) -> None:
        """Nothing to calibrate: the scene's joint zero is LeRobot's calibration midpoint."""

    def configure(self) -> None:
        """Enable torque (position servos on), as the SO follower's ``configure`` does."""
        self.bus.enable_torque()

    # -- connection ----------------------------------------------------------------------------
    def connect(self, calibrate: bool = True) -> None:
        """Build the scene (arm at home, task layout if configured) and switch the servos on."""
        if self.is_connected:
            raise RuntimeError(f"{self} is already connected")
        from sim.scene import SO101Scene

        h = max([64] + [hw[0] for hw in self.camera_sizes.values()])
        w = max([64] + [hw[1] for hw in self.camera_sizes.values()])
        scene = SO101Scene(self.spec, image_height=h, image_width=w)
        unknown = [c for c in self.camera_sizes if c not in scene.camera_ids]
        if unknown:
            scene.close()
            raise ValueError(f"twin cameras {unknown} are not in the scene; valid: {sorted(scene.camera_ids)}")
        scene.model.opt.timestep = 1.0 / (self.fps * scene.n_substeps)
        self.scene = scene
        self._gains = (scene.model.actuator_gainprm.copy(), scene.model.actuator_biasprm.copy())
        if self.config.task:
            from sim.tasks import TASKS

            if self.config.task not in TASKS:
                raise ValueError(f"unknown twin task {self.config.task!r}; valid: {sorted(TASKS)}")
            self.task = TASKS[self.config.task](scene)
            self.instruction = self.task.reset(self.rng)
            scene.forward()
        self.bus.connect()
        self.configure()
        self._last_advance = time.perf_counter()
        logger.info("%s connected", self)

    def disconnect(self) -> None:
        """Release the renderers; the servos go limp first when ``disable_torque_on_disconnect``."""
        if not self.is_connected:
            raise RuntimeError(f"{self} is not connected")
        self.last_task_evaluation = self.task_evaluation()
        self.bus.disconnect(self.config.disable_torque_on_disconnect)
        self.scene.close()
        logger.info("%s disconnected", self)

    # -- faults --------------------------------------------------------------------------------
    def inject_fault(self, kind: str, count: int = 1) -> None:
        """Make the next ``count`` reads (or sends, for ``send_timeout``) fail in this way.

        Kinds: ``serial_timeout`` (``get_observation`` raises ``ConnectionError``),
        ``camera_dropout`` (raises ``TimeoutError``), ``missing_key`` (the observation lacks a
        joint), ``send_timeout`` (``send_action`` raises ``ConnectionError``).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; valid: {FAULT_KINDS}")
        self._pending_faults[kind] += int(count)

    def _fault(self, kind: str, prob: float = 0.0) -> bool:
        if self._pending_faults[kind] > 0:
            self._pending_faults[kind] -= 1
        elif not (prob > 0 and self.rng.random() < prob):
            return False
        self.fault_counts[kind] += 1
        return True

    # -- physics -------------------------------------------------------------------------------
    def _apply_torque(self, on: bool) -> None:
        if self.scene is None or self._gains is None:
            return
        gain, bias = self._gains
        m = self.scene.model
        m.actuator_gainprm[:] = gain if on else 0.0
        m.actuator_biasprm[:] = bias if on else 0.0

    def _advance_realtime(self) -> None:
        now = time.perf_counter()
        steps = int((now - self._last_advance) * self.fps * self.scene.n_substeps)
        steps = min(steps, int(self.fps * self.scene.n_substeps))  # at most one second at once
        if steps > 0:
            import mujoco

            mujoco.mj_step(self.scene.model, self.scene.data, nstep=steps)
            self._last_advance += steps / (self.fps * self.scene.n_substeps)
        if now - self._last_advance > 1.0:  # fell far behind (debugger, suspend): drop the backlog
            self._last_advance = now

    def _check_connected(self) -> None:
        if not self.is_connected:
            raise RuntimeError(f"{self} is not connected; call connect() first")

    # -- the Robot interface -------------------------------------------------------------------
    def get_observation(self) -> dict[str, Any]:
        """Measured joints (robot units, plus noise) and camera images, like the SO-101 follower.

        Raises:
            ConnectionError: a (simulated) serial timeout.
            TimeoutError: a (simulated) camera that delivered no fresh frame.
        """
        self._check_connected()
        if self.config.latency_s:
            time.sleep(self.config.latency_s)
        if self.config.realtime:
            self._advance_realtime()
        if self._fault("serial_timeout", self.config.serial_timeout_prob):
            raise ConnectionError("Failed to sync read 'Present_Position' (simulated serial timeout)")
        q = self.scene.joint_positions()
        if self.config.joint_noise_std:
            q = q + self.rng.normal(0.0, self.config.joint_noise_std, q.shape)
        obs: dict[str, Any] = {k: float(v) for k, v in zip(self.spec.action_keys, q, strict=True)}
        if self._fault("missing_key"):
            obs.pop(self.spec.action_keys[int(self.rng.integers(self.spec.num_joints))])
        for cam, (h, w) in self.camera_sizes.items():
            if self._fault("camera_dropout", self.config.drop_frame_prob):
                raise TimeoutError(f"camera {cam!r}: no fresh frame (simulated dropout)")
            img = self.scene.render(cam, h, w)
            if self.config.image_noise_std:
                noisy = img.astype(np.float32) + self.rng.normal(0.0, self.config.image_noise_std, img.shape)
                img = np.clip(noisy, 0, 255).astype(np.uint8)
            obs[cam] = img
        return obs

    def send_action(self, action: dict[str, Any]) -> dict[str, float]:
        """Set position targets from ``{"<joint>.pos": value}`` (robot units); returns what was sent.

        Keys that are absent keep their current target, like a partial Feetech sync write.
        Targets are clipped to the joint limits (and by ``max_relative_target`` if set).

        Raises:
            ConnectionError: a (simulated) serial timeout; nothing was sent.
        """
        self._check_connected()
        if self.config.latency_s:
            time.sleep(self.config.latency_s)
        if self._fault("send_timeout", self.config.serial_timeout_prob):
            raise ConnectionError("Failed to sync write 'Goal_Position' (simulated serial timeout)")
        if self.config.realtime:
            self._advance_realtime()  # the old targets held until now
        goal = {k.removesuffix(".pos"): float(v) for k, v in action.items() if k in self.action_features}
        if self.config.max_relative_target is not None:
            present = dict(zip(self.spec.joint_names, self.scene.joint_positions(), strict=True))
            goal = ensure_safe_goal_position(
                {k: (v, present[k]) for k, v in goal.items()}, float(self.config.max_relative_target)
            )
        targets = self.scene.targets()
        for i, name in enumerate(self.spec.joint_names):
            if name in goal:
                targets[i] = goal[name]
        sent = self.scene.set_targets(targets)
        if not self.config.realtime:
            self.scene.tick()
        return {f"{n}.pos": float(sent[i]) for i, n in enumerate(self.spec.joint_names) if n in goal}

    # -- extras --------------------------------------------------------------------------------
    def task_evaluation(self) -> dict[str, Any] | None:
        """The configured sim task's verdict now (``is_success``, ``task_distance`` metres), or None."""
        if self.task is None or self.scene is None:
            return None
        ev = self.task.evaluate()
        return {"is_success": bool(ev.success), "task_distance": float(ev.distance)}
