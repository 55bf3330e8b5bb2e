"""The ONNX bundle as a Brain (docs/architecture.md, section 6), in numpy + onnxruntime only.

``reset(instruction)`` embeds the instruction once; ``act(observation)`` checks LeRobot's observation
dict (``"<joint>.pos"`` floats in robot units, one uint8 ``(H, W, 3)`` image per camera), encodes it,
then asks the policy head or plans (gradient, CEM or MPPI) and returns the first action as
``{"<joint>.pos": target}`` in robot units.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from export.runtime.bundle import Bundle
from export.runtime.errors import ObservationError
from export.runtime.planners import (
    ActionTerms,
    CEMPlanner,
    GradientPlanner,
    GradSettings,
    MPPIPlanner,
    SamplingSettings,
    settings_from_dict,
    shift_plan,
)
from latent_vla.base.robot_spec import RobotSpec
from latent_vla.base.temporal_ensemble import TemporalEnsemble

MODES = ("policy", "grad", "cem", "mppi")


class BundleBrain:
    """A Brain backed by an export bundle.

    Args:
        bundle: an opened :class:`Bundle`.
        mode: ``"policy"`` (policy head), ``"grad"`` (gradient planner), ``"cem"`` or ``"mppi"``.
        planner: overrides of the manifest's planner settings for ``mode`` (see ``GradSettings`` /
            ``SamplingSettings``).
        budget_ms: anytime budget per plan in milliseconds, ``None`` for the full iteration count.
        use_policy_proposal: seed the planners with the policy head's chunk.
        temporal_ensemble: blend the overlapping plans of the last ticks (``latent_vla.base.temporal_ensemble``);
            ``None`` = the manifest's setting for ``mode`` (``temporal_ensemble`` key), else off.

    Attributes:
        last_info: ``info`` of the last plan plus ``encode_ms`` and ``act_ms``.
    """

    def __init__(
        self,
        bundle: Bundle,
        mode: str = "policy",
        planner: Mapping[str, Any] | None = None,
        budget_ms: float | None = None,
        use_policy_proposal: bool = True,
        temporal_ensemble: float | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.bundle = bundle
        self.mode = mode
        self.budget_ms = budget_ms
        self.use_policy_proposal = use_policy_proposal
        self.spec: RobotSpec = bundle.spec
        defaults = dict(bundle.manifest.planner.get(mode, {}))
        defaults.update(planner or {})
        configured_ensemble = defaults.pop("temporal_ensemble", None)  # the loop's setting, not the planner's
        if temporal_ensemble is None:
            temporal_ensemble = configured_ensemble
        self.ensemble = None if temporal_ensemble is None else TemporalEnsemble(float(temporal_ensemble))
        objective = bundle.manifest.planner.get("objective", {})
        terms = ActionTerms(
            prior_weight=float(objective.get("prior_weight", 0.0)),
            smooth_weight=float(objective.get("smooth_weight", 0.0)),
        )
        if mode == "grad":
            settings = settings_from_dict(GradSettings, defaults, "grad planner")
            self.planner: Any = GradientPlanner(bundle, settings, terms)
        elif mode in ("cem", "mppi"):
            cls = CEMPlanner if mode == "cem" else MPPIPlanner
            self.planner = cls(bundle, settings_from_dict(SamplingSettings, defaults, f"{mode} planner"), terms)
        else:
            self.planner = None
        self.instruction: str | None = bundle.manifest.model.get("default_instruction")
        self._task: np.ndarray | None = None
        self._warm: np.ndarray | None = None
        self.last_info: dict[str, Any] = {}

    def reset(self, instruction: str | None = None) -> None:
        """Start an episode: embed ``instruction`` (or keep the previous one) and drop the warm start."""
        if instruction is not None:
            if not isinstance(instruction, str):
                raise ObservationError(f"instruction must be a str, got {type(instruction).__name__}")
            self.instruction = instruction
        self._task = None if self.instruction is None else self.bundle.embed_task([self.instruction])
        self._warm = None
        if self.ensemble is not None:
            self.ensemble.reset()

    # -- observation -> model inputs ---------------------------------------------------------
    def _state(self, observation: Mapping[str, Any]) -> np.ndarray:
        missing = [k for k in self.spec.action_keys if k not in observation]
        if missing:
            raise ObservationError(
                f"observation lacks joint keys {missing}; expected {self.spec.action_keys} and cameras "
                f"{self.bundle.camera_names}; got keys {sorted(observation)}"
            )
        values = []
        for k in self.spec.action_keys:
            v = observation[k]
            if np.ndim(v) != 0:
                raise ObservationError(f"observation[{k!r}] must be a scalar, got shape {np.shape(v)}")
            try:
                f = float(v)
            except (TypeError, ValueError):
                raise ObservationError(f"observation[{k!r}] is not a number: {v!r}") from None
            if not math.isfinite(f):
                raise ObservationError(f"observation[{k!r}] is not finite: {f}")
            values.append(f)
        return self.bundle.normalizer.state_to_model(np.asarray(values))[None]  # (1, S)

    def _images(self, observation: Mapping[str, Any]) -> dict[str, np.ndarray]:
        out = {}
        for cam in self.bundle.camera_names:
            if cam not in observation:
                raise ObservationError(
                    f"observation lacks camera {cam!r}; expected cameras {self.bundle.camera_names}, "
                    f"got keys {sorted(observation)}"
                )
            img = np.asarray(observation[cam])
            if img.ndim != 3 or img.shape[-1] != 3 or min(img.shape[:2]) < 1:
                raise ObservationError(f"observation[{cam!r}] must be an (H, W, 3) image, got shape {img.shape}")
            if img.dtype != np.uint8:
                raise ObservationError(f"observation[{cam!r}] must be uint8, got {img.dtype}")
            out[cam] = self.bundle.normalizer.image_to_model(img)[None]  # (1, 3, h, w)
        return out

    # -- acting ------------------------------------------------------------------------------
    def act(self, observation: Mapping[str, Any]) -> dict[str, float]:
        """LeRobot observation dict -> ``{"<joint>.pos": absolute target}`` in robot units.

        Raises:
            ObservationError: missing/mis-shaped keys, non-finite joints, or no instruction set.
        """
        if not isinstance(observation, Mapping):
            raise ObservationError(f"observation must be a dict, got {type(observation).__name__}")
        t0 = time.perf_counter()
        if self._task is None:
            if self.instruction is None:
                raise ObservationError("no instruction: call reset(instruction) before act()")
            self.reset()
        state, images = self._state(observation), self._images(observation)
        z = self.bundle.encode(images, state, self._task)  # (1, Z)
        t1 = time.perf_counter()
        info: dict[str, Any] = {}
        need_chunk = self.mode == "policy" or self.use_policy_proposal
        chunk = self.bundle.policy(z, self._task)[0] if need_chunk else None  # (K, A)
        if self.planner is None:
            plan = chunk
        else:
            plan, info = self.planner.plan(z, self._task, self._warm, self.budget_ms, proposal=chunk)
            self._warm = shift_plan(plan, 1)
        action = plan[0] if self.ensemble is None else self.ensemble.blend(plan).astype(plan.dtype)
        if not np.all(np.isfinite(action)):
            raise ObservationError(f"bundle produced a non-finite action {action.tolist()} (input out of range?)")
        robot = self.bundle.normalizer.action_from_model(action)
        info.update(encode_ms=(t1 - t0) * 1e3, act_ms=(time.perf_counter() - t0) * 1e3)
        self.last_info = info
        return self.spec.vector_to_action(robot)


def load_bundle_brain(
    bundle_dir: str | os.PathLike[str],
    mode: str = "policy",
    instruction: str | None = None,
    precision: str = "fp32",
    providers: Sequence[str] | None = None,
    robot: RobotSpec | str | None = None,
    planner: Mapping[str, Any] | None = None,
    budget_ms: float | None = None,
    threads: int | None = None,
) -> BundleBrain:
    """Open a bundle and wrap it as a Brain (the hook behind ``eval bundle=<dir>``).

    Args:
        bundle_dir: export bundle directory.
        mode: ``"policy"``, ``"grad"``, ``"cem"`` or ``"mppi"``.
        instruction: task instruction; the brain is reset with it when given.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (graphs lacking that variant use fp32).
        providers: execution providers (default: TensorRT, CUDA, CPU as available).
        robot: refuse the bundle unless it was made for this robot (spec or name).
        planner: planner setting overrides.
        budget_ms: anytime planning budget per tick, milliseconds.
        threads: onnxruntime intra-op threads.
    """
    bundle = Bundle(bundle_dir, precision=precision, providers=providers, robot=robot, threads=threads)
    brain = BundleBrain(bundle, mode=mode, planner=planner, budget_ms=budget_ms)
    if instruction is not None:
        brain.reset(instruction)
    return brain
