"""onnxruntime sessions for bundle graphs: provider choice, I/O checks and error translation.

Provider order: TensorRT, then CUDA, then CPU, keeping only those this onnxruntime build offers;
onnxruntime falls back node by node along that list. One INFO line on the ``latent_vla.export``
logger says which provider runs each bundle.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from export.runtime.errors import BundleError, InferenceError, IntegrityError, ObservationError
from export.runtime.manifest import GraphSpec, TensorSpec

log = logging.getLogger("latent_vla.export")

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def select_providers(requested: Sequence[str] | None = None) -> list[str]:
    """Execution providers to use, best first.

    Args:
        requested: provider names, or short names ``"tensorrt"``, ``"cuda"``, ``"cpu"``; ``None`` means
            every provider of :data:`PREFERRED_PROVIDERS` that this onnxruntime offers.

    Returns:
        Provider names, always ending with ``CPUExecutionProvider``.

    Raises:
        BundleError: a requested provider is unknown or not available in this onnxruntime build.
    """
    available = ort.get_available_providers()
    short = {"tensorrt": PREFERRED_PROVIDERS[0], "cuda": PREFERRED_PROVIDERS[1], "cpu": PREFERRED_PROVIDERS[2]}
    if requested is None:
        chosen = [p for p in PREFERRED_PROVIDERS if p in available]
    else:
        chosen = []
        for name in requested:
            full = short.get(name.lower(), name)
            if full not in available:
                raise BundleError(f"execution provider {name!r} is not available; this onnxruntime offers {available}")
            chosen.append(full)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _session_options(threads: int | None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only; the runtime reports problems itself
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    return opts


def _same_shape(actual: Sequence[int | str | None], declared: Sequence[int | str]) -> bool:
    """Same rank, the same size on every fixed axis, and dynamic exactly where the manifest says so."""
    if len(actual) != len(declared):
        return False
    for x, y in zip(actual, declared, strict=True):
        if isinstance(x, int) != isinstance(y, int) or (isinstance(y, int) and x != y):
            return False
    return True


class GraphSession:
    """One bundle graph in onnxruntime, with inputs checked against the manifest before each run.

    Args:
        name: graph name for messages, e.g. ``"encoder"``.
        model_bytes: the verified ONNX file contents.
        spec: the graph's manifest entry.
        providers: execution providers, best first (see :func:`select_providers`).
        threads: intra-op threads, ``None`` for onnxruntime's default.

    Raises:
        IntegrityError: the bytes are not a loadable ONNX model, or its inputs/outputs differ from the manifest.
    """

    def __init__(
        self, name: str, model_bytes: bytes, spec: GraphSpec, providers: Sequence[str], threads: int | None = None
    ) -> None:
        self.name = name
        self.spec = spec
        try:
            self.session = ort.InferenceSession(
                model_bytes, sess_options=_session_options(threads), providers=list(providers)
            )
        except Exception as exc:  # onnxruntime raises several private exception types here
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise IntegrityError(f"bundle graph {name!r} ({spec.file}) is not a loadable ONNX model: {first}") from exc
        self._check_io()
        self.providers = self.session.get_providers()

    def _check_io(self) -> None:
        for kind, actual, expected in (
            ("inputs", self.session.get_inputs(), self.spec.inputs),
            ("outputs", self.session.get_outputs(), self.spec.outputs),
        ):
            if [a.name for a in actual] != [e.name for e in expected]:
                raise IntegrityError(
                    f"bundle graph {self.name!r}: ONNX {kind} {[a.name for a in actual]} differ from the manifest's "
                    f"{[e.name for e in expected]}"
                )
            for a, e in zip(actual, expected, strict=True):
                dtype = _ORT_TYPES.get(a.type, a.type)
                if dtype != e.dtype:
                    raise IntegrityError(
                        f"bundle graph {self.name!r}: {a.name} is {dtype} in ONNX, {e.dtype} in the manifest"
                    )
                if not _same_shape(a.shape, e.shape):
                    raise IntegrityError(
                        f"bundle graph {self.name!r}: {a.name} has shape {a.shape} in ONNX, "
                        f"{list(e.shape)} in the manifest"
                    )

    def _check_feed(self, spec: TensorSpec, value: np.ndarray, dims: dict[str, int]) -> None:
        if value.dtype != np.dtype(spec.dtype):
            raise ObservationError(f"{self.name}.{spec.name}: expected dtype {spec.dtype}, got {value.dtype}")
        if value.ndim != len(spec.shape):
            raise ObservationError(
                f"{self.name}.{spec.name}: expected shape {list(spec.shape)}, got {list(value.shape)} "
                f"({value.ndim} axes instead of {len(spec.shape)})"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, value.shape, strict=True)):
            if isinstance(want, int):
                if want != got:
                    raise ObservationError(
                        f"{self.name}.{spec.name}: axis {axis} must be {want}, got shape {list(value.shape)}"
                    )
            elif dims.setdefault(want, got) != got:
                raise ObservationError(
                    f"{self.name}.{spec.name}: axis {axis} ({want!r}) is {got} "
                    f"but another input has {want}={dims[want]}"
                )
            elif got < 1:
                raise ObservationError(f"{self.name}.{spec.name}: axis {axis} ({want!r}) is empty")

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph.

        Args:
            feeds: input name -> array, dtypes and shapes as in the manifest (dynamic axes must agree).

        Returns:
            Output name -> array.

        Raises:
            ObservationError: a missing, extra or mis-shaped input.
            InferenceError: onnxruntime failed anyway.
        """
        names = [t.name for t in self.spec.inputs]
        if set(feeds) != set(names):
            raise ObservationError(f"{self.name}: expected inputs {names}, got {sorted(feeds)}")
        dims: dict[str, int] = {}
        arrays = {}
        for spec in self.spec.inputs:
            value = np.ascontiguousarray(feeds[spec.name])
            self._check_feed(spec, value, dims)
            arrays[spec.name] = value
        try:
            outs = self.session.run(None, arrays)
        except Exception as exc:
            raise InferenceError(f"onnxruntime failed in graph {self.name!r}: {str(exc)[:300]}") from exc
        return {t.name: o for t, o in zip(self.spec.outputs, outs, strict=True)}
