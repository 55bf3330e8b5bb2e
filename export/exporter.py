"""Write an export bundle from a checkpoint: ONNX graphs, precision variants, parity checks, manifest.

``export_bundle(checkpoint, out_dir, settings)`` exports every graph of :mod:`export.graphs` with a
dynamic batch axis, runs each one in onnxruntime against PyTorch on fresh inputs (the export fails if
an fp32 graph differs by more than ``settings.parity_tol``), writes the fp16 / int8 variants of the
encoder and the policy with their measured error, and finally writes ``manifest.json`` (last, so a
half-written bundle never loads). The sha256 of ``manifest.json``, which holds the sha256 of every graph,
pins the whole bundle: it is logged, written to ``manifest.sha256`` (``sha256sum -c`` format) and returned
as :attr:`ExportResult.manifest_sha256`, for ``latent-vla run brain_sha256=<hex>``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from safetensors.numpy import save_file
from tqdm.auto import tqdm

from export import quantize
from export.graphs import EncoderGraph, PolicyGraph, RolloutCostGraph, TaskEmbedGraph, trace_cost_grad
from export.graphs import cost_and_grad as torch_cost_and_grad
from export.runtime.manifest import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    GraphSpec,
    Manifest,
    TensorSpec,
    sha256_file,
    write_manifest,
)
from latent_vla.base.fused_rollout import FUSED_FILE, FUSED_GRAPH, FusedRollout, head_kernels
from latent_vla.checkpoint import Checkpoint, load_checkpoint
from latent_vla.fused import fused_tensors, fused_unsupported
from planners.objectives import TrajectoryObjective
from planners.shipped import planner_config_with
from planners.torch_backend import fused_error

log = logging.getLogger("latent_vla.export")

SAMPLE_INSTRUCTION = "could you heave the red cube upward"
"""A real instruction whose pretrained subword ids the traced and checked ``tokens`` inputs carry."""
_ONNX_TYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 2: "uint8", 9: "bool"}
VARIANT_GRAPHS = ("encoder", "policy")  # graphs that get fp16 / int8 variants
PIN_NAME = "manifest.sha256"  # the manifest's sha256, as `sha256sum manifest.json` writes it


class ExportError(RuntimeError):
    """The export failed: a graph did not convert, or onnxruntime disagrees with PyTorch."""


PLANNER_MODES = ("grad", "cem", "mppi", "policy")
"""The planning modes a bundle records settings for (``configs/planner/<mode>.yaml``)."""


@dataclass
class ExportSettings:
    """What to export.

    Attributes:
        horizon: H, action-sequence length of ``rollout_cost`` and ``cost_grad`` (fixed in the graphs).
        precisions: variants to write for the encoder and the policy (``fp32`` is always written).
        opset: ONNX opset.
        objective: the trajectory objective of every planner of the bundle (its ``step_weight``,
            ``terminal_weight`` and ``discount`` are baked into ``rollout_cost`` and ``cost_grad``);
            ``None``: each planner config keeps its own objective and the model terms of the grad
            planner's are baked (every recorded config must then weigh the model terms the same way).
        grad, cem, mppi, policy: overrides of the shipped ``configs/planner/<mode>.yaml``; the merged
            configs (budget and temporal ensembling included) are recorded in the manifest, whose
            ``planner`` section the runtime builds its planners from.
        parity_tol: max abs difference onnxruntime vs PyTorch allowed for fp32 graphs.
        grad_rel_tol: max difference of the exported gradient, relative to its largest entry.
        fp16_tol: max abs error of fp16 variants (reported; exceeding it warns).
        int8_tol: max abs error of int8 variants (reported; exceeding it warns).
        max_batch: upper bound of the dynamic batch axis.
        seed: seed of the random parity inputs.
        default_instruction: instruction a brain uses before ``reset(instruction)``; ``None`` for none.
    """

    horizon: int = 16
    precisions: Sequence[str] = ("fp32", "fp16", "int8")
    opset: int = 20
    objective: TrajectoryObjective | None = None
    grad: dict[str, Any] = field(default_factory=dict)
    cem: dict[str, Any] = field(default_factory=dict)
    mppi: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    parity_tol: float = 1e-4
    grad_rel_tol: float = 1e-3
    fp16_tol: float = 2e-2
    int8_tol: float = 0.1
    max_batch: int = 4096
    seed: int = 0
    default_instruction: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.objective, Mapping):
            self.objective = TrajectoryObjective.from_dict(dict(self.objective))
        for mode in PLANNER_MODES:
            setattr(self, mode, planner_config_with(mode, getattr(self, mode)))
            if self.objective is not None:  # one objective for the whole bundle
                getattr(self, mode)["objective"] = self.objective.to_dict()
        if self.objective is None:
            self.objective = TrajectoryObjective.from_dict(self.grad.get("objective"))
        for mode in PLANNER_MODES:
            mode_objective = TrajectoryObjective.from_dict(getattr(self, mode).get("objective"))
            if not mode_objective.same_model_terms(self.objective):
                raise ValueError(
                    f"export: the {mode} planner weighs the model terms as {mode_objective.to_dict()}, but the graphs "
                    f"bake {self.objective.to_dict()}: step_weight, terminal_weight and discount must agree"
                )
        bad = [p for p in self.precisions if p not in ("fp32", "fp16", "int8")]
        if bad:
            raise ValueError(f"unknown precisions {bad}; valid: fp32, fp16, int8")
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")


@dataclass
class ReportRow:
    """One exported file: graph, precision, size (bytes), max error vs PyTorch and the tolerance."""

    graph: str
    precision: str
    file: str
    bytes: int
    max_abs_err: float
    tol: float
    ok: bool
    export_s: float


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _io(path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Names, shapes (int or axis name) and dtypes of an ONNX file's inputs and outputs."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def spec(v: onnx.ValueInfoProto) -> TensorSpec:
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "dynamic") for d in t.shape.dim)
        return TensorSpec(v.name, dims, _ONNX_TYPES.get(t.elem_type, str(t.elem_type)))

    return tuple(spec(v) for v in graph.input), tuple(spec(v) for v in graph.output)


def _entry(path: Path, precision: str) -> GraphSpec:
    inputs, outputs = _io(path)
    return GraphSpec(path.name, sha256_file(path), path.stat().st_size, inputs, outputs, precision)


def _export(
    module: torch.nn.Module,
    args: tuple,
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_shapes: tuple,
    opset: int,
) -> None:
    """``torch.onnx.export`` (dynamo) into one self-contained file, with its chatter captured."""
    buf = io.StringIO()
    chatty = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch.__trace", "onnx_ir", "onnxscript")]
    levels = [lg.level for lg in chatty]
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            warnings.simplefilter("ignore")
            for lg in chatty:
                lg.setLevel(logging.ERROR)
            torch.onnx.export(
                module.eval(),
                args,
                str(path),
                dynamo=True,
                external_data=False,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                verbose=False,
            )
    except Exception as exc:
        raise ExportError(
            f"exporting {path.name} failed: {exc}\n--- exporter output ---\n{buf.getvalue()[-3000:]}"
        ) from exc
    finally:
        for lg, level in zip(chatty, levels, strict=True):
            lg.setLevel(level)
    onnx.checker.check_model(str(path))


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _max_err(a: Any, b: Any) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@dataclass
class ExportResult:
    """What :func:`export_bundle` wrote: the manifest, one report row per file, the bundle path, and the
    hex sha256 of ``manifest.json`` (the bundle's pin)."""

    manifest: Manifest
    rows: list[ReportRow]
    path: Path
    manifest_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (``export_report.json``)."""
        return {
            "bundle": str(self.path),
            "manifest_sha256": self.manifest_sha256,
            "files": [asdict(r) for r in self.rows],
        }


def _observations_to_inputs(
    ckpt: Checkpoint, observations: Sequence[tuple[Mapping[str, Any], str]]
) -> list[dict[str, torch.Tensor]]:
    """Robot observations (+ instruction) -> encoder inputs ``{image_<cam>, state, task}`` at batch 1."""
    out = []
    with torch.no_grad():
        for obs, instruction in observations:
            images, state = ckpt.observation_to_model(obs)
            task = ckpt.embed_instruction([instruction])
            feeds = {f"image_{c}": images[c] for c in ckpt.model.camera_names}
            feeds.update(state=state, task=task)
            out.append(feeds)
    return out


class _ExportJob:
    """One export: the checkpoint, its sizes, the inputs for tracing and checking, the graph table."""

    def __init__(self, ckpt: Checkpoint, settings: ExportSettings, out: Path) -> None:
        assert settings.objective is not None
        self.ckpt, self.settings, self.out = ckpt, settings, out
        self.model = ckpt.model.eval().requires_grad_(False)
        self.gen = torch.Generator().manual_seed(settings.seed)
        self.cams = list(self.model.camera_names)
        m = self.model
        self.sizes = dict(L=ckpt.tokenizer.max_len, S=m.state_dim, Z=m.latent_dim, A=m.action_dim, H=settings.horizon)
        self.weights = torch.as_tensor(settings.objective.step_weights(settings.horizon))  # (H,), baked in
        self.graphs = self._graph_table(torch.export.Dim("batch", min=1, max=settings.max_batch))
        self.fused_meta: dict[str, float] | None = None  # set by export_fused

    def rand_inputs(self, b: int) -> dict[str, torch.Tensor]:
        """Random inputs of every graph for batch ``b`` (``z``/``z0`` encoded from the random images)."""
        n, (h, w), g = self.sizes, self.model.image_size, self.gen
        tokens = torch.randint(1, self.ckpt.tokenizer.vocab_size, (b, n["L"]), generator=g)
        tokens[:, n["L"] // 2 :] = 0  # padding like a real instruction
        if self.ckpt.tokenizer.pretrained is not None:  # a real instruction's subword ids after the words
            sub = [i for i in self.ckpt.tokenizer.encode(SAMPLE_INSTRUCTION)[0] if i >= self.ckpt.tokenizer.vocab_size]
            sub = sub[: n["L"] - n["L"] // 2]
            tokens[:, n["L"] // 2 : n["L"] // 2 + len(sub)] = torch.tensor(sub)
        x = {f"image_{c}": torch.rand(b, 3, h, w, generator=g) for c in self.cams}
        x["state"] = torch.randn(b, n["S"], generator=g)
        x["tokens"] = tokens
        with torch.no_grad():
            x["task"] = self.model.embed_task(tokens[:1])
            x["z"] = self.model.encode({c: x[f"image_{c}"] for c in self.cams}, x["state"], x["task"])
        x["z0"] = x["z"]
        x["actions"] = torch.rand(b, n["H"], n["A"], generator=g) * 2 - 1
        return x

    def traced_inputs(self) -> dict[str, torch.Tensor]:
        """Inputs whose batch size differs from every other axis: torch.export merges equal sizes ("duck
        sizing") and would specialize the batch axis to, e.g., the horizon."""
        h, w = self.model.image_size
        fixed = {1, 3, h, w, *self.sizes.values(), int(self.model.chunk_len), int(self.model.task_dim)}
        return self.rand_inputs(next(b for b in range(2, 10_000) if b not in fixed))

    def _graph_table(self, batch: Any) -> dict[str, dict[str, Any]]:
        model, cams, plan_dyn = self.model, self.cams, ({0: batch}, {0: batch}, None)
        plan_in = ["z0", "actions", "task"]
        return {
            "task_embed": dict(
                module=TaskEmbedGraph(model, self.ckpt.snap), inputs=["tokens"], outputs=["task"], dyn=({0: batch},)
            ),
            "encoder": dict(
                module=EncoderGraph(model),
                inputs=[f"image_{c}" for c in cams] + ["state", "task"],
                outputs=["z"],
                dyn=(tuple([{0: batch}] * len(cams) + [{0: batch}, None]),),
            ),
            "policy": dict(
                module=PolicyGraph(model), inputs=["z", "task"], outputs=["actions"], dyn=({0: batch}, None)
            ),
            "rollout_cost": dict(
                module=RolloutCostGraph(model, self.weights),
                inputs=plan_in,
                outputs=["cost", "step_cost"],
                dyn=plan_dyn,
            ),
            "cost_grad": dict(module=None, inputs=plan_in, outputs=["cost", "grad", "step_cost"], dyn=plan_dyn),
        }

    def eager(self, name: str, x: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """PyTorch's outputs of graph ``name`` on inputs ``x`` (the reference of the parity checks)."""
        model, cams = self.model, self.cams
        with torch.no_grad():
            if name == "task_embed":
                return [self.graphs[name]["module"](x["tokens"])]
            if name == "encoder":
                return [model.encode({c: x[f"image_{c}"] for c in cams}, x["state"], x["task"])]
            if name == "policy":
                return [model.policy(x["z"], x["task"])]
            if name == "rollout_cost":
                return list(RolloutCostGraph(model, self.weights)(x["z0"], x["actions"], x["task"]))
        return list(torch_cost_and_grad(model, x["z0"], x["actions"], x["task"], self.weights))

    def fp32_error(self, name: str, path: Path) -> float:
        """Max |onnxruntime - PyTorch| of graph ``name`` on fresh inputs at batch 1 and 3 (the gradient's
        relative to its largest entry)."""
        g, sess, err = self.graphs[name], _session(path), 0.0
        for b in (1, 3):  # fresh inputs, batch sizes other than the traced one
            x = self.rand_inputs(b)
            got = sess.run(None, {n: x[n].numpy() for n in g["inputs"]})
            for o, gt, wt in zip(g["outputs"], got, self.eager(name, x), strict=True):
                if gt.shape != tuple(wt.shape):
                    raise ExportError(f"{name}.{o}: onnxruntime shape {gt.shape} != PyTorch {tuple(wt.shape)}")
                e = _max_err(gt, wt)
                err = max(err, e / max(float(wt.abs().max()), 1e-8) if o == "grad" else e)
        return err

    def export_fp32(self, bar: Any) -> tuple[dict[str, dict[str, GraphSpec]], list[ReportRow]]:
        """Every graph in fp32, each checked against PyTorch; its manifest entries and report rows."""
        ex, rows, entries = self.traced_inputs(), [], {}
        for name, g in self.graphs.items():
            t0 = time.perf_counter()
            bar.set_postfix_str(name)
            path = self.out / f"{name}.onnx"
            module = g["module"] or trace_cost_grad(self.model, ex["z0"], ex["actions"], ex["task"], self.weights)
            _export(module, tuple(ex[n] for n in g["inputs"]), path, g["inputs"], g["outputs"], g["dyn"],
                    self.settings.opset)  # fmt: skip
            err = self.fp32_error(name, path)
            tol = self.settings.grad_rel_tol if name == "cost_grad" else self.settings.parity_tol
            if not err <= tol:
                raise ExportError(f"{name}: onnxruntime differs from PyTorch by {err:.3g} (tolerance {tol:g})")
            entries[name] = {"fp32": _entry(path, "fp32")}
            rows.append(
                ReportRow(name, "fp32", path.name, path.stat().st_size, err, tol, True, time.perf_counter() - t0)
            )
            bar.update(1)
        return entries, rows

    def export_fused(self, entries: dict[str, dict[str, GraphSpec]]) -> list[ReportRow]:
        """The fused planning kernel's tensors (``fused_rollout.safetensors``, when the kernel computes this
        model; every dynamics head's), checked against PyTorch like ``cost_grad``; added to ``entries``,
        its report row."""
        reason = fused_unsupported(self.model)
        if reason is not None:
            log.info("no fused planning kernel in the bundle: %s", reason)
            return []
        t0 = time.perf_counter()
        tensors, meta = fused_tensors(self.model)
        kernel = FusedRollout(tensors, meta)
        x = self.rand_inputs(3)
        x["z0"] = x["z0"][:1].expand(3, -1)  # the kernel plans from one start latent
        _, grad, steps = self.eager("cost_grad", x)
        k_steps, k_grad = kernel.step_costs_and_grad(
            x["z0"][0].numpy(), kernel.task_projection(x["task"].numpy()), x["actions"].numpy(), self.weights.numpy()
        )
        err = max(_max_err(k_steps, steps), _max_err(k_grad, grad) / max(float(grad.abs().max()), 1e-8))
        # further dynamics heads: each kernel against autograd through its own head
        err = max([err] + [fused_error(self.model, k, head=h) for h, k in enumerate(head_kernels(tensors, meta)) if h])
        tol = self.settings.grad_rel_tol
        if not err <= tol:
            raise ExportError(f"{FUSED_GRAPH}: the fused kernel differs from PyTorch by {err:.3g} (tolerance {tol:g})")
        path = self.out / FUSED_FILE
        save_file(tensors, str(path))
        outputs = tuple(TensorSpec(n, tuple(a.shape), "float32") for n, a in tensors.items())
        size = path.stat().st_size
        entries[FUSED_GRAPH] = {"fp32": GraphSpec(path.name, sha256_file(path), size, (), outputs, "fp32")}
        self.fused_meta = meta
        return [ReportRow(FUSED_GRAPH, "fp32", path.name, size, err, tol, True, time.perf_counter() - t0)]

    def _variant_inputs(self, calibration: Sequence[tuple[Mapping[str, Any], str]] | None) -> tuple[list, dict]:
        """``(calibration inputs, held-out encoder/policy inputs)`` from real observations (or random ones)."""
        real = _observations_to_inputs(self.ckpt, calibration) if calibration else []
        n_cal = len(real) // 2 if len(real) >= 4 else len(real)
        cal, held = real[:n_cal], real[n_cal:] or real
        if held:
            enc_eval = {k: torch.cat([x[k] for x in held]) for k in held[0] if k != "task"}
            enc_eval["task"] = held[0]["task"]
        else:
            enc_eval = self.rand_inputs(8)
        with torch.no_grad():
            images = {c: enc_eval[f"image_{c}"] for c in self.cams}
            enc_eval["z"] = self.model.encode(images, enc_eval["state"], enc_eval["task"])
        return cal, enc_eval

    def export_variants(self, entries: dict[str, dict[str, GraphSpec]], calibration: Any, bar: Any) -> list[ReportRow]:
        """fp16 / int8 variants of the encoder and the policy, added to ``entries``; their report rows."""
        cal, enc_eval = self._variant_inputs(calibration)
        rows = []
        for precision in [p for p in self.settings.precisions if p != "fp32"]:
            for name in VARIANT_GRAPHS:
                t0 = time.perf_counter()
                bar.set_postfix_str(f"{name}@{precision}")
                src, dst = self.out / f"{name}.onnx", self.out / f"{name}.{precision}.onnx"
                inputs = self.graphs[name]["inputs"]
                if precision == "fp16":
                    quantize.to_fp16(src, dst)
                elif name == "policy":
                    quantize.to_int8_dynamic(src, dst)
                elif cal:
                    quantize.to_int8_static(src, dst, [{n: x[n].numpy() for n in inputs} for x in cal])
                else:
                    log.warning("int8 encoder skipped: static quantization needs calibration observations")
                    bar.update(1)
                    continue
                got = _session(dst).run(None, {n: enc_eval[n].numpy() for n in inputs})[0]
                err = _max_err(got, self.eager(name, enc_eval)[0])
                tol = self.settings.fp16_tol if precision == "fp16" else self.settings.int8_tol
                if err > tol:
                    log.warning("%s@%s: max error %.3g exceeds the stated tolerance %g", name, precision, err, tol)
                entries[name][precision] = _entry(dst, precision)
                rows.append(ReportRow(name, precision, dst.name, dst.stat().st_size, err, tol, err <= tol,
                                      time.perf_counter() - t0))  # fmt: skip
                bar.update(1)
        return rows

    def manifest(self, entries: dict[str, dict[str, GraphSpec]]) -> Manifest:
        """The bundle's manifest over the written graph ``entries``."""
        ckpt, model, n, (h, w) = self.ckpt, self.model, self.sizes, self.model.image_size
        return Manifest(
            robot_spec=ckpt.spec.to_dict(),
            normalization=ckpt.normalizer.to_dict(),
            tokenizer=ckpt.tokenizer.to_dict(),
            model={
                "latent_dim": n["Z"],
                "action_dim": n["A"],
                "chunk_len": int(model.chunk_len),
                "task_dim": int(model.task_dim),
                "state_dim": n["S"],
                "token_len": n["L"],
                "horizon": n["H"],
                "camera_names": self.cams,
                "image_size": [h, w],
                "checkpoint_step": int(ckpt.step),
                "default_instruction": self.settings.default_instruction,
                **({"instruction_snap": ckpt.snap_table.to_dict()} if ckpt.snap_table else {}),
                **({FUSED_GRAPH: self.fused_meta} if self.fused_meta else {}),
            },  # fmt: skip
            planner=planner_section(self.settings),
            graphs=entries,
            producer={
                "package": "latent-vla",
                "version": _package_version("latent-vla"),
                "torch": torch.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": ort.__version__,
                "opset": self.settings.opset,
                "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
                "checkpoint": str(ckpt.run_dir),
            },  # fmt: skip
            schema_version=SCHEMA_VERSION,
        )


def export_bundle(
    checkpoint: Checkpoint | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    settings: ExportSettings | None = None,
    calibration: Sequence[tuple[Mapping[str, Any], str]] | None = None,
    progress: bool = True,
) -> ExportResult:
    """Export a checkpoint to an ONNX bundle.

    Args:
        checkpoint: a loaded :class:`Checkpoint` or a run directory.
        out_dir: bundle directory (created; files of an earlier bundle there are replaced).
        settings: :class:`ExportSettings`.
        calibration: robot observations with their instruction (``(observation dict, instruction)``),
            used to calibrate the static int8 encoder and to measure every variant's error on realistic
            inputs. Without it the int8 encoder is skipped and errors are measured on random inputs.
        progress: show a tqdm bar.

    Returns:
        :class:`ExportResult`.

    Raises:
        ExportError: a graph failed to export or onnxruntime disagrees with PyTorch beyond tolerance.
    """
    settings = settings or ExportSettings()
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)  # a half-written bundle must not look valid
    (out / PIN_NAME).unlink(missing_ok=True)
    job = _ExportJob(ckpt, settings, out)
    steps = len(job.graphs) + len(VARIANT_GRAPHS) * len([p for p in settings.precisions if p != "fp32"])
    bar = tqdm(total=steps, desc="export", disable=not progress, unit="graph")
    entries, rows = job.export_fp32(bar)
    rows += job.export_variants(entries, calibration, bar)
    rows += job.export_fused(entries)
    bar.close()
    manifest = job.manifest(entries)
    digest = sha256_file(write_manifest(out, manifest))
    (out / PIN_NAME).write_text(f"{digest}  {MANIFEST_NAME}\n", encoding="utf-8")
    log.info("manifest.json sha256 %s: pin this bundle with `latent-vla run brain_sha256=%s`", digest, digest)
    return ExportResult(manifest, rows, out, digest)


def planner_section(settings: ExportSettings) -> dict[str, Any]:
    """The manifest's ``planner`` section: the baked ``objective`` and each mode's full planner config,
    with the searching planners' horizon set to the graphs' ``H``."""
    assert settings.objective is not None
    section: dict[str, Any] = {"objective": settings.objective.to_dict()}
    for mode in PLANNER_MODES:
        cfg = dict(getattr(settings, mode))
        if mode != "policy":
            cfg["horizon"] = settings.horizon
        section[mode] = cfg
    return section


def eager_reference(ckpt: Checkpoint, settings: ExportSettings) -> Callable[..., Any]:
    """PyTorch reference of the ``cost_grad`` graph for ``ckpt`` (used by tests and benchmarks)."""
    assert settings.objective is not None
    weights = torch.as_tensor(settings.objective.step_weights(settings.horizon))

    def fn(z0: np.ndarray, actions: np.ndarray, task: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, g, _ = torch_cost_and_grad(
            ckpt.model, torch.from_numpy(z0), torch.from_numpy(actions), torch.from_numpy(task), weights
        )
        return c.detach().numpy(), g.detach().numpy()

    return fn
