"""Record every control tick of a run to a LeRobotDataset (v3.0), like ``lerobot-record``.

Features come from ``sim.dataset_features`` (the one place that maps a robot spec to a dataset
schema), restricted to the cameras the robot actually has, at the sizes it reports. Each tick
stores the measured state, every camera image, and the action *actually sent* after safety.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from latent_vla.base.robot_spec import CameraSpec, RobotSpec


def robot_cameras(observation_features: dict[str, Any], spec: RobotSpec) -> dict[str, tuple[int, int]]:
    """Cameras of a LeRobot robot: ``{name: (height, width)}`` from its observation features.

    Joint keys (``"<joint>.pos"``) are skipped; every tuple-shaped feature is a camera.
    """
    joint_keys = set(spec.action_keys)
    return {
        k: (int(v[0]), int(v[1]))
        for k, v in observation_features.items()
        if k not in joint_keys and isinstance(v, tuple) and len(v) == 3
    }


class EpisodeRecorder:
    """Writes one episode per :meth:`start` / :meth:`end_episode`, finalized by :meth:`close`.

    Args:
        root: dataset directory; must not exist yet (LeRobot refuses to overwrite).
        spec: the arm (joint keys).
        cameras: ``{name: (height, width)}`` of the robot's cameras, pixels.
        fps: recording rate, Hz (the control rate).
        repo_id: dataset id stored in its metadata.
        use_videos: encode cameras as video (small) or store PNG frames.
    """

    def __init__(
        self,
        root: str | Path,
        spec: RobotSpec,
        cameras: dict[str, tuple[int, int]],
        fps: float,
        repo_id: str = "local/latent_vla_run",
        use_videos: bool = True,
    ) -> None:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        from sim.dataset_features import dataset_features

        self.root = Path(root)
        if self.root.exists():
            raise FileExistsError(f"recording directory {self.root} already exists; choose a new one")
        rec_spec = dataclasses.replace(spec, cameras=tuple(CameraSpec(n, h, w) for n, (h, w) in cameras.items()))
        self.spec = spec
        self.cameras = list(cameras)
        self.features = dataset_features(rec_spec, use_videos=use_videos, task_signals=False)
        self.dataset = LeRobotDataset.create(
            repo_id=repo_id,
            fps=int(round(fps)),
            root=self.root,
            features=self.features,
            use_videos=use_videos,
            image_writer_threads=2 if cameras else 0,
        )
        self.frames_in_episode = 0
        self.episodes = 0
        self.frames = 0
        self._closed = False

    def add(self, observation: dict[str, Any], action: dict[str, float], task: str) -> None:
        """Add one tick: the observation it acted on and the action actually sent."""
        from sim.dataset_features import make_frame

        images = {cam: np.asarray(observation[cam]) for cam in self.cameras}
        state = self.spec.action_to_vector(observation)
        frame = make_frame(self.features, images, state, self.spec.action_to_vector(action), task)
        self.dataset.add_frame(frame)
        self.frames_in_episode += 1
        self.frames += 1

    def end_episode(self) -> None:
        """Save the current episode (nothing happens when it has no frames)."""
        if self.frames_in_episode:
            self.dataset.save_episode()
            self.episodes += 1
        self.frames_in_episode = 0

    def close(self) -> None:
        """Save any open episode and finalize the dataset (required before it can be read)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.end_episode()
        finally:
            self.dataset.finalize()
