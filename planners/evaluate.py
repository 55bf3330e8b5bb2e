"""Closed-loop evaluation of brains on seeded simulated episodes (pure of any CLI concerns).

Every brain sees only LeRobot robot observations (joint positions and camera images) and the
episode's instruction; success is read from the env's ``info["is_success"]`` *after* the fact and
never stops an episode early (episodes run their full length, as the env defines them). Success
of an episode follows LeRobot's eval: the task was achieved at any step (``pc_success`` in percent).

Language grounding: with several objects on the table, an episode *goes to a distractor* when the
arm touched an object other than the named one before the first success, or ended closer to another
object than to the named one (``info["object_gaps"]``: tip distance beyond touching, metres, per
object on the table; ``info["target"]``: the named object). ``distractor_rate`` is their share.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_SIZE = 128  # pixels per panel in evaluation videos


@dataclass
class EpisodeResult:
    """One evaluated episode.

    Attributes:
        seed: env reset seed.
        success: the task was achieved at some step (LeRobot's definition).
        final_success: the task was achieved at the last step.
        first_success_step: 1-based tick of the first success, or ``None``.
        steps: ticks run (the env's full episode length).
        sum_reward: sum of the env's rewards.
        max_reward: largest reward.
        final_distance: the env's ``task_distance`` at the end, metres.
        act_ms: wall-clock time of each ``brain.act`` call (encode + plan + unnormalize), ms.
        plan_ms: planning time of each planning tick (from the brain's ``last_info``), ms.
        iterations: planner iterations of each planning tick.
        costs: predicted cost of each chosen plan.
        kept_policy: per planning tick of a planner with a ``min_gain`` test, whether it returned the
            policy's own chunk (empty for other planners: ``kept_policy_rate`` is then NaN).
        terms: the chosen plan's named objective terms (``task``, ``prior``, ``disagreement``, ...), one
            value per planning tick each.
        instruction: the episode's instruction.
        distractor: the arm went to an object other than the named one (module docstring); None when
            the env does not report ``object_gaps``.
    """

    seed: int
    success: bool
    final_success: bool
    first_success_step: int | None
    steps: int
    sum_reward: float
    max_reward: float
    final_distance: float
    act_ms: list[float] = field(default_factory=list)
    plan_ms: list[float] = field(default_factory=list)
    iterations: list[int] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    kept_policy: list[bool] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    instruction: str = ""
    distractor: bool | None = None

    @property
    def length(self) -> int:
        """Ticks to the first success, or the full length when it never succeeded."""
        return self.first_success_step if self.first_success_step is not None else self.steps


def _panel(image: np.ndarray, label: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.asarray(image, dtype=np.uint8)).resize((VIDEO_SIZE, VIDEO_SIZE), Image.NEAREST)
    ImageDraw.Draw(img).text((3, 2), label, fill=(255, 255, 0))
    return np.asarray(img)


def video_frame(observation: dict[str, Any], camera: str, brain: Any) -> np.ndarray:
    """``[real camera | model's decoded plan start | imagined plan end]`` as uint8 ``(S, 3S, 3)``.

    Brains without ``imagine()`` (e.g. an ONNX bundle) get the real camera only.
    """
    panels = [_panel(observation[camera], f"real {camera}")]
    imagine = getattr(brain, "imagine", None)
    frames = imagine() if callable(imagine) else None
    if frames is not None and len(frames):
        panels.append(_panel(frames[0], "imagined +1"))
        panels.append(_panel(frames[-1], f"imagined +{len(frames)}"))
    return np.concatenate(panels, axis=1)


def save_gif(frames: Sequence[np.ndarray], path: Path, fps: float = 10.0) -> Path:
    """Write uint8 ``(H, W, 3)`` frames as a looping GIF at ``fps``; returns ``path``."""
    from PIL import Image

    if not frames:
        raise ValueError("no frames to save")
    images = [Image.fromarray(f) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


class DistractorWatch:
    """Follows one episode's ``info`` to tell whether the arm went to a distractor (module docstring)."""

    def __init__(self) -> None:
        self.touched_other = False
        self.last: tuple[dict[str, float], str] | None = None
        self.reported = True

    def update(self, info: dict[str, Any], succeeded: bool) -> None:
        """Read one step's ``info``; ``succeeded``: the task was achieved at this step or before."""
        gaps, target = info.get("object_gaps"), info.get("target")
        if not isinstance(gaps, dict) or target not in gaps:
            self.reported = False
            return
        if not succeeded and any(g <= 0.0 for name, g in gaps.items() if name != target):
            self.touched_other = True
        self.last = (gaps, target)

    def verdict(self) -> bool | None:
        """Touched another object before succeeding, or ended closer to one than to the target; None if unknown."""
        if not self.reported or self.last is None:
            return None
        gaps, target = self.last
        others = [g for name, g in gaps.items() if name != target]
        return self.touched_other or (bool(others) and min(others) < gaps[target])


def run_episode(
    env: Any, brain: Any, seed: int, spec: Any, record_camera: str | None = None
) -> tuple[EpisodeResult, list[np.ndarray]]:
    """Run one full-length episode of ``brain`` in ``env`` from ``env.reset(seed=seed)``.

    Args:
        env: a Gymnasium env of ``sim`` (dict observations, ``info["is_success"]``).
        brain: anything with ``reset(instruction)`` and ``act(robot_observation) -> action dict``.
        seed: reset seed.
        spec: the robot spec (observation dict <-> vectors).
        record_camera: camera to record video frames from (``None``: no video).

    Returns:
        the episode's result and its video frames (empty without ``record_camera``).
    """
    from sim.observation import robot_observation

    obs, info = env.reset(seed=int(seed))
    brain.reset(str(obs["instruction"]))
    result = EpisodeResult(int(seed), False, False, None, 0, 0.0, -np.inf, float(info.get("task_distance", np.nan)))
    result.instruction = str(obs["instruction"])
    watch = DistractorWatch()
    frames: list[np.ndarray] = []
    last_info: Any = None
    done = False
    while not done:
        robot_obs = robot_observation(obs, spec)
        t0 = time.perf_counter()
        action = brain.act(robot_obs)
        result.act_ms.append((time.perf_counter() - t0) * 1e3)
        plan_info = getattr(brain, "last_info", None)
        if plan_info is not None and plan_info is not last_info:  # a planning tick
            last_info = plan_info
            result.plan_ms.append(float(plan_info.get("plan_ms", result.act_ms[-1])))
            result.iterations.append(int(plan_info.get("iterations", 0)))
            result.costs.append(float(plan_info.get("cost", np.nan)))
            if "kept_policy" in plan_info:  # planners with a min_gain test say
                result.kept_policy.append(bool(plan_info["kept_policy"]))
            for name, value in (plan_info.get("terms") or {}).items():
                result.terms.setdefault(name, []).append(float(value))
        if record_camera is not None:
            frames.append(video_frame(robot_obs, record_camera, brain))
        obs, reward, terminated, truncated, info = env.step(spec.action_to_vector(action))
        result.steps += 1
        result.sum_reward += float(reward)
        result.max_reward = max(result.max_reward, float(reward))
        if bool(info.get("is_success", False)):
            result.success = True
            if result.first_success_step is None:
                result.first_success_step = result.steps
        result.final_success = bool(info.get("is_success", False))
        result.final_distance = float(info.get("task_distance", np.nan))
        watch.update(info, result.success)
        done = bool(terminated or truncated)
    result.distractor = watch.verdict()
    return result, frames


PER_TICK = ("act_ms", "plan_ms", "iterations", "costs", "kept_policy", "terms")
"""The :class:`EpisodeResult` fields with one value per tick, summarized rather than copied per episode."""


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def summarize(planner: str, task: str, results: Sequence[EpisodeResult]) -> dict[str, Any]:
    """The ``eval.json`` record of one planner over its episodes (LeRobot names where they apply)."""
    plan_ms = [m for r in results for m in r.plan_ms]
    act_ms = [m for r in results for m in r.act_ms]
    costs = [c for r in results for c in r.costs]
    kept = [k for r in results for k in r.kept_policy]
    n = len(results)
    success = float(np.mean([r.success for r in results])) if n else float("nan")
    grounded = [r.distractor for r in results if r.distractor is not None]
    return {
        "planner": planner,
        "task": task,
        "episodes": n,
        "success_rate": success,
        "pc_success": 100.0 * success,
        "final_success_rate": float(np.mean([r.final_success for r in results])) if n else float("nan"),
        "avg_sum_reward": float(np.mean([r.sum_reward for r in results])) if n else float("nan"),
        "avg_max_reward": float(np.mean([r.max_reward for r in results])) if n else float("nan"),
        "mean_episode_length": float(np.mean([r.length for r in results])) if n else float("nan"),
        "mean_final_distance": float(np.mean([r.final_distance for r in results])) if n else float("nan"),
        "distractor_rate": float(np.mean(grounded)) if grounded else None,
        "plan_ms_p50": _pct(plan_ms, 50),
        "plan_ms_p95": _pct(plan_ms, 95),
        "act_ms_p50": _pct(act_ms, 50),
        "act_ms_p95": _pct(act_ms, 95),
        "iterations_mean": float(np.mean([i for r in results for i in r.iterations])) if plan_ms else float("nan"),
        "plan_cost_mean": float(np.nanmean(costs)) if costs else float("nan"),
        "kept_policy_rate": float(np.mean(kept)) if kept else float("nan"),
        "plan_terms_mean": {
            name: float(np.mean([v for r in results for v in r.terms.get(name, [])]))
            for name in sorted({n for r in results for n in r.terms})
        },
        "plans": len(plan_ms),
        "seeds": [r.seed for r in results],
        "per_episode": [{k: v for k, v in asdict(r).items() if k not in PER_TICK} for r in results],
    }


def add_baseline_deltas(records: list[dict[str, Any]]) -> None:
    """Add ``success_vs_best_other``: success rate minus the best other planner's (same episodes)."""
    for rec in records:
        others = [r["success_rate"] for r in records if r is not rec]
        rec["success_vs_best_other"] = rec["success_rate"] - max(others) if others else 0.0


def evaluate_brain(
    name: str,
    brain: Any,
    make_env: Callable[[], Any],
    spec: Any,
    task: str,
    episodes: int,
    seed: int,
    video_episodes: int = 0,
    video_dir: Path | None = None,
    video_fps: float = 10.0,
    progress: bool = True,
    video_stem: str | None = None,
) -> dict[str, Any]:
    """Evaluate one brain on ``episodes`` seeded episodes (seeds ``seed + i``); returns its summary.

    The first ``video_episodes`` episodes are saved as ``<video_dir>/<video_stem>_ep<i>.gif`` (the stem
    defaults to ``name``; a multi-task evaluation adds the task); their paths
    are listed in the summary under ``videos``. ``instruction_templates`` lists the templates the env's
    task drew instructions from (its own, or a user's given to the env).
    """
    from tqdm.auto import tqdm

    env = make_env()
    camera = spec.camera_names[0]
    results: list[EpisodeResult] = []
    videos: list[str] = []
    try:
        bar = tqdm(range(episodes), desc=f"eval {name} ({task})", unit="ep", disable=not progress, leave=False)
        for i in bar:
            record = video_dir is not None and i < video_episodes
            result, frames = run_episode(env, brain, seed + i, spec, camera if record else None)
            results.append(result)
            if record and frames:
                assert video_dir is not None
                videos.append(str(save_gif(frames, video_dir / f"{video_stem or name}_ep{i}.gif", video_fps)))
            bar.set_postfix(success=f"{np.mean([r.success for r in results]):.0%}")
    finally:
        env.close()
    summary = summarize(name, task, results)
    summary["videos"] = videos
    templates = getattr(getattr(env.unwrapped, "task", None), "instruction_templates", None)
    summary["instruction_templates"] = list(templates) if templates is not None else None
    return summary
