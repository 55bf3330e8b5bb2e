"""End to end: `latent-vla demo` with a tiny configuration runs every stage and writes a report with numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from latent_vla.app.cli import compose, main
from latent_vla.app.demo_cli import STAGES, plan_stages
from latent_vla.app.screenshot import find_chromium


def test_unknown_stage_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", f"out={tmp_path}", "stages=[collect,fly]"]) == 2
    assert "unknown demo stage" in capsys.readouterr().err


def test_stage_plan_passes_per_stage_overrides(tmp_path: Path) -> None:
    cfg = compose("demo", [f"out={tmp_path}", "stages=[train,export]", "overrides.train=['train.steps=7']"])
    plans = plan_stages(cfg)
    assert [p.name for p in plans] == ["train", "export"]
    assert plans[0].argv is not None and plans[0].argv[-1] == "train.steps=7"
    assert f"data={tmp_path / 'data'}" in plans[0].argv


def test_demonstrations_and_evaluation_use_different_seeds(tmp_path: Path) -> None:
    cfg = compose("demo", [f"out={tmp_path}", "seed=3", "episodes=50", "eval_episodes=20"])
    argv = {p.name: p.argv for p in plan_stages(cfg)}
    collect_seed = int(next(a for a in argv["collect"] if a.startswith("seed=")).split("=")[1])
    eval_seed = int(next(a for a in argv["eval"] if a.startswith("seed=")).split("=")[1])
    assert collect_seed >= eval_seed + 20  # no evaluated layout was a training episode


def test_failing_stage_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # training without collected data must fail in the train stage, and say so
    assert main(["demo", f"out={tmp_path}", "stages=[train]"]) == 1
    assert "demo stage 'train' failed" in capsys.readouterr().out


@pytest.mark.slow
def test_tiny_demo_runs_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    argv = [
        "demo",
        f"out={out}",
        "episodes=3",
        "train_minutes=1.0",
        "eval_episodes=1",
        "planners=[grad,cem,mppi,policy]",
        "bundle_planners=[grad,policy]",
        "run_steps=15",
        "overrides.collect=['max_episode_steps=20']",
        "overrides.train=['train.steps=20','train.batch_size=8','train.val_every=10','train.log_every=5']",
        "overrides.eval=['max_steps=8','videos=1','planner_cfg.grad.iterations=3','planner_cfg.cem.iterations=2']",
        "overrides.export=['export.horizon=4','export.precisions=[fp32]']",
        "overrides.eval_bundle=['max_steps=8','videos=0']",
    ]
    assert main(argv) == 0
    summary = json.loads((out / "demo.json").read_text())
    assert set(summary["timings_s"]) == set(STAGES) - {"report"}  # the report times itself after demo.json
    records = {r["planner"]: r for r in summary["eval"]}
    assert set(records) == {"grad", "cem", "mppi", "policy"}
    for r in [*summary["eval"], *summary["eval_bundle"]]:
        assert 0.0 <= r["success_rate"] <= 1.0
        assert math.isfinite(r["plan_ms_p50"]) and r["plan_ms_p50"] >= 0.0
    assert summary["collect"]["episodes"] == 3
    assert all(f["ok"] for f in summary["export"]["files"])
    assert summary["twin_run"]["loop"]["ticks"] > 0
    page = (out / "report" / "index.html").read_text()
    for title in ("Closed-loop results", "Training", "Export", "MuJoCo twin"):
        assert title in page
    assert "missing:" not in page
    assert (out / "report" / "figures" / "training_curves.png").is_file()
    if find_chromium() is not None:
        from PIL import Image

        shot = np.asarray(Image.open(out / "report" / "report.png").convert("L"), dtype=np.float32)
        assert shot.shape[0] > 500 and shot.std() > 10.0  # a real page, not a blank one
