"""One collection worker: simulate a block of seeded episodes and write them to a LeRobotDataset shard.

``sim.collect`` runs :func:`run_shard` in this process (one worker) or :func:`worker_main` in
fork-server children (several workers); see that module for the whole pipeline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from latent_vla.base.robot_spec import RobotSpec
from sim.collect_policies import BrainFactory, CollectionPolicy, make_policy
from sim.dataset_features import make_frame

if TYPE_CHECKING:
    from sim.collect import CollectConfig


@dataclass(frozen=True)
class ShardJob:
    """The work of one worker: contiguous seeds written to the dataset shard at ``root``."""

    shard: int
    root: str
    seeds: tuple[int, ...]
    config: CollectConfig
    fps: int
    features: dict[str, dict]
    brain_factory: BrainFactory | None = None  # builds the brain of policy=brain (pickled by reference)


STATS_FRAME_STRIDE = 10
"""The streaming encoder updates per-camera image statistics from every 10th frame (see below).

CPU per collected frame of one worker (reach, two 64x64 cameras, loaded machine): 5.98 ms with
a stride of 4, 4.84 ms with 10, 4.44 ms with statistics from the first two frames only. The
image statistics only feed normalization; 6 frames x 4096 pixels an episode is plenty.
"""


@contextlib.contextmanager
def _lean_lerobot_writer(features: dict[str, dict]) -> Iterator[None]:
    """Trim two per-frame costs of LeRobot 0.4.4's writer and fix its image standard deviation.

    Measured on this project's 2-core machine, one worker, two 64x64 cameras:

    * ``embed_images`` pushes every row of an episode through ``datasets.map`` to inline PNG
      bytes; with video-only cameras there is nothing to inline, yet it cost ~1.4 ms a frame.
      Skipped when no feature has dtype ``image``; the parquet written is identical.
    * the streaming encoder updates ``RunningQuantileStats`` (5000-bin histograms) on every
      frame of every camera: ~0.7 ms per camera-frame, more than the h264 encoding itself
      (~0.2 ms). Here it sees every ``STATS_FRAME_STRIDE``-th frame (at least 2 per episode),
      the same idea as LeRobot's non-streaming path, which samples frames for image statistics.
    * ``RunningQuantileStats`` squares its input in the input's dtype: uint8 images overflow and
      LeRobot 0.4.4 stores an image ``std`` of ~0 (both encoding paths). Batches are cast to
      float64 first, so the stored ``std`` is the real one.
    * ``datasets.Dataset.from_dict`` names each episode's table by hashing all of it with dill
      (a third of ``save_episode`` under cProfile; end to end, two workers, 30-step reach episodes:
      178 -> 186 frames/s without it). The name only keys ``datasets``' cache of transforms, which
      the writer never reuses: a random one is drawn instead.

    The patches live only inside this context (the worker's own process, or restored after an
    in-process run).
    """
    import lerobot.datasets.compute_stats as cs
    import lerobot.datasets.lerobot_dataset as lds
    from datasets import arrow_dataset
    from datasets.fingerprint import generate_random_fingerprint

    base = cs.RunningQuantileStats

    class _StridedFloatQuantileStats(base):  # type: ignore[misc, valid-type]
        # Vector features call `update` once per episode, so only image streams are strided.
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._calls = 0

        def update(self, batch: np.ndarray) -> None:
            self._calls += 1
            if self._calls <= 2 or self._calls % STATS_FRAME_STRIDE == 1:
                super().update(np.asarray(batch, dtype=np.float64))

    originals = (lds.embed_images, cs.RunningQuantileStats, arrow_dataset.generate_fingerprint)
    if not any(ft["dtype"] == "image" for ft in features.values()):
        lds.embed_images = lambda dataset: dataset
    cs.RunningQuantileStats = _StridedFloatQuantileStats
    arrow_dataset.generate_fingerprint = lambda dataset: generate_random_fingerprint()
    try:
        yield
    finally:
        lds.embed_images, cs.RunningQuantileStats, arrow_dataset.generate_fingerprint = originals


def quiet_writer_logs() -> None:
    """Keep FFmpeg's per-file encoder and muxer chatter (INFO level) off the terminal; errors still show."""
    import av

    av.logging.set_libav_level(av.logging.ERROR)


