"""The data engine: collection policies beyond the clean expert, provenance and dense progress per frame.

Each policy collects two short real MuJoCo episodes into a LeRobotDataset that LeRobot's own loader
reopens; the columns say who acted (``source``), what the expert would have done (``expert.action``,
``expert.valid``) and how far the task is (``next.progress``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import sim
from latent_vla.app.collect_cli import load_collect_brain
from latent_vla.base.robot_spec import KOCH, SO101
from sim.collect import CollectConfig, CollectError, check_brain, collect
from sim.collect_policies import LOST_GAP, POLICIES, check_brain_action
from sim.dataset_features import SOURCES
from sim.experts import make_expert

REPO = "test/engine"
STEPS = 24  # control steps per episode: explore branches within the first 60 % of them


def _cfg(out, policy: str, **kw) -> CollectConfig:
    base = dict(task="push", episodes=2, seed=11, out=out, repo_id=REPO, workers=1, max_episode_steps=STEPS,
                progress=False, policy=policy)  # fmt: skip
    base.update(kw)
    return CollectConfig(**base)


def _columns(root) -> dict[str, np.ndarray]:
    """Every non-video column of the dataset at ``root``, reopened by LeRobot's own loader."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(REPO, root=root, video_backend="pyav")
    item = ds[3]  # a decoded frame carries the new features too
    assert item["expert.action"].shape == (6,) and item["next.progress"].shape == (3,)
    assert int(item["source"]) in SOURCES.values() and str(item["expert.valid"].dtype) == "torch.bool"
    hf = ds.hf_dataset.with_format("numpy")
    keys = ["episode_index", "frame_index", "action", "observation.state", "next.reward", "source",
            "expert.action", "expert.valid", "next.progress"]  # fmt: skip
    cols = {k: np.asarray(hf[k]) for k in keys}
    for k in ("episode_index", "frame_index", "source", "expert.valid", "next.reward"):
        cols[k] = cols[k].reshape(-1)
    return cols


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, dict[str, np.ndarray]]:
    """Columns of a 2 x 24-step push collection per policy (the brain is the scripted one)."""
    root = tmp_path_factory.mktemp("engine")
    out = {}
    for policy in ("expert", "dart", "explore", "brain", "random"):
        extra = {"brain": "scripted"} if policy == "brain" else {}
        result = collect(_cfg(root / policy, policy, **extra), brain_factory=load_collect_brain)
        assert [sum(e.sources.values()) for e in result.episodes] == [STEPS, STEPS]
        out[policy] = _columns(root / policy)
    return out


def _replay(cols: dict[str, np.ndarray], seed: int, episode: int) -> np.ndarray:
    """The expert's labels at the states that the recorded executed actions visit (a fresh env and expert)."""
    env = sim.make_env("push", episode_length=STEPS)
    expert = make_expert(env)
    try:
        obs, _ = env.reset(seed=seed)
        expert.reset(seed)
        labels = []
        for a in cols["action"][cols["episode_index"] == episode]:
            expert.resync(LOST_GAP)
            labels.append(np.clip(expert.act(obs), SO101.lower, SO101.upper))
            obs, *_ = env.step(a)
        return np.asarray(labels, np.float32)
    finally:
        env.close()


def test_expert_frames_are_their_own_labels(datasets):
    cols = datasets["expert"]
    assert (cols["source"] == SOURCES["expert"]).all() and cols["expert.valid"].all()
    np.testing.assert_array_equal(cols["action"], cols["expert.action"])


def test_dart_executes_noise_and_records_the_experts_corrective_labels(datasets):
    cols = datasets["dart"]
    assert (cols["source"] == SOURCES["dart"]).all() and cols["expert.valid"].all()
    gaps = np.abs(cols["action"] - cols["expert.action"]).max(axis=1)  # degrees / percent
    assert (gaps > 0.5).mean() > 0.9  # executed != label
    np.testing.assert_allclose(cols["expert.action"][cols["episode_index"] == 0], _replay(cols, 11, 0), atol=1e-3)


def test_explore_branches_off_the_expert_into_smooth_random_walks(datasets):
    cols = datasets["explore"]
    assert cols["expert.valid"].all()
    for ep in (0, 1):
        src = cols["source"][cols["episode_index"] == ep]
        assert src[0] == SOURCES["expert"] and (src == SOURCES["explore"]).any()  # expert first, then a branch
        assert set(src.tolist()) <= {SOURCES["expert"], SOURCES["explore"]}
    walk = cols["source"] == SOURCES["explore"]
    assert not np.allclose(cols["action"][walk], cols["expert.action"][walk])
    np.testing.assert_array_equal(cols["action"][~walk], cols["expert.action"][~walk])
    steps = np.abs(np.diff(cols["action"], axis=0))[walk[1:] & walk[:-1]]
    assert steps.max() < 0.3 * 4 * (SO101.upper - SO101.lower).max() / SO101.fps  # a walk, not jumps
    np.testing.assert_allclose(cols["expert.action"][cols["episode_index"] == 0], _replay(cols, 11, 0), atol=1e-3)


def test_a_brain_acts_with_expert_labels_beside_it(datasets):
    cols = datasets["brain"]
    assert (cols["source"] == SOURCES["brain"]).all() and cols["expert.valid"].all()
    assert np.abs(cols["action"] - cols["expert.action"]).max() > 5.0
    np.testing.assert_allclose(cols["expert.action"][cols["episode_index"] == 0], _replay(cols, 11, 0), atol=1e-3)


