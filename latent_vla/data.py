"""Training data: any LeRobotDataset (v3.0) decoded once into memory, sampled as short sub-trajectories.

Random-access video decoding costs 5-7 ms a frame (NOTES.md), so :func:`load_frames` decodes every
episode's video once, resizes the frames to the model's size and keeps them as uint8 arrays
(``200 episodes x 100 frames x 2 cameras x 64x64x3`` is about 0.5 GB). :class:`WindowSampler` then
draws windows of ``k + 1`` consecutive frames inside one episode, as torch tensors.

Alignment (LeRobot's convention): frame ``t`` holds observation ``o_t``, the action ``a_t`` sent after
it, and ``next.reward`` / ``next.success`` of the state reached after ``a_t``. So in a window starting
at ``t`` the labels of latent ``z_{t+i}`` (``i = 1..k``) are the ``next.*`` values of frame ``t+i-1``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from latent_vla.base.errors import UserError
from latent_vla.base.normalize import Normalizer
from latent_vla.base.text import Tokenizer

log = logging.getLogger(__name__)

IMAGE_PREFIX = "observation.images."
STATE_KEY = "observation.state"
ACTION_KEY = "action"
REWARD_KEY = "next.reward"
SUCCESS_KEY = "next.success"
ENV_STATE_KEY = "observation.environment_state"
# Written by `latent-vla collect`'s data engine (sim.dataset_features documents them and the source codes).
SOURCE_KEY = "source"
EXPERT_ACTION_KEY = "expert.action"
EXPERT_VALID_KEY = "expert.valid"
PROGRESS_KEY = "next.progress"
GAP_NAME = "gripper_to_object"
"""The ``next.progress`` entry ``train.loss.cost_dense`` adds to the cost target (metres)."""
ENGINE_KEYS = (SOURCE_KEY, EXPERT_ACTION_KEY, EXPERT_VALID_KEY, PROGRESS_KEY)
CONVERTER = "python -m lerobot.datasets.v30.convert_dataset_v21_to_v30 --repo-id=<id> --root=<dir>"


class DatasetError(UserError, ValueError):
    """The path is not a usable LeRobotDataset; the message says why and what to do."""


@dataclass
class FrameCache:
    """Every frame of a dataset in memory.

    Attributes:
        images: ``{camera: (N, h, w, 3) uint8}`` at the model's image size.
        state: ``(N, S)`` float32 joint state, robot units.
        action: ``(N, A)`` float32 actions, robot units.
        reward: ``(N,)`` float32 ``next.reward`` (minus distance to success, metres) or None.
        success: ``(N,)`` float32 ``next.success`` in {0, 1} or None.
        task_index: ``(N,)`` int64 index into ``tasks``.
        tasks: instruction strings.
        episode_bounds: ``(E, 2)`` int64 ``[start, end)`` frame ranges in the cache, one per episode.
        episode_ids: ``(E,)`` the dataset's episode indices.
        fps: frames per second of the dataset.
        state_names: names of the state entries (from the dataset), or None.
        skipped: human-readable notes about what cannot be trained from this dataset.
        env_state: ``(N, D)`` float32 ``observation.environment_state`` (privileged simulator state,
            e.g. the named object's position in metres), or None when the dataset has none.
        action_names: names of the action entries (from the dataset), or None.
        sources: the dataset folder(s) the frames came from.
        episode_source: ``(E,)`` int64 index into ``sources`` of each episode (default: all 0).
        source: ``(N,)`` int64 ``source`` code of each frame (who chose the executed action; see
            ``sim.dataset_features.SOURCES``; -1 = unknown, a dataset without the feature), or None.
        expert_action: ``(N, A)`` float32 the expert's action at each frame's state, robot units (the
            behaviour-cloning label; ``action`` is what was executed), or None without the feature.
        expert_valid: ``(N,)`` bool, True where ``expert_action`` holds a real label, or None.
        progress: ``(N, P)`` float32 ``next.progress`` (dense progress after the action: metres and a
            0/1 grasp flag, names in ``progress_names``), or None. Recorded for later; no loss reads it yet.
        progress_names: names of the ``progress`` entries, or None.
    """

    images: dict[str, np.ndarray]
    state: np.ndarray
    action: np.ndarray
    reward: np.ndarray | None
    success: np.ndarray | None
    task_index: np.ndarray
    tasks: list[str]
    episode_bounds: np.ndarray
    episode_ids: np.ndarray
    fps: float
    state_names: list[str] | None = None
    skipped: list[str] = field(default_factory=list)
    env_state: np.ndarray | None = None
    action_names: list[str] | None = None
    sources: list[str] = field(default_factory=list)
    episode_source: np.ndarray | None = None
    source: np.ndarray | None = None
    expert_action: np.ndarray | None = None
    expert_valid: np.ndarray | None = None
    progress: np.ndarray | None = None
    progress_names: list[str] | None = None

    def __post_init__(self) -> None:
        if self.episode_source is None:
            self.episode_source = np.zeros(len(self.episode_bounds), dtype=np.int64)

    @property
    def camera_names(self) -> list[str]:
        """Camera names in order (dataset keys without ``observation.images.``)."""
        return list(self.images)

    @property
    def num_frames(self) -> int:
        """N."""
        return int(self.state.shape[0])

    @property
    def num_episodes(self) -> int:
        """E."""
        return int(self.episode_bounds.shape[0])

    def task_sources(self) -> list[str]:
        """The folder name of the dataset each of ``tasks`` was first recorded in (``len(tasks)`` strings;
        ``""`` for an instruction no episode uses)."""
        names = [Path(s).name for s in self.sources] or [""]
        out = [""] * len(self.tasks)
        for (start, _), src in zip(self.episode_bounds[::-1], self.episode_source[::-1], strict=True):
            out[int(self.task_index[start])] = names[int(src)]  # reversed: the first dataset's name wins
        return out

    def normalizer(self, image_size: Sequence[int]) -> Normalizer:
        """Statistics of these frames as a :class:`Normalizer` (action range: executed actions and valid labels)."""
        actions = self.action
        if self.expert_action is not None and self.expert_valid is not None:
            actions = np.concatenate([actions, self.expert_action[self.expert_valid]])
        return Normalizer.from_arrays(self.state, actions, image_size, self.camera_names)

    def cost_targets(self, dense: float = 0.0, to_go: float = 0.0) -> np.ndarray | None:
        """What the cost head learns for each frame ``(N,)`` float32, metres; ``None`` without ``next.reward``.

        ``max(0, -next.reward)`` (the distance to success after the action) plus ``dense`` times the
        gripper-to-object gap of ``next.progress`` (to the object's centre). The distance is flat at zero
        once a task counts as solved and, for push and pick, until the object moves; the gap keeps a
        slope there (on reach it made the gradient planner worse: docs/training.md, "Dense cost").
        With ``to_go`` (a discount in ``(0, 1)``), that per-frame cost becomes its cost-to-go
        (:func:`cost_to_go`): it falls as the episode gets closer to success, even while the distance is flat.

        Raises:
            DatasetError: ``dense > 0`` and the dataset has no ``next.progress`` gap.
        """
        if self.reward is None:
            return None
        cost = np.maximum(-self.reward, 0.0).astype(np.float32)
        if dense > 0:
            names = self.progress_names or []
            if self.progress is None or GAP_NAME not in names:
                raise DatasetError(
                    f"train.loss.cost_dense={dense} needs the {PROGRESS_KEY!r} entry {GAP_NAME!r}, which this "
                    "dataset lacks (collect it with `latent-vla collect`; 0 trains on the distance alone)"
                )
            cost = (cost + dense * self.progress[:, names.index(GAP_NAME)]).astype(np.float32)
        return cost_to_go(cost, self.episode_bounds, to_go) if to_go > 0 else cost

    def bc_targets(self) -> tuple[np.ndarray, np.ndarray]:
        """Behaviour-cloning labels ``(N, A)`` (robot units) and their mask ``(N,)`` bool.

        With the data engine's features: the expert's label where it is valid (a DART, exploration or
        brain frame's executed action is not a demonstration); without them: every executed action.
        """
        if self.expert_action is None or self.expert_valid is None:
            return self.action, np.ones(self.num_frames, dtype=bool)
        valid = self.expert_valid.astype(bool)
        return np.where(valid[:, None], self.expert_action, self.action).astype(np.float32), valid


def cost_to_go(cost: np.ndarray, episode_bounds: np.ndarray, discount: float) -> np.ndarray:
    """Discounted mean of each frame's cost and its episode's later costs: ``(N,)`` -> ``(N,)`` float32.

    ``v_t = (1 - g) c_t + g v_{t+1}`` within an episode, with ``v = c`` at its last frame (the last cost
    held forever after), so ``v_t = (1 - g) sum_k g^k c_{t+k}`` stays in the costs' units (metres) and
    range. ``episode_bounds`` ``(E, 2)`` holds each episode's ``[start, end)`` frame rows.
    """
    if not 0.0 <= discount < 1.0:
        raise ValueError(f"the cost-to-go discount must be in [0, 1), got {discount}")
    out = np.asarray(cost, np.float64).copy()
    for start, end in episode_bounds:
        for t in range(int(end) - 2, int(start) - 1, -1):
            out[t] = (1.0 - discount) * out[t] + discount * out[t + 1]
    return out.astype(np.float32)


def open_lerobot_dataset(
    root: str | Path,
    repo_id: str | None = None,
    video_backend: str | None = None,
    episodes: Sequence[int] | None = None,
):
    """Open a local LeRobotDataset (optionally only some ``episodes``) with clear errors.

    Raises:
        DatasetError: the folder does not exist, is not a LeRobotDataset, or is an old (v2.1) one.
    """
    from lerobot.datasets.backward_compatibility import BackwardCompatibilityError
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    if not (root / "meta" / "info.json").exists():
        raise DatasetError(
            f"{root} is not a LeRobotDataset: it has no meta/info.json (expected the folder that "
            "`latent-vla collect` or `lerobot-record` wrote)"
        )
    if episodes is not None:  # LeRobot would look for missing episodes on the Hub (an offline error here)
        total = episode_count(root)
        missing = sorted(e for e in episodes if not 0 <= int(e) < total)
        if missing:
            raise DatasetError(f"{root} holds {total} episodes (0..{total - 1}); episode(s) {missing[:5]} requested")
    try:
        return LeRobotDataset(
            repo_id or f"local/{root.name}",
            root=root,
            video_backend=video_backend,
            episodes=list(episodes) if episodes is not None else None,
        )
    except BackwardCompatibilityError as exc:
        raise DatasetError(
            f"{root} is a LeRobotDataset in the old v2.1 layout; convert it with LeRobot's converter: {CONVERTER}"
        ) from exc
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise DatasetError(f"{root} is an incomplete LeRobotDataset (was `finalize()` called?): {exc}") from exc


def episode_count(root: str | Path) -> int:
    """Episodes in the LeRobotDataset at ``root`` (``meta/info.json``'s ``total_episodes``; no frames read).

    Raises:
        DatasetError: no readable ``meta/info.json`` with that field.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    info = root / "meta" / "info.json"
    try:
        return int(json.loads(info.read_text())["total_episodes"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"cannot read the episode count from {info}: {exc}") from None


def check_features(features: dict, root: str | Path = "") -> tuple[list[str], list[str]]:
    """Check a dataset's features for training.

    Returns:
        ``(camera keys, notes about skipped heads)``.

    Raises:
        DatasetError: naming every missing feature.
    """
    cams = [k for k, v in features.items() if k.startswith(IMAGE_PREFIX) and v.get("dtype") in ("video", "image")]
    missing = []
    if not cams:
        missing.append("an image feature (observation.images.<camera>)")
    for key in (STATE_KEY, ACTION_KEY):
        if key not in features:
            missing.append(key)
    if missing:
        raise DatasetError(f"dataset {root} cannot train a world model: missing {missing}; it has {sorted(features)}")
    notes = []
    if REWARD_KEY not in features:
        notes.append(f"no {REWARD_KEY}: the cost head is not trained")
    if SUCCESS_KEY not in features:
        notes.append(f"no {SUCCESS_KEY}: the success head is not trained")
    return cams, notes


def _column(hf, key: str) -> np.ndarray:
    return np.asarray(hf[key][:])


def load_frames(
    root: str | Path,
    image_size: Sequence[int] = (64, 64),
    cameras: Sequence[str] | None = None,
    repo_id: str | None = None,
    video_backend: str | None = None,
    progress: bool = True,
    episodes: Sequence[int] | None = None,
) -> FrameCache:
    """Read a LeRobotDataset into a :class:`FrameCache`, decoding each episode's video once.

    Args:
        root: dataset folder.
        image_size: ``(h, w)`` the frames are resized to (see :func:`latent_vla.base.normalize.resize_uint8`).
        cameras: camera names to keep, in this order (default: all, in the dataset's order).
        repo_id: LeRobot repo id (default ``local/<folder name>``; only used as a label offline).
        video_backend: ``"torchcodec"`` or ``"pyav"`` (LeRobot's default when None).
        progress: show a tqdm bar over episodes.
        episodes: dataset episode indices to read (default all).

    Raises:
        DatasetError: not a LeRobotDataset, missing features, or unknown cameras.
    """
    from lerobot.datasets.video_utils import decode_video_frames

    ds = open_lerobot_dataset(root, repo_id, video_backend, episodes)
    features = ds.meta.features
    cam_keys, notes = check_features(features, root)
    available = [k[len(IMAGE_PREFIX) :] for k in cam_keys]
    if cameras:
        unknown = [c for c in cameras if c not in available]
        if unknown:
            raise DatasetError(f"dataset {root} has no cameras {unknown}; it has {available}")
        available = list(cameras)
    h, w = int(image_size[0]), int(image_size[1])
    norm = Normalizer(np.zeros(1), np.ones(1), np.zeros(1), np.ones(1), (h, w), tuple(available))

    columns = [STATE_KEY, ACTION_KEY, "episode_index", "timestamp", "task_index"]
    columns += [k for k in (REWARD_KEY, SUCCESS_KEY, ENV_STATE_KEY, *ENGINE_KEYS) if k in features]
    hf = ds.hf_dataset.select_columns(columns).with_format("numpy")
    state = _column(hf, STATE_KEY).astype(np.float32)
    action = _column(hf, ACTION_KEY).astype(np.float32)
    episode_index = _column(hf, "episode_index").astype(np.int64).reshape(-1)
    timestamps = _column(hf, "timestamp").astype(np.float64).reshape(-1)
    task_index = _column(hf, "task_index").astype(np.int64).reshape(-1)
    reward = _column(hf, REWARD_KEY).astype(np.float32).reshape(-1) if REWARD_KEY in features else None
    success = _column(hf, SUCCESS_KEY).astype(np.float32).reshape(-1) if SUCCESS_KEY in features else None
    env_state = _column(hf, ENV_STATE_KEY).astype(np.float32) if ENV_STATE_KEY in features else None
    if env_state is not None:
        env_state = env_state.reshape(len(env_state), -1)
    engine = _engine_columns(hf, features, len(state))
    if state.ndim != 2 or action.ndim != 2:
        raise DatasetError(f"{STATE_KEY} and {ACTION_KEY} must be vectors, got {state.shape} and {action.shape}")

    order = np.lexsort((timestamps, episode_index))  # frames grouped by episode, in time order
    state, action, episode_index, timestamps, task_index = (
        x[order] for x in (state, action, episode_index, timestamps, task_index)
    )
    reward = reward[order] if reward is not None else None
    success = success[order] if success is not None else None
    env_state = env_state[order] if env_state is not None else None
    engine = {k: None if v is None else v[order] for k, v in engine.items()}
    ep_ids, starts = np.unique(episode_index, return_index=True)
    ends = np.append(starts[1:], len(episode_index))
    bounds = np.stack([starts, ends], axis=1).astype(np.int64)

    images = {c: np.zeros((len(state), h, w, 3), dtype=np.uint8) for c in available}
    video_keys = set(ds.meta.video_keys)
    image_hf = None
    if any(f"{IMAGE_PREFIX}{c}" not in video_keys for c in available):
        image_hf = ds.hf_dataset.select_columns(
            [f"{IMAGE_PREFIX}{c}" for c in available if f"{IMAGE_PREFIX}{c}" not in video_keys]
        )
    bar = tqdm(list(zip(ep_ids, bounds, strict=True)), desc="decoding episodes", disable=not progress, unit="ep")
    for ep, (s, e) in bar:
        ep_meta = ds.meta.episodes[int(ep)]
        for cam in available:
            key = f"{IMAGE_PREFIX}{cam}"
            if key in video_keys:
                path = ds.root / ds.meta.get_video_file_path(int(ep), key)
                start = float(ep_meta[f"videos/{key}/from_timestamp"])
                frames = decode_video_frames(path, (start + timestamps[s:e]).tolist(), ds.tolerance_s, ds.video_backend)
                frames = (frames * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
            else:
                rows = order[s:e].tolist()
                frames = np.stack([_to_hwc_uint8(x) for x in image_hf[rows][key]])
            if frames.shape[0] != e - s:
                raise DatasetError(f"episode {ep}, camera {cam}: decoded {frames.shape[0]} frames, expected {e - s}")
            images[cam][s:e] = norm.resize_image(frames)
    task_lookup = {int(i): n for n, i in zip(ds.meta.tasks.index, ds.meta.tasks["task_index"], strict=True)}
    tasks = [task_lookup[i] for i in sorted(task_lookup)]
    if task_index.max(initial=0) >= len(tasks):
        raise DatasetError(f"dataset {root}: task_index {task_index.max()} but only {len(tasks)} tasks")
    for note in notes:
        log.warning("%s: %s", root, note)
    return FrameCache(
        images=images,
        state=state,
        action=action,
        reward=reward,
        success=success,
        task_index=task_index,
        tasks=tasks,
        episode_bounds=bounds,
        episode_ids=ep_ids.astype(np.int64),
        fps=float(ds.meta.fps),
        state_names=_feature_names(features, STATE_KEY),
        skipped=notes,
        env_state=env_state,
        action_names=_feature_names(features, ACTION_KEY),
        sources=[str(root)],
        progress_names=_feature_names(features, PROGRESS_KEY) if PROGRESS_KEY in features else None,
        **engine,
    )


def _engine_columns(hf, features: dict, n: int) -> dict[str, np.ndarray | None]:
    """The data engine's columns as :class:`FrameCache` fields (None for those the dataset lacks).

    ``expert.action`` counts only with ``expert.valid`` beside it.
    """
    has = {k: k in features for k in ENGINE_KEYS}
    labelled = has[EXPERT_ACTION_KEY] and has[EXPERT_VALID_KEY]
    return {
        "source": _column(hf, SOURCE_KEY).astype(np.int64).reshape(n) if has[SOURCE_KEY] else None,
        "expert_action": _column(hf, EXPERT_ACTION_KEY).astype(np.float32).reshape(n, -1) if labelled else None,
        "expert_valid": _column(hf, EXPERT_VALID_KEY).astype(bool).reshape(n) if labelled else None,
        "progress": _column(hf, PROGRESS_KEY).astype(np.float32).reshape(n, -1) if has[PROGRESS_KEY] else None,
    }


def _feature_names(features: dict, key: str) -> list[str] | None:
    """The ``names`` of a vector feature as a flat list, or None when the dataset gives none."""
    names = features.get(key, {}).get("names")
    return [str(n) for n in names] if isinstance(names, list | tuple) else None


def dataset_paths(data: str | Path | Sequence[str | Path]) -> list[str]:
    """The ``data=`` setting as a list of dataset folders: one path, or a list of them.

    Raises:
        UserError: an empty list, an entry that is not a path, or a folder listed twice.
    """
    paths = [data] if isinstance(data, str | Path) else list(data) if isinstance(data, Sequence) else None
    if not paths or not all(isinstance(p, str | Path) and str(p).strip() for p in paths):
        raise UserError(
            f"data= must be a dataset folder or a list of them, e.g. data=[data/reach,data/push]; got {data!r}"
        )
    paths = [str(p) for p in paths]
    twice = [p for i, p in enumerate(paths) if Path(p).resolve() in {Path(q).resolve() for q in paths[:i]}]
    if twice:
        raise UserError(f"data= lists {twice[0]} twice")
    return paths


def _dataset_features(root: str) -> tuple[dict, float]:
    """``(features, fps)`` of a dataset from its ``meta/info.json`` (no frames read)."""
    info = Path(root).expanduser() / "meta" / "info.json"
    if not info.is_file():
        open_lerobot_dataset(root)  # raises the DatasetError that says what the folder is missing
    meta = json.loads(info.read_text())
    return meta.get("features", {}), float(meta.get("fps", 0.0))


def check_datasets_match(roots: Sequence[str], cameras: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """Check that datasets can train one model together, before any frame is decoded.

    They must share the robot (``observation.state`` and ``action`` sizes and names), the fps and
    the cameras (all of them, or every one of ``cameras``); image sizes may differ (frames are resized).

    Returns:
        ``(cameras to load, in the first dataset's order; notes on what merging drops)``: the
        environment state when its size differs (or some dataset has none), ``next.reward`` /
        ``next.success`` when some dataset lacks them.

    Raises:
        DatasetError: one line naming the first mismatch and the datasets concerned.
    """
    metas = [(root, *_dataset_features(root)) for root in roots]
    first, f0, fps0 = metas[0]
    cams0 = [k[len(IMAGE_PREFIX) :] for k in check_features(f0, first)[0]]
    want = list(cameras) if cameras else cams0
    for root, feats, fps in metas:
        cams = [k[len(IMAGE_PREFIX) :] for k in check_features(feats, root)[0]]
        for key in (STATE_KEY, ACTION_KEY):
            a, b = _vector_feature(f0, key), _vector_feature(feats, key)
            if a != b:
                raise DatasetError(
                    f"datasets {first} and {root} do not share a robot: {key} is {a[0]} {a[1]} vs {b[0]} {b[1]}"
                )
        if fps != fps0:
            raise DatasetError(f"datasets {first} and {root} do not share an fps: {fps0:g} vs {fps:g} frames/s")
        missing = [c for c in want if c not in cams]
        if missing or (not cameras and set(cams) != set(cams0)):
            shared = [c for c in cams0 if c in cams]
            raise DatasetError(
                f"datasets {first} and {root} do not share cameras: {cams0} vs {cams}; "
                f"train on shared ones with model.camera_names=[{','.join(shared)}]"
            )
    return want, _merge_notes(metas)


def _vector_feature(features: dict, key: str) -> tuple[tuple[int, ...], list[str] | None]:
    """``(shape, names)`` of a vector feature, for comparing datasets."""
    names = features[key].get("names")
    return tuple(features[key].get("shape", ())), list(names) if isinstance(names, list | tuple) else names


def _merge_notes(metas: Sequence[tuple[str, dict, float]]) -> list[str]:
    """What merging these datasets (``(root, features, fps)``) cannot keep, one note each."""
    notes = []
    sizes = {root: tuple(f[ENV_STATE_KEY]["shape"]) if ENV_STATE_KEY in f else None for root, f, _ in metas}
    if len(set(sizes.values())) > 1 and any(sizes.values()):
        described = ", ".join(f"{r}: {s[0] if s else 'none'}" for r, s in sizes.items())
        notes.append(
            f"{ENV_STATE_KEY} dropped: its size differs between the datasets ({described}); "
            "the auxiliary head is not trained"
        )
    for key, head in ((REWARD_KEY, "cost"), (SUCCESS_KEY, "success")):
        lacking = [root for root, f, _ in metas if key not in f]
        if lacking and len(lacking) < len(metas):
            notes.append(f"no {key} in {', '.join(lacking)}: the {head} head is not trained")
    return notes


def merge_caches(caches: list[FrameCache]) -> FrameCache:
    """One :class:`FrameCache` of several datasets' frames (same robot, fps and cameras; see
    :func:`check_datasets_match`), in order. ``caches`` is emptied as it goes (frames are large).

    Instructions that several datasets share get one task index. The environment state, reward and
    success are kept only when every dataset has them (the environment state with one size).
    """
    if not caches:
        raise ValueError("no frame caches to merge")
    parts = list(caches)
    caches.clear()
    first = parts[0]
    offsets = np.cumsum([0] + [c.num_frames for c in parts])
    tasks = list(dict.fromkeys(t for c in parts for t in c.tasks))
    lookup = {t: i for i, t in enumerate(tasks)}
    env_dims = {None if c.env_state is None else c.env_state.shape[1] for c in parts}
    progress_names = {None if c.progress is None else tuple(c.progress_names or ()) for c in parts}
    targets = [c.bc_targets() for c in parts] if any(c.expert_action is not None for c in parts) else None

    def joined(get) -> np.ndarray | None:
        arrays = [get(c) for c in parts]
        return None if any(a is None for a in arrays) else np.concatenate(arrays)

    images = {}
    for cam in first.camera_names:
        images[cam] = np.concatenate([c.images[cam] for c in parts])
        for c in parts:
            del c.images[cam]  # free each dataset's copy once it is merged
    return FrameCache(
        images=images,
        state=np.concatenate([c.state for c in parts]),
        action=np.concatenate([c.action for c in parts]),
        reward=joined(lambda c: c.reward),
        success=joined(lambda c: c.success),
        task_index=np.concatenate([np.array([lookup[t] for t in c.tasks], np.int64)[c.task_index] for c in parts]),
        tasks=tasks,
        episode_bounds=np.concatenate([c.episode_bounds + o for c, o in zip(parts, offsets, strict=False)]),
        episode_ids=np.concatenate([c.episode_ids for c in parts]),
        fps=first.fps,
        state_names=first.state_names,
        skipped=list(dict.fromkeys(n for c in parts for n in c.skipped)),
        env_state=joined(lambda c: c.env_state) if len(env_dims) == 1 else None,
        action_names=first.action_names,
        sources=[s for c in parts for s in c.sources],
        episode_source=np.concatenate([np.full(c.num_episodes, i, np.int64) for i, c in enumerate(parts)]),
        # a dataset without labels is a demonstration: its executed actions are its labels, as before
        source=np.concatenate([_or_unknown_source(c) for c in parts]) if targets else None,
        expert_action=np.concatenate([t[0] for t in targets]) if targets else None,
        expert_valid=np.concatenate([t[1] for t in targets]) if targets else None,
        progress=joined(lambda c: c.progress) if len(progress_names) == 1 else None,
        progress_names=first.progress_names if len(progress_names) == 1 else None,
    )


def _or_unknown_source(cache: FrameCache) -> np.ndarray:
    """``cache.source``, or ``-1`` (unknown) for every frame of a dataset without the feature."""
    return cache.source if cache.source is not None else np.full(cache.num_frames, -1, np.int64)


def load_datasets(
    roots: Sequence[str | Path],
    image_size: Sequence[int] = (64, 64),
    cameras: Sequence[str] | None = None,
    repo_id: str | None = None,
    video_backend: str | None = None,
    progress: bool = True,
) -> FrameCache:
    """One or several LeRobotDatasets as one :class:`FrameCache` (statistics then cover their union).

    One folder is :func:`load_frames`. Several are checked by :func:`check_datasets_match` before any
    video is decoded, read one by one and merged by :func:`merge_caches`; what the merge drops is
    listed in ``skipped``. ``repo_id`` labels a single dataset only.

    Raises:
        DatasetError: an unusable dataset, or datasets that do not share robot, fps or cameras.
    """
    roots = [str(r) for r in roots]
    if len(roots) == 1:
        return load_frames(roots[0], image_size, cameras, repo_id, video_backend, progress)
    cams, notes = check_datasets_match(roots, cameras)
    caches = [load_frames(r, image_size, cams, None, video_backend, progress) for r in roots]
    merged = merge_caches(caches)
    for note in notes:
        log.warning("%s", note)
    partial = [k for k in (REWARD_KEY, SUCCESS_KEY) if any(n.startswith(f"no {k} in ") for n in notes)]
    merged.skipped = [n for n in merged.skipped if not any(n.startswith(f"no {k}:") for k in partial)] + notes
    return merged


def _to_hwc_uint8(x) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr * 255.0 if arr.max(initial=0) <= 1.0 else arr), 0, 255).astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr


def env_state_statistics(env_state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-entry ``(mean, std)`` ``(D,)`` of an ``(N, D)`` environment state (std floored at 1e-3)."""
    x = np.asarray(env_state, dtype=np.float64)
    return x.mean(axis=0).astype(np.float32), np.maximum(x.std(axis=0), 1e-3).astype(np.float32)


def split_episodes(
    num_episodes: int, val_fraction: float, seed: int = 0, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split episode positions ``0..E-1`` into ``(train, val)``; val is empty when ``val_fraction`` is 0.

    ``groups``: ``(E,)`` ints (e.g. :attr:`FrameCache.episode_source`); with more than one group each
    is split on its own, so every dataset of a merged cache keeps its share of held-out episodes.
    """
    if groups is not None and len(np.unique(groups)) > 1:
        groups = np.asarray(groups)
        splits = []
        for g in np.unique(groups):
            members = np.flatnonzero(groups == g)
            train, val = split_episodes(len(members), val_fraction, seed)
            splits.append((members[train], members[val]))
        return np.sort(np.concatenate([t for t, _ in splits])), np.sort(np.concatenate([v for _, v in splits]))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(num_episodes)
    n_val = int(round(val_fraction * num_episodes))
    n_val = min(max(n_val, 1), num_episodes - 1) if val_fraction > 0 and num_episodes > 1 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@dataclass
class Batch:
    """Windows of ``k + 1`` frames, model-ready (float32 unless noted).

    Attributes:
        images: ``{camera: (B, k+1, 3, h, w)}`` in ``[0, 1]``.
        state: ``(B, k+1, S)`` standardized.
        actions: ``(B, k, A)`` in ``[-1, 1]``.
        cost: ``(B, k)`` distance to success (metres) of ``z_{t+1..t+k}``, or None.
        success: ``(B, k)`` in {0, 1} of ``z_{t+1..t+k}``, or None.
        chunk: ``(B, K, A)`` the behaviour-cloning labels of ``a_t .. a_{t+K-1}`` in ``[-1, 1]`` (the last one
            repeated past the end): the executed actions, or the expert's labels where the dataset has them.
        chunk_mask: ``(B, K)`` 1 where ``chunk`` holds a real expert label (inside the episode, and not a
            DART / exploration / brain frame without a valid label); the policy loss averages over it.
        tokens: ``(B, L)`` int64 instruction ids.
        env_state: ``(B, k+1, D)`` standardized environment state of every frame, or None.
        anchor_tokens: ``(B, L)`` int64 ids of each window's dataset instruction as recorded: the embedding
            its rewordings are pulled to (``train.loss.phrasing``); None when the sampler does not reword.
        phrased_tokens: ``(B, L)`` int64 ids of each window's instruction after rewording and *before* word
            dropout (equal to ``anchor_tokens`` on the rows not reworded): what is pulled. A word-dropped
            instruction is not pulled: it may have lost its object or zone word, and pulling it onto the
            full instruction draws instructions that differ only in those words together (closest pair of
            push instructions differing only by zone: 0.005 with dropped rows pulled, 0.021 without;
            push's success did not follow, docs/training.md).
    """

    images: dict[str, torch.Tensor]
    state: torch.Tensor
    actions: torch.Tensor
    cost: torch.Tensor | None
    success: torch.Tensor | None
    chunk: torch.Tensor
    chunk_mask: torch.Tensor
    tokens: torch.Tensor
    env_state: torch.Tensor | None = None
    anchor_tokens: torch.Tensor | None = None
    phrased_tokens: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on ``device``."""

        def mv(x):
            return None if x is None else x.to(device, non_blocking=True)

        return Batch(
            {c: v.to(device) for c, v in self.images.items()},
            mv(self.state),
            mv(self.actions),
            mv(self.cost),
            mv(self.success),
            mv(self.chunk),
            mv(self.chunk_mask),
            mv(self.tokens),
            mv(self.env_state),
            mv(self.anchor_tokens),
            mv(self.phrased_tokens),
        )


class WindowSampler:
    """Draws random windows of ``k + 1`` frames within episodes of a :class:`FrameCache`.

    Args:
        cache: the frames.
        normalizer: maps robot units to model units.
        tokenizer: instruction tokenizer.
        horizon: k, actions per window (>= 1).
        chunk_len: K, actions per policy chunk.
        episodes: episode positions (``0..E-1``) to draw from (default all).
        motion_weighting: ``beta`` in ``[0, 1]``: a window is drawn with probability proportional to
            ``(1 - beta) + beta * m / mean(m)``, where ``m`` is how far the actions move over its policy
            chunk (``|a_{t+K-1} - a_t|``, model units). Demonstrations spend most frames holding or
            creeping near the goal; the frames that say *where to go* (episode starts, turns) are few,
            and uniform sampling starves them. 0 = uniform.
        env_state_stats: ``(mean, std)`` ``(D,)`` each, to standardize the cache's environment state
            (default: this cache's own statistics); ignored when the cache has none.
        rephrase: ``(instruction, rng) -> reworded instruction`` (e.g. ``sim.phrasing.rephrase_instruction``),
            applied to a sampled window's instruction with probability ``rephrase_prob``.
        rephrase_prob: in ``[0, 1]``; 0 = every window keeps its dataset instruction.
        rephrase_pool: rewordings kept per dataset instruction (0 = a fresh one every time): each
            instruction's first ``rephrase_pool`` rewordings are drawn fresh and remembered, later ones are
            drawn from them. A frozen sentence encoder then meets each text once (its cache), instead of
            running on every reworded window.
        word_dropout: in ``[0, 1)``: the probability that each hashed word or bigram id of a window's
            instruction is left out (after rewording; pretrained subword ids are kept), so the model
            also learns to read the task from the pretrained channel alone, as it must for a word its
            training never held. 0 = none.
        cost_dense: weight of the gripper-to-object gap in the cost target (:meth:`FrameCache.cost_targets`).
        cost_to_go: discount of the cost-to-go target (:meth:`FrameCache.cost_targets`; 0 = the cost itself).

    Attributes:
        seen_words: every word and word pair (:meth:`Tokenizer.pieces`) of the instructions the sampler
            has handed out (the dataset's, then each rewording) that their ids held (not those ``max_len``
            cut): what training saves as the tokenizer's ``known_words``.
    """

    def __init__(
        self,
        cache: FrameCache,
        normalizer: Normalizer,
        tokenizer: Tokenizer,
        horizon: int,
        chunk_len: int,
        episodes: Sequence[int] | np.ndarray | None = None,
        motion_weighting: float = 0.0,
        env_state_stats: tuple[np.ndarray, np.ndarray] | None = None,
        rephrase: Callable[[str, np.random.Generator], str] | None = None,
        rephrase_prob: float = 0.0,
        cost_dense: float = 0.0,
        cost_to_go: float = 0.0,
        word_dropout: float = 0.0,
        rephrase_pool: int = 0,
    ) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if not 0.0 <= motion_weighting <= 1.0:
            raise ValueError(f"motion_weighting must be in [0, 1], got {motion_weighting}")
        if not 0.0 <= rephrase_prob <= 1.0:
            raise ValueError(f"rephrase_prob must be in [0, 1], got {rephrase_prob}")
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"word_dropout must be in [0, 1), got {word_dropout}")
        if rephrase_pool < 0:
            raise ValueError(f"rephrase_pool must be >= 0, got {rephrase_pool}")
        self.tokenizer, self.word_dropout, self.rephrase_pool = tokenizer, float(word_dropout), int(rephrase_pool)
        self._pool: dict[int, list[np.ndarray]] = {}  # dataset instruction index -> its (L,) reworded ids
        self.rephrase, self.rephrase_prob = (rephrase, float(rephrase_prob)) if rephrase else (None, 0.0)
        self.cache, self.k, self.chunk_len = cache, int(horizon), int(chunk_len)
        eps = np.arange(cache.num_episodes) if episodes is None else np.asarray(episodes, dtype=np.int64)
        starts, ep_end = [], []
        for s, e in cache.episode_bounds[eps]:
            n = e - s - self.k  # windows t .. t+k must stay inside the episode
            if n > 0:
                starts.append(np.arange(s, s + n))
                ep_end.append(np.full(n, e))
        if not starts:
            raise DatasetError(f"no episode has more than {self.k} frames; lower train.horizon")
        self.starts = np.concatenate(starts)
        self.ep_end = np.concatenate(ep_end)
        self.images = {c: torch.from_numpy(v) for c, v in cache.images.items()}  # (N, h, w, 3) uint8
        self.state = torch.from_numpy(normalizer.state_to_model(cache.state))
        self.action = torch.from_numpy(normalizer.action_to_model(cache.action))
        bc_action, bc_valid = cache.bc_targets()  # executed actions or the expert's labels, robot units
        self.bc_action = (
            self.action if cache.expert_action is None else torch.from_numpy(normalizer.action_to_model(bc_action))
        )
        self.bc_valid = torch.from_numpy(bc_valid.astype(np.float32))  # (N,)
        cost = cache.cost_targets(cost_dense, cost_to_go)
        self.cost = None if cost is None else torch.from_numpy(cost)
        self.success = None if cache.success is None else torch.from_numpy(cache.success)
        self.task_tokens = torch.from_numpy(tokenizer.encode(cache.tasks))  # (n_tasks, L)
        self.seen_words: set[str] = set()
        self._note_read(cache.tasks, self.task_tokens.numpy())
        self.task_index = torch.from_numpy(cache.task_index)
        self.env_state: torch.Tensor | None = None
        if cache.env_state is not None:
            mean, std = env_state_stats if env_state_stats is not None else env_state_statistics(cache.env_state)
            self.env_state = torch.from_numpy(((cache.env_state - mean) / std).astype(np.float32))
        self.probs: np.ndarray | None = None  # (windows,) sampling probabilities; None = uniform
        if motion_weighting > 0:
            last = np.minimum(self.starts + self.chunk_len - 1, self.ep_end - 1)
            act = self.action.numpy()
            motion = np.linalg.norm(act[last] - act[self.starts], axis=-1)  # (windows,)
            weight = (1.0 - motion_weighting) + motion_weighting * motion / max(float(motion.mean()), 1e-12)
            self.probs = weight / weight.sum()

    def __len__(self) -> int:
        """Number of distinct windows."""
        return int(self.starts.shape[0])

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """``batch_size`` windows drawn with replacement (uniformly, or by ``motion_weighting``)."""
        if self.probs is None:
            pick = rng.integers(0, len(self.starts), size=batch_size)
        else:
            pick = rng.choice(len(self.starts), size=batch_size, p=self.probs)
        t0 = torch.from_numpy(self.starts[pick])  # (B,)
        end = torch.from_numpy(self.ep_end[pick])  # (B,)
        idx = t0[:, None] + torch.arange(self.k + 1)  # (B, k+1)
        chunk_idx = t0[:, None] + torch.arange(self.chunk_len)  # (B, K)
        chunk_mask = (chunk_idx < end[:, None]).float()
        chunk_idx = torch.minimum(chunk_idx, end[:, None] - 1)
        chunk_mask = chunk_mask * self.bc_valid[chunk_idx]  # only expert labels teach the policy
        images = {c: v[idx].permute(0, 1, 4, 2, 3).float().div_(255.0) for c, v in self.images.items()}
        label_idx = idx[:, :-1]  # next.* of frame t+i-1 labels z_{t+i}
        task_index = self.task_index[t0]  # (B,)
        phrased = self._reworded(task_index.numpy(), rng)  # (B, L), before word dropout
        reworded = self.rephrase_prob > 0.0
        return Batch(
            images=images,
            state=self.state[idx],
            actions=self.action[idx[:, :-1]],
            cost=None if self.cost is None else self.cost[label_idx],
            success=None if self.success is None else self.success[label_idx],
            chunk=self.bc_action[chunk_idx],
            chunk_mask=chunk_mask,
            tokens=phrased if self.word_dropout == 0.0 else self._drop_words(phrased, rng),
            env_state=None if self.env_state is None else self.env_state[idx],
            anchor_tokens=self.task_tokens[task_index] if reworded else None,
            phrased_tokens=phrased if reworded else None,
        )

    def _reworded(self, task_index: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """``(B, L)`` instruction ids of windows with these task indices, some reworded (``rephrase_prob``)."""
        tokens = self.task_tokens[torch.from_numpy(task_index)]
        if self.rephrase is not None and self.rephrase_prob > 0.0:
            rows = np.flatnonzero(rng.random(len(task_index)) < self.rephrase_prob)
            if len(rows):
                reworded = self._rewordings(task_index[rows], rng)
                tokens[torch.from_numpy(rows)] = torch.from_numpy(reworded)
        return tokens

    def _rewordings(self, task_index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``(n, L)`` ids of one rewording of each of these dataset instructions (fresh or from the pool)."""
        if self.rephrase_pool == 0:
            return self._encode_new([self.rephrase(self.cache.tasks[i], rng) for i in task_index])
        rows = []
        for i in task_index.tolist():
            pool = self._pool.setdefault(i, [])
            if len(pool) < self.rephrase_pool:
                pool.append(self._encode_new([self.rephrase(self.cache.tasks[i], rng)])[0])
                rows.append(pool[-1])
            else:
                rows.append(pool[int(rng.integers(len(pool)))])
        return np.stack(rows)

    def _encode_new(self, texts: list[str]) -> np.ndarray:
        """``(n, L)`` ids of ``texts``, whose words and word pairs join :attr:`seen_words`."""
        rows = self.tokenizer.encode(texts)
        self._note_read(texts, rows)
        return rows

    def _note_read(self, texts: Sequence[str], rows: np.ndarray) -> None:
        """Add the pieces of ``texts`` that their ``(n, L)`` id ``rows`` hold to :attr:`seen_words`: the first
        ones, as many as a row has hashed ids (``max_len`` cuts the last word pairs of a long text)."""
        hashed = ((rows > 0) & (rows < self.tokenizer.vocab_size)).sum(axis=1)
        for text, count in zip(texts, hashed.tolist(), strict=True):
            self.seen_words.update(self.tokenizer.pieces(text)[:count])

    def _drop_words(self, tokens: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """``tokens`` ``(B, L)`` with each hashed id zeroed with probability ``word_dropout``, the kept
        ids moved left in their order (padding stays at the end, as the GRU encoder expects)."""
        ids = tokens.numpy()
        hashed = (ids > 0) & (ids < self.tokenizer.vocab_size)
        kept = np.where(hashed & (rng.random(ids.shape) < self.word_dropout), 0, ids)
        order = np.argsort(kept == 0, axis=1, kind="stable")
        return torch.from_numpy(np.take_along_axis(kept, order, axis=1))
