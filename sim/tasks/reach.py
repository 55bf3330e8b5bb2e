"""Reach: touch the named object (any of the cubes or the cylinder) with the gripper tip."""

from __future__ import annotations

import numpy as np

from sim.randomization import randomize_scene
from sim.scene import OBJECT_NAMES
from sim.tasks.base import Evaluation, Task


class ReachTask(Task):
    """Bring the gripper tip within ``touch_margin`` of the named object's surface.

    Success: ``|tip - centre| <= half_height + touch_margin`` (metres). Reward: minus the
    remaining distance (term ``tip_to_object``). 60 control steps (2 s at 30 Hz).
    """

    name = "reach"
    episode_length = 60
    templates = (
        "touch the {object}",
        "reach the {object}",
        "move the gripper to the {object}",
        "point at the {object}",
    )

    def reset(self, rng: np.random.Generator, visual_jitter: float = 1.0) -> str:
        """New layout; the target is any one of the four objects."""
        self.target = OBJECT_NAMES[int(rng.integers(len(OBJECT_NAMES)))]
        self.layout = randomize_scene(self.scene, rng, required=(self.target,), visual_jitter=visual_jitter)
        self.zone = None
        self.instruction = self._instruction(rng)
        return self.instruction

    def success_radius(self) -> float:
        """Tip-to-centre distance counted as touching, metres."""
        return self.touch_radius(self.target)

    def evaluate(self) -> Evaluation:
        """Distance = max(0, |tip - object centre| - success radius), metres."""
        gap = float(np.linalg.norm(self.scene.tip_position() - self.scene.object_position(self.target)))
        distance = max(0.0, gap - self.success_radius())
        return Evaluation(distance, distance == 0.0, {"tip_to_object": -distance})
