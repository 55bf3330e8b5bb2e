"""LeRobotDataset features of an arm: the one place that turns a RobotSpec into a dataset schema.

Simulated collection (``sim.collect``) and real-arm recording (``hardware/``) both build their
``LeRobotDataset.create(features=...)`` dict here, so a model trained on one reads the other
(docs/architecture.md, section 3). Keys follow LeRobot's conventions:

==========================  ===========  ==========  =============================================
key                         dtype        shape       meaning
==========================  ===========  ==========  =============================================
observation.images.<cam>    video/image  (H, W, 3)   uint8 RGB, one per camera of the spec
observation.state           float32      (J,)        measured joint positions, robot units
action                      float32      (J,)        absolute joint targets, robot units
next.reward                 float32      (1,)        reward after the action (task signals only)
next.success                bool         (1,)        task solved after the action (task signals)
next.done                   bool         (1,)        last frame of the episode (task signals)
observation.environment_    float32      (D,)        privileged simulator state (sim only, optional):
state                                                the named object's and the goal's xyz, metres
source                      int64        (1,)        where ``action`` came from: a ``SOURCES`` code
                                                     (data engine, optional)
expert.action               float32      (J,)        the scripted expert's action at this state, robot
                                                     units: the behaviour-cloning label (data engine)
expert.valid                bool         (1,)        ``expert.action`` holds a real label (data engine)
next.progress               float32      (P,)        dense progress after the action (sim only,
                                                     optional): ``Task.PROGRESS_NAMES``, metres, 0/1
==========================  ===========  ==========  =============================================

``action`` is always what was *executed* (sent to the arm), so dynamics learn true transitions;
``expert.action`` is what the expert would have done at the same state. The data-engine keys sit
outside LeRobot's ``observation.*`` / ``action*`` prefixes on purpose: LeRobot's
``dataset_to_policy_features`` turns every such key into a policy input or output, and a LeRobot
policy trained on these datasets (ACT in ``benchmarks/peer_baselines.py``) must see neither the
labels nor the simulator's privileged progress.

Robot units are degrees for the arm joints and percent (0..100) for the gripper; the names of the
state and action entries are ``"<joint>.pos"`` in motor order (``spec.action_keys``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from latent_vla.base.robot_spec import RobotSpec

IMAGE_KEY_PREFIX = "observation.images."
STATE_KEY = "observation.state"
ACTION_KEY = "action"
REWARD_KEY = "next.reward"
SUCCESS_KEY = "next.success"
DONE_KEY = "next.done"
ENV_STATE_KEY = "observation.environment_state"
SOURCE_KEY = "source"
EXPERT_ACTION_KEY = "expert.action"
EXPERT_VALID_KEY = "expert.valid"
PROGRESS_KEY = "next.progress"

SOURCES: dict[str, int] = {"expert": 0, "dart": 1, "explore": 2, "brain": 3, "random": 4}
"""The one table of ``source`` codes: who chose a frame's executed ``action``.

* ``expert`` (0): the scripted expert (``policy=expert``, and the expert segments of ``explore``);
  with ``noise > 0`` the executed action carries i.i.d. noise, ``expert.action`` stays clean;