def test_random_frames_have_no_label(datasets):
    cols = datasets["random"]
    assert (cols["source"] == SOURCES["random"]).all() and not cols["expert.valid"].any()


def test_progress_matches_the_push_reward(datasets):
    for cols in datasets.values():
        p = cols["next.progress"]  # (N, 3): metres, metres, 0/1
        assert np.all(p[:, :2] >= 0) and np.all(p[:, :2] < 0.6) and set(np.unique(p[:, 2])) <= {0.0, 1.0}
        # push reward = -max(0, zone distance - 3 cm) - 0.2 max(0, tip gap - 3 cm) while the cube is on the table
        want = -np.maximum(0, p[:, 1] - 0.03) - 0.2 * np.maximum(0, p[:, 0] - 0.03)
        assert np.mean(np.abs(want - cols["next.reward"]) < 1e-4) > 0.9


def test_pick_progress_sees_the_grasp_and_reach_has_no_object_to_goal():
    for task, steps in (("pick", 70), ("reach", 5)):
        env = sim.make_env(task)
        expert = make_expert(env)
        try:
            obs, info = env.reset(seed=0)
            expert.reset(0)
            progress = [info["progress"]]
            for _ in range(steps):
                obs, _, _, _, info = env.step(expert.act(obs))
                progress.append(info["progress"])
        finally:
            env.close()
        p = np.asarray(progress)
        assert p.dtype == np.float32 and p.shape == (steps + 1, 3)
        if task == "pick":
            assert p[0, 2] == 0.0 and p[-1, 2] == 1.0  # held at the end
            assert p[-1, 0] < p[0, 0] and p[-1, 1] < p[0, 1]  # closer to the cube, the cube higher
        else:
            assert np.all(p[:, 1] == 0.0) and np.all(p[:, 2] == 0.0)


def test_lerobot_policies_do_not_see_the_engine_columns():
    from lerobot.datasets.utils import dataset_to_policy_features

    from sim.collect import collect_features

    policy_features = dataset_to_policy_features(collect_features(SO101, (64, 64)))
    assert not {"source", "expert.action", "expert.valid", "next.progress"} & set(policy_features)


def test_bad_policies_and_brains_give_one_line_errors(tmp_path, tiny_checkpoint_dir, capsys):
    from latent_vla.app.cli import main

    assert main(["collect", "policy=bogus", f"out={tmp_path / 'x'}", "workers=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "valid policies: " + ", ".join(POLICIES) in err
    assert main(["collect", "policy=brain", f"out={tmp_path / 'x'}", "workers=1"]) == 2
    assert "brain=" in capsys.readouterr().err
    with pytest.raises(CollectError, match="brain_mode"):
        _cfg(tmp_path, "brain", brain="scripted", brain_mode="dream").validate()
    with pytest.raises(CollectError, match="noise > 0"):
        _cfg(tmp_path, "dart", noise=0.0).validate()
    with pytest.raises(CollectError, match="brain_factory"):
        collect(_cfg(tmp_path / "y", "brain", brain="scripted"))
    # a run trained for the SO-101 refused for a Koch arm, in one line, before anything is written
    with pytest.raises(CollectError, match="cannot act for robot koch") as exc:
        check_brain(_cfg(tmp_path, "brain", brain=str(tiny_checkpoint_dir), robot="koch"), KOCH, load_collect_brain)
    assert "\n" not in str(exc.value)
    with pytest.raises(CollectError, match="acts on"):
        check_brain(_cfg(tmp_path, "brain", brain="scripted"), SO101, lambda cfg, spec: load_collect_brain(cfg, KOCH))
    with pytest.raises(ValueError, match="needs"):
        check_brain_action({"a.pos": 1.0}, SO101, "mine")
    assert not (tmp_path / "y").exists()


def test_a_trained_run_collects_dagger_frames(tmp_path, tiny_checkpoint_dir):
    result = collect(_cfg(tmp_path / "run", "brain", brain=str(tiny_checkpoint_dir), episodes=1, max_episode_steps=5),
                     brain_factory=load_collect_brain)  # fmt: skip
    assert result.episodes[0].sources == {"brain": 5}
    cols = _columns(tmp_path / "run")
    assert (cols["source"] == SOURCES["brain"]).all() and cols["expert.valid"].all()


def test_brain_planner_settings_reach_the_acting_planner(tmp_path, tiny_checkpoint_dir, capsys):
    from latent_vla.app.cli import main

    cfg = _cfg(tmp_path, "brain", brain=str(tiny_checkpoint_dir), brain_mode="grad", brain_planner={"min_gain": 0.0})
    assert load_collect_brain(cfg, SO101).planner.min_gain == 0.0
    assert load_collect_brain(replace(cfg, brain_planner={}), SO101).planner.min_gain > 0.0  # the shipped setting
    with pytest.raises(CollectError, match="magic") as exc:
        check_brain(replace(cfg, brain_planner={"magic": 1}), SO101, load_collect_brain)
    assert "\n" not in str(exc.value)
    with pytest.raises(CollectError, match="has no brain"):
        _cfg(tmp_path, "expert", brain_planner={"min_gain": 0.0}).validate()
    argv = ["collect", "+brain_planner.min_gain=2", "policy=brain", f"brain={tiny_checkpoint_dir}", "brain_mode=grad",
            f"out={tmp_path / 'z'}", "workers=1"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "min_gain" in err
    assert not (tmp_path / "z").exists()
