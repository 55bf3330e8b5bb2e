"""``manifest.json`` of an export bundle: schema, validation and sha256 (numpy-free, torch-free).

A bundle is a directory::

    manifest.json          this schema (version :data:`SCHEMA_VERSION`)
    task_embed.onnx        tokens (B, L) int64 -> task (B, T)
    encoder.onnx           images (B, 3, h, w) per camera, state (B, S), task (B, T) -> z (B, Z)
    policy.onnx            z (B, Z), task (B, T) -> actions (B, K, A) in [-1, 1]
    rollout_cost.onnx      z0 (B, Z), actions (B, H, A), task (B, T) -> cost (B,), step_cost (B, H)
    cost_grad.onnx         z0 (B, Z), actions (B, H, A), task (B, T) -> cost (B,), grad (B, H, A), step_cost (B, H)
    encoder.int8.onnx ...  optional precision variants of some graphs
    fused_rollout.safetensors  optional: the fused planning kernel's tensors (latent_vla.base.fused_rollout);
                           its ``graphs`` entry lists them as outputs, its scalars are ``model.fused_rollout``

The manifest records for every graph and variant its file, sha256, size in bytes, and the names,
shapes (ints, or a string for a dynamic axis) and dtypes of its inputs and outputs, together with the
robot spec, the normalization stats, the tokenizer settings, the model's sizes and the planner settings.

Every file the manifest names must be a regular file inside the bundle directory (a symlink may point
only inside it). The sha256 of ``manifest.json`` itself (:attr:`Manifest.sha256`) covers every other
file through their hashes, so pinning it (``read_manifest(dir, expected_sha256=...)``) pins the bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export.runtime.errors import BundleError, IntegrityError, ManifestError, SchemaVersionError
from latent_vla.base.files import loads_json, read_small_file

SCHEMA_VERSION = 2  # 2: cost_grad also returns step_cost; planner settings are configs/planner/*.yaml
FORMAT = "latent-vla-bundle"
MANIFEST_NAME = "manifest.json"
REQUIRED_GRAPHS = ("task_embed", "encoder", "policy", "rollout_cost", "cost_grad")
PRECISIONS = ("fp32", "fp16", "int8")
DTYPES = ("float32", "float16", "int64", "int32", "uint8", "bool")
_REQUIRED_MODEL_KEYS = ("latent_dim", "action_dim", "chunk_len", "task_dim", "state_dim", "token_len", "horizon")
MAX_GRAPH_BYTES = 2 << 30  # protobuf's limit: an ONNX file without external data cannot be larger


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output.

    Attributes:
        name: ONNX value name.
        shape: one entry per axis: an int for a fixed size, a string (e.g. ``"batch"``) for a dynamic one.
        dtype: numpy dtype name, one of :data:`DTYPES`.
    """

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> TensorSpec:
        """Parse and check one tensor entry; ``where`` names it in error messages."""
        try:
            name, shape, dtype = data["name"], data["shape"], data["dtype"]
        except (KeyError, TypeError) as exc:
            raise ManifestError(f"manifest {where}: tensor entry needs name, shape and dtype ({exc})") from None
        if not isinstance(name, str) or not name:
            raise ManifestError(f"manifest {where}: tensor name must be a non-empty string, got {name!r}")
        if not isinstance(shape, list) or not all(
            isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in shape
        ):
            raise ManifestError(f"manifest {where}.{name}: shape must be a list of ints or axis names, got {shape!r}")
        if dtype not in DTYPES:
            raise ManifestError(f"manifest {where}.{name}: dtype {dtype!r} is not one of {DTYPES}")
        return cls(name, tuple(shape), dtype)


