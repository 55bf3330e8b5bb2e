"""A loaded export bundle: verified graphs plus the robot spec, normalizer and tokenizer (no PyTorch).

``Bundle.load(dir)`` reads ``manifest.json``, checks the schema version, the robot spec and the
consistency of the sizes, verifies each graph file's size and sha256, and opens one onnxruntime
session per graph. Its methods take and return float32 numpy arrays in model units.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from export.runtime.errors import ManifestError, ObservationError, RobotMismatchError
from export.runtime.manifest import PRECISIONS, REQUIRED_GRAPHS, Manifest, read_manifest, read_verified_bytes
from export.runtime.session import GraphSession, select_providers
from latent_vla.base.normalize import Normalizer
from latent_vla.base.robot_spec import RobotSpec
from latent_vla.base.text import Tokenizer

log = logging.getLogger("latent_vla.export")


def _parse_parts(manifest: Manifest) -> tuple[RobotSpec, Normalizer, Tokenizer]:
    try:
        spec = RobotSpec.from_dict(manifest.robot_spec)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"manifest robot_spec is malformed: {exc}") from None
    try:
        normalizer = Normalizer.from_dict(manifest.normalization)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"manifest normalization is malformed: {exc}") from None
    try:
        tokenizer = Tokenizer.from_dict(manifest.tokenizer)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"manifest tokenizer is malformed: {exc}") from None
    m = manifest.model
    problems = []
    if m["action_dim"] != spec.num_joints:
        problems.append(f"model action_dim {m['action_dim']} != robot {spec.name}'s {spec.num_joints} joints")
    if normalizer.action_dim != m["action_dim"]:
        problems.append(f"normalization has {normalizer.action_dim} action dims, model {m['action_dim']}")
    if normalizer.state_dim != m["state_dim"]:
        problems.append(f"normalization has {normalizer.state_dim} state dims, model {m['state_dim']}")
    if tokenizer.max_len != m["token_len"]:
        problems.append(f"tokenizer max_len {tokenizer.max_len} != model token_len {m['token_len']}")
    unknown = [c for c in normalizer.camera_names if c not in spec.camera_names]
    if unknown:
        problems.append(f"cameras {unknown} are not cameras of robot spec {spec.name} {spec.camera_names}")
    if problems:
        raise ManifestError("inconsistent manifest: " + "; ".join(problems))
    return spec, normalizer, tokenizer


def check_robot(spec: RobotSpec, expected: RobotSpec | str | None, cameras: list[str] | None = None) -> None:
    """Refuse a bundle made for another arm.

    Joint names and order, limits and units must match, and the robot must have every camera the
    model reads. A different spec name with identical joints (e.g. SO-100 vs SO-101) only logs a warning.

    Args:
        spec: the bundle's robot spec.
        expected: the arm to drive (a spec, a spec name, or ``None`` to skip the check).
        cameras: cameras the model reads (checked against ``expected.camera_names``).

    Raises:
        RobotMismatchError: naming the differing field.
    """
    if expected is None:
        return
    if isinstance(expected, str):
        if expected != spec.name:
            raise RobotMismatchError(f"bundle was exported for robot {spec.name!r}, not {expected!r}")
        return
    if expected.joint_names != spec.joint_names:
        raise RobotMismatchError(f"bundle joints {spec.joint_names} differ from the robot's {expected.joint_names}")
    if not (np.allclose(expected.lower, spec.lower) and np.allclose(expected.upper, spec.upper)):
        raise RobotMismatchError(
            f"bundle joint limits {spec.lower.tolist()}..{spec.upper.tolist()} differ from the robot's "
            f"{expected.lower.tolist()}..{expected.upper.tolist()}"
        )
    if expected.units != spec.units:
        raise RobotMismatchError(f"bundle uses units {spec.units!r}, the robot {expected.units!r}")
    missing = [c for c in (cameras or []) if c not in expected.camera_names]
    if missing:
        raise RobotMismatchError(f"the model reads cameras {missing} that robot {expected.name!r} lacks")
    if expected.name != spec.name:
        log.warning(
            "bundle was exported for %r and drives %r (same joints, limits and units)", spec.name, expected.name
        )


class Bundle:
    """An export bundle opened in onnxruntime.

    Attributes:
        path: the bundle directory.
        manifest: the parsed manifest.
        spec: the robot spec the model was trained for.
        normalizer: robot units <-> model units.
        tokenizer: instruction tokenizer.
        precision: requested precision; graphs without that variant use fp32.
        providers: execution providers in use, best first.
        sessions: graph name -> :class:`GraphSession`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        precision: str = "fp32",
        providers: Sequence[str] | None = None,
        robot: RobotSpec | str | None = None,
        threads: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.spec, self.normalizer, self.tokenizer = _parse_parts(self.manifest)
        check_robot(self.spec, robot, list(self.normalizer.camera_names))
        self.precision = precision
        self.providers = select_providers(providers)
        self.sessions: dict[str, GraphSession] = {}
        for name in REQUIRED_GRAPHS:
            graph = self.manifest.graph(name, precision)
            data = read_verified_bytes(self.path, graph, f"{name}@{graph.precision}")
            self.sessions[name] = GraphSession(name, data, graph, self.providers, threads)
        active = self.sessions["encoder"].providers[0]
        fallback = [n for n in ("encoder", "policy") if self.sessions[n].spec.precision != precision]
        log.info(
            "onnxruntime %s: bundle %s (%s%s) runs on %s (available: %s)",
            ort.__version__,
            self.path.name,
            precision,
            f"; {', '.join(fallback)} in fp32, no {precision} variant" if fallback else "",
            active,
            ", ".join(ort.get_available_providers()),
        )

    # -- sizes -------------------------------------------------------------------------------
    @property
    def horizon(self) -> int:
        """H, the action-sequence length the rollout graphs were exported with."""
        return int(self.manifest.model["horizon"])

    @property
    def action_dim(self) -> int:
        """A."""
        return int(self.manifest.model["action_dim"])

    @property
    def camera_names(self) -> list[str]:
        """Cameras the encoder reads, in order."""
        return list(self.normalizer.camera_names)

    # -- graphs ------------------------------------------------------------------------------
    def embed_task(self, instructions: Sequence[str] | str) -> np.ndarray:
        """Instruction strings (B of them) -> task embedding ``(B, T)`` float32."""
        try:
            tokens = self.tokenizer.encode(instructions)
        except TypeError as exc:
            raise ObservationError(f"bad instruction: {exc}") from None
        return self.sessions["task_embed"].run({"tokens": tokens})["task"]

    def encode(self, images: Mapping[str, np.ndarray], state: np.ndarray, task: np.ndarray) -> np.ndarray:
        """Model-unit inputs -> latent ``(B, Z)``.

        Args:
            images: camera -> ``(B, 3, h, w)`` float32 in ``[0, 1]`` (``Normalizer.image_to_model``).
            state: ``(B, S)`` normalized joint state (``Normalizer.state_to_model``).
            task: ``(B, T)`` task embedding.
        """
        missing = [c for c in self.camera_names if c not in images]
        if missing:
            raise ObservationError(f"encoder: missing camera images {missing}; expected {self.camera_names}")
        feeds = {f"image_{c}": np.asarray(images[c], dtype=np.float32) for c in self.camera_names}
        feeds["state"] = np.asarray(state, dtype=np.float32)
        feeds["task"] = np.asarray(task, dtype=np.float32)
        return self.sessions["encoder"].run(feeds)["z"]

    def policy(self, z: np.ndarray, task: np.ndarray) -> np.ndarray:
        """``z (B, Z)``, ``task (B, T)`` -> action chunk ``(B, K, A)`` in ``[-1, 1]``."""
        return self.sessions["policy"].run({"z": z, "task": task})["actions"]

    def rollout_cost(self, z0: np.ndarray, actions: np.ndarray, task: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Trajectory cost of ``actions (B, H, A)`` from ``z0 (B, Z)``: ``(cost (B,), step_cost (B, H))``."""
        out = self.sessions["rollout_cost"].run({"z0": z0, "actions": actions, "task": task})
        return out["cost"], out["step_cost"]

    def cost_and_grad(
        self, z0: np.ndarray, actions: np.ndarray, task: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Trajectory cost ``(B,)``, its gradient w.r.t. ``actions (B, H, A)`` (same shape) and the
        weighted per-step costs ``(B, H)``."""
        out = self.sessions["cost_grad"].run({"z0": z0, "actions": actions, "task": task})
        return out["cost"], out["grad"], out["step_cost"]


def load_bundle(
    path: str | os.PathLike[str],
    precision: str = "fp32",
    providers: Sequence[str] | None = None,
    robot: RobotSpec | str | None = None,
    threads: int | None = None,
) -> Bundle:
    """Open and verify an export bundle; see :class:`Bundle`.

    Raises:
        ManifestError, SchemaVersionError, RobotMismatchError, IntegrityError: what is wrong, by name.
    """
    return Bundle(path, precision=precision, providers=providers, robot=robot, threads=threads)
