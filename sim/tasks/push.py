"""Push: slide the named cube into the named goal zone on the table."""

from __future__ import annotations

import numpy as np

from sim.randomization import Layout, in_workspace, randomize_scene
from sim.scene import OBJECT_NAMES, ZONE_NAMES
from sim.tasks.base import Evaluation, Task

CUBES = tuple(n for n in OBJECT_NAMES if n.startswith("cube"))


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip(np.dot(p - a, ab) / max(float(np.dot(ab, ab)), 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


class PushTask(Task):
    """Push a cube until its centre lies within ``goal_radius`` of the zone centre (table plane).

    Layouts put the cube 7-15 cm from its zone, the zone at most 20 cm from the base axis, leave
    room behind the cube for the gripper (``approach`` metres, inside the reachable sector) and
    keep distractors off the path.
    Reward terms: ``object_to_zone`` (minus the remaining distance, metres) and ``tip_to_object``
    (minus 0.2 x the gripper's distance to the cube beyond contact). 150 steps (5 s at 30 Hz).
    """

    name = "push"
    episode_length = 150
    templates = (
        "push the {object} into the {zone}",
        "push the {object} to the {zone}",
        "slide the {object} into the {zone}",
        "move the {object} onto the {zone}",
    )
    goal_radius = 0.03  # metres: cube centre inside the 4.5 cm zone disc with margin
    approach = 0.05  # metres behind the cube the pusher starts
    path_clearance = 0.05  # metres between distractors and the push path

    def reset(self, rng: np.random.Generator, visual_jitter: float = 1.0) -> str:
        """New layout with a feasible push; target is one of the cubes, zone one of the zones."""
        self.target = CUBES[int(rng.integers(len(CUBES)))]
        self.zone = ZONE_NAMES[int(rng.integers(len(ZONE_NAMES)))]
        self.layout = randomize_scene(
            self.scene, rng, required=(self.target,), constraint=self._feasible, visual_jitter=visual_jitter
        )
        self.instruction = self._instruction(rng)
        return self.instruction

    def _feasible(self, layout: Layout) -> bool:
        cube = layout.object_xy[self.target]
        zone = layout.zone_xy[self.zone]
        d = float(np.linalg.norm(zone - cube))
        if not 0.07 <= d <= 0.15:
            return False
        if not in_workspace(zone, (0.12, 0.20)):  # the pusher must be able to get past the zone
            return False
        start = cube - (zone - cube) / d * self.approach
        if not in_workspace(start, (0.1, 0.23)):
            return False
        others = [xy for n, xy in layout.object_xy.items() if n != self.target]
        return all(_segment_distance(p, start, zone) >= self.path_clearance for p in others)

    def goal_position(self) -> np.ndarray:
        """The named zone's centre on the table, world frame ``(3,)`` metres."""
        assert self.zone is not None
        return self.scene.zone_position(self.zone)

    def zone_distance(self) -> float:
        """Cube centre to zone centre in the table plane, metres."""
        cube = self.scene.object_position(self.target)
        zone = self.scene.zone_position(self.zone)
        return float(np.linalg.norm(cube[:2] - zone[:2]))

    def object_to_goal(self) -> float:
        """The cube's table-plane distance to the zone centre, metres (:meth:`zone_distance`)."""
        return self.zone_distance()

    def evaluate(self) -> Evaluation:
        """Distance = max(0, cube-to-zone distance - goal_radius), metres; the cube must be on the table."""
        cube = self.scene.object_position(self.target)
        on_table = -0.005 < cube[2] < 0.03  # resting on the table top, not lifted or fallen
        distance = max(0.0, self.zone_distance() - self.goal_radius)
        success = distance == 0.0 and on_table
        if not on_table and distance == 0.0:
            distance = abs(float(cube[2]) - 0.015)
        tip_gap = max(0.0, float(np.linalg.norm(self.scene.tip_position() - cube)) - 0.03)
        return Evaluation(distance, success, {"object_to_zone": -distance, "tip_to_object": -0.2 * tip_gap})
