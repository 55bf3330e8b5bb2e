"""The one brain interface of the control loop, a scripted brain, and ``load_brain`` dispatch.

A brain maps LeRobot's robot observation dict (``"<joint>.pos"`` floats in robot units plus one
``(H, W, 3)`` uint8 image per camera) to absolute joint targets ``{"<joint>.pos": value}``
(docs/architecture.md). A model brain is the one ``planners.brain.LatentBrain`` over a training run
or an ONNX bundle (:func:`load_model_brain`); the scripted brain is for tests and first runs. The
control loop cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from export.runtime.brain import load_bundle_brain
from latent_vla.base.robot_spec import SO101, RobotSpec
from planners.brain import LatentBrain


@runtime_checkable
class Brain(Protocol):
    """What the control loop drives: observation dict in, action dict out."""

    def reset(self, instruction: str | None = None) -> None:
        """Start a new episode, optionally with a new language instruction."""
        ...

    def act(self, observation: dict[str, Any]) -> dict[str, float]:
        """Absolute joint targets ``{"<joint>.pos": value}`` (robot units) for this observation."""
        ...


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


BRAIN_MODES = ("policy", "grad", "cem", "mppi", "random")


def _check_run_spec(path: Path, run_spec: RobotSpec, robot_spec: RobotSpec) -> None:
    if run_spec.joint_names != robot_spec.joint_names:
        raise ValueError(f"run {path} was trained for joints {run_spec.joint_names}, not {robot_spec.joint_names}")
    if run_spec.units != robot_spec.units:
        raise ValueError(f"run {path} uses units {run_spec.units!r}; this arm uses {robot_spec.units!r}")


def load_model_brain(
    path: str | Path,
    instruction: str | None = None,
    *,
    robot_spec: RobotSpec = SO101,
    mode: str = "grad",
    planner: Mapping[str, Any] | None = None,
    device: str = "cpu",
    providers: Sequence[str] | None = None,
    **kwargs: Any,
) -> LatentBrain:
    """The one latent brain (``planners.brain.LatentBrain``) over a training run or an ONNX bundle.

    Args:
        path: a directory holding ``manifest.json`` (an ONNX bundle: numpy + onnxruntime) or
            ``model.safetensors`` (a training run: PyTorch).
        instruction: the task in words, passed to ``reset``.
        robot_spec: the arm; a bundle or run made for another arm is refused.
        mode: ``"policy"`` (policy head only) or a planner: ``"grad"``, ``"cem"``, ``"mppi"``
            (``"random"`` for training runs only).
        planner: overrides of the mode's planner settings (``configs/planner/<mode>.yaml`` for a run,
            the manifest's copy of it for a bundle), e.g. ``{"budget_ms": 33}``.
        device: a training run's torch device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; a bundle
            takes ``providers`` instead.
        providers: a bundle's onnxruntime execution providers, best first (``["cuda"]``, ``["tensorrt"]``,
            ``["cpu"]`` or full names); ``None``: the best this onnxruntime offers. Not for a training run.
        **kwargs: passed to the loader (``precision``, ``threads``...).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the path is neither a bundle nor a run, ``mode`` is unknown, the model was made
            for another arm, or ``device`` / ``providers`` was given to the kind of model that has none.
        UserError: a CUDA device or execution provider this machine lacks (``BundleError`` for a bundle).
    """
    if mode not in BRAIN_MODES:
        raise ValueError(f"brain mode must be one of {BRAIN_MODES}, got {mode!r}")
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"brain {str(path)!r}: no such file or directory; expected 'scripted', an ONNX bundle "
            "directory (with manifest.json) or a training run directory (with model.safetensors)"
        )
    overrides = dict(planner or {})
    if (path / "manifest.json").is_file():
        if mode == "random":
            raise ValueError("an ONNX bundle brain supports modes policy, grad, cem, mppi; not random")
        if str(device) != "cpu":
            raise ValueError(f"device={device!r} places a training run's model; an ONNX bundle takes providers=")
        brain: LatentBrain = load_bundle_brain(
            path, mode=mode, robot=robot_spec, planner=overrides, providers=providers, **kwargs
        )
    elif (path / "model.safetensors").is_file():
        if providers is not None:
            raise ValueError(f"providers={list(providers)} are an ONNX bundle's; a training run takes device=")
        # Imported here: a training run needs PyTorch, a heavy dependency a bundle-only robot may lack.
        from planners.brains import PlannerBrain

        brain = PlannerBrain.from_run(path, planner=mode, map_location=device, **kwargs, **overrides)
        _check_run_spec(path, brain.spec, robot_spec)
    else:
        raise ValueError(
            f"brain {str(path)!r}: {path} holds neither manifest.json (ONNX bundle) nor "
            "model.safetensors (training run)"
        )
    brain.reset(instruction)
    return brain


def load_brain(
    spec_string: str,
    instruction: str | None = None,
    *,
    robot_spec: RobotSpec = SO101,
    mode: str = "grad",
    budget_ms: float | None = None,
    brain_sha256: str | None = None,
    device: str = "cpu",
    providers: Sequence[str] | None = None,
    **kwargs: Any,
) -> Brain:
    """Build a brain from a command-line string: ``"scripted"`` or a model path (:func:`load_model_brain`).

    Args:
        spec_string: ``"scripted"``, an ONNX bundle directory or a training run directory.
        instruction: the task in words, passed to ``reset``.
        robot_spec: the arm; a bundle or run made for another arm is refused.
        mode: ``"policy"`` or a planner (see :func:`load_model_brain`); ignored by the scripted brain.
        budget_ms: anytime planning budget per tick, milliseconds, overriding the planner config's
            (planner modes; ``None`` keeps the config's).
        brain_sha256: pin of an ONNX bundle: the sha256 of its ``manifest.json`` printed by ``export``;
            another manifest is refused (``export.runtime.IntegrityError``). Only for bundles.
        device: a training run's torch device; providers: a bundle's onnxruntime execution providers
            (see :func:`load_model_brain`). The scripted brain ignores both.
        **kwargs: the scripted brain's arguments, or :func:`load_model_brain`'s.
    """
    if brain_sha256 is not None and not (Path(spec_string).expanduser() / "manifest.json").is_file():
        raise ValueError(f"brain_sha256 pins an ONNX bundle (a directory with manifest.json), not {spec_string!r}")
    if spec_string == "scripted":
        brain: Brain = ScriptedBrain(robot_spec, **kwargs)
        brain.reset(instruction)
        return brain
    planner = dict(kwargs.pop("planner", None) or {})
    if budget_ms is not None and mode != "policy":
        planner["budget_ms"] = budget_ms
    if brain_sha256 is not None:
        kwargs["expected_sha256"] = brain_sha256
    return load_model_brain(spec_string, instruction, robot_spec=robot_spec, mode=mode, planner=planner,
                            device=device, providers=providers, **kwargs)  # fmt: skip