@dataclass(frozen=True)
class GraphSpec:
    """One ONNX file of the bundle.

    Attributes:
        file: file name relative to the bundle directory (no directories).
        sha256: hex sha256 of the file.
        bytes: file size in bytes.
        inputs: graph inputs in order.
        outputs: graph outputs in order.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (inputs and outputs stay float32 in every variant).
    """

    file: str
    sha256: str
    bytes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    precision: str = "fp32"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "file": self.file,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "precision": self.precision,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> GraphSpec:
        """Parse and check one graph entry; ``where`` names it in error messages."""
        if not isinstance(data, Mapping):
            raise ManifestError(f"manifest {where}: expected an object, got {type(data).__name__}")
        missing = [k for k in ("file", "sha256", "bytes", "inputs", "outputs") if k not in data]
        if missing:
            raise ManifestError(f"manifest {where}: missing {missing}")
        file = data["file"]
        if not isinstance(file, str) or not file or Path(file).name != file or file in {".", ".."}:
            raise ManifestError(f"manifest {where}: file must be a plain file name inside the bundle, got {file!r}")
        sha = data["sha256"]
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ManifestError(f"manifest {where}: sha256 must be 64 lower-case hex digits, got {sha!r}")
        precision = data.get("precision", "fp32")
        if precision not in PRECISIONS:
            raise ManifestError(f"manifest {where}: precision {precision!r} is not one of {PRECISIONS}")
        size = data["bytes"]
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_GRAPH_BYTES:
            raise ManifestError(f"manifest {where}: bytes must be an int in 1..{MAX_GRAPH_BYTES} (2 GiB), got {size!r}")
        if not isinstance(data["inputs"], list) or not isinstance(data["outputs"], list):
            raise ManifestError(f"manifest {where}: inputs and outputs must be lists")
        return cls(
            file=file,
            sha256=sha,
            bytes=size,
            inputs=tuple(TensorSpec.from_dict(t, f"{where}.inputs") for t in data["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t, f"{where}.outputs") for t in data["outputs"]),
            precision=precision,
        )


@dataclass
class Manifest:
    """The parsed ``manifest.json``.

    Attributes:
        robot_spec: ``RobotSpec.to_dict()`` of the arm the model was trained for.
        normalization: ``Normalizer.to_dict()``.
        tokenizer: ``Tokenizer.to_dict()``.
        model: sizes: ``latent_dim`` Z, ``action_dim`` A, ``chunk_len`` K, ``task_dim`` T, ``state_dim`` S,
            ``token_len`` L, ``horizon`` H (of the rollout graphs), ``camera_names``, ``image_size``.
        planner: default planner settings per mode (``grad``, ``cem``, ``mppi``; ``policy``: the loop's
            ``temporal_ensemble``).
        graphs: graph name -> precision -> :class:`GraphSpec`.
        producer: package, version and tool versions that wrote the bundle.
        schema_version: :data:`SCHEMA_VERSION` of the writer.
        sha256: hex sha256 of the ``manifest.json`` bytes this was parsed from (``""`` if built in memory).
    """

    robot_spec: dict[str, Any]
    normalization: dict[str, Any]
    tokenizer: dict[str, Any]
    model: dict[str, Any]
    planner: dict[str, Any]
    graphs: dict[str, dict[str, GraphSpec]]
    producer: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    sha256: str = field(default="", compare=False)

    def graph(self, name: str, precision: str = "fp32") -> GraphSpec:
        """The entry of graph ``name`` at ``precision``, falling back to fp32 when that variant was not exported.

        Raises:
            ManifestError: when the graph is not in the bundle at all.
        """
        variants = self.graphs.get(name)
        if not variants:
            raise ManifestError(f"bundle has no {name!r} graph; it has {sorted(self.graphs)}")
        if precision in variants:
            return variants[precision]
        if "fp32" in variants:
            return variants["fp32"]
        raise ManifestError(f"bundle graph {name!r} has no {precision!r} or fp32 variant; it has {sorted(variants)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what :func:`write_manifest` writes)."""
        return {
            "format": FORMAT,
            "schema_version": self.schema_version,
            "producer": self.producer,
            "robot_spec": self.robot_spec,
            "normalization": self.normalization,
            "tokenizer": self.tokenizer,
            "model": self.model,
            "planner": self.planner,
            "graphs": {n: {p: g.to_dict() for p, g in v.items()} for n, v in self.graphs.items()},
        }

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Parse and check a manifest dict.

        Raises:
            SchemaVersionError: a schema version this runtime cannot read (older, newer, or not an int).
            ManifestError: a missing or malformed field, naming it.
        """
        if not isinstance(data, Mapping):
            raise ManifestError(f"manifest must be a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise ManifestError(f"manifest format is {data.get('format')!r}, expected {FORMAT!r}")
        version = data.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise SchemaVersionError(f"manifest schema_version must be a positive int, got {version!r}")
        if version < SCHEMA_VERSION:
            raise SchemaVersionError(
                f"bundle manifest has schema version {version}, from an older latent-vla whose planner settings and "
                f"cost_grad graph this runtime no longer reads (it reads schema {SCHEMA_VERSION}); re-export the "
                "checkpoint with `latent-vla export`"
            )
        if version > SCHEMA_VERSION:
            producer = data.get("producer", {})
            raise SchemaVersionError(
                f"bundle manifest has schema version {version} (written by {producer.get('package', '?')} "
                f"{producer.get('version', '?')}), but this runtime reads schema versions up to {SCHEMA_VERSION}; "
                "upgrade latent-vla on this device or re-export with this version"
            )
        missing = [
            k for k in ("robot_spec", "normalization", "tokenizer", "model", "planner", "graphs") if k not in data
        ]
        if missing:
            raise ManifestError(f"manifest is missing {missing}")
        for key in ("robot_spec", "normalization", "tokenizer", "model", "planner", "graphs"):
            if not isinstance(data[key], Mapping):
                raise ManifestError(f"manifest {key} must be an object, got {type(data[key]).__name__}")
        model_missing = [k for k in _REQUIRED_MODEL_KEYS if not _positive_int(data["model"].get(k))]
        if model_missing:
            raise ManifestError(f"manifest model section lacks positive integer {model_missing}")
        graphs: dict[str, dict[str, GraphSpec]] = {}
        for name, variants in data["graphs"].items():
            if not isinstance(variants, Mapping) or not variants:
                raise ManifestError(f"manifest graphs.{name} must map precisions to graph entries")
            graphs[name] = {p: GraphSpec.from_dict(g, f"graphs.{name}.{p}") for p, g in variants.items()}
            wrong = [p for p, g in graphs[name].items() if g.precision != p]
            if wrong:
                raise ManifestError(f"manifest graphs.{name}: entries {wrong} declare another precision than their key")
        absent = [g for g in REQUIRED_GRAPHS if g not in graphs or "fp32" not in graphs[g]]
        if absent:
            raise ManifestError(f"manifest lacks the fp32 graphs {absent}")
        return cls(
            robot_spec=dict(data["robot_spec"]),
            normalization=dict(data["normalization"]),
            tokenizer=dict(data["tokenizer"]),
            model=dict(data["model"]),
            planner=dict(data["planner"]),
            graphs=graphs,
            producer=dict(data.get("producer", {})),
            schema_version=version,
        )


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_sha256(actual: str, expected: str) -> None:
    """Refuse a manifest whose sha256 is not the pinned one.

    Args:
        actual: hex sha256 of the ``manifest.json`` bytes that were read (:attr:`Manifest.sha256`).
        expected: the pin, as ``latent-vla export`` printed it (64 hex digits, case and spaces ignored).

    Raises:
        BundleError: the pin is not 64 hex digits.
        IntegrityError: the digests differ.
    """
    pin = str(expected).strip().lower()
    if len(pin) != 64 or any(c not in "0123456789abcdef" for c in pin):
        raise BundleError(
            f"a pinned manifest sha256 must be 64 hex digits (as `latent-vla export` prints it), got {expected!r}"
        )
    if actual != pin:
        raise IntegrityError(
            f"bundle manifest.json has sha256 {actual}, not the pinned {pin}: this is not the bundle you pinned "
            "(re-exported, or modified); check where it came from before pinning the new hash"
        )


def bundle_file(bundle_dir: str | os.PathLike[str], name: str, what: str) -> Path:
    """The resolved path of file ``name`` of a bundle, refusing one that is absent, not regular, or outside.

    Args:
        bundle_dir: the bundle directory.
        name: a plain file name from the manifest.
        what: what the file is, for messages (e.g. ``"graph 'encoder@fp32'"``).

    Raises:
        IntegrityError: the file is missing, is not a regular file, or is a symlink leading out of the bundle.
    """
    root = Path(bundle_dir).resolve()
    path = root / name
    if not os.path.lexists(path):
        raise IntegrityError(f"bundle {what}: file {path} is missing")
    real = path.resolve()
    if not real.is_relative_to(root):
        raise IntegrityError(f"bundle {what}: {name} is a symlink to {real}, outside the bundle directory {root}")
    if not real.exists():
        raise IntegrityError(f"bundle {what}: file {path} is missing (a dangling symlink)")
    if not real.is_file():
        raise IntegrityError(f"bundle {what}: {path} is not a regular file")
    return real


def read_manifest(bundle_dir: str | os.PathLike[str], expected_sha256: str | None = None) -> Manifest:
    """Read and check ``<bundle_dir>/manifest.json`` (schema only; see :func:`verify_files` for hashes).

    Args:
        bundle_dir: the bundle directory.
        expected_sha256: when given, the manifest's bytes must have this sha256 (checked before parsing).

    Raises:
        ManifestError: the directory or manifest is missing or not valid JSON, or a field is wrong.
        SchemaVersionError: the manifest's schema is newer than this runtime.
        IntegrityError: the manifest is a symlink out of the bundle, or not the pinned one.
    """
    bundle = Path(bundle_dir)
    if not bundle.is_dir():
        raise ManifestError(f"export bundle directory {bundle} does not exist")
    if not os.path.lexists(bundle / MANIFEST_NAME):
        raise ManifestError(f"{bundle} is not an export bundle: it has no {MANIFEST_NAME}")
    path = bundle_file(bundle, MANIFEST_NAME, "manifest")
    data = read_small_file(path, ManifestError)
    digest = sha256_bytes(data)
    if expected_sha256 is not None:
        check_sha256(digest, expected_sha256)
    manifest = Manifest.from_dict(loads_json(data, str(bundle / MANIFEST_NAME), ManifestError))
    manifest.sha256 = digest
    return manifest


def write_manifest(bundle_dir: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (temp file + rename); returns its path."""
    path = Path(bundle_dir) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _sized_file(bundle_dir: str | os.PathLike[str], graph: GraphSpec, name: str) -> Path:
    """The graph's file, refused unless it is inside the bundle and has the manifest's size (nothing read)."""
    path = bundle_file(bundle_dir, graph.file, f"graph {name!r}")
    size = path.stat().st_size
    if size != graph.bytes:
        raise IntegrityError(
            f"bundle graph {name!r}: {graph.file} is {size} bytes but the manifest says {graph.bytes} "
            "(truncated or modified file; re-copy or re-export the bundle)"
        )
    return path


def read_verified_bytes(bundle_dir: str | os.PathLike[str], graph: GraphSpec, name: str) -> bytes:
    """Read one graph file and check its size (before reading it) and sha256 against the manifest.

    The returned bytes are the ones that were hashed, so what onnxruntime loads is what was checked.

    Raises:
        IntegrityError: the file is missing, outside the bundle, truncated or extended, or its content differs.
    """
    path = _sized_file(bundle_dir, graph, name)
    with open(path, "rb") as fh:
        data = fh.read(graph.bytes + 1)
    if len(data) != graph.bytes:
        raise IntegrityError(f"bundle graph {name!r}: {graph.file} changed size while being read")
    digest = sha256_bytes(data)
    if digest != graph.sha256:
        raise IntegrityError(
            f"bundle graph {name!r}: sha256 of {graph.file} is {digest[:16]}..., manifest says {graph.sha256[:16]}... "
            "(file was modified or corrupted; re-copy or re-export the bundle)"
        )
    return data


def check_files(bundle_dir: str | os.PathLike[str], manifest: Manifest) -> None:
    """Cheap check of every file the manifest names (all graphs, all precisions): present, inside, right size.

    Raises:
        IntegrityError: naming the first bad entry.
    """
    for name, variants in manifest.graphs.items():
        for precision, graph in variants.items():
            _sized_file(bundle_dir, graph, f"{name}@{precision}")


def verify_files(bundle_dir: str | os.PathLike[str], manifest: Manifest) -> None:
    """Check every file listed in the manifest (all graphs, all precisions) for size and sha256.

    Raises:
        IntegrityError: naming the first bad file.
    """
    for name, variants in manifest.graphs.items():
        for precision, graph in variants.items():
            read_verified_bytes(bundle_dir, graph, f"{name}@{precision}")
