"""Collect simulated episodes into a LeRobotDataset (v3.0), in parallel and interrupt-safe.

Pipeline::

    episodes split into contiguous seed blocks ──► W worker processes, each:
        make_env(task) + expert ──frames──► its own LeRobotDataset shard (h264 video, parquet)
    ──► LeRobot's ``aggregate_datasets`` merges the shards (and, with mode=append, the old dataset)
        in seed order into a staging folder ──► atomic rename onto ``out`` ──► ``out/collect.json``

Episode ``i`` always uses seed ``seed + i`` (environment, expert and action noise), whatever the
number of workers, so a collection is reproducible. Writing (video encoding, parquet, statistics)
was the bottleneck (NOTES.md), which is why each worker writes its own shard; with the trims in
``sim.collect_worker`` writing and simulating cost about the same CPU here (~2.5 ms a frame each).

``out/collect.json`` holds this run's figures (``episodes``, ``frames``, ``pc_success``,
``avg_sum_reward``, ``avg_max_reward``, ``frames_per_s``, ``steady_frames_per_s``,
``cpu_ms_per_frame``, ``wall_s``, ``interrupted``, ...), ``config``, every run so far in ``runs``
and ``per_episode``: one row per dataset episode (``episode_index``, ``seed``, ``frames``,
``success``, ``final_success``, ``sum_reward``, ``max_reward``, ``instruction``, ``run``).

Interrupts (Ctrl-C / SIGTERM): workers ignore SIGINT and watch a shared stop event; on a stop
they drop the episode in progress, finalize their shard, and the merge proceeds with the finished
episodes. ``out`` is only ever replaced by a complete, finalized dataset, so it is never left
half-written. A second Ctrl-C aborts at once (the workers are killed), leaves ``out`` untouched
and removes the hidden staging folder.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import queue
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from latent_vla.base.errors import UserError
from latent_vla.base.robot_spec import RobotSpec, get_robot_spec
from sim.collect_policies import DEFAULT_NOISE, POLICIES, BrainFactory
from sim.collect_worker import (
    LEROBOT_VIDEO_QUALITY,
    ShardJob,
    quiet_writer_logs,
    run_shard,
    video_file_limit,
    worker_main,
)
from sim.dataset_features import dataset_features, features_mismatch
from sim.tasks.base import Task

BRAIN_MODES = ("policy", "grad", "cem", "mppi")
MODES = ("fail", "append", "overwrite")
VCODECS = ("h264", "hevc", "libsvtav1")
PIX_FMTS = ("yuv444p", "yuv420p")
"""Pixel formats of the camera videos: ``yuv444p`` keeps every pixel's colour (h264 only); ``yuv420p``
(LeRobot's default) keeps one colour per 2 x 2 pixels."""
COLLECT_JSON = "collect.json"
SCHEMA_VERSION = 1


def available_tasks() -> list[str]:
    """Names of the simulated tasks (``reach``, ``push``, ``pick``), from ``sim.ENV_IDS``."""
    from sim import ENV_IDS

    return list(ENV_IDS)


class CollectError(UserError, ValueError):
    """A collection request that cannot be honoured (bad task, occupied output folder, ...)."""


@dataclass(frozen=True)
class CollectConfig:
    """What to collect and where.

    Attributes:
        task: ``reach``, ``push`` or ``pick``.
        episodes: number of episodes to collect (>= 1).
        seed: episode ``i`` uses seed ``seed + i``.
        out: dataset folder (created; see ``mode``).
        repo_id: LeRobot repo id recorded for the dataset (no network use).
        workers: worker processes; ``1`` collects in this process.
        policy: who acts (``sim.collect_policies``): ``expert`` (scripted), ``dart`` (expert plus
            correlated noise, clean labels), ``explore`` (random walks branched off the expert),
            ``brain`` (a trained brain, expert labels: DAgger) or ``random`` (uniform random joint
            targets held for half a second each).
        noise: a fraction of each joint's range: the std of the executed noise (expert: i.i.d.,
            dart: correlated), of the random walk's velocity per second (explore); ``None`` =
            the policy's default (``sim.collect_policies.DEFAULT_NOISE``).
        noise_tau: correlation time of the dart / explore noise, seconds (0 = i.i.d. Gaussian).
        brain: ``policy=brain``'s brain: a training run directory, an ONNX bundle directory or
            ``scripted`` (``hardware.brain.load_brain``'s spec strings).
        brain_mode: how that brain acts: ``policy`` (its policy head) or a planner ``grad``,
            ``cem``, ``mppi``.
        brain_planner: overrides of that mode's planner settings (``configs/planner/<mode>.yaml``),
            e.g. ``{"min_gain": 0.0}`` to collect the gradient planner's own plans rather than the
            policy chunks it keeps by default.
        mode: ``fail`` refuses an existing dataset, ``append`` adds episodes to a compatible one,
            ``overwrite`` replaces it. A non-empty folder that is not a dataset is always refused.
        image_hw: camera image size (height, width) in pixels.
        cameras: the robot's cameras to render and record, in the spec's order; ``None`` = all of
            them. A model that reads only the front camera trains on a ``cameras=("front",)``
            dataset; rendering and encoding the wrist camera too cost ~30 % of collection time.
        max_episode_steps: episode length in control steps; ``None`` keeps the task's default.
        reset_noise: half-width of the uniform noise on the home pose at reset, robot units (degrees /
            gripper percent); ``None`` keeps the env's default (3). Wide start poses keep a policy
            from reading the target off the joint state ("copycat": continue the line from home).
        robot: robot spec name (``so101``).
        vcodec: video codec for the camera streams (h264 is the fastest here).
        pix_fmt: pixel format of the videos (:data:`PIX_FMTS`). The default ``yuv444p`` keeps each
            pixel's colour: at 64 x 64 an object is 3-4 pixels wide, and LeRobot's ``yuv420p`` (one
            colour per 2 x 2 block) turned a pink cylinder grey in the training frames, while the
            model sees exact colours when it acts. ``yuv444p`` needs ``vcodec=h264``.
        crf: constant rate factor of the encoder (0 = lossless with h264; LeRobot's default is 30,
            which blurred the small objects' edges and colours: mean error 6, max 216 of 255 per pixel).
        image_writer_threads: LeRobot's asynchronous PNG writer threads per worker (0 = inline).
        streaming_encoding: encode video while stepping (LeRobot's streaming encoder) instead of
            writing PNGs and encoding at the end of each episode; faster here.
        encoder_threads: threads per camera encoder (None = the codec's choice).
        video_file_mb: size at which LeRobot starts a new MP4 file; 0 (default) writes one file
            per episode and camera. LeRobot 0.4.4 appends an episode to a file by re-muxing the
            whole file (~21 us a frame here: 0.6 s per episode and camera once a file holds
            30 000 frames), so size-based files make long collections quadratic.
        progress: show a tqdm progress bar.
    """

    task: str
    episodes: int
    seed: int = 0
    out: Path = Path("data/reach")
    repo_id: str = "latent-vla/sim"
    workers: int = 1
    policy: str = "expert"
    noise: float | None = None
    noise_tau: float = 0.3
    brain: str | None = None
    brain_mode: str = "policy"
    brain_planner: Mapping[str, Any] = field(default_factory=dict)
    mode: str = "fail"
    image_hw: tuple[int, int] = (64, 64)
    cameras: tuple[str, ...] | None = None
    max_episode_steps: int | None = None
    reset_noise: float | None = None
    robot: str = "so101"
    vcodec: str = "h264"
    pix_fmt: str = "yuv444p"
    crf: int = 0
    image_writer_threads: int = 0
    streaming_encoding: bool = True
    encoder_threads: int | None = 1
    video_file_mb: float = 0.0
    progress: bool = True

    def validate(self) -> None:
        """Raise :class:`CollectError` with a clear message on any invalid field."""
        tasks = available_tasks()
        if self.task not in tasks:
            raise CollectError(f"unknown task {self.task!r}; valid tasks: {', '.join(tasks)}")
        if self.policy not in POLICIES:
            raise CollectError(f"unknown policy {self.policy!r}; valid policies: {', '.join(POLICIES)}")
        if self.policy == "brain" and not self.brain:
            raise CollectError("policy=brain needs brain=<training run dir | ONNX bundle dir | scripted>")
        if self.brain_mode not in BRAIN_MODES:
            raise CollectError(f"unknown brain_mode {self.brain_mode!r}; valid: {', '.join(BRAIN_MODES)}")
        if self.brain_planner and self.policy != "brain":
            raise CollectError(f"brain_planner sets a brain's planner; policy={self.policy} has no brain")
        if float(self.noise_tau) < 0:
            raise CollectError(f"noise_tau is a correlation time in seconds (>= 0), got {self.noise_tau}")
        if self.mode not in MODES:
            raise CollectError(f"unknown mode {self.mode!r}; valid: {', '.join(MODES)}")
        if self.vcodec not in VCODECS:
            raise CollectError(f"unknown vcodec {self.vcodec!r}; valid: {', '.join(VCODECS)}")
        if self.pix_fmt not in PIX_FMTS:
            raise CollectError(f"unknown pix_fmt {self.pix_fmt!r}; valid: {', '.join(PIX_FMTS)}")
        if self.pix_fmt == "yuv444p" and self.vcodec != "h264":
            raise CollectError(f"pix_fmt=yuv444p needs vcodec=h264 ({self.vcodec} videos are yuv420p in LeRobot)")
        if not 0 <= int(self.crf) <= 51:
            raise CollectError(f"crf is the encoder's constant rate factor, 0 (lossless) .. 51, got {self.crf}")
        if not self.streaming_encoding and (self.pix_fmt, int(self.crf)) != LEROBOT_VIDEO_QUALITY:
            raise CollectError(
                "streaming_encoding=false encodes with LeRobot's fixed pix_fmt=yuv420p crf=30: set those, "
                "or keep streaming_encoding=true"
            )
        if int(self.episodes) < 1:
            raise CollectError(f"episodes must be >= 1, got {self.episodes}")
        if int(self.workers) < 1:
            raise CollectError(f"workers must be >= 1, got {self.workers}")
        if not 0.0 <= self.resolved_noise < 1.0:
            raise CollectError(f"noise is a fraction of the joint range in [0, 1), got {self.noise}")
        if self.policy == "dart" and self.resolved_noise == 0.0:
            raise CollectError("policy=dart with noise=0 is the clean expert: set noise > 0 (e.g. 0.05)")
        if len(self.image_hw) != 2 or min(self.image_hw) < 8:
            raise CollectError(f"image_hw must be (height, width) >= 8 pixels, got {self.image_hw}")
        if float(self.video_file_mb) < 0:
            raise CollectError(f"video_file_mb must be >= 0 (0 = one file per episode), got {self.video_file_mb}")
        if self.max_episode_steps is not None and int(self.max_episode_steps) < 1:
            raise CollectError(f"max_episode_steps must be >= 1 or None, got {self.max_episode_steps}")
        if self.reset_noise is not None and not 0.0 <= float(self.reset_noise) <= 90.0:
            raise CollectError(f"reset_noise is in robot units (degrees), 0..90 or None, got {self.reset_noise}")
        self.robot_spec()

    def robot_spec(self) -> RobotSpec:
        """The robot's spec with only the recorded cameras (:attr:`cameras`).

        Raises:
            CollectError: an unknown robot, an unknown or repeated camera, or no camera at all.
        """
        try:
            spec = get_robot_spec(self.robot)
        except ValueError as exc:
            raise CollectError(str(exc)) from None
        if self.cameras is None:
            return spec
        names = list(self.cameras)
        unknown = [c for c in names if c not in spec.camera_names]
        if unknown or not names or len(set(names)) != len(names):
            raise CollectError(
                f"cameras must name distinct cameras of robot {spec.name} ({', '.join(spec.camera_names)}), got {names}"
            )
        return replace(spec, cameras=tuple(c for c in spec.cameras if c.name in names))

    @property
    def resolved_noise(self) -> float:
        """``noise``, or the policy's default when it is None (fraction of each joint's range)."""
        return float(DEFAULT_NOISE.get(self.policy, 0.0) if self.noise is None else self.noise)


@dataclass
class EpisodeRecord:
    """One collected episode, named as LeRobot's eval names its per-episode figures."""

    episode_index: int  # index in the final dataset (filled in after the merge)
    seed: int
    frames: int
    success: bool  # any frame with next.success (LeRobot's eval convention)
    final_success: bool  # next.success on the last frame
    sum_reward: float
    max_reward: float
    instruction: str
    cpu_s: float = 0.0  # CPU seconds to simulate and write it (all threads of its worker)
    sources: dict[str, int] = field(default_factory=dict)  # frames per `source` name


@dataclass
class CollectResult:
    """Figures of one ``collect`` run (this run's episodes only; ``dataset_*`` cover the folder)."""

    config: dict[str, Any]
    episodes: list[EpisodeRecord] = field(default_factory=list)
    wall_s: float = 0.0
    collect_s: float = 0.0  # start-up + simulation + writing, before the merge
    steady_frames_per_s: float = float("nan")  # between the first and last saved episode
    merge_s: float = 0.0
    interrupted: bool = False
    dataset_total_episodes: int = 0
    dataset_total_frames: int = 0
    fps: int = 0

    @property
    def frames(self) -> int:
        """Frames collected in this run."""
        return sum(e.frames for e in self.episodes)

    @property
    def pc_success(self) -> float:
        """Expert success rate of this run, percent (NaN with no episode)."""
        return float(np.mean([e.success for e in self.episodes]) * 100) if self.episodes else float("nan")

    def summary(self) -> dict[str, Any]:
        """The JSON-ready figures of this run."""
        eps = self.episodes
        return {
            "task": self.config["task"],
            "policy": self.config["policy"],
            "episodes": len(eps),
            "episodes_requested": self.config["episodes"],
            "frames": self.frames,
            "pc_success": self.pc_success,
            "pc_final_success": float(np.mean([e.final_success for e in eps]) * 100) if eps else float("nan"),
            "avg_sum_reward": float(np.mean([e.sum_reward for e in eps])) if eps else float("nan"),
            "avg_max_reward": float(np.mean([e.max_reward for e in eps])) if eps else float("nan"),
            "frames_per_s": self.frames / self.wall_s if self.wall_s > 0 else 0.0,
            "collect_frames_per_s": self.frames / self.collect_s if self.collect_s > 0 else 0.0,
            "steady_frames_per_s": self.steady_frames_per_s,
            "cpu_ms_per_frame": 1e3 * sum(e.cpu_s for e in eps) / self.frames if self.frames else float("nan"),
            "wall_s": self.wall_s,
            "collect_s": self.collect_s,
            "merge_s": self.merge_s,
            "interrupted": self.interrupted,
            "workers": self.config["workers"],
            "fps": self.fps,
            "dataset_total_episodes": self.dataset_total_episodes,
            "dataset_total_frames": self.dataset_total_frames,
        }


# ------------------------------------------------------------------------------------------------
# output folder checks
# ------------------------------------------------------------------------------------------------
def _read_info(root: Path) -> dict[str, Any] | None:
    info = root / "meta" / "info.json"
    if not info.is_file():
        return None
    with open(info) as f:
        return json.load(f)


def check_output_dir(out: Path, mode: str, features: dict[str, dict], fps: int, robot: str) -> bool:
    """Decide what to do with ``out``; returns True when an existing dataset is to be appended to.

    Raises:
        CollectError: ``out`` is a file, a non-empty folder that is not a LeRobotDataset, an
            existing dataset with ``mode=fail``, or an incompatible dataset with ``mode=append``.
    """
    out = Path(out)
    if not out.exists():
        return False
    if not out.is_dir():
        raise CollectError(f"output {out} exists and is not a folder")
    info = _read_info(out)
    if info is None:
        if any(out.iterdir()):
            raise CollectError(
                f"output folder {out} is not empty and holds no LeRobotDataset (no meta/info.json); "
                "refusing to write into it: choose another out=..."
            )
        return False
    found = f"{info.get('total_episodes', '?')} episodes, fps {info.get('fps')}, robot {info.get('robot_type')}"
    if mode == "fail":
        raise CollectError(
            f"output folder {out} already holds a LeRobotDataset ({found}); "
            "pass mode=append to add episodes or mode=overwrite to replace it"
        )
    if mode == "overwrite":
        return False
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3"):
        raise CollectError(
            f"cannot append to {out}: it is a LeRobotDataset {version}, this tool writes v3.0; convert it with "
            "`python -m lerobot.datasets.v30.convert_dataset_v21_to_v30` or use mode=overwrite"
        )
    problems = features_mismatch(features, info.get("features", {}))
    if int(info.get("fps", -1)) != fps:
        problems.append(f"fps: expected {fps}, found {info.get('fps')}")
    if info.get("robot_type") != robot:
        problems.append(f"robot_type: expected {robot!r}, found {info.get('robot_type')!r}")
    if problems:
        raise CollectError(
            f"cannot append to {out}: it holds a different dataset ({'; '.join(problems)}); "
            "use mode=overwrite or another out=..."
        )
    return True


# ------------------------------------------------------------------------------------------------
# the driver
# ------------------------------------------------------------------------------------------------
def split_seeds(seed: int, episodes: int, workers: int) -> list[tuple[int, ...]]:
    """Contiguous seed blocks, one per worker, in order: episode ``i`` gets seed ``seed + i``."""
    workers = max(1, min(workers, episodes))
    bounds = np.linspace(0, episodes, workers + 1).round().astype(int)
    return [tuple(range(seed + a, seed + b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


class _StopFlag:
    """Set by SIGINT/SIGTERM in this process; a second SIGINT raises KeyboardInterrupt."""

    def __init__(self, event) -> None:
        self.event = event
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.event.set()

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _fps_of(spec: RobotSpec) -> int:
    fps = int(round(spec.fps))
    if abs(fps - spec.fps) > 1e-9:
        raise CollectError(f"LeRobotDataset needs an integer fps; robot {spec.name} runs at {spec.fps} Hz")
    return fps


def _run_inline(
    job: ShardJob,
    stop_event: threading.Event,
    records: dict[int, list[dict]],
    errors: list[str],
    bar: _Progress,
    on_episode: Callable[[dict], None] | None,
) -> None:
    """Run the only shard in this process (one worker); its episode records go to ``records``."""

    def report(kind: str, payload: Any) -> None:
        if kind == "corrupt":
            records[job.shard].clear()
        if kind == "episode":
            records[job.shard].append(payload)
            bar.episode(payload)
            if on_episode is not None:
                on_episode(payload)

    try:
        run_shard(job, stop_event, report)
    except KeyboardInterrupt:
        if stop_event.is_set():  # a second Ctrl-C: abort now, `out` stays untouched
            raise
        stop_event.set()  # raised by `on_episode` after a saved episode: keep the shard
    except Exception:
        errors.append(traceback.format_exc())


def _merge_shards(
    cfg: CollectConfig,
    out: Path,
    append: bool,
    jobs: list[ShardJob],
    records: dict[int, list[dict]],
    staging: Path,
    ctx: Any,
) -> list[dict]:
    """Merge the shards with finished episodes (and ``out`` when appending) onto ``out``; the records
    of every finished episode in seed order (empty: nothing was written)."""
    sources = ([out] if append else []) + [Path(j.root) for j in jobs if records[j.shard]]
    ordered = [r for j in jobs for r in records[j.shard]]
    if ordered:
        if len(sources) == 1:
            merged = sources[0]
        elif ctx is not None:  # LeRobot is imported in the fork server, maybe not here
            merged = staging / "merged"
            _run_in_worker(ctx, merge_datasets, sources, merged, cfg.repo_id, video_file_limit(cfg))
        else:
            merged = staging / "merged"
            merge_datasets(sources, merged, cfg.repo_id, video_file_limit(cfg))
        _swap(out, merged, staging)
    return ordered


def collect(
    cfg: CollectConfig,
    on_episode: Callable[[dict], None] | None = None,
    stop: threading.Event | None = None,
    brain_factory: BrainFactory | None = None,
) -> CollectResult:
    """Collect ``cfg.episodes`` episodes into the LeRobotDataset at ``cfg.out``.

    Args:
        cfg: what to collect.
        on_episode: called in this process with each saved episode's record. A
            ``KeyboardInterrupt`` it raises stops the collection like Ctrl-C does.
        stop: an event that, when set, stops the collection like Ctrl-C does (created if None).
        brain_factory: builds ``policy=brain``'s brain from ``(cfg, spec)`` in every worker (a
            top-level function: workers receive it pickled); built once here first to check it.

    Interrupts: the first Ctrl-C or SIGTERM (or a ``KeyboardInterrupt`` raised by ``on_episode``)
    drops the episode in progress, keeps and merges the finished ones, and returns with
    ``result.interrupted`` set. A second Ctrl-C aborts at once and leaves ``out`` untouched.

    Returns:
        The run's figures; ``out/collect.json`` holds them plus the per-episode table.

    Raises:
        CollectError: invalid config or output folder (before anything is written).
        RuntimeError: a worker failed (finished episodes are still merged and kept).
    """
    cfg.validate()
    spec = cfg.robot_spec()
    fps = _fps_of(spec)
    if cfg.policy == "brain":
        check_brain(cfg, spec, brain_factory)
    features = collect_features(spec, cfg.image_hw)
    out = Path(cfg.out).absolute()
    append = check_output_dir(out, cfg.mode, features, fps, spec.name)
    previous: dict[str, Any] = {}
    if append and (out / COLLECT_JSON).is_file():  # read now: the merged dataset replaces `out`
        with open(out / COLLECT_JSON) as f:
            previous = json.load(f)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.collect-{os.getpid()}"

    seed_blocks = split_seeds(int(cfg.seed), int(cfg.episodes), int(cfg.workers))
    jobs = [
        ShardJob(k, str(staging / f"shard-{k}"), seeds, cfg, fps, features, brain_factory)
        for k, seeds in enumerate(seed_blocks)
    ]
    result = CollectResult(config=_config_dict(cfg), fps=fps)
    t0 = time.perf_counter()
    records: dict[int, list[dict]] = {j.shard: [] for j in jobs}
    errors: list[str] = []
    bar = _Progress(cfg)
    ctx = _mp_context() if len(jobs) > 1 else None
    stop_event = ctx.Event() if ctx is not None else (stop or threading.Event())
    ordered: list[dict] = []
    try:  # made inside the try: even a Ctrl-C right after it cannot leave the hidden folder behind
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        with _StopFlag(stop_event):  # Ctrl-C / SIGTERM: finish cleanly; a second Ctrl-C aborts
            if ctx is not None:
                _run_workers(ctx, jobs, stop_event, records, errors, bar, on_episode, stop)
            else:
                _run_inline(jobs[0], stop_event, records, errors, bar, on_episode)
            result.interrupted = stop_event.is_set()
            result.collect_s = time.perf_counter() - t0
            result.steady_frames_per_s = bar.steady_frames_per_s()
            bar.close()

            t1 = time.perf_counter()
            ordered = _merge_shards(cfg, out, append, jobs, records, staging, ctx)
            result.merge_s = time.perf_counter() - t1
    finally:
        bar.close()
        _remove_uninterrupted(staging)
    result.wall_s = time.perf_counter() - t0
    if ordered:
        result.episodes = _write_collect_json(out, cfg, result, ordered, previous)
    if errors:
        raise RuntimeError(f"collection worker failed ({len(ordered)} finished episodes kept):\n{errors[0]}")
    return result


def collect_features(spec: RobotSpec, image_hw: tuple[int, int]) -> dict[str, dict]:
    """The features of every collected dataset: cameras, state, action, task signals, environment state,
    provenance (``source``, ``expert.action``, ``expert.valid``) and ``next.progress``, whatever the policy
    (so datasets of different policies append to one another)."""
    return dataset_features(
        spec,
        tuple(image_hw),
        use_videos=True,
        environment_state=Task.ENVIRONMENT_STATE_NAMES,
        provenance=True,
        progress=Task.PROGRESS_NAMES,
    )


def check_brain(cfg: CollectConfig, spec: RobotSpec, brain_factory: BrainFactory | None) -> None:
    """Build ``policy=brain``'s brain once, before anything is written, and check it drives ``spec``.

    Raises:
        CollectError: one line: no factory, a brain that cannot be loaded, or one made for other joints.
    """
    if brain_factory is None:
        raise CollectError(
            "policy=brain needs a brain loader: run `latent-vla collect policy=brain brain=<dir>` "
            "(sim.collect.collect takes brain_factory=)"
        )
    try:
        brain = brain_factory(cfg, spec)
    except (UserError, OSError, ValueError, TypeError, RuntimeError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CollectError(f"brain {cfg.brain!r} cannot act for robot {spec.name}: {first}") from None
    theirs = getattr(brain, "spec", None)
    if theirs is not None and (list(theirs.action_keys), theirs.units) != (list(spec.action_keys), spec.units):
        raise CollectError(
            f"brain {cfg.brain!r} acts on {list(theirs.action_keys)} in {theirs.units}; "
            f"robot {spec.name} needs {spec.action_keys} in {spec.units}"
        )
    missing = [c for c in (theirs.camera_names if theirs is not None else []) if c not in spec.camera_names]
    if missing:
        raise CollectError(f"brain {cfg.brain!r} reads cameras {missing}: add them to cameras={spec.camera_names}")


_PRELOAD = [
    "lerobot.datasets.lerobot_dataset",
    "lerobot.datasets.aggregate",
    "sim.env",
    "sim.experts",
    "sim.collect_policies",
    "sim.collect_worker",
]


def _mp_context():
    """Workers come from a fork server that imported LeRobot and the sim once.

    Plain ``fork`` of the caller is unsafe (a process that has already run encoder threads or
    holds a GL context deadlocked its children in testing); ``spawn`` re-imports LeRobot and
    torch in every worker (~4 s of CPU each). A fork server pays that import once per process
    and hands out clean single-threaded forks; later collections reuse it.
    """
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        # A Ctrl-C reaches the fork server too, and kills one still importing LeRobot (seconds): every
        # worker start would then fail with EOFError. Started with SIGINT blocked, it inherits the mask
        # through exec (as multiprocessing's resource tracker does) and ignores SIGINT once it is ready.
        # The tracker goes first: starting it unblocks SIGINT.
        from multiprocessing import forkserver, resource_tracker

        resource_tracker.ensure_running()
        with _sigint_held():
            forkserver.ensure_running()
        return ctx
    return mp.get_context("spawn")


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) in this thread until the block is done; it is delivered afterwards."""
    blockable = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    if blockable:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if blockable:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _remove_uninterrupted(path: Path) -> None:
    """``rm -r path`` that a Ctrl-C cannot cut short (the Ctrl-C raises right after)."""
    with _sigint_held():
        shutil.rmtree(path, ignore_errors=True)


def _kill(procs: list) -> None:
    """SIGKILL and reap started worker processes: SIGTERM only asks them to finish their shard,
    which would write into the staging folder after it is removed."""
    for p in procs:
        if p.pid is not None and p.is_alive():
            p.kill()
    for p in procs:
        if p.pid is not None:
            p.join(timeout=10)


def _start_workers(procs: list, jobs: list, stop_event, errors: list[str]) -> set[int]:
    """Start the worker processes; returns the shards of those started (none after a Ctrl-C).

    A fork server that died (killed by someone) makes a start fail with ``EOFError``: an interrupt
    after a Ctrl-C, a failure without one.
    """
    started: set[int] = set()
    for j, p in zip(jobs, procs, strict=True):
        if stop_event.is_set():
            break
        try:
            # cut short, a start leaves a child that we cannot stop; the first one waits for the fork
            # server's imports, so a Ctrl-C then takes effect a few seconds late
            with _sigint_held():
                p.start()
        except (EOFError, OSError) as exc:
            if not stop_event.is_set():
                errors.append(f"worker {j.shard} could not start: {type(exc).__name__}: {exc}")
                stop_event.set()
            break
        started.add(j.shard)
    return started


def _run_workers(ctx, jobs, stop_event, records, errors, bar, on_episode, stop) -> None:
    """Run one worker process per job; collect their reports until all are done."""
    q = ctx.Queue()
    procs = [ctx.Process(target=worker_main, args=(j, stop_event, q), daemon=True) for j in jobs]
    try:
        pending = _start_workers(procs, jobs, stop_event, errors)
        while pending:
            if stop is not None and stop.is_set():
                stop_event.set()
            try:
                shard, kind, payload = q.get(timeout=0.2)
            except queue.Empty:
                for j, p in zip(jobs, procs, strict=True):
                    if j.shard in pending and not p.is_alive():
                        errors.append(f"worker {j.shard} exited (code {p.exitcode}) without reporting")
                        pending.discard(j.shard)
                        stop_event.set()
                continue
            if kind == "episode":
                records[shard].append(payload)
                bar.episode(payload)
                if on_episode is not None:
                    try:
                        on_episode(payload)
                    except KeyboardInterrupt:  # a callback's interrupt stops like Ctrl-C does
                        stop_event.set()
            elif kind == "corrupt":  # its shard holds a damaged episode: leave it out of the merge
                records[shard].clear()
            elif kind == "done":
                pending.discard(shard)
            elif kind == "error":
                errors.append(payload)
                pending.discard(shard)
                stop_event.set()
        for p in procs:
            if p.pid is not None:
                p.join()
    except BaseException:  # a second Ctrl-C (or a bug): abort at once; `out` is untouched
        _kill(procs)
        raise


def _call_and_report(q, fn, args) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the merge finishes even after a Ctrl-C
    try:
        fn(*args)
        q.put(None)
    except BaseException:
        q.put(traceback.format_exc())


def _run_in_worker(ctx, fn: Callable[..., None], *args: Any) -> None:
    """Run ``fn(*args)`` in a child of ``ctx`` and wait; re-raise its failure here."""
    q = ctx.Queue()
    proc = ctx.Process(target=_call_and_report, args=(q, fn, args), daemon=True)
    with _sigint_held():  # cut short, a start leaves a child that we cannot stop
        proc.start()
    try:
        proc.join()
    except BaseException:  # a second Ctrl-C: it must not write into the staging folder once that is removed
        _kill([proc])
        raise
    failure = q.get(timeout=5) if proc.exitcode == 0 else f"exit code {proc.exitcode}"
    if failure is not None:
        raise RuntimeError(f"{fn.__name__} failed in its worker:\n{failure}")


def merge_datasets(sources: list[Path], root: Path, repo_id: str, video_files_size_in_mb: float = 1e-6) -> None:
    """Merge LeRobotDatasets ``sources`` (in order) into a new dataset at ``root`` (LeRobot's aggregation).

    ``video_files_size_in_mb`` as in LeRobot; the tiny default copies each source MP4 as it is
    instead of re-muxing a growing file once per source file.
    """
    from lerobot.datasets.aggregate import aggregate_datasets

    quiet_writer_logs()
    aggregate_datasets(
        [repo_id] * len(sources),
        repo_id,
        roots=[Path(s) for s in sources],
        aggr_root=Path(root),
        video_files_size_in_mb=video_files_size_in_mb,
    )


def _swap(out: Path, merged: Path, staging: Path) -> None:
    """Put the finished dataset ``merged`` at ``out``; an old ``out`` goes into the staging folder."""
    if merged == out:
        return
    if out.exists():
        out.rename(staging / "previous")  # same filesystem: atomic; deleted with the staging folder
    merged.rename(out)


def _write_collect_json(
    out: Path, cfg: CollectConfig, result: CollectResult, ordered: list[dict], previous: dict[str, Any]
) -> list[EpisodeRecord]:
    """Write ``out/collect.json``: this run's figures, every run so far and the per-episode table."""
    info = _read_info(out) or {}
    total_eps = int(info.get("total_episodes", 0))
    first = total_eps - len(ordered)
    episodes = [EpisodeRecord(**{**r, "episode_index": first + i}) for i, r in enumerate(ordered)]
    result.dataset_total_episodes = total_eps
    result.dataset_total_frames = int(info.get("total_frames", 0))
    result.episodes = episodes
    summary = result.summary()
    run_no = len(previous.get("runs", []))
    table = list(previous.get("per_episode", []))
    table += [{**asdict(e), "run": run_no} for e in episodes]
    doc = {
        "schema_version": SCHEMA_VERSION,
        "repo_id": cfg.repo_id,
        "robot": cfg.robot,
        "fps": result.fps,
        "config": result.config,
        **summary,
        "runs": list(previous.get("runs", [])) + [{"config": result.config, **summary}],
        "per_episode": table,
    }
    tmp = out / f".{COLLECT_JSON}.tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2, allow_nan=True)
    os.replace(tmp, out / COLLECT_JSON)
    return episodes


def _config_dict(cfg: CollectConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["out"] = str(cfg.out)
    d["image_hw"] = list(cfg.image_hw)
    return d


class _Progress:
    """A tqdm bar over episodes with frames, frames/s and expert successes as its postfix."""

    def __init__(self, cfg: CollectConfig) -> None:
        self.bar = None
        self.frames = 0
        self.successes = 0
        self.first: tuple[float, int] | None = None  # (time, frames) when the first episode arrived
        self.last = 0.0
        if cfg.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=int(cfg.episodes), desc=f"collect {cfg.task}", unit="ep", dynamic_ncols=True)

    def episode(self, record: dict) -> None:
        """Count one saved episode."""
        self.frames += record["frames"]
        self.last = time.perf_counter()
        if self.first is None:
            self.first = (self.last, self.frames)
        self.successes += int(record["success"])
        if self.bar is not None:
            self.bar.update(1)
            elapsed = max(self.bar.format_dict.get("elapsed") or 0.0, 1e-6)
            self.bar.set_postfix(
                frames=self.frames, fps=f"{self.frames / elapsed:.0f}", success=f"{self.successes}/{self.bar.n}"
            )

    def steady_frames_per_s(self) -> float:
        """Frames/s between the first and the last saved episode: start-up and merge excluded."""
        if self.first is None or self.last <= self.first[0]:
            return float("nan")
        return (self.frames - self.first[1]) / (self.last - self.first[0])

    def close(self) -> None:
        """Close the bar (idempotent)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
