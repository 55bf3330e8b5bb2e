"""latent-vla inspect and the analysis helpers it shares with benchmarks/world_model.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from file_import import import_file

from latent_vla.analysis import (
    cost_vs_distance,
    encode_episodes,
    env_state_errors,
    open_loop_errors,
    pca_2d,
    spearman,
)
from latent_vla.app.cli import main as cli_main
from latent_vla.checkpoint import load_checkpoint
from latent_vla.data import load_frames


def test_inspect_cli_writes_images_pca_and_json(tiny_checkpoint_dir, tiny_dataset_dir, tmp_path, capsys):
    out = tmp_path / "inspect"
    code = cli_main(
        ["inspect", f"ckpt={tiny_checkpoint_dir}", f"data={tiny_dataset_dir}", f"out={out}", "episodes=2", "horizon=5"]
    )
    assert code == 0, capsys.readouterr().err
    figures = json.loads((out / "inspect.json").read_text())
    assert [e["episode"] for e in figures["episodes"]] == [0, 1]
    for ep in figures["episodes"]:
        assert len(ep["latent_mse_per_step"]) == 5 and len(ep["pixel_mse_per_step"]) == 5
        assert all(np.isfinite(ep["latent_mse_per_step"]))
        assert (out / f"episode_{ep['episode']}.png").stat().st_size > 5000
    assert (out / "latent_pca.png").stat().st_size > 5000 and 0 < figures["pca_explained_variance"] <= 1.0
    import matplotlib.image

    img = matplotlib.image.imread(out / "episode_0.png")
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > img.shape[0]  # 3 rows x 6 columns


def test_inspect_cli_errors(tiny_dataset_dir, tmp_path, capsys):
    assert cli_main(["inspect", f"ckpt={tmp_path}", f"data={tiny_dataset_dir}", f"out={tmp_path / 'o'}"]) == 2
    assert "checkpoint" in capsys.readouterr().err


def test_open_loop_errors_and_cost_ranking(tiny_checkpoint_dir, tiny_dataset_dir):
    ck = load_checkpoint(tiny_checkpoint_dir)
    cache = load_frames(tiny_dataset_dir, ck.model.image_size, progress=False)
    enc = encode_episodes(ck.model, cache, ck.normalizer, ck.tokenizer, episodes=[0, 1, 2])
    assert enc.z.shape == (72, ck.model.latent_dim) and list(np.unique(enc.episode)) == [0, 1, 2]
    errs = open_loop_errors(ck.model, cache, ck.normalizer, enc, horizons=(1, 4))
    assert errs["1"]["windows"] == 3 * 23 and errs["4"]["windows"] == 3 * 20
    assert errs["4"]["constant_mse"] > errs["1"]["constant_mse"] > 0  # latents move along episodes
    # the 1-step error equals a direct re-computation over every in-episode pair (t, t+1)
    t = np.concatenate([np.arange(e * 24, e * 24 + 23) for e in range(3)])
    with torch.no_grad():
        a = torch.from_numpy(ck.normalizer.action_to_model(cache.action[t]))
        direct = float(((ck.model.step(enc.z[t], a) - enc.z[t + 1]) ** 2).mean())
        still = float(((enc.z[t] - enc.z[t + 1]) ** 2).mean())
    assert errs["1"]["model_mse"] == pytest.approx(direct, rel=1e-4)
    assert errs["1"]["constant_mse"] == pytest.approx(still, rel=1e-4)
    # the learned block alone: the same computation on the first latent_dim entries
    learned = ck.model.config.latent_dim
    with torch.no_grad():
        direct_l = float(((ck.model.step(enc.z[t], a)[:, :learned] - enc.z[t + 1, :learned]) ** 2).mean())
    assert errs["1"]["learned_model_mse"] == pytest.approx(direct_l, rel=1e-4)
    assert errs["1"]["learned_ratio"] == pytest.approx(direct_l / errs["1"]["learned_constant_mse"], rel=1e-6)
    rank = cost_vs_distance(ck.model, cache, enc)
    assert rank["frames"] == 3 * 23 and -1 <= rank["spearman"] <= 1 and rank["mae_m"] >= 0
    true = -cache.reward[np.concatenate([np.arange(e * 24, e * 24 + 23) for e in range(3)])]
    if (true > 0).sum() >= 2:  # the correlation restricted to frames short of success
        assert rank["frames_unsolved"] == int((true > 0).sum()) and -1 <= rank["spearman_unsolved"] <= 1
    tied = len(np.unique(true)) < len(true)
    assert rank["spearman_ceiling"] < 1 if tied else rank["spearman_ceiling"] == pytest.approx(1.0)
    # the auxiliary head against the recorded environment state (the named target's position)
    es = env_state_errors(ck.model, cache, enc)
    with torch.no_grad():
        pred = ck.model.environment_state(enc.z).numpy()
    assert es["frames"] == 72
    assert es["mae"] == pytest.approx(float(np.abs(pred - cache.env_state[:72]).mean()), rel=1e-5)
    assert es["mae"] < es["baseline_mae"]  # 80 tiny steps already beat "always the mean"
    cache.env_state = None
    with pytest.raises(ValueError, match="environment_state"):
        env_state_errors(ck.model, cache, enc)


def test_spearman_and_pca():
    x = np.arange(10.0)
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)  # ties: average ranks
    # the ceiling a tie-free prediction can reach when two thirds of the frames tie at 0 (solved):
    # the same for every order among the tied frames, and far below 1
    true = np.r_[np.zeros(200), np.linspace(0.01, 0.2, 100)]
    perfect_but_untied = [spearman(np.r_[rng.permutation(200), 200 + np.arange(100)], true) for rng in
                          (np.random.default_rng(s) for s in range(3))]  # fmt: skip
    assert perfect_but_untied == pytest.approx([perfect_but_untied[0]] * 3) and perfect_but_untied[0] < 0.9
    with pytest.raises(ValueError):
        spearman([1.0], [2.0])
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(200, 2)) @ np.array([[3.0, 0, 0, 0], [0, 1.0, 0, 0]])
    proj, mean, comps = pca_2d(pts)
    assert proj.shape == (200, 2) and comps.shape == (2, 4)
    assert abs(comps[0, 0]) == pytest.approx(1.0, abs=1e-2)  # the widest direction first


def test_inspect_asks_for_more_episodes_than_the_dataset_holds(tiny_checkpoint_dir, tiny_dataset_dir, tmp_path):
    """A 2-episode demo (recipe smoke run) made inspect fail with LeRobot's offline Hub error: now it shows
    what the dataset has, and asking the loader for a missing episode is a one-line DatasetError."""
    from latent_vla.data import DatasetError, episode_count, open_lerobot_dataset

    total = episode_count(tiny_dataset_dir)
    out = tmp_path / "inspect"
    argv = ["inspect", f"ckpt={tiny_checkpoint_dir}", f"data={tiny_dataset_dir}", f"out={out}", "horizon=5"]
    assert cli_main([*argv, f"episodes={total + 3}"]) == 0
    assert len(json.loads((out / "inspect.json").read_text())["episodes"]) == total
    with pytest.raises(DatasetError, match=f"holds {total} episodes .*\\[{total + 1}\\] requested"):
        open_lerobot_dataset(tiny_dataset_dir, episodes=[0, total + 1])
    with pytest.raises(DatasetError, match="does not exist"):
        episode_count(tmp_path / "nowhere")


def test_world_model_benchmark_measures_every_episode_of_a_foreign_dataset(
    tiny_checkpoint_dir, tiny_dataset_dir, tmp_path, monkeypatch
):
    """benchmarks/world_model.py: the run's held-out split by default, every episode with ``--all-episodes``
    (the states a planner visited, in a dataset the run never trained on)."""
    bench = import_file("benchmarks/world_model.py")
    monkeypatch.setattr(bench, "step_throughput", lambda model, batch, threads, seconds=1.0: 1.0)  # speed: not here
    held_out = bench.evaluate(tiny_checkpoint_dir, tiny_dataset_dir, 0, "reach", tmp_path)
    every = bench.evaluate(tiny_checkpoint_dir, tiny_dataset_dir, 0, "reach", tmp_path, all_episodes=True)
    assert held_out["held_out"] and 0 < held_out["episodes_evaluated"] < 8
    assert not every["held_out"] and every["episodes_evaluated"] == 8
    assert every["open_loop"]["1"]["windows"] == 8 * 23
