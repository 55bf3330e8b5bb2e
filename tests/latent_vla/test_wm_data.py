"""Reading LeRobotDatasets into memory and sampling windows: alignment, other cameras, clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from synthetic_data import make_synthetic_dataset

from latent_vla.base.text import Tokenizer
from latent_vla.data import DatasetError, WindowSampler, load_frames, split_episodes


@pytest.fixture(scope="module")
def cache(tiny_dataset_dir):
    return load_frames(tiny_dataset_dir, (64, 64), progress=False)


def test_cache_matches_lerobot_random_access(tiny_dataset_dir, cache):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/tiny", root=tiny_dataset_dir)
    assert cache.camera_names == ["front", "wrist"] and cache.num_frames == len(ds) == 8 * 24
    assert cache.num_episodes == 8 and cache.skipped == []
    assert cache.state_names == [
        f"{j}.pos" for j in ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
    ]
    for i in (0, 23, 24, 100, len(ds) - 1):
        item = ds[i]
        for cam in cache.camera_names:
            ref = (item[f"observation.images.{cam}"].permute(1, 2, 0).numpy() * 255).round()
            np.testing.assert_array_equal(cache.images[cam][i], ref.astype(np.uint8))
        np.testing.assert_array_equal(cache.state[i], item["observation.state"].numpy())
        np.testing.assert_array_equal(cache.action[i], item["action"].numpy())
        assert cache.reward[i] == pytest.approx(float(item["next.reward"]))
        assert cache.success[i] == float(item["next.success"])
        assert cache.tasks[cache.task_index[i]] == item["task"]


def test_windows_stay_in_episodes_and_labels_are_aligned(cache):
    norm = cache.normalizer((64, 64))
    tok = Tokenizer()
    k, K = 4, 6
    sampler = WindowSampler(cache, norm, tok, k, K)
    assert len(sampler) == 8 * (24 - k)
    batch = sampler.sample(64, np.random.default_rng(0))
    assert batch.images["front"].shape == (64, k + 1, 3, 64, 64) and batch.images["front"].dtype == torch.float32
    assert batch.state.shape == (64, k + 1, 6) and batch.actions.shape == (64, k, 6)
    assert batch.cost.shape == (64, k) and batch.success.shape == (64, k)
    assert batch.chunk.shape == (64, K, 6) and batch.chunk_mask.shape == (64, K) and batch.tokens.shape == (64, 24)
    state_model = norm.state_to_model(cache.state)
    for b in range(64):
        # locate the window's start frame by its state (states are continuous, so unique)
        t = int(np.argmin(np.abs(state_model - batch.state[b, 0].numpy()).sum(1)))
        ep = np.searchsorted(cache.episode_bounds[:, 1], t, side="right")
        start, end = cache.episode_bounds[ep]
        assert start <= t and t + k < end  # the whole window is inside one episode
        np.testing.assert_allclose(batch.state[b].numpy(), state_model[t : t + k + 1], atol=1e-6)
        np.testing.assert_allclose(batch.actions[b].numpy(), norm.action_to_model(cache.action[t : t + k]), atol=1e-6)
        # z_{t+i} (i = 1..k) is labelled with next.reward of frame t+i-1 (cost = -reward)
        np.testing.assert_allclose(batch.cost[b].numpy(), -cache.reward[t : t + k], atol=1e-7)
        n_real = min(K, end - t)
        assert batch.chunk_mask[b].sum() == n_real
        np.testing.assert_allclose(batch.chunk[b, n_real - 1].numpy(), batch.chunk[b, -1].numpy())
        np.testing.assert_array_equal(batch.tokens[b].numpy(), tok.encode(cache.tasks[cache.task_index[t]])[0])


def test_motion_weighting_draws_moving_windows_more_often(cache):
    norm, tok, K = cache.normalizer((64, 64)), Tokenizer(), 4
    uniform = WindowSampler(cache, norm, tok, 2, K)
    weighted = WindowSampler(cache, norm, tok, 2, K, motion_weighting=1.0)
    act = norm.action_to_model(cache.action)
    last = np.minimum(weighted.starts + K - 1, weighted.ep_end - 1)
    motion = np.linalg.norm(act[last] - act[weighted.starts], axis=-1)  # (windows,)
    np.testing.assert_allclose(weighted.probs, motion / motion.sum(), rtol=1e-5)
    assert uniform.probs is None

    def mean_motion(sampler) -> float:
        batch = sampler.sample(4000, np.random.default_rng(0))
        return float(np.linalg.norm((batch.chunk[:, -1] - batch.chunk[:, 0]).numpy(), axis=-1).mean())

    # with p proportional to m, E[m] = E_uniform[m^2] / E_uniform[m] > E_uniform[m] unless m is constant
    assert mean_motion(weighted) > 1.1 * mean_motion(uniform)
    with pytest.raises(ValueError, match="motion_weighting"):
        WindowSampler(cache, norm, tok, 2, K, motion_weighting=1.5)


def test_split_episodes():
    train, val = split_episodes(10, 0.2, seed=1)
    assert len(val) == 2 and len(train) == 8 and not set(train) & set(val)
    assert len(split_episodes(3, 0.0)[1]) == 0
    assert len(split_episodes(3, 0.01)[1]) == 1  # at least one held out when asked


def test_other_cameras_images_not_videos_and_no_task_signals(tmp_path):
    root = make_synthetic_dataset(
        tmp_path / "top_only", cameras=("overhead",), episodes=2, length=6, image_hw=(48, 40),
        with_task_signals=False, use_videos=False,
    )  # fmt: skip
    cache = load_frames(root, (32, 32), progress=False)
    assert cache.camera_names == ["overhead"] and cache.images["overhead"].shape == (12, 32, 32, 3)
    assert cache.reward is None and cache.success is None
    assert any("next.reward" in n for n in cache.skipped) and any("next.success" in n for n in cache.skipped)
    batch = WindowSampler(cache, cache.normalizer((32, 32)), Tokenizer(), 2, 4).sample(3, np.random.default_rng(0))
    assert batch.cost is None and batch.success is None


def test_clear_errors(tmp_path, tiny_dataset_dir, cache):
    with pytest.raises(DatasetError, match="does not exist"):
        load_frames(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match="not a LeRobotDataset"):
        load_frames(tmp_path / "plain")
    old = tmp_path / "old"
    shutil.copytree(tiny_dataset_dir, old)
    info = json.loads((old / "meta" / "info.json").read_text())
    info["codebase_version"] = "v2.1"
    (old / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="convert_dataset_v21_to_v30"):
        load_frames(old)
    with pytest.raises(DatasetError, match="no cameras"):
        load_frames(tiny_dataset_dir, cameras=["left"], progress=False)
    with pytest.raises(DatasetError, match="lower train.horizon"):
        WindowSampler(cache, cache.normalizer((64, 64)), Tokenizer(), 30, 4)


def test_missing_features_are_named():
    from latent_vla.data import check_features

    with pytest.raises(DatasetError, match=r"observation\.state"):
        check_features({"observation.images.cam": {"dtype": "video"}, "action": {}})
    with pytest.raises(DatasetError, match="an image feature"):
        check_features({"observation.state": {}, "action": {}})
