"""End to end: `latent-vla demo` with a tiny configuration runs every stage and writes a report with numbers."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from latent_vla.app import demo_cli
from latent_vla.app.cli import compose, main
from latent_vla.app.demo_cli import OUTPUTS, STAGES, plan_stages
from latent_vla.app.screenshot import find_chromium
from latent_vla.base.errors import UserError


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


def test_exploration_episodes_append_to_the_demonstrations_on_seeds_of_their_own(tmp_path: Path) -> None:
    cfg = compose("demo", [f"out={tmp_path}", "seed=3", "explore_episodes=30", "overrides.collect=['policy=dart']"])
    plan = next(p for p in plan_stages(cfg) if p.name == "collect")
    assert len(plan.commands) == 2
    demos, explore = (dict(a.split("=", 1) for a in argv[1:]) for argv in plan.commands)
    assert demos["policy"] == "dart" and explore["policy"] == "explore"  # a stage setting does not replace it
    assert explore["out"] == demos["out"] and explore["mode"] == "append" and explore["episodes"] == "30"
    assert int(explore["seed"]) >= int(demos["seed"]) + int(demos["episodes"])  # layouts of their own
    alone = compose("demo", [f"out={tmp_path}", "explore_episodes=0"])
    assert len(next(p for p in plan_stages(alone) if p.name == "collect").commands) == 1
    with pytest.raises(UserError, match="explore_episodes"):
        plan_stages(compose("demo", [f"out={tmp_path}", "explore_episodes=-1"]))
    two = compose("demo", [f"out={tmp_path}", "task=[reach,push]", "collect_per_task.reach=['max_episode_steps=20']"])
    commands = next(p for p in plan_stages(two) if p.name == "collect").commands
    assert [c[1] for c in commands] == ["task=reach", "task=push", "task=reach", "task=push"]
    assert "max_episode_steps=20" in commands[2] and "max_episode_steps=20" not in commands[3]  # the task's scene


def test_exploration_episodes_of_one_task(tmp_path: Path) -> None:
    base = [f"out={tmp_path}", "task=[reach,push]", "explore_episodes=0"]
    plan = next(p for p in plan_stages(compose("demo", [*base, "explore_per_task.reach=30"])) if p.name == "collect")
    explore = [c for c in plan.commands if "policy=explore" in c]
    assert [(c[1], next(a for a in c if a.startswith("episodes="))) for c in explore] == [("task=reach", "episodes=30")]
    with pytest.raises(UserError, match=r"explore_per_task names task\(s\) \['pick'\]"):
        plan_stages(compose("demo", [*base, "explore_per_task.pick=5"]))
    with pytest.raises(UserError, match="explore_per_task.push must be an integer >= 0"):
        plan_stages(compose("demo", [*base, "explore_per_task.push=-2"]))


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
        "explore_episodes=2",
        "train_minutes=1.0",
        "eval_episodes=1",
        "planners=[grad,cem,mppi,policy]",
        "bundle_planners=[grad,policy]",
        "run_steps=15",
        "sweep=[1,2]",
        "sweep_episodes=1",
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
    assert summary["collect"]["dataset_total_episodes"] == 5  # 3 demonstrations + 2 exploration episodes
    assert [r["policy"] for r in summary["collect"]["runs"]] == ["expert", "explore"]
    assert all(f["ok"] for f in summary["export"]["files"])
    assert summary["twin_run"]["loop"]["ticks"] > 0
    page = (out / "report" / "index.html").read_text()
    for title in ("Closed-loop results", "Training", "Export", "MuJoCo twin"):
        assert title in page
    assert "missing:" not in page
    assert (out / "report" / "figures" / "training_curves.png").is_file()
    first_figure, _ = _first_figure_and_caption(page)
    assert first_figure.endswith(".gif") and summary["lead_episode"]["gif"] == first_figure
    if find_chromium() is not None:
        from PIL import Image

        shot = np.asarray(Image.open(out / "report" / "report.png").convert("L"), dtype=np.float32)
        assert shot.shape[0] > 500 and shot.std() > 10.0  # a real page, not a blank one

    # the same command again resumes: every stage is complete, nothing runs
    stamp = (out / "eval" / "eval.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "eval" / "eval.json").stat().st_mtime_ns == stamp
    # stages=[eval,report] runs exactly those again on the other stages' outputs
    assert main([*argv, "stages=[eval,report]"]) == 0
    assert (out / "eval" / "eval.json").stat().st_mtime_ns != stamp
    state = json.loads((out / "demo_state.json").read_text())["stages"]
    assert all(state[s]["status"] == "done" for s in STAGES)
    assert state["eval"]["finished"] > state["eval_bundle"]["finished"]  # eval_bundle was not re-run


@pytest.mark.slow
def test_tiny_multitask_demo_runs_every_stage_on_every_task(tmp_path: Path) -> None:
    """The multi-task recipe's path end to end on tiny settings: three datasets, one model, every task evaluated
    from PyTorch and from the bundle, the report listing each task's demonstrations and results."""
    out = tmp_path / "demo"
    argv = [
        "demo", f"out={out}", "recipe=multitask", "episodes=2", "collect_per_task.reach=['episodes=2']",
        "collect_per_task.push=['episodes=2']", "explore_per_task.reach=2",
        "train_minutes=1.0", "eval_episodes=1", "run_steps=10", "screenshot=false",
        "overrides.collect=['max_episode_steps=12']",
        "overrides.train=['train.steps=10','train.batch_size=8','train.val_every=5','train.log_every=5',"
        "'train.snap={reach:0.5,pick:0.5}']",
        "overrides.eval=['max_steps=6','videos=1','planner_cfg.grad.iterations=2']",
        "overrides.export=['export.horizon=4','export.precisions=[fp32]']",
        "overrides.eval_bundle=['max_steps=6','videos=0']",
    ]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "demo.json").read_text())
    for key in ("eval", "eval_bundle"):
        assert sorted((r["task"], r["planner"]) for r in summary[key]) == sorted(
            (t, p) for t in ("reach", "push", "pick") for p in ("grad", "policy")
        )
    assert sorted(c["task"] for c in summary["collect"]) == ["pick", "push", "reach"]
    assert summary["lead_episode"]["gif"].endswith("_ep0.gif")
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert manifest["planner"]["objective"]["prior_weight"] == 4  # the recipe's stage_settings.export, kept beside
    page = (out / "report" / "index.html").read_text()  # the test's own overrides.export
    assert manifest["model"]["instruction_snap"]["fractions"] == {"reach": 0.5, "pick": 0.5}  # baked into task_embed
    assert all(r["instructions_read_as"] == {} for r in summary["eval"] + summary["eval_bundle"])  # env templates
    assert "missing:" not in page and all(t in page for t in ("reach", "push", "pick"))