* ``dart`` (1): the expert plus correlated (or Gaussian) noise; ``expert.action`` is the clean label;
* ``explore`` (2): a correlated random walk of joint targets branched off an expert state;
* ``brain`` (3): a trained brain (run directory or bundle, any planner) acting; DAgger labels;
* ``random`` (4): uniform random joint targets held half a second; no label.
"""


# LeRobot adds these to every dataset itself; they never belong in a `create(features=...)` dict.
_LEROBOT_DEFAULT_KEYS = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def image_key(camera: str) -> str:
    """Dataset key of a camera, e.g. ``"front"`` -> ``"observation.images.front"``."""
    return f"{IMAGE_KEY_PREFIX}{camera}"


def camera_sizes(
    spec: RobotSpec, image_hw: tuple[int, int] | Mapping[str, tuple[int, int]] | None = None
) -> dict[str, tuple[int, int]]:
    """Image size (height, width) in pixels of every camera of ``spec``, in camera order.

    Args:
        spec: the arm.
        image_hw: ``None`` for the sizes in the spec, one ``(H, W)`` for every camera, or a
            ``{camera: (H, W)}`` mapping (cameras it omits keep the spec's size).

    Raises:
        ValueError: on a non-positive size or a mapping naming a camera the spec lacks.
    """
    sizes = {c.name: (int(c.height), int(c.width)) for c in spec.cameras}
    if image_hw is None:
        pass
    elif isinstance(image_hw, Mapping):
        unknown = sorted(set(image_hw) - set(sizes))
        if unknown:
            raise ValueError(f"image sizes given for unknown cameras {unknown}; {spec.name} has {list(sizes)}")
        for name, hw in image_hw.items():
            sizes[name] = (int(hw[0]), int(hw[1]))
    else:
        hw = tuple(int(v) for v in image_hw)
        if len(hw) != 2:
            raise ValueError(f"image_hw must be (height, width), got {image_hw!r}")
        sizes = {name: hw for name in sizes}
    for name, (h, w) in sizes.items():
        if h <= 0 or w <= 0:
            raise ValueError(f"camera {name!r}: image size must be positive, got {h}x{w}")
    return sizes


def dataset_features(
    spec: RobotSpec,
    image_hw: tuple[int, int] | Mapping[str, tuple[int, int]] | None = None,
    use_videos: bool = True,
    task_signals: bool = True,
    environment_state: Sequence[str] | None = None,
    provenance: bool = False,
    progress: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """LeRobotDataset features for ``spec``: the ``features`` argument of ``LeRobotDataset.create``.

    Args:
        spec: the arm (joints, cameras).
        image_hw: camera image size(s) in pixels, see :func:`camera_sizes`; default: the spec's.
        use_videos: store cameras as ``"video"`` (MP4, small) rather than ``"image"`` (PNG).
        task_signals: include ``next.reward``, ``next.success`` and ``next.done`` (sim collection
            and evaluated real runs); ``False`` for plain teleoperated recordings.
        environment_state: names of an ``observation.environment_state`` vector (LeRobot's key for
            simulator state, e.g. ``sim.tasks.Task.ENVIRONMENT_STATE_NAMES``); None = no such feature.
        provenance: include ``source``, ``expert.action`` and ``expert.valid`` (the data engine).
        progress: names of a ``next.progress`` vector (``sim.tasks.Task.PROGRESS_NAMES``); None = none.

    Returns:
        ``{key: {"dtype", "shape", "names"}}`` in the order of the module table.
    """
    features: dict[str, dict[str, Any]] = {}
    for name, (h, w) in camera_sizes(spec, image_hw).items():
        features[image_key(name)] = {
            "dtype": "video" if use_videos else "image",
            "shape": (h, w, 3),
            "names": ["height", "width", "channels"],
        }
    joints = spec.action_keys
    features[STATE_KEY] = {"dtype": "float32", "shape": (len(joints),), "names": list(joints)}
    features[ACTION_KEY] = {"dtype": "float32", "shape": (len(joints),), "names": list(joints)}
    if task_signals:
        features[REWARD_KEY] = {"dtype": "float32", "shape": (1,), "names": None}
        features[SUCCESS_KEY] = {"dtype": "bool", "shape": (1,), "names": None}
        features[DONE_KEY] = {"dtype": "bool", "shape": (1,), "names": None}
    if environment_state is not None:
        names = [str(n) for n in environment_state]
        if not names:
            raise ValueError("environment_state needs at least one name")
        features[ENV_STATE_KEY] = {"dtype": "float32", "shape": (len(names),), "names": names}
    if provenance:
        features[SOURCE_KEY] = {"dtype": "int64", "shape": (1,), "names": None}
        features[EXPERT_ACTION_KEY] = {"dtype": "float32", "shape": (len(joints),), "names": list(joints)}
        features[EXPERT_VALID_KEY] = {"dtype": "bool", "shape": (1,), "names": None}
    if progress is not None:
        names = [str(n) for n in progress]
        if not names:
            raise ValueError("progress needs at least one name")
        features[PROGRESS_KEY] = {"dtype": "float32", "shape": (len(names),), "names": names}
    return features


def make_frame(
    features: Mapping[str, Mapping[str, Any]],
    images: Mapping[str, np.ndarray],
    state: np.ndarray,
    action: np.ndarray,
    task: str,
    reward: float | None = None,
    success: bool | None = None,
    done: bool | None = None,
    environment_state: np.ndarray | None = None,
    source: str | None = None,
    expert_action: np.ndarray | None = None,
    progress: np.ndarray | None = None,
) -> dict[str, Any]:
    """One ``LeRobotDataset.add_frame`` dict with the dtypes and shapes of ``features``.

    Args:
        features: as returned by :func:`dataset_features`.
        images: ``{camera: (H, W, 3) uint8}`` for every camera in ``features``.
        state: measured joint positions ``(J,)`` in robot units.
        action: commanded joint targets ``(J,)`` in robot units.
        task: the instruction text, stored as the frame's LeRobot ``task``.
        reward, success, done: task signals; required when ``features`` holds them.
        environment_state: ``(D,)`` privileged state; required when ``features`` holds it.
        source: a :data:`SOURCES` name; required when ``features`` holds ``source``.
        expert_action: the expert's label ``(J,)`` in robot units, or None when there is none
            (stored as zeros with ``expert.valid`` False).
        progress: ``(P,)`` ``next.progress``; required when ``features`` holds it.

    Raises:
        ValueError: naming the camera or signal that is missing or has the wrong shape, or an
            unknown source.
    """
    frame: dict[str, Any] = {"task": str(task)}
    for key, ft in features.items():
        if key.startswith(IMAGE_KEY_PREFIX):
            cam = key[len(IMAGE_KEY_PREFIX) :]
            if cam not in images:
                raise ValueError(f"no image for camera {cam!r}; got cameras {sorted(images)}")
            img = np.asarray(images[cam])
            if img.shape != tuple(ft["shape"]) or img.dtype != np.uint8:
                raise ValueError(f"camera {cam!r}: expected uint8 {tuple(ft['shape'])}, got {img.dtype} {img.shape}")
            frame[key] = img
    n = features[STATE_KEY]["shape"][0]
    for key, value in ((STATE_KEY, state), (ACTION_KEY, action)):
        arr = np.asarray(value, dtype=np.float32).reshape(-1)
        if arr.shape != (n,):
            raise ValueError(f"{key}: expected {n} joint values, got shape {np.shape(value)}")
        frame[key] = arr
    for key, value, dtype in (
        (REWARD_KEY, reward, np.float32),
        (SUCCESS_KEY, success, np.bool_),
        (DONE_KEY, done, np.bool_),
    ):
        if key in features:
            if value is None:
                raise ValueError(f"the dataset has {key!r}: pass it to make_frame")
            frame[key] = np.array([value], dtype=dtype)
    for key, value in ((ENV_STATE_KEY, environment_state), (PROGRESS_KEY, progress)):
        if key in features:
            frame[key] = _vector(features, key, value)
    if SOURCE_KEY in features:
        frame.update(_provenance(n, source, expert_action))
    return frame


def _vector(features: Mapping[str, Mapping[str, Any]], key: str, value: np.ndarray | None) -> np.ndarray:
    """``value`` as the float32 vector ``features[key]`` wants; ValueError when missing or misshapen."""
    if value is None:
        raise ValueError(f"the dataset has {key!r}: pass it to make_frame")
    arr = np.asarray(value, dtype=np.float32).reshape(-1)
    want = tuple(features[key]["shape"])
    if arr.shape != want:
        raise ValueError(f"{key}: expected shape {want}, got {arr.shape}")
    return arr


def _provenance(joints: int, source: str | None, expert_action: np.ndarray | None) -> dict[str, np.ndarray]:
    """The ``source`` / ``expert.action`` / ``expert.valid`` entries of a frame."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {list(SOURCES)}, got {source!r}")
    valid = expert_action is not None
    label = np.zeros(joints, np.float32) if expert_action is None else np.asarray(expert_action, np.float32).reshape(-1)
    if label.shape != (joints,):
        raise ValueError(f"{EXPERT_ACTION_KEY}: expected {joints} joint values, got shape {label.shape}")
    return {
        SOURCE_KEY: np.array([SOURCES[source]], dtype=np.int64),
        EXPERT_ACTION_KEY: label,
        EXPERT_VALID_KEY: np.array([valid], dtype=np.bool_),
    }


def _canonical(features: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple]:
    out = {}
    for key, ft in features.items():
        if key in _LEROBOT_DEFAULT_KEYS:
            continue
        names = ft.get("names")
        out[key] = (ft["dtype"], tuple(ft["shape"]), tuple(names) if isinstance(names, list | tuple) else names)
    return out


def features_mismatch(expected: Mapping[str, Mapping[str, Any]], found: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Human-readable differences between two feature dicts (empty when compatible).

    Compares keys, dtypes, shapes and names; ignores LeRobot's own index keys and the encoder
    ``info`` it stores with video features, so a dataset re-opened from disk compares equal to the
    dict it was created from.
    """
    a, b = _canonical(expected), _canonical(found)
    problems = [f"missing key {k!r}" for k in a if k not in b]
    problems += [f"unexpected key {k!r}" for k in b if k not in a]
    for key in a.keys() & b.keys():
        if a[key] != b[key]:
            problems.append(f"{key!r}: expected (dtype, shape, names) {a[key]}, found {b[key]}")
    return sorted(problems)
