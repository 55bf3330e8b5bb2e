"""The PyTorch-free runtime: it plans and acts with ``import torch`` blocked, implements the Brain
interface in every mode, and turns bad input into our own errors before onnxruntime sees it."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from export_helpers import INSTRUCTION, random_observation

from export.runtime import (
    MODES,
    BundleError,
    ObservationError,
    load_bundle,
    load_bundle_brain,
)
from export.runtime.session import select_providers
from latent_vla.base.robot_spec import SO101

BLOCKER = '''
import sys

class _NoTorch:
    """Meta-path finder that makes `import torch` fail, as on an edge device without PyTorch."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the export tests)", name=name)
        return None

sys.meta_path.insert(0, _NoTorch())
'''

SCRIPT = """
import json, sys
import numpy as np
from export.runtime import load_bundle_brain

bundle, obs_file, instruction = sys.argv[1:4]
raw = np.load(obs_file)
obs = {k: (raw[k] if raw[k].ndim == 3 else float(raw[k])) for k in raw.files}
out = {}
for mode in ("policy", "grad", "cem", "mppi"):
    planner = {"iterations": 3, "budget_ms": None} if mode != "policy" else None  # rounds, not time
    brain = load_bundle_brain(bundle, mode=mode, instruction=instruction, planner=planner)
    out[mode] = brain.act(obs)
    out[mode + "_info"] = {k: v for k, v in brain.last_info.items() if isinstance(v, (int, float, str))}
from export.runtime import BundleBackend  # random shooting: every planner of planners/ runs here
from planners.registry import make_planner
b = brain.bundle
task = b.embed_task([instruction])
z = brain.perception.encode_observation(obs, task)
shooter = make_planner({"name": "random", "samples": 32, "objective": b.manifest.planner["objective"]},
                       BundleBackend(b))
plan, info = shooter.plan(z, task)
out["random_plan"], out["random_info"] = [float(x) for x in plan[0]], {"iterations": info["iterations"]}
int8 = load_bundle_brain(bundle, mode="policy", instruction=instruction, precision="int8")
out["policy_int8"] = int8.act(obs)
try:
    import torch  # noqa: F401
    out["torch"] = "imported"
except ModuleNotFoundError:
    out["torch"] = "blocked"
out["heavy_modules"] = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "lerobot", "hydra", "mujoco"})
print("RESULT " + json.dumps(out))
"""


def _save_obs(obs: dict, path) -> None:
    np.savez(path, **{k: np.asarray(v) for k, v in obs.items()})


def test_runtime_plans_and_acts_without_torch(bundle_dir, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    (tmp_path / "edge.py").write_text(SCRIPT)
    obs = random_observation(11)
    _save_obs(obs, tmp_path / "obs.npz")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "edge.py"), str(bundle_dir), str(tmp_path / "obs.npz"), INSTRUCTION],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT ") :])
    assert out["torch"] == "blocked"
    assert out["heavy_modules"] == []
    for mode in ("policy", "grad", "cem", "mppi", "policy_int8"):
        assert list(out[mode]) == SO101.action_keys
        assert all(np.isfinite(v) for v in out[mode].values())
    assert out["grad_info"]["iterations"] >= 1 and out["cem_info"]["iterations"] == 3
    assert out["mppi_info"]["iterations"] == 3 and out["random_info"]["iterations"] == 1
    assert len(out["random_plan"]) == 6 and all(np.isfinite(out["random_plan"]))
    # The same bundle in this process (torch importable) gives the same policy action.
    here = load_bundle_brain(bundle_dir, mode="policy", instruction=INSTRUCTION).act(obs)
    np.testing.assert_allclose(list(out["policy"].values()), list(here.values()), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_acts_within_the_data_range(bundle_dir, mode):
    brain = load_bundle_brain(bundle_dir, mode=mode, instruction=INSTRUCTION, planner=None)
    norm = brain.bundle.normalizer
    for seed in range(2):
        action = brain.act(random_observation(seed))
        vec = SO101.action_to_vector(action)
        assert np.all(vec >= norm.action_min - 1e-4) and np.all(vec <= norm.action_max + 1e-4)
    if mode != "policy":
        info = brain.last_info
        assert info["iterations"] >= 1 and np.isfinite(info["cost"]) and info["plan_ms"] > 0
        assert brain.last_plan is not None and brain.last_plan.shape == (4, 6)
        brain.reset()
        assert brain.last_plan is None and brain.instruction == INSTRUCTION


def test_planners_are_seeded_and_respect_budget(bundle_dir):
    obs = random_observation(5)
    no_budget = {"budget_ms": None}  # a wall-clock budget cuts rounds by time: seeded plans need none
    acts = [
        load_bundle_brain(bundle_dir, mode="cem", instruction=INSTRUCTION, planner=no_budget).act(obs) for _ in range(2)
    ]
    assert acts[0] == acts[1]
    brain = load_bundle_brain(
        bundle_dir, mode="grad", instruction=INSTRUCTION, planner={"iterations": 10_000, "patience": 0, "budget_ms": 30}
    )
    brain.act(obs)
    assert brain.last_info["stopped"] == "budget" and brain.last_info["iterations"] < 10_000


def test_policy_mode_blends_the_last_chunks_as_the_manifest_says(bundle_dir):
    """Temporal ensembling (as ``planners.mpc.MPC`` with the shipped policy config) in the runtime."""
    obs = random_observation(9)
    brain = load_bundle_brain(bundle_dir, mode="policy", instruction=INSTRUCTION)
    assert brain.bundle.manifest.planner["policy"]["temporal_ensemble"] == 0.0 and brain.mpc.ensemble is not None
    assert all(brain.bundle.manifest.planner[m]["temporal_ensemble"] == 0.0 for m in ("grad", "cem", "mppi"))
    b = brain.bundle
    task = b.embed_task([INSTRUCTION])
    z = b.encode({c: b.normalizer.image_to_model(np.asarray(obs[c]))[None] for c in b.camera_names},
                 b.normalizer.state_to_model(SO101.action_to_vector(obs))[None], task)  # fmt: skip
    chunk = b.policy(z, task)[0]  # (K, A)
    first = SO101.action_to_vector(brain.act(obs))
    second = SO101.action_to_vector(brain.act(obs))
    np.testing.assert_allclose(first, b.normalizer.action_from_model(chunk[0]), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(second, b.normalizer.action_from_model((chunk[0] + chunk[1]) / 2), rtol=1e-5, atol=1e-4)
    plain = load_bundle_brain(bundle_dir, mode="policy", instruction=INSTRUCTION, planner={"temporal_ensemble": None})
    assert plain.mpc.ensemble is None
    plain.act(obs)
    np.testing.assert_allclose(SO101.action_to_vector(plain.act(obs)), first, rtol=1e-5, atol=1e-4)


def test_instruction_changes_the_task(bundle_dir):
    brain = load_bundle_brain(bundle_dir, mode="policy", instruction="reach the red target")
    obs = random_observation(2)
    a = brain.act(obs)
    brain.reset("reach the blue target")
    assert brain.act(obs) != a


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o.pop("elbow_flex.pos"), r"lacks joint keys \['elbow_flex.pos'\]"),
        (lambda o: o.pop("wrist"), "lacks camera 'wrist'"),
        (lambda o: o.update(front=np.zeros((48, 48, 4), np.uint8)), r"\(H, W, 3\) image, got shape \(48, 48, 4\)"),
        (lambda o: o.update(front=np.zeros((48, 48), np.uint8)), r"got shape \(48, 48\)"),
        (lambda o: o.update(wrist=np.zeros((48, 48, 3), np.float32)), "must be uint8, got float32"),
        (lambda o: o.update({"gripper.pos": float("nan")}), "not finite"),
        (lambda o: o.update({"gripper.pos": np.zeros(3)}), "must be a scalar"),
        (lambda o: o.update({"gripper.pos": "open"}), "not a number"),
    ],
)
def test_bad_observations_raise_observation_error(bundle_dir, mutate, message):
    brain = load_bundle_brain(bundle_dir, mode="policy", instruction=INSTRUCTION)
    obs = random_observation(0)
    mutate(obs)
    with pytest.raises(ObservationError, match=message):
        brain.act(obs)


def test_brain_usage_errors(bundle_dir):
    brain = load_bundle_brain(bundle_dir, mode="policy")
    with pytest.raises(RuntimeError, match=r"call reset\(instruction\)"):
        brain.act(random_observation(0))
    with pytest.raises(ObservationError, match="must be a str"):
        brain.reset(42)
    brain.reset(INSTRUCTION)
    with pytest.raises(ObservationError, match="must be a dict"):
        brain.act([1, 2, 3])
    with pytest.raises(ValueError, match="mode must be one of"):
        load_bundle_brain(bundle_dir, mode="dream")
    with pytest.raises(TypeError, match="iters"):
        load_bundle_brain(bundle_dir, mode="grad", planner={"iters": 3})
    with pytest.raises(ValueError, match="precision"):
        load_bundle(bundle_dir, precision="int4")


def test_graph_inputs_are_checked_before_onnxruntime(bundle_dir):
    bundle = load_bundle(bundle_dir)
    task = bundle.embed_task([INSTRUCTION])
    z = np.zeros((2, 38), np.float32)  # Z = 32 learned + 6 joints
    with pytest.raises(ObservationError, match=r"policy.z: axis 1 must be 38"):
        bundle.policy(np.zeros((2, 37), np.float32), task)
    with pytest.raises(ObservationError, match="expected dtype float32, got float64"):
        bundle.policy(z.astype(np.float64), task)
    with pytest.raises(ObservationError, match=r"task: axis 0 must be 1"):
        bundle.policy(z, np.repeat(task, 2, axis=0))
    with pytest.raises(ObservationError, match=r"'batch'\) is 3 but another input has batch=2"):
        bundle.rollout_cost(z, np.zeros((3, 4, 6), np.float32), task)
    with pytest.raises(ObservationError, match=r"axis 1 must be 4"):
        bundle.cost_and_grad(z, np.zeros((2, 5, 6), np.float32), task)
    with pytest.raises(ObservationError, match="missing camera images"):
        bundle.encode({"front": np.zeros((1, 3, 32, 32), np.float32)}, np.zeros((1, 6), np.float32), task)
    with pytest.raises(ObservationError, match="3 axes instead of 2"):
        bundle.sessions["encoder"].run(
            {"image_front": np.zeros((1, 3, 32, 32), np.float32), "image_wrist": np.zeros((1, 3, 32, 32), np.float32),
             "state": np.zeros((1, 1, 6), np.float32), "task": task}
        )  # fmt: skip


def test_providers_and_log_line(bundle_dir, caplog):
    providers = select_providers()
    assert providers[-1] == "CPUExecutionProvider"
    assert select_providers(["cpu"]) == ["CPUExecutionProvider"]
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BundleError, match="'cuda' is not available"):
            select_providers(["cuda"])
    with caplog.at_level(logging.INFO, logger="latent_vla.export"):
        load_bundle(bundle_dir, threads=1)
    lines = [r.getMessage() for r in caplog.records if "runs on" in r.getMessage()]
    assert len(lines) == 1 and "CPUExecutionProvider" in lines[0] and ort.__version__ in lines[0]


def test_runtime_modules_do_not_import_torch():
    """Static guard beside the subprocess test: no runtime source file mentions torch imports."""
    import export.runtime as rt

    root = os.path.dirname(rt.__file__)
    for name in os.listdir(root):
        if name.endswith(".py"):
            with open(os.path.join(root, name), encoding="utf-8") as fh:
                src = fh.read()
            assert not re.search(r"^\s*(import|from) (torch|lerobot)\b", src, re.MULTILINE), name
    code = textwrap.dedent(
        """
        import sys, export.runtime, latent_vla.base.text, latent_vla.base.normalize, latent_vla.base.robot_spec
        print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'lerobot'}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