# -- resume, refuse, re-run: the demo's stages through a fake runner (no simulation, no training) --------
class FakeStages:
    """Stands in for ``latent_vla.app.cli.main``: each stage writes its final file; ``fail`` names one that fails."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def __call__(self, argv: list[str]) -> int:
        out = Path(next(a for a in argv if a.startswith("out=")).split("=", 1)[1])
        folder_of = {folder: s for s, (folder, _) in OUTPUTS.items()}
        stage = folder_of.get(out.name) or folder_of[out.parent.name]  # a multi-task collect: data/<task>
        self.calls.append(stage)
        if stage == self.fail:
            return 1
        out.mkdir(parents=True, exist_ok=True)
        (out / OUTPUTS[stage][1]).write_text("[]" if stage.startswith("eval") else "{}")
        return 0


def _demo(monkeypatch: pytest.MonkeyPatch, out: Path, fake: FakeStages, *overrides: str) -> int:
    import latent_vla.app.cli as cli

    monkeypatch.setattr(cli, "main", fake)
    return demo_cli.main(compose("demo", [f"out={out}", "screenshot=false", "explore_episodes=0", *overrides]))


def test_rerun_resumes_skipping_complete_stages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first = FakeStages()
    assert _demo(monkeypatch, tmp_path, first) == 0
    assert first.calls == [s for s in STAGES if s != "report"]
    assert (tmp_path / "report" / "index.html").is_file()
    capsys.readouterr()
    again = FakeStages()
    assert _demo(monkeypatch, tmp_path, again) == 0
    assert again.calls == []
    printed = capsys.readouterr().out
    assert "stage train is complete" in printed and "nothing to do" in printed


def test_a_changed_setting_reruns_its_stages_and_those_reading_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _demo(monkeypatch, tmp_path, FakeStages()) == 0
    again = FakeStages()
    assert _demo(monkeypatch, tmp_path, again, "eval_episodes=7") == 0
    assert again.calls == ["eval", "eval_bundle"]  # collect, train, export, run are kept
    retrain = FakeStages()
    assert _demo(monkeypatch, tmp_path, retrain, "eval_episodes=7", "train_minutes=2.0") == 0
    assert retrain.calls == ["train", "inspect", "eval", "export", "eval_bundle", "run"]


def test_a_failed_stage_is_resumed_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _demo(monkeypatch, tmp_path, FakeStages(fail="export")) == 1
    again = FakeStages()
    assert _demo(monkeypatch, tmp_path, again) == 0
    assert again.calls == ["export", "eval_bundle", "run"]


def test_explicit_stages_rerun_exactly_those_on_fresh_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _demo(monkeypatch, tmp_path, FakeStages()) == 0
    stale = tmp_path / "eval" / "videos" / "grad_ep7.gif"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    again = FakeStages()
    assert _demo(monkeypatch, tmp_path, again, "stages=[eval,report]") == 0
    assert again.calls == ["eval"]
    assert not stale.exists()  # the earlier eval's files are gone, so the report shows only this one's


def test_outputs_no_demo_recorded_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.safetensors").write_bytes(b"someone else's")
    assert main(["demo", f"out={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "run/" in err and "new out=" in err and "stages=[" in err


def test_each_stage_says_the_minutes_left_of_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _demo(monkeypatch, tmp_path, FakeStages(), "budget_minutes=12") == 0
    headers = [line for line in capsys.readouterr().out.splitlines() if line.startswith("=== demo stage")]
    assert len(headers) == len(STAGES)
    assert headers[1].startswith("=== demo stage train (2/8; 0.0 min in, 12.0 min left of the 12-min budget)")
    assert demo_cli.budget_line(19 * 60, 15) == "19.0 min in, 4.0 min over the 15-min budget"


def test_each_command_of_a_stage_says_the_minutes_left_when_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = iter(range(0, 10**9, 60))  # every reading of the clock is a minute later
    monkeypatch.setattr(demo_cli.time, "perf_counter", lambda: float(next(clock)))
    assert _demo(monkeypatch, tmp_path, FakeStages(), "explore_episodes=5", "stages=[collect]") == 0
    headers = [line for line in capsys.readouterr().out.splitlines() if line.startswith("=== demo stage collect")]
    minutes = [float(re.search(r"; ([0-9.]+) min in", h).group(1)) for h in headers]  # type: ignore[union-attr]
    assert [h.split(" (")[0] for h in headers] == ["=== demo stage collect [1/2]", "=== demo stage collect [2/2]"]
    assert minutes[1] > minutes[0]


# -- the report leads with an episode GIF ----------------------------------------------------------------
def _eval_with_gifs(out: Path, successes: dict[str, list[bool]]) -> None:
    from planners.evaluate import save_gif

    records = []
    for planner, flags in successes.items():
        videos = []
        for i in range(len(flags)):
            frames = [np.full((8, 24, 3), 40 * i + 10 * t, np.uint8) for t in range(3)]
            videos.append(str(save_gif(frames, out / "eval" / "videos" / f"{planner}_ep{i}.gif")))
        per_episode = [
            {"seed": i, "success": ok, "first_success_step": 5 + i if ok else None, "steps": 60,
             "final_distance": 0.01 if ok else 0.05 + 0.01 * i}
            for i, ok in enumerate(flags)
        ]  # fmt: skip
        records.append({"planner": planner, "task": "reach", "episodes": len(flags), "success_rate": 0.0,
                        "per_episode": per_episode, "videos": videos})  # fmt: skip
    (out / "eval" / "eval.json").write_text(json.dumps(records))
    (out / "eval" / "sweep.png").write_bytes((out / "eval" / "videos" / f"{planner}_ep0.gif").read_bytes())


def _first_figure_and_caption(page: str) -> tuple[str, str]:
    img = re.search(r"<img src='([^']+)'", page)
    assert img is not None and img.start() < page.index("<table"), "the first figure must come before any table"
    caption = re.search(r"<figcaption>([^<]*)</figcaption>", page)
    assert caption is not None
    return img.group(1), caption.group(1)


def test_the_report_leads_with_a_successful_episode_gif(tmp_path: Path) -> None:
    from latent_vla.app.demo_report import write_report

    _eval_with_gifs(tmp_path, {"cem": [True, False], "grad": [False, True]})
    page = write_report(tmp_path, {"task": "reach", "seed": 0}, {}).read_text()
    src, caption = _first_figure_and_caption(page)
    assert src == "figures/lead_grad_ep1.gif"  # the gradient planner's success before another planner's
    assert "reached the goal at tick 6 of 60" in caption and "imagined" in caption
    order = [page.index(t) for t in ("lead_grad_ep1.gif", "Closed-loop results", "Success against planner", "Training")]
    assert order == sorted(order)


def test_without_a_success_the_report_shows_the_closest_episode_and_says_so(tmp_path: Path) -> None:
    from latent_vla.app.demo_report import write_report

    _eval_with_gifs(tmp_path, {"grad": [False, False], "policy": [False]})
    page = write_report(tmp_path, {"task": "reach", "seed": 0}, {}).read_text()
    src, caption = _first_figure_and_caption(page)
    assert src in ("figures/lead_grad_ep0.gif", "figures/lead_policy_ep0.gif")  # both 5 cm away
    assert caption.startswith("No evaluated episode succeeded; this is the closest one") and "5.0 cm" in caption


@pytest.mark.parametrize("recipe", ["reach", "push", "pick"])
def test_shipped_recipes_evaluate_every_planner_within_an_hour(tmp_path: Path, recipe: str) -> None:
    """Issue 15's recipe contract: one command per task, <= 60 minutes, grad/CEM/MPPI/policy on >= 50
    held-out episodes; a setting on the command line still wins over the recipe."""
    cfg = compose("demo", [f"out={tmp_path}", f"recipe={recipe}", "seed=7"])
    assert cfg.recipe_name == recipe and cfg.task == recipe
    assert cfg.budget_minutes <= 60 and cfg.eval_episodes >= 50
    assert set(cfg.planners) == {"grad", "cem", "mppi", "policy"}
    argv = {p.name: p.argv for p in plan_stages(cfg)}
    assert f"task={recipe}" in argv["collect"] and "seed=7" in argv["eval"]
    budgets = ["planner_cfg.grad.budget_ms=33", "planner_cfg.cem.budget_ms=80", "planner_cfg.mppi.budget_ms=80"]
    assert set(budgets) <= set(argv["eval"]) and "budget_ms=33" in argv["eval_bundle"]  # issue 15's budgets
    assert compose("demo", [f"out={tmp_path}", f"recipe={recipe}", "eval_episodes=3"]).eval_episodes == 3


def test_multitask_recipe_trains_one_model_on_every_task_within_90_minutes(tmp_path: Path) -> None:
    """Issue 16's recipe contract: a dataset per task (with that task's collect settings), one model trained on
    all of them, every task evaluated from PyTorch and from the bundle on the same held-out seeds."""
    cfg = compose("demo", [f"out={tmp_path}", "recipe=multitask", "seed=7"])
    assert cfg.recipe_name == "multitask" and list(cfg.task) == ["reach", "push", "pick"]
    assert cfg.budget_minutes <= 90 and "grad" in cfg.planners and "grad" in cfg.bundle_planners
    plans = {p.name: p for p in plan_stages(cfg)}
    collects = plans["collect"].commands
    assert [c[1] for c in collects] == ["task=reach", "task=push", "task=pick", "task=reach"]
    demos, explore = collects[:3], collects[3]
    assert all(f"out={tmp_path / 'data' / c[1][5:]}" in c and "seed=100007" in c for c in demos)
    assert all("reset_noise=15" in c and "cameras=[front]" in c for c in collects)
    assert "policy=explore" in explore and "episodes=300" in explore and "mode=append" in explore  # reach's own 300
    assert collects[0][-4:-2] == ["episodes=1000", "max_episode_steps=30"]  # a task's own settings win over episodes=
    assert "policy=dart" not in collects[1] and "policy=dart" in collects[2]
    data = ",".join(str(tmp_path / "data" / t) for t in ("reach", "push", "pick"))
    assert f"data=[{data}]" in plans["train"].argv and "train.rephrase=0.5" in plans["train"].argv
    assert "tokenizer.num_buckets=16384" in plans["train"].argv  # rare collisions of unknown with known words
    assert "tokenizer.pretrained=minilm-l6" in plans["train"].argv  # verbs no training held (issue 16)
    assert "train.rephrase_pool=128" in plans["train"].argv  # each rewording encoded once
    assert "train.word_dropout=0.3" in plans["train"].argv and "tokenizer.max_len=48" in plans["train"].argv
    assert "train.snap={reach:0.3,pick:0.3}" in plans["train"].argv
    assert not any(a.startswith("train.loss.phrasing") for a in plans["train"].argv)
    for name in ("eval", "eval_bundle"):
        assert "task=[reach,push,pick]" in plans[name].argv and "seed=7" in plans[name].argv
    assert "planner_cfg.grad.budget_ms=33" in plans["eval"].argv and "budget_ms=33" in plans["eval_bundle"].argv
    assert "planner_cfg.grad.objective.prior_weight=4" in plans["eval"].argv  # the trust region pick needs
    assert "++export.grad.objective.prior_weight=4" in plans["export"].argv  # the bundle's planner (and the twin's)
    assert "robot.task=reach" in plans["run"].argv


def test_support_tasks_are_collected_and_trained_on_but_never_evaluated(tmp_path: Path) -> None:
    """``support_tasks``: the pick recipe trains on reach's layouts beside pick's and evaluates pick alone."""
    plans = {p.name: p for p in plan_stages(compose("demo", [f"out={tmp_path}", "recipe=pick", "seed=7"]))}
    collects = plans["collect"].commands
    assert [c[1] for c in collects] == ["task=pick", "task=reach"]
    assert "policy=dart" in collects[0] and "max_episode_steps=30" in collects[1]  # each task's own settings
    data = ",".join(str(tmp_path / "data" / t) for t in ("pick", "reach"))
    assert f"data=[{data}]" in plans["train"].argv
    assert f"data={tmp_path / 'data' / 'pick'}" in plans["inspect"].argv
    for name in ("eval", "eval_bundle"):
        assert "task=pick" in plans[name].argv
    assert "robot.task=pick" in plans["run"].argv
    for bad, says in (("support_tasks=[pick]", "beside task="), ("support_tasks=[fly]", "support_tasks must list")):
        with pytest.raises(UserError, match=re.escape(says)):
            plan_stages(compose("demo", [f"out={tmp_path}", "task=pick", bad]))
    with pytest.raises(UserError, match="neither task= nor support_tasks="):
        plan_stages(compose("demo", [f"out={tmp_path}", "collect_per_task.pick=['policy=dart']"]))


def test_a_multitask_demo_resumes_per_task_collection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = "task=[reach,push]"
    assert _demo(monkeypatch, tmp_path, FakeStages(), tasks) == 0
    assert (tmp_path / "data" / "push" / "collect.json").is_file()
    again = FakeStages()
    assert _demo(monkeypatch, tmp_path, again, tasks) == 0
    assert again.calls == []
    (tmp_path / "data" / "push" / "collect.json").unlink()  # one task's dataset lost: collect and all after it
    again = FakeStages()
    assert _demo(monkeypatch, tmp_path, again, tasks) == 0
    assert again.calls == ["collect", "collect", "train", "inspect", "eval", "export", "eval_bundle", "run"]
    again = FakeStages()
    assert _demo(monkeypatch, tmp_path, again, tasks, "collect_per_task.push=['policy=dart']") == 0
    assert again.calls[:2] == ["collect", "collect"]  # a per-task setting changed
    assert main(["demo", f"out={tmp_path / 'x'}", tasks, "collect_per_task.pick=['policy=dart']"]) == 2


def test_an_unknown_recipe_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", f"out={tmp_path}", "recipe=fly"]) == 2
    err = capsys.readouterr().err.strip()
    assert "recipe" in err and "\n" not in err


def test_stage_settings_come_before_overrides_and_a_recipe_replaces_those_it_names(tmp_path: Path) -> None:
    """The demo's measured per-stage settings reach their stage; an override of the same key comes
    after them (Hydra: the later value wins); a recipe replaces the stages it names and keeps the others;
    evaluation stops at success."""
    cfg = compose("demo", [f"out={tmp_path}", "overrides.train=['train.lr=1e-3']"])
    argv = {p.name: p.argv for p in plan_stages(cfg)}
    assert "cameras=[front]" in argv["collect"] and "model.camera_names=[front]" in argv["train"]
    assert argv["train"].index("train.lr=3e-3") < argv["train"].index("train.lr=1e-3")
    assert "stop_on_success=true" in argv["eval"] and "stop_on_success=true" in argv["eval_bundle"]
    push = {p.name: p.argv for p in plan_stages(compose("demo", [f"out={tmp_path}", "recipe=push"]))}
    assert "max_episode_steps=30" not in push["collect"] and "cameras=[front]" in push["collect"]
    assert "train.lr=3e-3" in push["train"]  # push keeps the demo's training settings, with its own 150-tick episodes
    pick = {p.name: p.argv for p in plan_stages(compose("demo", [f"out={tmp_path}", "recipe=pick"]))}
    assert "policy=dart" in pick["collect"] and "max_episode_steps=30" not in pick["collect"]
    with pytest.raises(UserError, match="stage_settings for unknown stage"):
        plan_stages(compose("demo", [f"out={tmp_path}", "+stage_settings.fly=['x=1']"]))
