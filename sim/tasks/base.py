"""What every task provides: randomization, an instruction, success and a dense progress signal."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from sim.randomization import Layout
from sim.scene import SO101Scene


@dataclass(frozen=True)
class Evaluation:
    """A task's verdict on the current scene state.

    Attributes:
        distance: distance to success, metres, ``>= 0`` and ``0`` exactly when ``success``.
        success: whether the task is achieved now.
        reward_terms: named, already weighted reward terms (metres, ``<= 0``); their sum is the reward.
    """

    distance: float
    success: bool
    reward_terms: dict[str, float] = field(default_factory=dict)

    @property
    def reward(self) -> float:
        """The dense reward: the sum of the weighted terms."""
        return float(sum(self.reward_terms.values()))


class Task(ABC):
    """A language-conditioned tabletop task on an :class:`SO101Scene`.

    Subclasses set ``name``, ``episode_length`` (control steps at ``spec.fps``) and
    ``templates`` (instruction templates with ``{object}`` / ``{zone}`` fields), and implement
    :meth:`reset` (all per-episode randomization, via :func:`sim.randomization.randomize_scene`)
    and :meth:`evaluate`.
    """

    name: ClassVar[str]
    episode_length: ClassVar[int]
    templates: ClassVar[tuple[str, ...]]

    def __init__(self, scene: SO101Scene) -> None:
        self.scene = scene
        self.layout: Layout | None = None
        self.target: str = ""
        self.zone: str | None = None
        self.instruction: str = ""

    @abstractmethod
    def reset(self, rng: np.random.Generator, visual_jitter: float = 1.0) -> str:
        """Randomize the scene for a new episode, pick the target; returns the instruction.

        ``visual_jitter`` scales the light / camera / table jitter (0 disables it).
        """

    @abstractmethod
    def evaluate(self) -> Evaluation:
        """Success, distance and reward terms for the current physics state."""

    ENVIRONMENT_STATE_NAMES: ClassVar[tuple[str, ...]] = (
        "target.x",
        "target.y",
        "target.z",
        "goal.x",
        "goal.y",
        "goal.z",
    )
    """Names of :meth:`environment_state`'s entries (LeRobot's ``observation.environment_state``)."""

    def goal_position(self) -> np.ndarray:
        """Where the task wants the target to end up, world frame ``(3,)`` metres.

        Default: the target itself (reach: touch it); push returns the zone centre, pick the lift point.
        """
        return self.scene.object_position(self.target)

    def environment_state(self) -> np.ndarray:
        """Privileged simulator state the instruction refers to: ``(6,)`` float32 metres, world frame.

        ``[target object centre xyz, goal xyz]`` (names in ``ENVIRONMENT_STATE_NAMES``). Collection
        stores it as ``observation.environment_state`` so training can supervise an auxiliary head
        (``train.loss.env_state``) that makes the latent say *where the named object is*; no policy or
        planner reads it.
        """
        target = self.scene.object_position(self.target)
        return np.concatenate([target, self.goal_position()]).astype(np.float32)

    def _instruction(self, rng: np.random.Generator) -> str:
        assert self.layout is not None
        template = self.templates[int(rng.integers(len(self.templates)))]
        zone = self.layout.describe(self.zone) if self.zone else ""
        return template.format(object=self.layout.describe(self.target), zone=zone)

    @classmethod
    def charset(cls) -> set[str]:
        """Characters its instructions can contain (for the Text observation space)."""
        return set("".join(cls.templates).replace("{object}", "").replace("{zone}", ""))
