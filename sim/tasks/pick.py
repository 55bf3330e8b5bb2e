"""Pick: grasp the named cube and lift it above a height."""

from __future__ import annotations

import numpy as np

from sim.randomization import randomize_scene
from sim.scene import OBJECT_NAMES
from sim.tasks.base import Evaluation, Task

CUBES = tuple(n for n in OBJECT_NAMES if n.startswith("cube"))


class PickTask(Task):
    """Lift a cube's centre above ``lift_height`` while it is held (grasp point within ``hold_radius``).

    Reward terms: ``lift`` (minus the height still to gain, metres) and ``grasp_to_object``
    (minus 0.5 x the grasp point's distance to the cube beyond ``hold_radius``). The distance to
    success is their (unweighted) sum and 0 on success. 150 steps (5 s at 30 Hz).
    """

    name = "pick"
    episode_length = 150
    templates = (
        "pick up the {object}",
        "lift the {object}",
        "grasp the {object} and lift it",
        "pick the {object} up off the table",
    )
    lift_height = 0.06  # metres, cube centre (it rests at 0.015)
    hold_radius = 0.04  # metres, grasp point to cube centre

    def reset(self, rng: np.random.Generator, visual_jitter: float = 1.0) -> str:
        """New layout; the target is one of the cubes."""
        self.target = CUBES[int(rng.integers(len(CUBES)))]
        self.zone = None
        self.layout = randomize_scene(self.scene, rng, required=(self.target,), visual_jitter=visual_jitter)
        self.instruction = self._instruction(rng)
        return self.instruction

    def goal_position(self) -> np.ndarray:
        """The cube's centre raised to ``lift_height``, world frame ``(3,)`` metres."""
        goal = self.scene.object_position(self.target)
        goal[2] = self.lift_height
        return goal

    gripper_site = "grasp"

    def object_to_goal(self) -> float:
        """Height the cube's centre still has to gain to reach ``lift_height``, metres (>= 0)."""
        return max(0.0, self.lift_height - float(self.scene.object_position(self.target)[2]))

    def evaluate(self) -> Evaluation:
        """Success when the held cube is above ``lift_height``; distance as in the class docstring."""
        cube = self.scene.object_position(self.target)
        lift_gap = self.object_to_goal()
        grasp_gap = max(0.0, float(np.linalg.norm(self.scene.grasp_position() - cube)) - self.hold_radius)
        success = lift_gap == 0.0 and grasp_gap == 0.0
        distance = 0.0 if success else lift_gap + grasp_gap
        return Evaluation(distance, success, {"lift": -lift_gap, "grasp_to_object": -0.5 * grasp_gap})
