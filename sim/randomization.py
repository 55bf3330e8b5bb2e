"""Per-episode randomization of the tabletop scene, all in one place.

Every task's ``reset`` calls :func:`randomize_scene` with its own layout constraints; nothing else
in ``sim/`` draws random numbers (the experts' action noise excepted). All draws come from the
``numpy.random.Generator`` handed in (the env's ``np_random``), so a seed fixes an episode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sim.scene import OBJECT_NAMES, ZONE_NAMES, SO101Scene

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.1),
    "green": (0.15, 0.7, 0.2),
    "blue": (0.12, 0.3, 0.9),
    "yellow": (0.95, 0.85, 0.1),
    "purple": (0.55, 0.2, 0.75),
    "orange": (1.0, 0.5, 0.05),
    "pink": (1.0, 0.5, 0.75),
    "cyan": (0.1, 0.8, 0.85),
}
"""Colour words used in instructions and their RGB (0..1)."""

SHAPES: dict[str, str] = {name: name.split("_")[0] for name in OBJECT_NAMES}
"""Object name -> shape word used in instructions (``cube``, ``cylinder``)."""

ARM_REACH = (0.12, 0.23)
"""Radii (metres from the base axis) where the gripper can reach the table pointing down."""

ARM_AZIMUTH = np.radians(55.0)
"""Objects are placed within +-ARM_AZIMUTH (radians) of the forward axis."""


@dataclass
class Layout:
    """One episode's scene: object and zone positions (metres, table plane) and colour words."""

    object_xy: dict[str, np.ndarray] = field(default_factory=dict)
    object_yaw: dict[str, float] = field(default_factory=dict)
    object_color: dict[str, str] = field(default_factory=dict)
    zone_xy: dict[str, np.ndarray] = field(default_factory=dict)
    zone_color: dict[str, str] = field(default_factory=dict)
    parked: list[str] = field(default_factory=list)  # objects off the table this episode

    def describe(self, name: str) -> str:
        """Instruction phrase for an object or zone, e.g. ``"red cube"`` or ``"green zone"``."""
        if name in self.object_color:
            return f"{self.object_color[name]} {SHAPES[name]}"
        return f"{self.zone_color[name]} zone"


def sample_workspace_point(rng: np.random.Generator, radius: tuple[float, float] = ARM_REACH) -> np.ndarray:
    """A uniformly random table point ``(2,)`` in the reachable annulus sector, metres."""
    r = np.sqrt(rng.uniform(radius[0] ** 2, radius[1] ** 2))
    a = rng.uniform(-ARM_AZIMUTH, ARM_AZIMUTH)
    return np.array([r * np.cos(a), r * np.sin(a)])


def in_workspace(xy: np.ndarray, radius: tuple[float, float] = ARM_REACH, margin_deg: float = 10.0) -> bool:
    """Whether a table point lies in the reachable sector (plus ``margin_deg`` of azimuth)."""
    r = float(np.hypot(*xy))
    a = abs(float(np.arctan2(xy[1], xy[0])))
    return radius[0] <= r <= radius[1] and a <= ARM_AZIMUTH + np.radians(margin_deg)


