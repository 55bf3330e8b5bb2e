"""Helpers shared by the export tests (imported by ``conftest.py`` and the test modules)."""

from __future__ import annotations

import json

import numpy as np
import torch

from latent_vla.base.robot_spec import SO101

CAMERAS = ("front", "wrist")
INSTRUCTION = "reach the red target"
HORIZON = 4


def make_checkpoint(run_dir, seed: int = 0, dynamics_heads: int = 1, pretrained: str | None = None):
    """Save a small random WorldModel (32x32 images, Z=32, ``dynamics_heads`` dynamics networks, the
    tokenizer's ``pretrained`` subword table) with SO-101 stats; returns ``run_dir``."""
    from latent_vla.base.normalize import Normalizer
    from latent_vla.base.text import Tokenizer
    from latent_vla.checkpoint import save_checkpoint
    from latent_vla.model import ModelConfig, WorldModel

    torch.manual_seed(seed)
    cfg = ModelConfig(
        camera_names=CAMERAS, state_dim=6, action_dim=6, image_size=(32, 32), latent_dim=32, chunk_len=4,
        vocab_size=257, task_dim=16, word_dim=16, channels=(8, 16), image_feat=32, state_feat=16, hidden=64,
        head_hidden=32, dynamics_heads=dynamics_heads, pretrained_text=pretrained,
    )  # fmt: skip
    model = WorldModel(cfg)
    rng = np.random.default_rng(seed)
    states = rng.uniform(0.4 * SO101.lower, 0.4 * SO101.upper, (200, 6))  # inside the arm's limits, as recorded
    actions = rng.uniform(0.45 * SO101.lower, 0.45 * SO101.upper, (200, 6))  # data is (the loaders check)
    normalizer = Normalizer.from_arrays(states, actions, image_size=(32, 32), camera_names=CAMERAS)
    save_checkpoint(
        run_dir,
        model,
        normalizer,
        Tokenizer(num_buckets=256, max_len=12, pretrained=pretrained),
        SO101,
        {"seed": seed},
        7,
    )
    return run_dir


def random_observation(seed: int, size: int = 48) -> dict:
    """A Brain-style observation: SO-101 joints in robot units and two uint8 images."""
    rng = np.random.default_rng(seed)
    obs = SO101.vector_to_action(rng.uniform(-40, 40, 6))
    for cam in CAMERAS:
        obs[cam] = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return obs


def edit_manifest(bundle, fn) -> None:
    """Apply ``fn`` to the parsed ``manifest.json`` of ``bundle`` and write it back."""
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))
