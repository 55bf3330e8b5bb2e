"""`latent-vla improve`: rounds of {the model acts in the sim -> its episodes join the data -> fine-tune},
each evaluated on the same held-out seeds; resumable; foreign folders and bad settings refused.

The orchestration is tested with the subcommands stubbed (each writes the file that ends its step);
one slow test runs the real thing: a tiny model trained on a real MuJoCo reach dataset, one round of
grad-planner collection, fine-tuning and evaluation.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from synthetic_data import tiny_run_settings

from latent_vla.app import cli, improve_cli
from latent_vla.app.cli import compose, main


def _cfg(tmp_path: Path, ckpt: Path, *extra: str):
    return compose("improve", [f"out={tmp_path / 'imp'}", f"ckpt={ckpt}", f"data={tmp_path / 'data0'}", *extra])


def test_the_plan_acts_with_the_last_model_and_trains_on_all_data(tmp_path: Path, tiny_checkpoint_dir: Path) -> None:
    steps = improve_cli.plan_steps(_cfg(tmp_path, tiny_checkpoint_dir, "rounds=2", "seed=5", "episodes=7"))
    assert [s.name for s in steps] == ["round_0/eval", "round_1/collect", "round_1/train", "round_1/eval",
                                       "round_2/collect", "round_2/train", "round_2/eval"]  # fmt: skip
    args = [{a.split("=", 1)[0]: a.split("=", 1)[1] for a in s.argv[1:]} for s in steps]
    imp = tmp_path / "imp"
    assert args[0]["ckpt"] == str(tiny_checkpoint_dir) and args[0]["seed"] == "5"
    assert args[1]["brain"] == str(tiny_checkpoint_dir) and args[4]["brain"] == str(imp / "round_1" / "run")
    assert args[1]["policy"] == "brain" and args[1]["episodes"] == "7"
    seeds = [int(a["seed"]) for a in (args[1], args[4])]
    assert min(seeds) > 5 + 1000 and seeds[1] - seeds[0] >= 7  # never an evaluation seed, never another round's
    datas = [str(tmp_path / "data0"), str(imp / "round_1" / "data"), str(imp / "round_2" / "data")]
    assert json.loads(args[5]["data"]) == datas
    assert steps[5].copy_from == imp / "round_1" / "run" and args[5]["resume"] == "true"
    # the starting run's model settings travel with every fine-tuning (a resumed run must match them)
    assert args[2]["model.latent_dim"] == "32" and args[2]["model.channels"] == "[8,16,32,32]"
    assert "train.steps" not in args[2] and args[2]["train.minutes"] == "3.0"
    assert args[3]["ckpt"] == str(imp / "round_1" / "run") and args[3]["seed"] == "5"


@pytest.mark.parametrize(
    "extra, message",
    [(["rounds=0"], "rounds"), (["brain_mode=fly"], "brain_mode"), (["eval_planners=[grad,magic]"], "eval_planners")],
)
def test_bad_settings_are_refused_in_one_line(tmp_path, tiny_checkpoint_dir, capsys, extra, message) -> None:
    argv = ["improve", f"out={tmp_path / 'imp'}", f"ckpt={tiny_checkpoint_dir}", f"data={tmp_path}", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_a_ckpt_that_is_no_run_and_a_foreign_out_are_refused(tmp_path, tiny_checkpoint_dir, capsys) -> None:
    assert main(["improve", f"out={tmp_path / 'imp'}", f"ckpt={tmp_path}", f"data={tmp_path}"]) == 2
    assert "is not a training run" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["improve", f"out={foreign}", f"ckpt={tiny_checkpoint_dir}", f"data={tmp_path}"]) == 2
    assert "holds no improve_state.json" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "mine"


class _Stub:
    """Stands in for `latent_vla.app.cli.main`: records each argv and writes the file that ends its step."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    def __call__(self, argv: list[str]) -> int:
        self.calls.append(argv)
        args = dict(a.split("=", 1) for a in argv[1:])
        out = Path(args["out"])
        if self.fail and self.fail in args["out"]:
            return 1
        out.mkdir(parents=True, exist_ok=True)
        if argv[0] == "collect":
            (out / "collect.json").write_text(json.dumps({"episodes": 2, "frames": 40, "pc_success": 50.0}))
        elif argv[0] == "train":
            assert (out / "checkpoint.json").is_file()  # the previous run was copied in to resume
            (out / "train_summary.json").write_text(json.dumps({"step": 90, "seconds": 3.0}))
        else:
            rate = 0.5 if "round_0" in args["out"] else 1.0
            (out / "eval.json").write_text(json.dumps([{"planner": "grad", "success_rate": rate, "plan_ms_p50": 30.0,
                                                        "episodes": 2}]))  # fmt: skip
        return 0