def sample_layout(
    rng: np.random.Generator,
    required: Sequence[str] = (),
    min_distractors: int = 1,
    min_separation: float = 0.07,
    constraint: Callable[[Layout], bool] | None = None,
    max_tries: int = 1000,
) -> Layout:
    """Draw colours and non-overlapping table positions for objects and both zones.

    The ``required`` objects (the task's target) are always on the table, plus a uniformly
    random number (``min_distractors`` .. all the others) of distractor objects; the rest are
    parked off the table (``Layout.parked``).

    Args:
        rng: the random generator.
        required: objects that must be on the table.
        min_distractors: fewest distractor objects on the table.
        min_separation: minimum centre distance between any two objects/zones, metres.
        constraint: extra task condition on the layout (e.g. the cube not too far from its zone).
        max_tries: rejection-sampling budget.

    Raises:
        ValueError: on an unknown required object.
        RuntimeError: when no layout satisfies the constraints within ``max_tries``.
    """
    unknown = [n for n in required if n not in OBJECT_NAMES]
    if unknown:
        raise ValueError(f"unknown objects {unknown}; valid: {list(OBJECT_NAMES)}")
    others = [n for n in OBJECT_NAMES if n not in required]
    for _ in range(max_tries):
        count = int(rng.integers(min(min_distractors, len(others)), len(others) + 1))
        chosen = [others[i] for i in sorted(rng.choice(len(others), size=count, replace=False))]
        names: Sequence[str] = (*required, *chosen, *ZONE_NAMES)
        colors = rng.permutation(list(COLORS))[: len(names)]
        layout = Layout(parked=[n for n in OBJECT_NAMES if n not in names])
        placed: list[np.ndarray] = []
        ok = True
        for name, color in zip(names, colors, strict=True):
            for _ in range(50):
                xy = sample_workspace_point(rng)
                if all(np.linalg.norm(xy - p) >= min_separation for p in placed):
                    break
            else:
                ok = False
                break
            placed.append(xy)
            if name in OBJECT_NAMES:
                layout.object_xy[name] = xy
                layout.object_yaw[name] = float(rng.uniform(-np.pi / 4, np.pi / 4))
                layout.object_color[name] = str(color)
            else:
                layout.zone_xy[name] = xy
                layout.zone_color[name] = str(color)
        if ok and (constraint is None or constraint(layout)):
            return layout
    raise RuntimeError(f"no scene layout satisfied the task constraints in {max_tries} tries")


def apply_layout(scene: SO101Scene, layout: Layout) -> None:
    """Write a layout's poses and colours into the scene (then call ``scene.forward()``)."""
    m = scene.model
    for name, xy in layout.object_xy.items():
        scene.set_object_pose(name, xy, layout.object_yaw.get(name, 0.0))
        m.geom_rgba[scene.object_geom[name], :3] = COLORS[layout.object_color[name]]
    for slot, name in enumerate(layout.parked):
        scene.park_object(name, slot)
    for name, xy in layout.zone_xy.items():
        scene.set_zone_position(name, xy)
        m.geom_rgba[scene.zone_geom[name], :3] = COLORS[layout.zone_color[name]]


def jitter_visuals(scene: SO101Scene, rng: np.random.Generator, amount: float = 1.0) -> None:
    """Small light, camera and table-colour jitter around the XML defaults.

    ``amount`` scales every jitter (0 disables it): camera position +-1 cm and rotation about
    +-2 degrees, light position +-10 cm and intensity x0.8..1.2, table tint +-5 %.
    """
    m = scene.model
    m.cam_pos[:] = scene.default_cam_pos + amount * rng.uniform(-0.01, 0.01, size=m.cam_pos.shape)
    quat = scene.default_cam_quat + amount * rng.uniform(-0.018, 0.018, size=m.cam_quat.shape)
    m.cam_quat[:] = quat / np.linalg.norm(quat, axis=1, keepdims=True)
    m.light_pos[:] = scene.default_light_pos + amount * rng.uniform(-0.1, 0.1, size=m.light_pos.shape)
    scale = 1.0 + amount * rng.uniform(-0.2, 0.2, size=(m.nlight, 1))
    m.light_diffuse[:] = np.clip(scene.default_light_diffuse * scale, 0.0, 1.0)
    mat = m.geom_matid[scene.table_geom]
    tint = 1.0 + amount * rng.uniform(-0.05, 0.05, size=3)
    m.mat_rgba[mat, :3] = np.clip(scene.default_mat_rgba[mat, :3] * tint, 0.0, 1.0)


def randomize_scene(
    scene: SO101Scene,
    rng: np.random.Generator,
    required: Sequence[str] = (),
    constraint: Callable[[Layout], bool] | None = None,
    visual_jitter: float = 1.0,
) -> Layout:
    """Sample a layout (``required`` objects on the table, under ``constraint``), apply it and
    jitter lights/cameras; returns the layout."""
    layout = sample_layout(rng, required=required, constraint=constraint)
    apply_layout(scene, layout)
    jitter_visuals(scene, rng, visual_jitter)
    scene.forward()
    return layout