def _make_env_and_policy(job: ShardJob, spec: RobotSpec) -> tuple[Any, CollectionPolicy]:
    """The env and the collection policy of a shard (a brain is built by ``job.brain_factory``)."""
    import sim

    cfg = job.config
    kwargs: dict[str, Any] = {
        "image_height": int(cfg.image_hw[0]),
        "image_width": int(cfg.image_hw[1]),
        "cameras": spec.camera_names,
    }
    if cfg.max_episode_steps is not None:
        kwargs["episode_length"] = int(cfg.max_episode_steps)
    if cfg.reset_noise is not None:
        kwargs["reset_noise"] = float(cfg.reset_noise)
    env = sim.make_env(cfg.task, **kwargs)
    brain = job.brain_factory(cfg, spec) if cfg.policy == "brain" and job.brain_factory is not None else None
    policy = make_policy(cfg.policy, env, spec, cfg.resolved_noise, cfg.noise_tau, brain, str(cfg.brain))
    return env, policy


def _episode(env, policy: CollectionPolicy, seed: int, ds, features, stop) -> dict | None:
    """Run and buffer one episode; returns its record, or None when stopped mid-episode."""
    obs, info = env.reset(seed=seed)
    policy.reset(seed, str(obs["instruction"]))
    rewards, successes = [], []
    sources: dict[str, int] = {}
    instruction = str(obs["instruction"])
    t = 0
    while True:
        if stop.is_set():
            return None
        decision = policy.act(obs)
        env_state = info.get("environment_state")  # of `obs`: `info` came with it
        next_obs, reward, terminated, truncated, info = env.step(decision.executed)
        done = bool(terminated or truncated)
        success = bool(info.get("is_success", False))
        ds.add_frame(
            make_frame(
                features,
                obs["images"],
                obs["state"],
                decision.executed,
                str(obs["instruction"]),
                reward=float(reward),
                success=success,
                done=done,
                environment_state=env_state,
                source=decision.source,
                expert_action=decision.label,
                progress=info.get("progress"),  # after the action, like next.reward
            )
        )
        rewards.append(float(reward))
        successes.append(success)
        sources[decision.source] = sources.get(decision.source, 0) + 1
        obs = next_obs
        t += 1
        if done:
            break
    return {
        "episode_index": -1,
        "seed": int(seed),
        "frames": t,
        "success": any(successes),
        "final_success": successes[-1],
        "sum_reward": float(np.sum(rewards)),
        "max_reward": float(np.max(rewards)),
        "instruction": instruction,
        "sources": sources,
    }