def test_rounds_run_resume_and_report(tmp_path, tiny_checkpoint_dir, monkeypatch, capsys) -> None:
    argv = ["improve", f"out={tmp_path / 'imp'}", f"ckpt={tiny_checkpoint_dir}", f"data={tmp_path / 'data0'}",
            "rounds=2", "eval_planners=[grad]"]  # fmt: skip
    failing = _Stub(fail="round_2/run")
    monkeypatch.setattr(cli, "main", failing)
    assert improve_cli.main(compose("improve", argv[1:])) == 1
    assert "improve step 'round_2/train' failed" in capsys.readouterr().out
    stub = _Stub()
    monkeypatch.setattr(cli, "main", stub)
    assert improve_cli.main(compose("improve", argv[1:])) == 0  # resumes at the failed step
    assert [c[0] for c in stub.calls] == ["train", "eval"]
    rows = json.loads((tmp_path / "imp" / "improve.json").read_text())["rounds"]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert [r["success"]["grad"] for r in rows] == [0.5, 1.0, 1.0]
    assert rows[1]["brain_pc_success"] == 50.0 and rows[2]["train_step"] == 90
    assert (tmp_path / "imp" / "improve.png").stat().st_size > 1000
    stub.calls.clear()
    assert improve_cli.main(compose("improve", argv[1:])) == 0  # complete: nothing runs
    assert stub.calls == []
    assert improve_cli.main(compose("improve", [*argv[1:], "rounds=3"])) == 0  # one more round: only it runs
    assert [c[0] for c in stub.calls] == ["collect", "train", "eval"]
    stub.calls.clear()
    assert improve_cli.main(compose("improve", [*argv[1:], "rounds=3", "eval_episodes=5"])) == 0
    assert len(stub.calls) == 10  # the round-0 evaluation changed: every round after it runs again


@pytest.mark.slow
def test_a_real_round_on_mujoco(tmp_path, sim_reach_dataset_dir) -> None:
    """A tiny model trained on real MuJoCo reach demonstrations plans in two new episodes, is fine-tuned
    on all three datasets' episodes and is evaluated before and after."""
    from latent_vla.train import train

    ckpt = train(tiny_run_settings(sim_reach_dataset_dir, tmp_path / "run")).run_dir
    out = tmp_path / "imp"
    argv = ["improve", f"out={out}", f"ckpt={ckpt}", f"data={sim_reach_dataset_dir}", "rounds=1", "episodes=2",
            "eval_episodes=1", "eval_planners=[grad,policy]", "train_minutes=1",
            "overrides.collect=['max_episode_steps=12','workers=1','progress=false']",
            "overrides.train=['train.steps=100']", "overrides.eval=['max_steps=12','progress=false']"]  # fmt: skip
    assert main(argv) == 0
    collected = json.loads((out / "round_1" / "data" / "collect.json").read_text())
    assert collected["episodes"] == 2 and collected["policy"] == "brain"
    summary = json.loads((out / "round_1" / "run" / "train_summary.json").read_text())
    assert summary["step"] == 100 and summary["steps_this_call"] == 20  # resumed at 80, fine-tuned to 100
    rows = json.loads((out / "improve.json").read_text())["rounds"]
    assert [sorted(r["success"]) for r in rows] == [["grad", "policy"]] * 2
    shutil.rmtree(out / "round_1" / "eval")  # a lost output is made again on the next run, alone
    assert main(argv) == 0
    assert (out / "round_1" / "eval" / "eval.json").is_file()
