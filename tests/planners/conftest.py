"""Fixtures for planner tests: a small randomly initialized WorldModel checkpoint (plumbing, not skill)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


def make_random_checkpoint(run_dir: Path, seed: int = 0, latent_dim: int = 32, chunk_len: int = 4) -> Path:
    """Save an untrained small ``WorldModel`` for the SO-101 with cameras ``front`` and ``wrist``.

    Random weights are honest for testing the encode -> plan -> act plumbing, never for success rates.
    """
    from latent_vla.base.normalize import Normalizer
    from latent_vla.base.robot_spec import SO101
    from latent_vla.base.text import Tokenizer
    from latent_vla.checkpoint import save_checkpoint
    from latent_vla.model import ModelConfig, WorldModel

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    spec = SO101
    tokenizer = Tokenizer(num_buckets=256, max_len=12)
    lo, hi = spec.lower, spec.upper
    states = rng.uniform(0.25 * lo + 0.75 * spec.home_vector, 0.25 * hi + 0.75 * spec.home_vector, size=(64, 6))
    actions = states + rng.normal(0, 5.0, size=states.shape)
    normalizer = Normalizer.from_arrays(states, actions, image_size=(32, 32), camera_names=("front", "wrist"))
    config = ModelConfig(
        camera_names=("front", "wrist"), state_dim=6, action_dim=6, image_size=(32, 32), latent_dim=latent_dim,
        chunk_len=chunk_len, vocab_size=tokenizer.vocab_size, task_dim=16, word_dim=16, channels=(8, 16, 16),
        image_feat=32, state_feat=32, hidden=64, head_hidden=32,
    )  # fmt: skip
    model = WorldModel(config)
    save_checkpoint(run_dir, model, normalizer, tokenizer, spec, {"note": "random init for tests"}, step=0)
    return run_dir


@pytest.fixture(scope="session")
def random_checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Session-scoped run directory of a randomly initialized small WorldModel."""
    return make_random_checkpoint(tmp_path_factory.mktemp("planner_ckpt") / "run")


@pytest.fixture
def robot_observation() -> dict:
    """A LeRobot-style observation for the SO-101: joints at home, two 64x64 camera images."""
    from latent_vla.base.robot_spec import SO101

    rng = np.random.default_rng(1)
    obs: dict = dict(SO101.vector_to_action(SO101.home_vector))
    for cam in ("front", "wrist"):
        obs[cam] = rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
    return obs
