"""GPU paths selected by config: ``eval device=`` / ``providers=``, ``run brain_device=`` / ``brain_providers=``,
``train device=`` and ``benchmarks/device_speed.py``'s onnxruntime rows.

Without a GPU only the refusals run (one line, exit 2, before any work); the CUDA tests skip unless
``torch.cuda.is_available()`` (or onnxruntime offers ``CUDAExecutionProvider``) and then compare with the CPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from file_import import import_file

from latent_vla.app.cli import main
from latent_vla.base.errors import UserError

REPO = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()
ORT_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
ORT_TENSORRT = "TensorrtExecutionProvider" in ort.get_available_providers()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (torch.cuda.is_available())")
needs_ort_cuda = pytest.mark.skipif(not ORT_CUDA, reason="onnxruntime offers no CUDAExecutionProvider here")
without_cuda = pytest.mark.skipif(CUDA, reason="checks the refusal on a machine without CUDA")


def _helpers():
    """``tests/export/export_helpers.py`` (its small random checkpoint), imported by path."""
    return import_file(REPO / "tests" / "export" / "export_helpers.py")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random WorldModel checkpoint (32x32 images, Z = 32)."""
    torch.set_num_threads(1)
    return _helpers().make_checkpoint(tmp_path_factory.mktemp("gpu_run") / "run")


