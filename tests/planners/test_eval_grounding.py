"""Evaluation with any phrasing, and the language-grounding measure (the arm went to a distractor)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from latent_vla.app.cli import main
from latent_vla.base.robot_spec import SO101
from planners.evaluate import DistractorWatch, run_episode, summarize


class _ExpertBrain:
    """The scripted reach expert, sent to the named object or (``decoy=True``) to a distractor."""

    def __init__(self, env: Any, decoy: bool) -> None:
        from sim.experts import make_expert

        self.env, self.decoy = env.unwrapped, decoy
        self.expert = make_expert(env)
        self.seed = 0

    def reset(self, instruction: str | None = None) -> None:
        self.expert.reset(self.seed)

    def act(self, observation: dict[str, Any]) -> dict[str, float]:
        task = self.env.task
        real = task.target
        if self.decoy:
            task.target = next(n for n in task.layout.object_xy if n != real)
        try:
            q = self.expert.act({})
        finally:
            task.target = real
        return SO101.vector_to_action(q)


def test_watch_counts_touching_or_ending_at_another_object() -> None:
    def verdict(*steps: tuple[dict[str, float], bool]) -> bool | None:
        watch = DistractorWatch()
        for gaps, ok in steps:
            watch.update({"object_gaps": gaps, "target": "a"}, ok)
        return watch.verdict()

    assert verdict(({"a": 0.1, "b": 0.2}, False), ({"a": 0.0, "b": 0.1}, True)) is False
    assert verdict(({"a": 0.1, "b": 0.05}, False)) is True  # ended closer to b
    assert verdict(({"a": 0.1, "b": 0.0}, False), ({"a": 0.02, "b": 0.1}, False)) is True  # touched b first
    assert verdict(({"a": 0.0, "b": 0.1}, True), ({"a": 0.0, "b": 0.0}, True)) is False  # b touched after success
    assert verdict(({"a": 0.1}, False)) is False  # nothing else on the table
    watch = DistractorWatch()
    watch.update({"is_success": False}, False)
    assert watch.verdict() is None  # an env that does not report gaps


@pytest.mark.parametrize("decoy", [False, True])
def test_expert_sent_to_a_distractor_is_counted(decoy: bool) -> None:
    import sim

    env = sim.make_env("reach")
    results = []
    try:
        for seed in (0, 1):
            brain = _ExpertBrain(env, decoy)
            brain.seed = seed
            results.append(run_episode(env, brain, seed, SO101)[0])
    finally:
        env.close()
    record = summarize("expert", "reach", results)
    assert record["distractor_rate"] == (1.0 if decoy else 0.0)
    assert record["success_rate"] == (0.0 if decoy else 1.0)
    assert all(ep["instruction"] and ep["distractor"] is decoy for ep in record["per_episode"])


def test_eval_cli_runs_the_users_templates_and_records_them(random_checkpoint_dir, tmp_path) -> None:
    out = tmp_path / "eval"
    templates = ["kindly make contact with the {object}", "your job: find the {object}!"]
    code = main(["eval", f"ckpt={random_checkpoint_dir}", "planners=[policy]", "task=reach", "episodes=3",
                 "max_steps=2", "videos=0", "threads=1", "progress=false", f"out={out}",
                 f"instruction_templates=[{','.join(repr(t) for t in templates)}]"])  # fmt: skip
    assert code == 0
    (record,) = json.loads((out / "eval.json").read_text())
    assert record["instruction_templates"] == templates
    assert all(ep["instruction"].startswith(("kindly make contact", "your job")) for ep in record["per_episode"])
    assert 0.0 <= record["distractor_rate"] <= 1.0
    code = main(["eval", f"ckpt={random_checkpoint_dir}", "planners=[policy]", "episodes=1", "max_steps=1",
                 "videos=0", "progress=false", f"out={tmp_path / 'own'}"])  # fmt: skip
    assert code == 0
    (record,) = json.loads((tmp_path / "own" / "eval.json").read_text())
    assert record["instruction_templates"] == ["touch the {object}", "reach the {object}",
                                               "move the gripper to the {object}", "point at the {object}"]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("['go to the {zone}']", ["instruction_templates:", "unknown field {zone}", "task reach fills {object}"]),
        ("'go to the {object}'", ["instruction_templates must be a list"]),
        ("[]", ["non-empty list"]),
    ],
)
def test_eval_cli_refuses_bad_templates_in_one_line(random_checkpoint_dir, tmp_path, capsys, value, words) -> None:
    code = main(["eval", f"ckpt={random_checkpoint_dir}", "task=reach", f"instruction_templates={value}",
                 f"out={tmp_path / 'o'}"])  # fmt: skip
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and all(w in lines[0] for w in words), err
    assert not (tmp_path / "o").exists()


def test_record_without_gaps_has_no_rate() -> None:
    from planners.evaluate import EpisodeResult

    rec = summarize("x", "reach", [EpisodeResult(0, False, False, None, 1, 0.0, 0.0, 0.1)])
    assert rec["distractor_rate"] is None and np.isfinite(rec["mean_final_distance"])
