"""What every task provides: randomization, an instruction, success and a dense progress signal."""

from __future__ import annotations

import string
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from sim.randomization import Layout
from sim.scene import SO101Scene

INSTRUCTION_CHARSET = string.ascii_letters + string.digits + " ,.'-?!:;"
"""Characters instructions may contain (the env's ``instruction`` Text space); the tokenizer lower-cases
words and drops punctuation, so a user's own templates may use capitals and ``?!:;``."""


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

    Args:
        scene: the MuJoCo scene.
        templates: instruction templates that replace the task's own ``templates`` for this
            instance (e.g. a user's phrasings at evaluation); checked by :meth:`check_templates`.
    """

    name: ClassVar[str]
    episode_length: ClassVar[int]
    templates: ClassVar[tuple[str, ...]]
    touch_margin: ClassVar[float] = 0.015
    """Metres beyond an object's half height within which the tip counts as touching it."""

    def __init__(self, scene: SO101Scene, templates: Sequence[str] | None = None) -> None:
        self.scene = scene
        self.layout: Layout | None = None
        self.target: str = ""
        self.zone: str | None = None
        self.instruction: str = ""
        self.instruction_templates: tuple[str, ...] = (
            self.templates if templates is None else self.check_templates(templates)
        )

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

    PROGRESS_NAMES: ClassVar[tuple[str, ...]] = ("gripper_to_object", "object_to_goal", "grasped")
    """Names of :meth:`progress`'s entries (collection's ``next.progress``)."""

    gripper_site: ClassVar[str] = "tip"
    """Scene site :meth:`progress` measures from: ``"tip"`` or ``"grasp"`` (between the jaws)."""

    def object_to_goal(self) -> float:
        """How far the named object still is from where the task wants it, metres (default: 0, reach)."""
        return 0.0

    def progress(self) -> np.ndarray:
        """Dense progress of the current state: ``(3,)`` float32 (names in ``PROGRESS_NAMES``).

        ``[gripper site to the named object's centre (metres), object_to_goal() (metres),
        1.0 when both jaws touch the object else 0.0]``. Collection records it as ``next.progress``
        (after each action, like ``next.reward``) so a cost head can learn a slope before the object
        moves; no policy or planner reads it.
        """
        site = self.scene.tip_position() if self.gripper_site == "tip" else self.scene.grasp_position()
        gap = float(np.linalg.norm(site - self.scene.object_position(self.target)))
        grasped = float(self.scene.grasping(self.target))
        return np.array([gap, self.object_to_goal(), grasped], dtype=np.float32)

    def touch_radius(self, name: str) -> float:
        """Tip-to-centre distance at which the tip touches object ``name``, metres."""
        return self.scene.object_half_height(name) + self.touch_margin

    def object_gaps(self) -> dict[str, float]:
        """Tip distance beyond touching, metres (``>= 0``, 0 = touching), for every object on the table.

        Keys are object names (the target among them); parked objects are left out. Evaluation reads
        it to tell whether the arm went to the named object or to a distractor.
        """
        assert self.layout is not None
        tip = self.scene.tip_position()
        return {
            n: max(0.0, float(np.linalg.norm(tip - self.scene.object_position(n))) - self.touch_radius(n))
            for n in self.layout.object_xy
        }

    def _instruction(self, rng: np.random.Generator) -> str:
        assert self.layout is not None
        templates = self.instruction_templates
        template = templates[int(rng.integers(len(templates)))]
        zone = self.layout.describe(self.zone) if self.zone else ""
        return template.format(object=self.layout.describe(self.target), zone=zone)

    @classmethod
    def template_fields(cls) -> tuple[str, ...]:
        """Fields its own templates use, in order of first use (``object``; push adds ``zone``)."""
        return tuple(dict.fromkeys(f for t in cls.templates for f in _fields(t)))

    @classmethod
    def check_templates(cls, templates: Sequence[str]) -> tuple[str, ...]:
        """Instruction templates for this task, checked: returns them as a tuple.

        Raises:
            ValueError: no template, a template that is not a string or not a valid format string,
                one with a field this task does not fill (one line naming it and the valid fields), or
                one with a character outside :data:`INSTRUCTION_CHARSET`.
        """
        if isinstance(templates, str) or not len(templates):
            raise ValueError(f"instruction templates must be a non-empty list of strings, got {templates!r}")
        valid = cls.template_fields()
        for t in templates:
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"instruction template {t!r} is not a non-empty string")
            try:
                used = _fields(t)
            except ValueError as exc:
                raise ValueError(f"instruction template {t!r} is not a valid template: {exc}") from None
            unknown = [f for f in used if f not in valid]
            if unknown:
                fields = ", ".join(f"{{{f}}}" for f in valid)
                raise ValueError(
                    f"instruction template {t!r} has an unknown field {{{unknown[0]}}}; task {cls.name} fills {fields}"
                )
            odd = sorted({c for c in _literal(t) if c not in INSTRUCTION_CHARSET})
            if odd:
                allowed = INSTRUCTION_CHARSET.lstrip(string.ascii_letters + string.digits)
                raise ValueError(
                    f"instruction template {t!r} uses {''.join(odd)!r}; allowed: letters, digits, {allowed!r}"
                )
        return tuple(templates)

    def charset(self) -> set[str]:
        """Characters its instructions can contain, fields excluded (for the Text observation space)."""
        return {c for t in self.instruction_templates for c in _literal(t)}


def _literal(template: str) -> str:
    """The text of a template without its fields."""
    return "".join(lit for lit, *_ in string.Formatter().parse(template))


def _fields(template: str) -> list[str]:
    """Field names of a ``str.format`` template (``""`` for a positional ``{}``); ValueError if malformed."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
