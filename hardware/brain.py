"""The one brain interface of the control loop, a scripted brain, and ``load_brain`` dispatch.

A brain maps LeRobot's robot observation dict (``"<joint>.pos"`` floats in robot units plus one
``(H, W, 3)`` uint8 image per camera) to absolute joint targets ``{"<joint>.pos": value}``
(docs/architecture.md, section 6). Torch planner, torch policy, ONNX bundle and scripted brains
all implement it; the control loop cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from latent_vla.base.robot_spec import SO101, RobotSpec


@runtime_checkable
class Brain(Protocol):
    """What the control loop drives: observation dict in, action dict out."""

    def reset(self, instruction: str | None = None) -> None:
        """Start a new episode, optionally with a new language instruction."""
        ...

    def act(self, observation: dict[str, Any]) -> dict[str, float]:
        """Absolute joint targets ``{"<joint>.pos": value}`` (robot units) for this observation."""
        ...


class BrainNotAvailable(RuntimeError):
    """The part of latent-vla that implements a brain kind is not installed or has not landed."""


class ScriptedBrain:
    """Moves smoothly through a cycle of waypoints; for tests, benchmarks and a first-run demo.

    Each call returns a target at most ``speed * dt`` (robot units) away from the previous target
    along the straight line to the current waypoint; on arrival (within ``tolerance``) the next
    waypoint becomes current, cycling. It reads only the joint positions of the first observation
    (to start from where the arm is), so it is deterministic.

    Args:
        spec: robot spec (joint order and units).
        waypoints: ``(N, J)`` joint targets in robot units; default: home and a forward reach pose.
        speed: joint-space speed, robot units per second (degrees/s for the SO arms).
        fps: the control rate the targets are spaced for, Hz.
        tolerance: distance (robot units, max over joints) that counts as arrived.
    """

    def __init__(
        self,
        spec: RobotSpec = SO101,
        waypoints: Sequence[Sequence[float]] | np.ndarray | None = None,
        speed: float = 30.0,
        fps: float | None = None,
        tolerance: float = 0.5,
    ) -> None:
        self.spec = spec
        if waypoints is None:  # a sweep left and right of the home pose, opening and closing the gripper
            home = spec.home_vector
            offsets = np.zeros((3, spec.num_joints))
            n = min(6, spec.num_joints)
            offsets[0, :n] = (25.0, 10.0, 10.0, -10.0, 20.0, 40.0)[:n]
            offsets[1, :n] = (-25.0, 10.0, 10.0, -10.0, -20.0, 0.0)[:n]
            waypoints = home + offsets
        wp = np.asarray(waypoints, dtype=np.float64)
        if wp.ndim != 2 or wp.shape[0] == 0 or wp.shape[1] != spec.num_joints or not np.all(np.isfinite(wp)):
            raise ValueError(f"waypoints must be finite, (N >= 1, {spec.num_joints}), got shape {wp.shape}")
        self.waypoints = np.clip(wp, spec.lower, spec.upper)
        if not speed > 0:
            raise ValueError(f"speed must be > 0 robot units/s, got {speed}")
        self.speed = float(speed)
        self.dt = 1.0 / float(fps or spec.fps)
        self.tolerance = float(tolerance)
        self.instruction: str | None = None
        self._target: np.ndarray | None = None
        self._index = 0

    def reset(self, instruction: str | None = None) -> None:
        """Restart at the first waypoint, from wherever the arm is at the next ``act``."""
        self.instruction = instruction
        self._target = None
        self._index = 0

    def act(self, observation: dict[str, Any]) -> dict[str, float]:
        """Next target on the way to the current waypoint, ``{"<joint>.pos": value}``."""
        if self._target is None:
            self._target = self.spec.action_to_vector(observation)
        goal = self.waypoints[self._index]
        delta = goal - self._target
        dist = float(np.max(np.abs(delta)))
        step = self.speed * self.dt
        if dist <= step:
            self._target = goal.copy()
        else:
            self._target = self._target + delta * (step / dist)
        if float(np.max(np.abs(goal - self._target))) <= self.tolerance:
            self._index = (self._index + 1) % len(self.waypoints)
        return self.spec.vector_to_action(self._target)


def _import_part(module: str, attr: str, what: str) -> Any:
    try:
        mod = import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            raise BrainNotAvailable(
                f"{what} needs `{module}.{attr}`, which is not available in this installation ({exc})"
            ) from exc
        raise
    if not hasattr(mod, attr):
        raise BrainNotAvailable(f"{what} needs `{module}.{attr}`, which `{module}` does not define yet")
    return getattr(mod, attr)


BRAIN_MODES = ("policy", "grad", "cem", "mppi", "random")


def load_brain(
    spec_string: str,
    instruction: str | None = None,
    *,
    robot_spec: RobotSpec = SO101,
    mode: str = "grad",
    budget_ms: float | None = None,
    brain_sha256: str | None = None,
    **kwargs: Any,
) -> Brain:
    """Build a brain from a command-line string.

    Args:
        spec_string: ``"scripted"``; a directory holding ``manifest.json`` (an ONNX bundle, run by
            ``export.runtime.load_bundle_brain``); or a directory holding ``model.safetensors`` (a
            training run, run by ``planners.brains.PlannerBrain`` or ``PolicyBrain``).
        instruction: the task in words, passed to ``reset``.
        robot_spec: the arm; a bundle or run made for another arm is refused.
        mode: ``"policy"`` (policy head only) or a planner: ``"grad"``, ``"cem"``, ``"mppi"``
            (``"random"`` for training runs only). Ignored by the scripted brain.
        budget_ms: anytime planning budget per tick, milliseconds (planner modes).
        brain_sha256: pin of an ONNX bundle: the sha256 of its ``manifest.json`` printed by ``export``;
            another manifest is refused (``export.runtime.IntegrityError``). Only for bundles.
        **kwargs: passed to the brain's constructor / loader.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the path is neither a bundle nor a run, ``mode`` is unknown, or the model was
            made for another arm.
        BrainNotAvailable: the part implementing that brain kind is not installed or has not landed.
    """
    if brain_sha256 is not None and not (Path(spec_string).expanduser() / "manifest.json").is_file():
        raise ValueError(f"brain_sha256 pins an ONNX bundle (a directory with manifest.json), not {spec_string!r}")
    if spec_string == "scripted":
        brain: Brain = ScriptedBrain(robot_spec, **kwargs)
        brain.reset(instruction)
        return brain
    if mode not in BRAIN_MODES:
        raise ValueError(f"brain mode must be one of {BRAIN_MODES}, got {mode!r}")
    path = Path(spec_string).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"brain {spec_string!r}: no such file or directory; expected 'scripted', an ONNX bundle "
            "directory (with manifest.json) or a training run directory (with model.safetensors)"
        )
    if (path / "manifest.json").is_file():
        load = _import_part("export.runtime", "load_bundle_brain", "an ONNX bundle brain")
        if mode == "random":
            raise ValueError("an ONNX bundle brain supports modes policy, grad, cem, mppi; not random")
        if brain_sha256 is not None:  # refuse another manifest before onnxruntime parses any of its graphs
            _import_part("export.runtime", "read_manifest", "an ONNX bundle brain")(path, expected_sha256=brain_sha256)
        brain = load(path, mode=mode, robot=robot_spec, budget_ms=None if mode == "policy" else budget_ms, **kwargs)
        if brain_sha256 is not None:  # and check the manifest actually loaded (it could be swapped in between)
            brain.bundle.check_sha256(brain_sha256)
    elif (path / "model.safetensors").is_file():
        if mode == "policy":
            cls = _import_part("planners.brains", "PolicyBrain", "a torch policy brain")
            brain = cls.from_run(path, **kwargs)
        else:
            cls = _import_part("planners.brains", "PlannerBrain", "a torch planner brain")
            brain = cls.from_run(path, planner=mode, budget_ms=budget_ms, **kwargs)
        run_spec = getattr(brain, "spec", None)
        if run_spec is not None and run_spec.joint_names != robot_spec.joint_names:
            raise ValueError(f"run {path} was trained for joints {run_spec.joint_names}, not {robot_spec.joint_names}")
        if run_spec is not None and run_spec.units != robot_spec.units:
            raise ValueError(f"run {path} uses units {run_spec.units!r}; this arm uses {robot_spec.units!r}")
    else:
        raise ValueError(
            f"brain {spec_string!r}: {path} holds neither manifest.json (ONNX bundle) nor "
            "model.safetensors (training run)"
        )
    if not isinstance(brain, Brain):
        raise TypeError(f"{type(brain).__name__} does not implement the Brain interface (reset, act)")
    brain.reset(instruction)
    return brain
