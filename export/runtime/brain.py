"""The ONNX bundle as a Brain, in numpy + onnxruntime only.

:class:`BundleBrain` is :class:`planners.brain.LatentBrain` (the one brain of every model source) with a
bundle's perception (:class:`BundlePerception`: LeRobot observation checks, the encoder graph, the
normalizer) and a planner of ``planners/`` running on the bundle's graphs
(:class:`export.runtime.backend.BundleBackend`), built from the planner settings the manifest
records (``configs/planner/<mode>.yaml`` at export, budget included).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from export.runtime.backend import BundleBackend
from export.runtime.bundle import Bundle
from export.runtime.errors import BundleError, ObservationError
from latent_vla.base.robot_spec import RobotSpec
from planners.brain import LatentBrain
from planners.registry import make_planner, split_mpc_settings

MODES = ("policy", "grad", "cem", "mppi")


class BundlePerception:
    """A bundle's observation checks, encoder graph and normalizer as a ``planners.brain.Perception``.

    Args:
        bundle: an opened :class:`Bundle`.
    """

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.spec: RobotSpec = bundle.spec

    def embed_instruction(self, instruction: str) -> np.ndarray:
        """``(1, T)`` task embedding from the ``task_embed`` graph."""
        if not isinstance(instruction, str):
            raise ObservationError(f"instruction must be a str, got {type(instruction).__name__}")
        return self.bundle.embed_task([instruction])

    def encode_observation(self, observation: Mapping[str, Any], task: np.ndarray) -> np.ndarray:
        """LeRobot observation dict -> latent ``(1, Z)``.

        Raises:
            ObservationError: not a dict, missing/mis-shaped keys, non-finite joints, wrong image dtype.
        """
        if not isinstance(observation, Mapping):
            raise ObservationError(f"observation must be a dict, got {type(observation).__name__}")
        return self.bundle.encode(self._images(observation), self._state(observation), task)

    def action_to_robot(self, action: np.ndarray) -> np.ndarray:
        """``(A,)`` in ``[-1, 1]`` -> ``(J,)`` robot units; refuses a non-finite action."""
        if not np.all(np.isfinite(action)):
            raise ObservationError(f"bundle produced a non-finite action {action.tolist()} (input out of range?)")
        return self.bundle.normalizer.action_from_model(action)

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


class BundleBrain(LatentBrain):
    """A Brain backed by an export bundle.

    Args:
        bundle: an opened :class:`Bundle`.
        mode: ``"policy"`` (policy head), ``"grad"`` (gradient planner), ``"cem"`` or ``"mppi"``.
        planner: overrides of the manifest's planner settings for ``mode`` (keys of
            ``configs/planner/<mode>.yaml``; ``budget_ms`` and ``temporal_ensemble`` configure the loop).
    """

    def __init__(self, bundle: Bundle, mode: str = "policy", planner: Mapping[str, Any] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode not in bundle.manifest.planner:
            raise BundleError(f"bundle {bundle.path} records no {mode!r} planner settings; re-export it")
        self.bundle = bundle
        self.mode = mode
        cfg, mpc = split_mpc_settings({**bundle.manifest.planner[mode], **dict(planner or {})})
        built = make_planner(cfg, BundleBackend(bundle))
        super().__init__(
            BundlePerception(bundle),
            built,
            bundle.manifest.model.get("default_instruction"),
            budget_ms=mpc.get("budget_ms"),
            temporal_ensemble=mpc.get("temporal_ensemble"),
            temporal_window=mpc.get("temporal_window"),
        )


def load_bundle_brain(
    bundle_dir: str | os.PathLike[str],
    mode: str = "policy",
    instruction: str | None = None,
    precision: str = "fp32",
    providers: Sequence[str] | None = None,
    robot: RobotSpec | str | None = None,
    planner: Mapping[str, Any] | None = None,
    threads: int | None = None,
    expected_sha256: str | None = None,
) -> BundleBrain:
    """Open a bundle and wrap it as a Brain (the hook behind ``eval bundle=<dir>``).

    Args:
        bundle_dir: export bundle directory.
        mode: ``"policy"``, ``"grad"``, ``"cem"`` or ``"mppi"``.
        instruction: task instruction; the brain is reset with it when given.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (graphs lacking that variant use fp32).
        providers: execution providers (default: TensorRT, CUDA, CPU as available).
        robot: refuse the bundle unless it was made for this robot (spec or name).
        planner: planner setting overrides (``budget_ms=33``...).
        threads: onnxruntime intra-op threads.
        expected_sha256: pin: the sha256 of ``manifest.json`` that ``latent-vla export`` printed; another
            manifest is refused before any graph is parsed.
    """
    bundle = Bundle(
        bundle_dir,
        precision=precision,
        providers=providers,
        robot=robot,
        threads=threads,
        expected_sha256=expected_sha256,
    )
    brain = BundleBrain(bundle, mode=mode, planner=planner)
    if instruction is not None:
        brain.reset(instruction)
    return brain
