"""``latent-vla inspect ckpt=<run dir> data=<dataset>``: pictures of what a world model imagines.

For each of the first ``episodes`` episodes it writes ``episode_<i>.png``: the real frames of the
first camera from frame ``start`` on (top row), the decoder's reconstruction of each encoded real
frame (middle) and the decoded open-loop imagination driven by the recorded actions (bottom). It also
draws ``latent_pca.png``, a 2-D PCA of the encoded latent trajectories (solid) with the imagined ones
(dashed), and writes ``inspect.json`` with the per-step prediction errors.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from latent_vla.app.settings import int_setting
from latent_vla.base.errors import UserError
from latent_vla.checkpoint import load_checkpoint
from latent_vla.data import DatasetError, episode_count, load_frames


def _episode_figure(
    real: np.ndarray, recon: np.ndarray, imagined: Sequence[np.ndarray], title: str, path: Path
) -> None:
    """Rows of uint8 images ``(n, h, w, 3)``: real, reconstruction, imagination (columns = time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = real.shape[0]
    fig, axes = plt.subplots(3, n, figsize=(1.2 * n + 1, 4.2), squeeze=False)
    for row, (label, imgs) in enumerate((("real", real), ("reconstructed", recon), ("imagined", imagined))):
        for col in range(n):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.imshow(imgs[col])
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
            if row == 0:
                ax.set_title(f"t+{col}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pca_figure(real: list[np.ndarray], imagined: list[np.ndarray], path: Path) -> dict[str, float]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from latent_vla.analysis import pca_2d

    proj, mean, comps = pca_2d(np.concatenate(real))
    total_var = float(np.var(np.concatenate(real) - mean, axis=0).sum())
    explained = float(np.var(proj, axis=0).sum() / max(total_var, 1e-12))
    fig, ax = plt.subplots(figsize=(5, 5))
    for i, (r, m) in enumerate(zip(real, imagined, strict=True)):
        pr = (r - mean) @ comps.T
        pm = (m - mean) @ comps.T
        (line,) = ax.plot(pr[:, 0], pr[:, 1], "-", lw=1.2, label=f"episode {i} (encoded)")
        ax.plot(pm[:, 0], pm[:, 1], "--", lw=1.2, color=line.get_color())
        ax.plot(pr[0, 0], pr[0, 1], "o", color=line.get_color())
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"latents (dashed: imagined), PCA {explained:.0%} var.", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return {"pca_explained_variance": explained}


def inspect(
    ckpt: str | Path,
    data: str | Path,
    out: str | Path,
    episodes: int = 3,
    horizon: int = 16,
    start: int = 0,
    device: str = "auto",
    repo_id: str | None = None,
    video_backend: str | None = None,
) -> dict[str, Any]:
    """Write the inspection images and ``inspect.json`` into ``out``; returns the JSON figures.

    Raises:
        CheckpointError / DatasetError: unusable inputs.
        UserError: no episode long enough to start at ``start``.
    """
    from latent_vla.analysis import encode_episodes, imagine
    from latent_vla.train import resolve_device

    ck = load_checkpoint(ckpt, map_location=resolve_device(device))
    model = ck.model
    cache = load_frames(
        data,
        model.image_size,
        cameras=model.camera_names,
        repo_id=repo_id,
        video_backend=video_backend,
        progress=False,
        episodes=list(range(min(episodes, episode_count(data)))),  # a smaller dataset shows all it has
    )
    if cache.state.shape[1] != model.state_dim or cache.action.shape[1] != model.action_dim:
        raise DatasetError(
            f"dataset has state {cache.state.shape[1]} / action {cache.action.shape[1]} dims, "
            f"the model expects {model.state_dim} / {model.action_dim}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    first = model.camera_names[0]
    enc = encode_episodes(model, cache, ck.normalizer, ck.tokenizer)
    actions = ck.normalizer.action_to_model(cache.action)
    figures: dict[str, Any] = {"ckpt": str(ckpt), "data": str(data), "camera": first, "episodes": []}
    real_traj, imag_traj = [], []
    with torch.no_grad():
        for e in range(cache.num_episodes):
            s, end = (int(x) for x in cache.episode_bounds[e])
            t0 = s + start
            if t0 >= end - 1:
                continue
            h = min(horizon, end - 1 - t0)
            rows = np.flatnonzero(enc.frames == t0)[0]
            z_real = enc.z[rows : rows + h + 1]  # (h+1, Z): encoded frames t0 .. t0+h
            z_imag = imagine(model, z_real[:1], actions[None, t0 : t0 + h])[0]  # (h, Z)
            recon = (model.decode(z_real).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
            dream = (model.decode(z_imag).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
            real = cache.images[first][t0 : t0 + h + 1]
            imagined = [recon[0], *dream]  # the imagination starts from the encoded first frame
            task = cache.tasks[cache.task_index[t0]]
            path = out / f"episode_{e}.png"
            _episode_figure(real, recon, imagined, f"episode {cache.episode_ids[e]}: {task}", path)
            latent_err = ((z_imag - z_real[1:]) ** 2).mean(-1).cpu().numpy()
            pixel_err = ((dream.astype(np.float32) - real[1:].astype(np.float32)) / 255.0) ** 2
            figures["episodes"].append(
                {
                    "episode": int(cache.episode_ids[e]),
                    "instruction": task,
                    "image": str(path),
                    "latent_mse_per_step": [float(x) for x in latent_err],
                    "pixel_mse_per_step": [float(x) for x in pixel_err.mean(axis=(1, 2, 3))],
                }
            )
            real_traj.append(z_real.cpu().numpy())
            imag_traj.append(np.concatenate([z_real[:1].cpu().numpy(), z_imag.cpu().numpy()]))
    if not real_traj:
        raise UserError(f"start={start}: no episode has more than {start + 1} frames; lower start=")
    figures.update(_pca_figure(real_traj, imag_traj, out / "latent_pca.png"))
    figures["pca_image"] = str(out / "latent_pca.png")
    (out / "inspect.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def main(cfg: DictConfig) -> int:
    """Run ``latent-vla inspect`` with a composed config; returns the exit code (bad inputs raise UserErrors)."""
    figures = inspect(
        cfg.ckpt,
        cfg.data,
        cfg.out,
        episodes=int_setting(cfg, "episodes", 1),
        horizon=int_setting(cfg, "horizon", 1),
        start=int_setting(cfg, "start", 0),
        device=str(cfg.device),
        repo_id=cfg.repo_id,
        video_backend=cfg.video_backend,
    )
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"latent-vla inspect: {cfg.out}")
    for col in ("episode", "instruction", "latent mse t+1", "latent mse last", "pixel mse last", "image"):
        table.add_column(col)
    for ep in figures["episodes"]:
        lat, pix = ep["latent_mse_per_step"], ep["pixel_mse_per_step"]
        table.add_row(
            str(ep["episode"]), ep["instruction"], f"{lat[0]:.3g}", f"{lat[-1]:.3g}", f"{pix[-1]:.3g}", ep["image"]
        )
    Console().print(table)
    print(f"latent PCA: {figures['pca_image']} ({figures['pca_explained_variance']:.0%} variance in 2 components)")
    return 0
