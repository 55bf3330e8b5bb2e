"""Training on data-engine datasets: expert labels teach the policy, every transition the rest.

A dataset collected with ``policy=dart|explore|brain`` records the executed ``action`` (dynamics) and
the expert's label ``expert.action`` with ``expert.valid`` (behaviour cloning). Datasets without those
features train exactly as before.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latent_vla.base.text import Tokenizer
from latent_vla.data import Batch, DatasetError, FrameCache, WindowSampler, load_frames, merge_caches
from latent_vla.losses import LossWeights, WorldModelLoss
from latent_vla.model import ModelConfig, WorldModel

N_EP, T, A = 3, 10, 6


def _cache(labelled: bool, seed: int = 0) -> FrameCache:
    """Three 10-frame episodes; with labels, every other frame is an exploration frame without one."""
    rng = np.random.default_rng(seed)
    n = N_EP * T
    action = rng.uniform(-50, 50, (n, A)).astype(np.float32)
    cache = FrameCache(
        images={"front": rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8)},
        state=rng.normal(size=(n, A)).astype(np.float32),
        action=action,
        reward=-rng.uniform(0, 0.1, n).astype(np.float32),
        success=np.zeros(n, np.float32),
        task_index=np.zeros(n, np.int64),
        tasks=["push the red cube into the green zone"],
        episode_bounds=np.array([[i * T, (i + 1) * T] for i in range(N_EP)], np.int64),
        episode_ids=np.arange(N_EP, dtype=np.int64),
        fps=30.0,
    )
    if labelled:
        cache.expert_valid = np.arange(n) % 2 == 0
        cache.expert_action = np.where(cache.expert_valid[:, None], action + 5.0, 0.0).astype(np.float32)
        cache.source = np.where(cache.expert_valid, 1, 2).astype(np.int64)
    return cache


def _sampler(cache: FrameCache, k: int = 2, K: int = 4) -> WindowSampler:
    return WindowSampler(cache, cache.normalizer((16, 16)), Tokenizer(), k, K)


def test_the_policy_chunk_holds_expert_labels_and_masks_the_rest():
    cache = _cache(labelled=True)
    sampler = _sampler(cache)
    norm = cache.normalizer((16, 16))
    batch = sampler.sample(64, np.random.default_rng(1))
    bc_model = norm.action_to_model(np.where(cache.expert_valid[:, None], cache.expert_action, cache.action))
    exec_model = norm.action_to_model(cache.action)
    for b in range(64):
        t = int(np.argmin(np.abs(exec_model - batch.actions[b, 0].numpy()).sum(1)))  # the window's start
        end = cache.episode_bounds[t // T, 1]
        for j in range(4):
            inside = t + j < end
            assert batch.chunk_mask[b, j] == float(inside and cache.expert_valid[t + j])
            if batch.chunk_mask[b, j]:  # the label, not the executed action
                np.testing.assert_allclose(batch.chunk[b, j].numpy(), bc_model[t + j], atol=1e-5)
        # dynamics see the executed actions
        np.testing.assert_allclose(batch.actions[b].numpy(), exec_model[t : t + 2], atol=1e-6)
    # the action range covers the labels too
    assert np.all(norm.action_max >= cache.expert_action[cache.expert_valid].max(0) - 1e-4)


def test_a_dataset_without_labels_samples_exactly_as_before():
    cache = _cache(labelled=False)
    a = _sampler(cache).sample(32, np.random.default_rng(3))
    exec_model = torch.from_numpy(cache.normalizer((16, 16)).action_to_model(cache.action))
    starts = [int(torch.argmin((exec_model - a.actions[b, 0]).abs().sum(1))) for b in range(32)]
    for b, t in enumerate(starts):
        end = cache.episode_bounds[t // T, 1]
        want = [1.0 if t + j < end else 0.0 for j in range(4)]
        assert a.chunk_mask[b].tolist() == want
        np.testing.assert_allclose(a.chunk[b, 0].numpy(), exec_model[t].numpy(), atol=1e-6)


def test_merging_labelled_and_plain_datasets_treats_plain_actions_as_labels():
    plain, labelled = _cache(labelled=False, seed=1), _cache(labelled=True, seed=2)
    n = plain.num_frames
    merged = merge_caches([plain, labelled])
    assert merged.expert_valid[:n].all() and merged.source[:n].tolist() == [-1] * n
    np.testing.assert_array_equal(merged.expert_action[:n], merged.action[:n])
    assert merged.expert_valid[n:].tolist() == (np.arange(n) % 2 == 0).tolist()


def _tiny_model() -> WorldModel:
    torch.manual_seed(0)
    return WorldModel(
        ModelConfig(
            camera_names=("front",), state_dim=A, action_dim=A, image_size=(16, 16), latent_dim=32, chunk_len=4,
            vocab_size=Tokenizer().vocab_size, task_dim=16, word_dim=16, channels=(8, 16), image_feat=16,
            state_feat=16, hidden=32, head_hidden=16,
        )
    )  # fmt: skip


def test_the_behaviour_cloning_loss_ignores_frames_without_an_expert_label():
    loss = WorldModelLoss(_tiny_model(), LossWeights(image_shift=0, decoder_batch=2)).eval()
    batch = _sampler(_cache(labelled=True)).sample(8, np.random.default_rng(0))
    with torch.no_grad():
        _, terms = loss(batch)
        masked = batch.chunk_mask == 0
        assert masked.any() and (~masked).any()
        scrambled = Batch(**{**batch.__dict__, "chunk": torch.where(masked[..., None], 9.0, batch.chunk)})
        _, terms_scrambled = loss(scrambled)
        # labels of masked steps do not matter to the policy term ...
        assert terms_scrambled["policy"] == pytest.approx(float(terms["policy"]), abs=1e-6)
        # ... those of labelled steps do; every other term is unchanged (dynamics use every transition)
        changed = Batch(**{**batch.__dict__, "chunk": torch.where(masked[..., None], batch.chunk, 9.0)})
        _, terms_changed = loss(changed)
        assert float(terms_changed["policy"]) > float(terms["policy"]) + 1.0
        assert terms_changed["consistency"] == pytest.approx(float(terms["consistency"]), abs=1e-6)
        assert terms_changed["cost"] == pytest.approx(float(terms["cost"]), abs=1e-6)
        # a batch with no expert label at all: no policy gradient, no NaN
        none = Batch(**{**batch.__dict__, "chunk_mask": torch.zeros_like(batch.chunk_mask)})
        _, terms_none = loss(none)
        assert float(terms_none["policy"]) == 0.0


def test_load_frames_reads_the_data_engine_features(tmp_path):
    from sim.collect import CollectConfig, collect

    out = tmp_path / "dart"
    cfg = CollectConfig(task="push", episodes=2, seed=5, out=out, repo_id="test/dart", workers=1,
                        max_episode_steps=6, progress=False, policy="dart")  # fmt: skip
    collect(cfg)
    cache = load_frames(out, (32, 32), progress=False)
    assert cache.source.tolist() == [1] * 12 and cache.expert_valid.all()
    assert cache.progress.shape == (12, 3)
    assert cache.progress_names == ["gripper_to_object", "object_to_goal", "grasped"]
    assert not np.allclose(cache.expert_action, cache.action)  # executed = label + noise
    labels, valid = cache.bc_targets()
    np.testing.assert_array_equal(labels, cache.expert_action)
    assert valid.all()
    # the dense cost target adds the recorded gripper-to-object gap to the distance to success
    gap = cache.progress[:, 0]
    np.testing.assert_allclose(cache.cost_targets(), np.maximum(-cache.reward, 0.0))
    np.testing.assert_allclose(cache.cost_targets(0.5) - cache.cost_targets(), 0.5 * gap, atol=1e-7)
    assert (gap > 0).all()


def test_the_cost_to_go_target_is_a_discounted_mean_of_the_coming_costs():
    cache = _cache(labelled=False)
    cost = cache.cost_targets()
    g = 0.8
    to_go = cache.cost_targets(0.0, g)
    for start, end in cache.episode_bounds:  # brute force: the last cost held forever after the episode
        for t in range(start, end):
            rest = np.concatenate([cost[t:end], np.full(2000, cost[end - 1])])
            want = (1 - g) * np.sum(g ** np.arange(rest.size) * rest)
            np.testing.assert_allclose(to_go[t], want, rtol=1e-5)
    assert to_go[T - 1] == cost[T - 1] and to_go[T] != cost[T]  # episodes do not leak into one another
    sampler = WindowSampler(cache, cache.normalizer((16, 16)), Tokenizer(), 2, 4, cost_to_go=g)
    np.testing.assert_allclose(sampler.cost.numpy(), to_go)
    with pytest.raises(ValueError, match=r"discount must be in \[0, 1\), got 1.0"):
        cache.cost_targets(0.0, 1.0)


def test_the_dense_cost_target_has_a_slope_where_the_distance_is_flat():
    cache = _cache(labelled=False)
    cache.reward[:] = 0.0  # every frame solved: the distance to success is flat at zero
    with pytest.raises(DatasetError, match="cost_dense=1.0 needs") as exc:
        cache.cost_targets(1.0)
    assert "\n" not in str(exc.value)
    cache.progress = np.stack([np.linspace(0.05, 0.01, N_EP * T), np.zeros(N_EP * T), np.zeros(N_EP * T)], 1)
    cache.progress = cache.progress.astype(np.float32)
    cache.progress_names = ["gripper_to_object", "object_to_goal", "grasped"]
    flat = WindowSampler(cache, cache.normalizer((16, 16)), Tokenizer(), 2, 4)
    dense = WindowSampler(cache, cache.normalizer((16, 16)), Tokenizer(), 2, 4, cost_dense=2.0)
    assert float(flat.cost.abs().max()) == 0.0
    np.testing.assert_allclose(dense.cost.numpy(), 2.0 * cache.progress[:, 0], rtol=1e-6)
