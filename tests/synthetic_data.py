"""Synthetic LeRobotDatasets and tiny training settings for tests (importable as ``synthetic_data``).

The fixtures built on them live in ``tests/conftest.py``; ``tests/`` is on ``sys.path`` under pytest.
"""

from __future__ import annotations

SYNTH_INSTRUCTIONS = ("reach the red target", "reach the blue target")


def _draw_square(img, cx: float, cy: float, color, half: int) -> None:
    h, w = img.shape[:2]
    x, y = int(round(cx)), int(round(cy))
    img[max(0, y - half) : min(h, y + half + 1), max(0, x - half) : min(w, x + half + 1)] = color


def make_synthetic_dataset(
    root,
    cameras: tuple[str, ...] = ("front", "wrist"),
    episodes: int = 8,
    length: int = 24,
    image_hw: tuple[int, int] = (64, 64),
    fps: int = 10,
    with_task_signals: bool = True,
    seed: int = 0,
    use_videos: bool = True,
    instructions: tuple[str, str] = SYNTH_INSTRUCTIONS,
    env_state_dim: int = 2,
):
    """Write a small, learnable LeRobotDataset (v3.0) at ``root`` and return that path.

    The world is a 2-D reach in joint space: two coloured targets sit at random (shoulder_pan,
    shoulder_lift) positions, the instruction names one, a noisy proportional expert moves toward it.
    The first camera draws the targets and the arm's point; other cameras show a joint-dependent
    colour field. ``next.reward`` is minus the distance to the named target (about metres);
    ``next.success`` is distance < 0.02; ``observation.environment_state`` is the named target's
    position (degrees / 100, two values). State and action use SO-101 joint names, robot units.
    Without task signals there is no environment state either (a plain teleoperated recording).
    ``instructions`` name the first and the second target; ``env_state_dim`` pads (or cuts) the
    environment state to that many values.
    """
    from pathlib import Path

    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from latent_vla.base.robot_spec import SO101

    root = Path(root)
    h, w = image_hw
    names = SO101.action_keys
    features = {
        f"observation.images.{c}": {
            "dtype": "video" if use_videos else "image",
            "shape": (h, w, 3),
            "names": ["height", "width", "channels"],
        }
        for c in cameras
    }
    features["observation.state"] = {"dtype": "float32", "shape": (6,), "names": names}
    features["action"] = {"dtype": "float32", "shape": (6,), "names": names}
    if with_task_signals:
        features["next.reward"] = {"dtype": "float32", "shape": (1,), "names": None}
        features["next.success"] = {"dtype": "bool", "shape": (1,), "names": None}
        features["next.done"] = {"dtype": "bool", "shape": (1,), "names": None}
        features["observation.environment_state"] = {
            "dtype": "float32",
            "shape": (env_state_dim,),
            "names": ["x", "y"] if env_state_dim == 2 else [f"e{i}" for i in range(env_state_dim)],
        }
    ds = LeRobotDataset.create(
        repo_id=f"local/{root.name}", fps=fps, root=root, features=features, use_videos=use_videos, vcodec="h264"
    )
    rng = np.random.default_rng(seed)

    def to_px(q):  # degrees -> pixel coordinates in the first camera
        return (0.5 + q[0] / 120.0) * (w - 1), (0.5 - q[1] / 120.0) * (h - 1)

    for ep in range(episodes):
        targets = rng.uniform(-45, 45, size=(2, 2))
        which = ep % 2
        goal = targets[which]
        state = np.concatenate([rng.uniform(-45, 45, 2), rng.uniform(-20, 20, 3), rng.uniform(0, 100, 1)])
        for t in range(length):
            action = state.copy()
            action[:2] = state[:2] + np.clip(0.6 * (goal - state[:2]), -12, 12) + rng.normal(0, 2.0, 2)
            action[2:5] = state[2:5] + rng.normal(0, 3.0, 3)
            action[5] = np.clip(state[5] + rng.normal(0, 5.0), 0, 100)
            nxt = state + 0.5 * (action - state)
            dist = 0.005 * float(np.linalg.norm(nxt[:2] - goal))
            frame = {"observation.state": state.astype(np.float32), "action": action.astype(np.float32)}
            for i, cam in enumerate(cameras):
                img = np.full((h, w, 3), 40, dtype=np.uint8)
                if i == 0:
                    _draw_square(img, *to_px(targets[0]), (220, 30, 30), max(1, h // 16))
                    _draw_square(img, *to_px(targets[1]), (30, 30, 220), max(1, h // 16))
                    _draw_square(img, *to_px(state), (240, 240, 240), max(1, h // 21))
                else:
                    img[..., 0] = np.uint8(np.clip(128 + 2 * state[2], 0, 255))
                    img[..., 1] = np.uint8(np.clip(2.5 * state[5], 0, 255))
                    img[: h // 2, :, 2] = np.uint8(np.clip(128 + 2 * state[3], 0, 255))
                frame[f"observation.images.{cam}"] = img
            if with_task_signals:
                frame["next.reward"] = np.array([-dist], dtype=np.float32)
                frame["next.success"] = np.array([dist < 0.02])
                frame["next.done"] = np.array([t == length - 1])
                frame["observation.environment_state"] = np.resize(
                    np.concatenate([goal / 100.0, np.zeros(max(0, env_state_dim - 2))]), env_state_dim
                ).astype(np.float32)
            frame["task"] = instructions[which]
            ds.add_frame(frame)
            state = nxt
        ds.save_episode()
    ds.finalize()
    return root


TINY_TRAIN_OVERRIDES = {
    "steps": 80,
    "batch_size": 16,
    "horizon": 3,
    "log_every": 10,
    "val_every": 0,
    "num_threads": 1,
    "progress": False,
    "warmup_steps": 10,
    "grounding": 0.0,  # every step the full objective (the grounding phase has its own test)
}


def tiny_run_settings(data, out, **train_overrides):
    """:class:`latent_vla.train.RunSettings` of a seconds-long CPU training run (small model)."""
    from latent_vla.train import settings_from_config

    train = {**TINY_TRAIN_OVERRIDES, **train_overrides}
    model = {"latent_dim": 32, "hidden": 128, "head_hidden": 64, "image_feat": 64, "channels": [8, 16, 32, 32]}
    data = [str(d) for d in data] if isinstance(data, list | tuple) else str(data)  # several datasets: a list
    return settings_from_config({"data": data, "out": str(out), "model": model, "train": train})