def run_shard(job: ShardJob, stop, report: Callable[[str, Any], None]) -> list[dict]:
    """Collect ``job.seeds`` into a new LeRobotDataset at ``job.root``; always finalizes it.

    Args:
        job: seeds, shard folder, config.
        stop: an object with ``is_set()``; when set, the episode in progress is dropped.
        report: ``report("episode", record)`` is called after each saved episode; the record
            includes ``cpu_s``, the CPU seconds (all threads of this process) the episode took to
            simulate and write. ``report("corrupt", shard)`` says the shard must be discarded
            (an episode's video came out short); an exception follows.

    Returns:
        The records of the saved episodes, in seed order.
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    cfg = job.config
    spec = cfg.robot_spec()
    env, policy = _make_env_and_policy(job, spec)
    max_len = int(getattr(env.unwrapped, "episode_length", None) or cfg.max_episode_steps or 10_000)
    records: list[dict] = []
    ds = LeRobotDataset.create(
        repo_id=cfg.repo_id,
        fps=job.fps,
        root=job.root,
        features=job.features,
        robot_type=spec.name,
        use_videos=True,
        vcodec=cfg.vcodec,
        image_writer_threads=int(cfg.image_writer_threads),
        streaming_encoding=bool(cfg.streaming_encoding),
        encoder_threads=cfg.encoder_threads,
        encoder_queue_maxsize=max_len + 1,  # a whole episode fits: the streaming encoder never drops frames
    )
    ds.meta.update_chunk_settings(video_files_size_in_mb=video_file_limit(cfg))
    _set_video_quality(ds, cfg, job.fps, queue_size=max_len + 1)
    quiet_writer_logs()
    try:
        with _lean_lerobot_writer(job.features), warnings.catch_warnings():
            # LeRobot's statistics cast our bool columns (next.success/done) to uint8 and say so per episode.
            warnings.filterwarnings("ignore", message="Converting input from bool", category=RuntimeWarning)
            for seed in job.seeds:
                cpu0 = time.process_time()
                rec = _episode(env, policy, seed, ds, job.features, stop)
                if rec is None:
                    if ds.episode_buffer is not None and ds.episode_buffer["size"] > 0:
                        ds.clear_episode_buffer(delete_images=True)
                    break
                ds.save_episode()
                try:
                    _check_video_lengths(ds, rec["frames"], job.fps)
                except RuntimeError:
                    report("corrupt", job.shard)  # the driver drops this whole shard
                    raise
                rec["cpu_s"] = time.process_time() - cpu0
                records.append(rec)
                report("episode", rec)
    finally:
        if ds.image_writer is not None:
            ds.stop_image_writer()
        ds.finalize()
        env.close()
    return records


def _check_video_lengths(ds, frames: int, fps: int) -> None:
    """Refuse to go on if a camera's MP4 of the episode just saved lacks frames (an encoder dropped some).

    Raises:
        RuntimeError: naming the camera and both lengths in seconds.
    """
    ep = ds.meta.latest_episode or {}
    for key in ds.meta.video_keys:
        to_ts, from_ts = ep.get(f"videos/{key}/to_timestamp"), ep.get(f"videos/{key}/from_timestamp")
        if to_ts is None or from_ts is None:
            continue
        seconds = float(to_ts[0]) - float(from_ts[0])
        if abs(seconds - frames / fps) > 1.5 / fps:
            raise RuntimeError(
                f"{key}: the encoded video lasts {seconds:.3f} s but the episode has {frames} frames "
                f"({frames / fps:.3f} s at {fps} fps); the video encoder dropped frames"
            )


class _QueueReporter:
    def __init__(self, q, shard: int) -> None:
        self.q, self.shard = q, shard

    def __call__(self, kind: str, payload: Any) -> None:
        self.q.put((self.shard, kind, payload))


def worker_main(job: ShardJob, stop, q) -> None:
    """Entry point of a worker process (forked by the fork server): ignore Ctrl-C, obey ``stop``, report on ``q``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # llvmpipe renders 64x64 frames faster on the calling thread than with its worker threads
    # (measured: -0.25 ms CPU a frame) and the cores are busy with the other workers anyway.
    os.environ.setdefault("LP_NUM_THREADS", "0")
    try:
        import torch

        torch.set_num_threads(1)
        records = run_shard(job, stop, _QueueReporter(q, job.shard))
        q.put((job.shard, "done", len(records)))
    except BaseException:  # reported to the parent, which re-raises it
        q.put((job.shard, "error", traceback.format_exc()))


LEROBOT_VIDEO_QUALITY = ("yuv420p", 30)
"""``(pix_fmt, crf)`` that LeRobot 0.4.4's encoders use and do not let a caller change."""


def _set_video_quality(ds: Any, cfg: Any, fps: int, queue_size: int) -> None:
    """Give ``ds`` a streaming encoder with ``cfg.pix_fmt`` and ``cfg.crf``.

    LeRobot 0.4.4's ``LeRobotDataset.create`` builds its streaming encoder with a fixed ``yuv420p``,
    ``crf=30``; this swaps in LeRobot's own :class:`StreamingVideoEncoder` with ours (same codec, GOP
    and queue). The MP4s stay ordinary LeRobot videos: ``info.json`` records their ``pix_fmt``.
    """
    from lerobot.datasets.video_utils import StreamingVideoEncoder

    if ds._streaming_encoder is None or (cfg.pix_fmt, int(cfg.crf)) == LEROBOT_VIDEO_QUALITY:
        return
    ds._streaming_encoder = StreamingVideoEncoder(
        fps=fps,
        vcodec=cfg.vcodec,
        pix_fmt=cfg.pix_fmt,
        g=2,
        crf=int(cfg.crf),
        queue_maxsize=queue_size,
        encoder_threads=cfg.encoder_threads,
    )


def video_file_limit(cfg: CollectConfig) -> float:
    """LeRobot's ``video_files_size_in_mb``: tiny (one MP4 per episode) unless ``cfg.video_file_mb``."""
    return float(cfg.video_file_mb) if cfg.video_file_mb > 0 else 1e-6
