"""Measuring a trained world model on recorded episodes (used by ``latent-vla inspect`` and benchmarks).

Everything runs without autograd on whole episodes of a :class:`~latent_vla.data.FrameCache`:
encoding frames, open-loop imagination with the recorded actions, prediction errors against a
constant-latent baseline, cost-vs-distance rank correlation, and a 2-D PCA of latents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from latent_vla.base.normalize import Normalizer
from latent_vla.base.text import Tokenizer
from latent_vla.data import FrameCache
from latent_vla.model import WorldModel


@dataclass
class EncodedEpisodes:
    """Latents of every frame of some episodes.

    Attributes:
        z: ``(N, Z)`` latents of the selected frames, in cache order.
        task: ``(N, T)`` instruction embedding of each frame.
        frames: ``(N,)`` cache indices of the frames.
        episode: ``(N,)`` episode position (``0..E-1``) of each frame.
    """

    z: torch.Tensor
    task: torch.Tensor
    frames: np.ndarray
    episode: np.ndarray


@torch.no_grad()
def encode_episodes(
    model: WorldModel,
    cache: FrameCache,
    normalizer: Normalizer,
    tokenizer: Tokenizer,
    episodes: np.ndarray | list[int] | None = None,
    batch_size: int = 256,
) -> EncodedEpisodes:
    """Encode every frame of ``episodes`` (positions in ``cache``; default all)."""
    device = next(model.parameters()).device
    eps = np.arange(cache.num_episodes) if episodes is None else np.asarray(episodes, dtype=np.int64)
    frames = np.concatenate([np.arange(*cache.episode_bounds[e]) for e in eps])
    episode = np.concatenate([np.full(np.diff(cache.episode_bounds[e])[0], e) for e in eps])
    task_table = model.embed_task(torch.from_numpy(tokenizer.encode(cache.tasks)).to(device))  # (n_tasks, T)
    task = task_table[torch.from_numpy(cache.task_index[frames]).to(device)]
    state = torch.from_numpy(normalizer.state_to_model(cache.state[frames])).to(device)
    zs = []
    for s in range(0, len(frames), batch_size):
        sl = slice(s, s + batch_size)
        images = {
            c: torch.from_numpy(cache.images[c][frames[sl]]).to(device).permute(0, 3, 1, 2).float() / 255.0
            for c in model.camera_names
        }
        zs.append(model.encode(images, state[sl], task[sl]))
    return EncodedEpisodes(torch.cat(zs), task, frames, episode)


@torch.no_grad()
def imagine(model: WorldModel, z0: torch.Tensor, actions_model: np.ndarray) -> torch.Tensor:
    """Open-loop rollout ``(B, Z)``, normalized actions ``(B, H, A)`` -> ``(B, H, Z)``."""
    device = z0.device
    return model.rollout(z0, torch.from_numpy(np.asarray(actions_model, dtype=np.float32)).to(device))


@torch.no_grad()
def open_loop_errors(
    model: WorldModel,
    cache: FrameCache,
    normalizer: Normalizer,
    enc: EncodedEpisodes,
    horizons: tuple[int, ...] = (1, 4, 8),
) -> dict[str, dict[str, float]]:
    """Latent prediction error after ``h`` recorded actions vs the constant-latent baseline.

    For every frame ``t`` with ``t + h`` in the same episode: ``model`` error
    ``mean ||rollout(z_t, a_t..a_{t+h-1})[-1] - z_{t+h}||^2`` and baseline ``mean ||z_t - z_{t+h}||^2``
    (both over latent dimensions), plus their ratio (< 1: the dynamics beat "nothing moves"). With a
    joint block in the latent the same three numbers for the learned block alone (``learned_*``).
    """
    out: dict[str, dict[str, float]] = {}
    pos = {int(f): i for i, f in enumerate(enc.frames)}
    actions = normalizer.action_to_model(cache.action)
    for h in horizons:
        starts = [i for i, f in enumerate(enc.frames) if (f + h) in pos and enc.episode[pos[f + h]] == enc.episode[i]]
        if not starts:
            continue
        starts_t = torch.as_tensor(starts)
        ends = torch.as_tensor([pos[int(enc.frames[i]) + h] for i in starts])
        acts = np.stack([actions[enc.frames[i] : enc.frames[i] + h] for i in starts])  # (B, h, A)
        pred = imagine(model, enc.z[starts_t], acts)[:, -1]
        target = enc.z[ends]
        model_err = float(((pred - target) ** 2).mean())
        base_err = float(((enc.z[starts_t] - target) ** 2).mean())
        row = {
            "model_mse": model_err,
            "constant_mse": base_err,
            "ratio": model_err / max(base_err, 1e-12),
            "windows": len(starts),
        }
        if getattr(model, "proprio_latent", False):  # the learned block alone (the joint block is measured)
            lp, lt, l0 = (model.learned_part(x) for x in (pred, target, enc.z[starts_t]))
            row["learned_model_mse"] = float(((lp - lt) ** 2).mean())
            row["learned_constant_mse"] = float(((l0 - lt) ** 2).mean())
            row["learned_ratio"] = row["learned_model_mse"] / max(row["learned_constant_mse"], 1e-12)
        out[str(h)] = row
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two 1-D arrays (average ranks for ties)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"need two equal-length arrays of >= 2 values, got {a.shape} and {b.shape}")

    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="mergesort")
        r = np.empty_like(x)
        r[order] = np.arange(len(x), dtype=np.float64)
        _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
        sums = np.bincount(inv, weights=r)
        return (sums / counts)[inv]

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


@torch.no_grad()
def cost_vs_distance(
    model: WorldModel, cache: FrameCache, enc: EncodedEpisodes, dense: float = 0.0, to_go: float = 0.0
) -> dict[str, float]:
    """Spearman correlation of ``cost(z_t)`` with the true cost of frame ``t`` (needs next.reward).

    The true cost of ``z_t`` is the cost target of frame ``t - 1`` (the state reached after ``a_{t-1}``:
    ``FrameCache.cost_targets(dense, to_go)``, the run's ``train.loss.cost_dense`` and ``cost_to_go``), so every
    episode's first frame is skipped. ``spearman_unsolved`` is the same on the frames whose distance to
    success is above zero (the solved frames tie at zero without ``dense``). ``spearman_ceiling`` is the best
    ``spearman`` any prediction without ties can reach on these frames (the true order, ties broken):
    with many solved frames it is well below 1, because their tied true ranks cannot be matched.
    """
    if cache.reward is None:
        raise ValueError("the dataset has no next.reward, so there is no true distance to compare with")
    keep = np.array([f > cache.episode_bounds[e][0] for f, e in zip(enc.frames, enc.episode, strict=True)])
    pred = model.cost(enc.z[torch.from_numpy(keep)], enc.task[torch.from_numpy(keep)]).cpu().numpy()
    targets = cache.cost_targets(dense, to_go)
    assert targets is not None  # next.reward is there
    before = enc.frames[keep] - 1
    true = targets[before]
    out = {
        "spearman": spearman(pred, true),
        "spearman_ceiling": spearman(np.argsort(np.argsort(true, kind="mergesort")), true),
        "mae_m": float(np.abs(pred - true).mean()),
        "frames": int(keep.sum()),
    }
    # Frames already at success all have distance 0: a large tied group whose order is arbitrary, so
    # the same correlation on the frames still short of success is reported beside it.
    open_ = -cache.reward[before] > 0
    if open_.sum() >= 2:
        out["spearman_unsolved"] = spearman(pred[open_], true[open_])
        out["frames_unsolved"] = int(open_.sum())
    return out


@torch.no_grad()
def env_state_errors(model: WorldModel, cache: FrameCache, enc: EncodedEpisodes) -> dict[str, float]:
    """How well the latent knows the scene: the auxiliary head's ``environment_state(z_t)`` against
    the recorded ``observation.environment_state`` of the same frames (sim: metres).

    Returns ``{"mae": mean absolute error over all entries, "mae_first_half": over the first half of
    the entries (sim: the named object's xyz), "baseline_mae" / "baseline_mae_first_half": the same
    errors of always predicting the dataset mean, "frames": N}``.

    Raises:
        ValueError: the dataset has no environment state or the model no such head.
    """
    if cache.env_state is None or model.env_state_dim == 0:
        raise ValueError("needs a dataset with observation.environment_state and a model trained with its head")
    pred = model.environment_state(enc.z).cpu().numpy()  # (N, D)
    true = cache.env_state[enc.frames]  # (N, D)
    err = np.abs(pred - true)
    base = np.abs(true - model.env_state_mean.cpu().numpy())
    half = max(1, true.shape[1] // 2)
    return {
        "mae": float(err.mean()),
        "mae_first_half": float(err[:, :half].mean()),
        "baseline_mae": float(base.mean()),
        "baseline_mae_first_half": float(base[:, :half].mean()),
        "frames": int(len(true)),
    }


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA of ``(N, D)`` rows -> ``(projections (N, 2), mean (D,), components (2, D))``."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:
        comps = np.vstack([comps, np.zeros((2 - comps.shape[0], x.shape[1]))])
    return (x - mean) @ comps.T, mean, comps
