"""A loaded export bundle: verified graphs plus the robot spec, normalizer and tokenizer (no PyTorch).

``load_bundle(dir)`` trusts nothing in the directory. Before onnxruntime sees a byte it checks, in order:

1. ``manifest.json``: a regular file inside the bundle, at most 64 MiB, UTF-8 JSON, with the pinned sha256
   when one is given (``expected_sha256``), and a schema this runtime reads;
2. the manifest's parts agree: robot spec (finite, ordered joint limits), normalization (sizes, and bounds
   within the arm's joint limits, :func:`latent_vla.base.normalize.limit_problems`), tokenizer, the model's
   sizes, and every graph's declared inputs/outputs against what those sizes imply (:func:`expected_io`);
3. the robot spec matches the arm to drive (:func:`check_robot`; without one, the registered spec of the
   same name);
4. every file the manifest names (all precisions) is a regular file inside the bundle with its size;
5. per graph loaded: size, then sha256 of the bytes read, then onnxruntime's view of the graph's
   inputs/outputs against the manifest (the fused kernel's tensors: size, sha256, then safetensors'
   parser, which reads no code).

Its methods take and return float32 numpy arrays in model units.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load as load_safetensors

from export.runtime.errors import ManifestError, ObservationError, RobotMismatchError
from export.runtime.manifest import (
    PRECISIONS,
    REQUIRED_GRAPHS,
    Manifest,
    TensorSpec,
    check_files,
    check_sha256,
    read_manifest,
    read_verified_bytes,
)
from export.runtime.session import GraphSession, select_providers
from latent_vla.base.fused_rollout import FUSED_GRAPH, FusedRollout, head_kernels, numba_available
from latent_vla.base.normalize import Normalizer, limit_problems
from latent_vla.base.robot_spec import ROBOT_SPECS, RobotSpec
from latent_vla.base.text import Tokenizer

log = logging.getLogger("latent_vla.export")

BATCH = "batch"  # the dynamic leading axis of every graph tensor
IOSpec = tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]


def _parse_parts(manifest: Manifest) -> tuple[RobotSpec, Normalizer, Tokenizer]:
    parts = []
    for key, cls in (("robot_spec", RobotSpec), ("normalization", Normalizer), ("tokenizer", Tokenizer)):
        try:
            parts.append(cls.from_dict(getattr(manifest, key)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"manifest {key} is malformed: {exc}") from None
    return parts[0], parts[1], parts[2]


def _size_problems(m: Mapping, spec: RobotSpec, normalizer: Normalizer, tokenizer: Tokenizer) -> list[str]:
    """Where the model section, the robot spec, the normalization and the tokenizer disagree on a size."""
    problems = []
    if m["action_dim"] != spec.num_joints:
        problems.append(f"model action_dim {m['action_dim']} != robot {spec.name}'s {spec.num_joints} joints")
    if m["state_dim"] != spec.num_joints:
        problems.append(f"model state_dim {m['state_dim']} != robot {spec.name}'s {spec.num_joints} joints")
    if normalizer.action_dim != m["action_dim"]:
        problems.append(f"normalization has {normalizer.action_dim} action dims, model {m['action_dim']}")
    if normalizer.state_dim != m["state_dim"]:
        problems.append(f"normalization has {normalizer.state_dim} state dims, model {m['state_dim']}")
    if tokenizer.max_len != m["token_len"]:
        problems.append(f"tokenizer max_len {tokenizer.max_len} != model token_len {m['token_len']}")
    cams, size = list(normalizer.camera_names), list(normalizer.image_size)
    if not cams or min(size) < 1:
        problems.append(f"normalization needs cameras and a positive image size, has {cams} at {size}")
    if m.get("camera_names", cams) != cams:
        problems.append(f"normalization cameras {cams} != model camera_names {m['camera_names']}")
    if m.get("image_size", size) != size:
        problems.append(f"normalization image size {size} != model image_size {m['image_size']}")
    unknown = [c for c in cams if c not in spec.camera_names]
    if unknown:
        problems.append(f"cameras {unknown} are not cameras of robot spec {spec.name} {spec.camera_names}")
    return problems


def expected_io(manifest: Manifest, normalizer: Normalizer, tokenizer: Tokenizer) -> dict[str, IOSpec]:
    """Inputs and outputs every graph must have, from the normalization, tokenizer and model sizes.

    Shapes use :data:`BATCH` for the dynamic batch axis; all other axes are fixed: images
    ``(B, 3, h, w)`` per camera, state ``(B, S)``, tokens ``(B, L)`` int64, task ``(1, T)`` (``(B, T)`` out
    of ``task_embed``), latent ``(B, Z)``, actions ``(B, K, A)`` from the policy and ``(B, H, A)`` into the
    rollout graphs. So a graph swapped for one of another model (other latent, horizon, cameras...)
    is refused even when its hash was recomputed into the manifest.
    """
    m = manifest.model
    z, k, t, h = m["latent_dim"], m["chunk_len"], m["task_dim"], m["horizon"]
    a, s, length = normalizer.action_dim, normalizer.state_dim, tokenizer.max_len
    rows, cols = normalizer.image_size

    def f32(name: str, *shape: int | str) -> TensorSpec:
        return TensorSpec(name, shape, "float32")

    task = f32("task", 1, t)
    plan_in = (f32("z0", BATCH, z), f32("actions", BATCH, h, a), task)
    images = tuple(f32(f"image_{c}", BATCH, 3, rows, cols) for c in normalizer.camera_names)
    return {
        "task_embed": ((TensorSpec("tokens", (BATCH, length), "int64"),), (f32("task", BATCH, t),)),
        "encoder": ((*images, f32("state", BATCH, s), task), (f32("z", BATCH, z),)),
        "policy": ((f32("z", BATCH, z), task), (f32("actions", BATCH, k, a),)),
        "rollout_cost": (plan_in, (f32("cost", BATCH), f32("step_cost", BATCH, h))),
        "cost_grad": (plan_in, (f32("cost", BATCH), f32("grad", BATCH, h, a), f32("step_cost", BATCH, h))),
    }


def _io_problems(manifest: Manifest, expected: Mapping[str, IOSpec]) -> list[str]:
    """Graph entries whose declared inputs/outputs differ from ``expected`` (a dynamic axis must stay dynamic)."""

    def text(specs: Sequence[TensorSpec]) -> str:
        return ", ".join(f"{t.name} [{', '.join(str(d) for d in t.shape)}] {t.dtype}" for t in specs)

    def norm(specs: Sequence[TensorSpec]) -> list[tuple]:
        return [(t.name, tuple(d if isinstance(d, int) else BATCH for d in t.shape), t.dtype) for t in specs]

    problems = []
    for name, (ins, outs) in expected.items():
        for precision, graph in manifest.graphs.get(name, {}).items():
            for kind, declared, want in (("inputs", graph.inputs, ins), ("outputs", graph.outputs, outs)):
                if norm(declared) != norm(want):
                    problems.append(
                        f"graph {name}@{precision} {kind} are ({text(declared)}) but the model's sizes imply "
                        f"({text(want)})"
                    )
    return problems


def check_manifest(manifest: Manifest) -> tuple[RobotSpec, Normalizer, Tokenizer]:
    """Parse the manifest's robot spec, normalization and tokenizer and check that all its parts agree.

    Returns:
        ``(spec, normalizer, tokenizer)``.

    Raises:
        ManifestError: a malformed part, disagreeing sizes, graph I/O the sizes do not imply, or
            normalization bounds outside the robot's joint limits; the message lists every problem.
    """
    spec, normalizer, tokenizer = _parse_parts(manifest)
    problems = _size_problems(manifest.model, spec, normalizer, tokenizer)
    if problems:
        raise ManifestError("inconsistent manifest: " + "; ".join(problems))
    problems = limit_problems(normalizer, spec)
    if problems:
        raise ManifestError(
            f"manifest normalization does not fit robot {spec.name!r}'s joint limits (not statistics of this arm): "
            + "; ".join(problems[:4])
            + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        )
    problems = _io_problems(manifest, expected_io(manifest, normalizer, tokenizer))
    if problems:
        raise ManifestError("manifest graph inputs/outputs do not fit the model: " + "; ".join(problems[:3]))
    return spec, normalizer, tokenizer


def check_robot(spec: RobotSpec, expected: RobotSpec | str | None, cameras: list[str] | None = None) -> None:
    """Refuse a bundle made for another arm.

    Joint names and order, limits and units must match, and the robot must have every camera the
    model reads. A different spec name with identical joints (e.g. SO-100 vs SO-101) only logs a warning.
    A name of a registered spec (``latent_vla.base.robot_spec.ROBOT_SPECS``) is checked against that spec.

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
        if expected not in ROBOT_SPECS:
            return
        expected = ROBOT_SPECS[expected]
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

    Args:
        path: the bundle directory.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        providers: execution providers (see :func:`select_providers`).
        robot: the arm to drive (spec or registered name); ``None`` checks the bundle against the registered
            spec of the name it carries, if any.
        threads: onnxruntime intra-op threads.
        expected_sha256: pin: the sha256 of ``manifest.json`` that ``latent-vla export`` printed.

    Raises:
        ManifestError, SchemaVersionError, RobotMismatchError, IntegrityError: what is wrong, by name
            (see the module docstring for the order of the checks).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        precision: str = "fp32",
        providers: Sequence[str] | None = None,
        robot: RobotSpec | str | None = None,
        threads: int | None = None,
        expected_sha256: str | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.path = Path(path)
        self.manifest = read_manifest(self.path, expected_sha256)
        self.spec, self.normalizer, self.tokenizer = check_manifest(self.manifest)
        if robot is None and self.spec.name in ROBOT_SPECS:
            robot = self.spec.name  # a bundle naming a known arm must carry that arm's spec
        check_robot(self.spec, robot, list(self.normalizer.camera_names))
        check_files(self.path, self.manifest)
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

    # -- identity ----------------------------------------------------------------------------
    @property
    def sha256(self) -> str:
        """Hex sha256 of this bundle's ``manifest.json`` (which holds the sha256 of every graph): its pin."""
        return self.manifest.sha256

    def check_sha256(self, expected: str) -> None:
        """Refuse unless :attr:`sha256` is ``expected`` (a pin such as ``latent-vla run brain_sha256=``).

        Raises:
            IntegrityError: another manifest; BundleError: ``expected`` is not 64 hex digits.
        """
        check_sha256(self.sha256, expected)

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

    def fused_rollouts(self) -> list[FusedRollout] | None:
        """The fused planning kernels over this bundle's verified tensors, one per dynamics head (head 0
        first), or ``None`` when the bundle has none (an architecture the kernel does not compute) or
        numba is not installed."""
        spec = self.manifest.graphs.get(FUSED_GRAPH, {}).get("fp32")
        meta = self.manifest.model.get(FUSED_GRAPH)
        if spec is None or not isinstance(meta, Mapping) or not numba_available():
            return None
        tensors = load_safetensors(read_verified_bytes(self.path, spec, FUSED_GRAPH))
        declared = {t.name: tuple(t.shape) for t in spec.outputs}
        if {n: a.shape for n, a in tensors.items()} != declared:
            raise ManifestError(f"bundle {FUSED_GRAPH}: its tensors differ from the manifest's list")
        return head_kernels(tensors, meta)

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
    expected_sha256: str | None = None,
) -> Bundle:
    """Open and verify an export bundle; see :class:`Bundle` (``expected_sha256`` pins its manifest).

    Raises:
        ManifestError, SchemaVersionError, RobotMismatchError, IntegrityError: what is wrong, by name.
    """
    return Bundle(
        path, precision=precision, providers=providers, robot=robot, threads=threads, expected_sha256=expected_sha256
    )
