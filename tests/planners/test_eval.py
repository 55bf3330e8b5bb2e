"""``latent-vla eval`` end to end on a tiny budget: same seeded episodes, eval.json, videos, sweep plot."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from latent_vla.app.cli import main
from latent_vla.base.robot_spec import SO101
from planners.evaluate import add_baseline_deltas, run_episode, summarize


class _SpyBrain:
    """Holds still and records exactly what it was shown."""

    def __init__(self) -> None:
        self.seen: list[set[str]] = []
        self.instructions: list[str | None] = []

    def reset(self, instruction: str | None = None) -> None:
        self.instructions.append(instruction)

    def act(self, observation: dict[str, Any]) -> dict[str, float]:
        self.seen.append(set(observation))
        return SO101.vector_to_action(SO101.action_to_vector(observation))


def test_episode_sees_only_robot_observations_and_runs_full_length() -> None:
    import sim

    env = sim.make_env("reach", episode_length=5)
    brain = _SpyBrain()
    try:
        result, frames = run_episode(env, brain, seed=3, spec=SO101, record_camera="front")
    finally:
        env.close()
    assert result.steps == 5 and len(brain.seen) == 5
    assert all(keys == set(SO101.action_keys) | {"front", "wrist"} for keys in brain.seen)
    assert brain.instructions and isinstance(brain.instructions[0], str) and brain.instructions[0]
    assert len(frames) == 5 and frames[0].dtype == np.uint8 and frames[0].shape == (128, 128, 3)
    assert result.plan_ms == [] and len(result.act_ms) == 5
    record = summarize("spy", "reach", [result])
    assert record["episodes"] == 1 and record["seeds"] == [3]
    assert np.isnan(record["plan_ms_p50"])


def test_baseline_deltas() -> None:
    recs = [{"success_rate": 0.8}, {"success_rate": 0.5}, {"success_rate": 0.6}]
    add_baseline_deltas(recs)
    assert [round(r["success_vs_best_other"], 6) for r in recs] == [0.2, -0.3, -0.2]


@pytest.mark.slow
def test_eval_cli_writes_records_videos_and_sweep(random_checkpoint_dir, tmp_path) -> None:
    out = tmp_path / "eval"
    code = main([
        "eval", f"ckpt={random_checkpoint_dir}", "planners=[grad,cem,policy]", "task=reach", "episodes=2",
        "max_steps=3", "seed=5", "videos=1", "threads=1", "progress=false", f"out={out}",
        "planner_cfg.grad.iterations=3", "planner_cfg.cem.samples=32", "planner_cfg.cem.elites=4",
        "planner_cfg.cem.iterations=2", "horizon=6", "sweep=[1,2]", "sweep_planners=[grad]", "sweep_episodes=1",
    ])  # fmt: skip
    assert code == 0
    records = json.loads((out / "eval.json").read_text())
    assert [r["planner"] for r in records] == ["grad", "cem", "policy"]
    for r in records:
        assert {"planner", "task", "episodes", "success_rate", "pc_success", "plan_ms_p50", "plan_ms_p95"} <= set(r)
        assert r["task"] == "reach" and r["episodes"] == 2 and r["seeds"] == [5, 6]
        assert all(ep["steps"] == 3 for ep in r["per_episode"])
        assert r["plans"] == 6 and r["plan_ms_p50"] > 0 and r["plan_ms_p95"] >= r["plan_ms_p50"]
        assert 0.0 <= r["success_rate"] <= 1.0 and r["pc_success"] == 100 * r["success_rate"]
        assert len(r["videos"]) == 1 and (out / "videos" / f"{r['planner']}_ep0.gif").is_file()
    grad = records[0]
    assert 1 <= grad["iterations_mean"] <= 3
    assert 0.0 <= grad["kept_policy_rate"] <= 1.0  # the gradient planner's min_gain test, every tick
    assert all(math.isnan(r["kept_policy_rate"]) for r in records[1:])  # CEM and the policy have none
    assert set(grad["plan_terms_mean"]) == {"task", "prior"}  # the chosen plans' objective terms, per tick
    assert all(math.isfinite(v) and v >= 0 for v in grad["plan_terms_mean"].values())
    assert "terms" not in grad["per_episode"][0]
    sweep = json.loads((out / "sweep.json").read_text())
    assert [(s["planner"], s["sweep_value"]) for s in sweep] == [("grad", 1), ("grad", 2)]
    assert sweep[0]["iterations_mean"] == 1
    assert (out / "sweep.png").stat().st_size > 1000


def test_eval_cli_evaluates_every_task_of_a_list(random_checkpoint_dir, tmp_path) -> None:
    """A multi-task model (issue 16): ``task=[...]`` runs every planner on each task on the same seeds; records
    carry their task, GIFs are named by task, and each record compares the planners of its own task."""
    out = tmp_path / "eval"
    code = main(["eval", f"ckpt={random_checkpoint_dir}", "planners=[policy,grad]", "task=[reach,push]",
                 "episodes=1", "max_steps=2", "seed=4", "videos=1", "threads=1", "progress=false", f"out={out}",
                 "planner_cfg.grad.iterations=2", "horizon=4"])  # fmt: skip
    assert code == 0
    records = json.loads((out / "eval.json").read_text())
    assert [(r["task"], r["planner"]) for r in records] == [
        ("reach", "policy"), ("reach", "grad"), ("push", "policy"), ("push", "grad"),
    ]  # fmt: skip
    for r in records:
        assert r["seeds"] == [4] and (out / "videos" / f"{r['planner']}_{r['task']}_ep0.gif").is_file()
    for task in ("reach", "push"):
        pair = [r for r in records if r["task"] == task]
        assert pair[0]["success_vs_best_other"] == pair[0]["success_rate"] - pair[1]["success_rate"]


def test_iterations_override_fixes_every_searchers_work(random_checkpoint_dir, tmp_path) -> None:
    """``iterations=N`` without ``budget_ms`` lifts the budget, so each tick runs exactly N gradient steps (the work a
    bundle and its checkpoint are compared on); the policy head is left as it is."""
    out = tmp_path / "eval"
    code = main(["eval", f"ckpt={random_checkpoint_dir}", "planners=[policy,grad]", "task=reach", "episodes=1",
                 "max_steps=2", "videos=0", "threads=1", "progress=false", f"out={out}", "horizon=4",
                 "iterations=3"])  # fmt: skip
    assert code == 0
    policy, grad = json.loads((out / "eval.json").read_text())
    assert grad["iterations_mean"] == 3 and grad["plans"] == 2 and policy["iterations_mean"] == 0
    assert main(["eval", f"ckpt={random_checkpoint_dir}", "iterations=0", f"out={tmp_path / 'bad'}"]) == 2


def test_eval_cli_refuses_bad_requests(random_checkpoint_dir, tmp_path, capsys) -> None:
    assert main(["eval", f"out={tmp_path}"]) == 2
    assert "exactly one of ckpt" in capsys.readouterr().err
    assert main(["eval", f"ckpt={random_checkpoint_dir}", "planners=[nope]", f"out={tmp_path}"]) == 2
    assert "unknown 'nope'" in capsys.readouterr().err
    assert main(["eval", "no_such_key=1"]) == 2
    assert main(["eval", f"ckpt={random_checkpoint_dir}", "task=[reach,reach]", f"out={tmp_path}"]) == 2
    assert "twice" in capsys.readouterr().err
    assert main(["eval", f"ckpt={random_checkpoint_dir}", "task=[reach,fly]", f"out={tmp_path}"]) == 2
    assert "unknown 'fly'" in capsys.readouterr().err
    templates = "instruction_templates=['push the {object} to the {zone}']"
    assert main(["eval", f"ckpt={random_checkpoint_dir}", "task=[push,reach]", templates, f"out={tmp_path}"]) == 2
    assert "instruction_templates" in capsys.readouterr().err  # reach has no {zone}
    assert main(["eval", f"ckpt={random_checkpoint_dir}", "stop_on_success=maybe", f"out={tmp_path}"]) == 2
    assert "stop_on_success must be true or false, got 'maybe'" in capsys.readouterr().err
    for setting, message in (("min_gain=2", "min_gain must be a number in [0, 1)"), ("temporal_window=0", "window"),
                             ("lr=-1", "need lr > 0")):  # fmt: skip
        out = tmp_path / setting.split("=")[0]
        code = main(["eval", f"ckpt={random_checkpoint_dir}", "planners=[policy,grad]", f"planner_cfg.grad.{setting}",
                     f"out={out}"])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and "planner_cfg.grad:" in err and message in err and "Traceback" not in err
        assert not out.exists()  # refused before any episode


@pytest.mark.slow
def test_eval_cli_runs_an_onnx_bundle(random_checkpoint_dir, tmp_path) -> None:
    export = pytest.importorskip("export.exporter")
    bundle = tmp_path / "bundle"
    export.export_bundle(
        random_checkpoint_dir, bundle, export.ExportSettings(horizon=4, precisions=("fp32",)), progress=False
    )
    out = tmp_path / "eval"
    code = main(["eval", f"bundle={bundle}", "planners=[policy,grad]", "task=reach", "episodes=1", "max_steps=2",
                 "videos=1", "threads=1", "progress=false", f"out={out}", "iterations=3"])  # fmt: skip
    assert code == 0
    records = json.loads((out / "eval.json").read_text())
    assert [r["planner"] for r in records] == ["policy", "grad"]
    assert all(r["episodes"] == 1 and r["per_episode"][0]["steps"] == 2 for r in records)
    assert records[1]["plans"] == 2 and records[1]["plan_ms_p50"] > 0
    assert records[1]["iterations_mean"] == 3  # the fixed work of a parity check against the checkpoint


def test_budget_sweep_is_bounded_by_the_budget(random_checkpoint_dir, tmp_path) -> None:
    out = tmp_path / "sweep"
    code = main(["eval", f"ckpt={random_checkpoint_dir}", "planners=[cem]", "task=reach", "episodes=1",
                 "max_steps=2", "videos=0", "threads=1", "progress=false", f"out={out}", "horizon=4",
                 "sweep=[5,60]", "sweep_key=budget_ms", "sweep_episodes=1"])  # fmt: skip
    assert code == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert [(s["planner"], s["sweep_key"], s["sweep_value"]) for s in sweep] == [
        ("cem", "budget_ms", 5), ("cem", "budget_ms", 60),
    ]  # fmt: skip
    # iterations are unbounded in a budget sweep: a 12x larger budget runs more CEM rounds
    assert sweep[1]["iterations_mean"] > sweep[0]["iterations_mean"] >= 1