def _export(run: Path, out: Path, horizon: int = 2) -> Path:
    """An fp32 bundle of ``run`` (tens of seconds of tracing on a CPU)."""
    from export.exporter import ExportSettings, export_bundle
    from latent_vla.checkpoint import load_checkpoint

    return export_bundle(load_checkpoint(run), out, ExportSettings(horizon=horizon, precisions=("fp32",)),
                         progress=False).path  # fmt: skip


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], *expected: str) -> None:
    """``latent-vla argv`` exits 2 with one stderr line holding every ``expected`` substring."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    for text in expected:
        assert text in lines[0], lines[0]


# -- (a) without a GPU: the refusals ----------------------------------------------------------------
@without_cuda
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["eval", "ckpt={tmp}", "device=cuda"], ["device='cuda'", "CUDA is not available", "device=cpu"]),
        (["eval", "ckpt={tmp}", "device=cuda:1"], ["device='cuda:1'", "CUDA is not available"]),
        (["run", "brain=scripted", "brain_device=cuda"], ["brain_device='cuda'", "CUDA is not available"]),
        (["train", "data={tmp}", "device=cuda"], ["device='cuda'", "CUDA is not available"]),
    ],
    ids=["eval", "eval-index", "run", "train"],
)
def test_cuda_device_without_cuda_is_one_line(argv, expected, tmp_path, capsys) -> None:
    argv = [a.format(tmp=tmp_path) for a in argv]
    _refused([*argv, f"out={tmp_path}/o"], capsys, *expected)
    assert not (tmp_path / "o").exists()  # refused before any work


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["eval", "ckpt={tmp}", "device=gpu"], ["device='gpu' is not a torch device", "cuda:N"]),
        (["eval", "bundle={tmp}", "device=cuda"], ["bundle= takes providers="]),
        (["eval", "ckpt={tmp}", "providers=[cpu]"], ["ckpt= takes device="]),
        (["eval", "bundle={tmp}", "providers=[]"], ["providers must be a non-empty list"]),
        (["run", "brain=scripted", "brain_device=tpu0"], ["brain_device='tpu0' is not a torch device"]),
    ],
    ids=["eval-bad-name", "eval-device-for-bundle", "eval-providers-for-ckpt", "eval-no-provider", "run-bad-name"],
)
def test_device_settings_for_the_wrong_model_or_no_device_are_one_line(argv, expected, tmp_path, capsys) -> None:
    argv = [a.format(tmp=tmp_path) for a in argv]
    _refused([*argv, f"out={tmp_path}/o"], capsys, *expected)


@pytest.mark.parametrize(
    ("argv", "provider", "missing"),
    [
        (["eval", "bundle={tmp}", "providers=[cuda]"], "providers=[cuda]", not ORT_CUDA),
        (["eval", "bundle={tmp}", "providers=[tensorrt,cuda]"], "providers=[tensorrt,cuda]", not ORT_TENSORRT),
        (["run", "brain=scripted", "brain_providers=[cuda]"], "brain_providers=[cuda]", not ORT_CUDA),
    ],
    ids=["eval-cuda", "eval-tensorrt", "run-cuda"],
)
def test_unavailable_provider_is_one_line(argv, provider, missing, tmp_path, capsys) -> None:
    if not missing:
        pytest.skip("this onnxruntime offers the provider")
    argv = [a.format(tmp=tmp_path) for a in argv]
    _refused([*argv, f"out={tmp_path}/o"], capsys, provider, "is not available", "this onnxruntime offers")


@without_cuda
def test_loaders_refuse_cuda_without_cuda_and_the_other_kinds_setting(run_dir: Path) -> None:
    from hardware.brain import load_brain
    from planners.brains import PlannerBrain

    with pytest.raises(UserError, match="CUDA is not available"):
        PlannerBrain(run_dir, "grad", map_location="cuda")
    with pytest.raises(UserError, match="CUDA is not available"):
        load_brain(str(run_dir), "reach the red cube", device="cuda")
    with pytest.raises(ValueError, match="a training run takes device="):
        load_brain(str(run_dir), "reach the red cube", providers=["cpu"])


def test_device_auto_and_cpu_load_a_run_on_this_machine(run_dir: Path) -> None:
    from latent_vla.devices import resolve_device
    from planners.brains import PlannerBrain

    brain = PlannerBrain(run_dir, "grad", map_location="auto")
    assert next(brain.model.parameters()).device.type == ("cuda" if CUDA else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


# -- (b) with a GPU: the same plans as on the CPU ---------------------------------------------------
def _grad_plan(run: Path, device: str) -> np.ndarray:
    """The gradient planner's plan (autograd, 10 iterations) on ``device`` from the CPU's start latent."""
    from latent_vla.checkpoint import load_checkpoint
    from planners.gradient import GradientPlanner
    from planners.objectives import TrajectoryObjective
    from planners.torch_backend import TorchBackend

    helpers = _helpers()
    cpu = load_checkpoint(run)
    task = cpu.embed_instruction([helpers.INSTRUCTION])
    z0 = cpu.encode_observation(helpers.random_observation(0), task)  # the same start on both devices
    ck = load_checkpoint(run, map_location=device)
    backend = TorchBackend(ck.model, TrajectoryObjective(), fused=False)
    planner = GradientPlanner(backend, 4, restarts=4, iterations=10, patience=0, seed=0, use_policy=False)
    plan, info = planner.plan(z0.to(device), task.to(device))
    assert info["iterations"] == 10
    return plan


@needs_cuda
def test_gradient_planner_on_cuda_matches_the_cpu(run_dir: Path) -> None:
    assert np.abs(_grad_plan(run_dir, "cuda") - _grad_plan(run_dir, "cpu")).max() <= 1e-3


@needs_cuda
def test_eval_cli_runs_a_checkpoint_on_cuda(run_dir: Path, tmp_path: Path) -> None:
    argv = ["eval", f"ckpt={run_dir}", "device=cuda", "planners=[grad,policy]", "episodes=1", "max_steps=3",
            "videos=1", "progress=false", f"out={tmp_path}/eval"]  # fmt: skip
    assert main(argv) == 0
    records = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert [r["planner"] for r in records] == ["grad", "policy"]


@needs_ort_cuda
def test_bundle_on_the_cuda_provider_matches_the_cpu_provider(run_dir: Path, tmp_path: Path) -> None:
    from export.runtime import BundleBackend, load_bundle
    from export.runtime.brain import BundlePerception
    from planners.gradient import GradientPlanner

    helpers = _helpers()
    bundle_dir = _export(run_dir, tmp_path / "bundle", horizon=4)
    plans = {}
    for provider in ("cpu", "cuda"):
        bundle = load_bundle(bundle_dir, providers=[provider])
        assert bundle.sessions["cost_grad"].providers[0] == f"{provider.upper()}ExecutionProvider"
        perception = BundlePerception(bundle)
        task = perception.embed_instruction(helpers.INSTRUCTION)
        z0 = perception.encode_observation(helpers.random_observation(0), task)
        backend = BundleBackend(bundle, fused=False)
        planner = GradientPlanner(backend, 4, restarts=4, iterations=10, patience=0, seed=0, use_policy=False)
        plans[provider] = planner.plan(z0, task)[0]
    assert np.abs(plans["cuda"] - plans["cpu"]).max() <= 1e-3


@needs_cuda
def test_a_short_training_run_on_cuda(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    from synthetic_data import tiny_run_settings

    from latent_vla.checkpoint import load_checkpoint
    from latent_vla.train import train

    settings = dataclasses.replace(tiny_run_settings(tiny_dataset_dir, tmp_path / "run", steps=20), device="cuda")
    result = train(settings)
    assert result.step == 20 and all(np.isfinite(v) for v in result.last.values())
    ck = load_checkpoint(result.run_dir, map_location="cuda")
    assert next(ck.model.parameters()).device.type == "cuda"


# -- benchmarks/device_speed.py ---------------------------------------------------------------------
@pytest.mark.slow
def test_device_speed_smoke_reports_torch_and_onnxruntime_rows(run_dir: Path, tmp_path: Path) -> None:
    """``--smoke`` on a small exported bundle (``--bundle``): the export of the default model would take minutes."""
    bundle_dir = _export(run_dir, tmp_path / "bundle")
    out = tmp_path / "device_speed.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "benchmarks" / "device_speed.py"), "--smoke", "--devices", "cpu",
           "--threads", "1", "--bundle", str(bundle_dir), "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "onnxruntime" in done.stdout and "train steps/s" in done.stdout
    result = json.loads(out.read_text())
    assert set(result["devices"]) == {"cpu"} and result["devices"]["cpu"]["train_steps_per_s"] > 0
    expected = {"cpu"} | ({"cuda"} if ORT_CUDA else set()) | ({"tensorrt"} if ORT_TENSORRT else set())
    assert set(result["onnxruntime"]) == expected
    cpu = result["onnxruntime"]["cpu"]
    assert cpu["active_provider"] == "CPUExecutionProvider" and cpu["plan_max_abs_diff_vs_first"] == 0.0
    assert cpu["grad_ms_per_iteration_p50"] > 0 and cpu["cem_ms_per_round_p50"] > 0
