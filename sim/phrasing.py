"""A phrase bank that rewords the tasks' instructions, so a model keys on verb, object, colour and zone.

The tasks build instructions from four fixed templates each (``sim/tasks/*.py``), e.g. ``"push the red
cube into the green zone"``. A model trained on those alone can key on the template rather than on
what the words say. :func:`rephrase_instruction` parses an instruction back into its parts (the task
its template belongs to, the object's colour and shape, the zone's colour) and says the same thing
another way: verb synonyms, the object or the zone named first, articles dropped or changed, the
colour after the shape (``"the cube that is red"``) or without it (``"the red one"``: colours are
unique in a layout), politeness (``"please"``, ``"could you"``) and manner words (``"slowly"``) around it.
Verbs of contact (``"hit"``, ``"knock"``, ``"tap"``) appear in reach's frames and, with a zone, in push's,
so a model learns that the named zone, not the verb, makes an instruction a push.

Training draws from it (``train.rephrase``: the probability that a sampled window's instruction is
reworded); evaluation can test phrasings of its own (``latent-vla eval instruction_templates=[...]``).
Instructions that match no task template (a user's own recordings) are left as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sim.randomization import SHAPES
from sim.tasks import TASKS

VERBS: dict[str, tuple[str, ...]] = {
    "reach": (
        "touch {o}", "reach {o}", "reach for {o}", "go to {o}", "move to {o}", "move the gripper to {o}",
        "point at {o}", "tap {o}", "put the gripper on {o}", "bring the gripper to {o}", "go and touch {o}",
        "head over to {o}", "poke {o}", "move your hand to {o}", "approach {o}", "get to {o}", "go touch {o}",
        "press on {o}", "place the gripper on {o}", "send the gripper to {o}", "find {o} and touch it",
        "move over to {o}", "position the gripper at {o}", "bring your hand to {o}",
        # verbs of contact that push uses too (with a zone there): no zone named, so the arm only touches
        "hit {o}", "knock on {o}", "nudge {o}", "tap on {o}", "press against {o}", "brush against {o}",
        "go up against {o}", "put your fingers on {o}", "move until you touch {o}", "make the gripper touch {o}",
        "reach out to {o}", "extend the arm to {o}", "move the arm to {o}", "aim for {o}", "travel to {o}",
    ),
    "push": (
        "push {o} into {z}", "push {o} to {z}", "slide {o} into {z}", "move {o} onto {z}", "shove {o} into {z}",
        "nudge {o} over to {z}", "push {o} over to {z}", "slide {o} onto {z}", "move {o} into {z}",
        "get {o} into {z}", "push {o} until it is in {z}", "slide {o} across to {z}", "drag {o} into {z}",
        "bring {o} to {z}", "put {o} in {z}", "deliver {o} to {z}", "move {o} over to {z}", "relocate {o} to {z}",
        # reach's verbs of contact, here with a zone: the zone, not the verb, says "push"
        "hit {o} into {z}", "knock {o} into {z}", "tap {o} over to {z}", "poke {o} into {z}",
        "press {o} over to {z}", "sweep {o} into {z}", "steer {o} into {z}", "take {o} to {z}", "carry {o} to {z}",
        "place {o} in {z}", "set {o} down in {z}", "send {o} over to {z}",
    ),
    "pick": (
        "pick up {o}", "lift {o}", "grasp {o} and lift it", "pick {o} up off the table", "grab {o} and raise it",
        "raise {o}", "take {o} off the table", "lift up {o}", "pick {o} up", "grab {o} and lift it up",
        "hold {o} up in the air", "pick {o} up from the table", "pick {o}", "lift {o} up", "hoist {o}",
        "take {o} and lift it", "raise {o} off the table", "get {o} off the table", "lift {o} into the air",
        "grip {o} and lift it", "snatch {o} up", "hold {o} above the table",
        "lift {o} clear of the table", "carry {o} up", "clutch {o} and raise it", "pick {o} off the table and hold it",
    ),
}  # fmt: skip
"""Per task: verb frames with the object (``{o}``) and zone (``{z}``) phrases as slots."""

REORDERED: dict[str, tuple[str, ...]] = {
    "reach": ("{o}: touch it", "{o}, go to it", "{o} is the one to touch", "your target is {o}, reach it",
              "{o} is your target", "see {o}? touch it"),
    "push": ("{o} goes into {z}", "into {z}, push {o}", "{z} is where {o} should end up, push it there",
             "{o}: push it into {z}"),
    "pick": ("{o}, pick it up", "{o} should be lifted", "lift it: {o}", "{o}: grab it and lift it"),
}  # fmt: skip
"""Per task: frames that name the object (or the zone) before the verb."""

OBJECT_PHRASES = ("the {c} {s}", "the {c} {s}", "the {s} that is {c}", "the {c} one", "that {c} {s}", "{c} {s}",
                  "the {c} colored {s}", "a {c} {s}", "the {s} which is {c}")  # fmt: skip
"""Ways to name an object of colour ``{c}`` and shape ``{s}`` (the plain form twice: the commonest)."""

SHAPE_WORDS: dict[str, tuple[str, ...]] = {"cube": ("cube", "cube", "block", "box"), "cylinder": ("cylinder", "can")}
"""Synonyms of each shape word of :data:`sim.randomization.SHAPES`."""

ZONE_PHRASES = ("the {c} zone", "the {c} zone", "the {c} area", "the {c} region", "the {c} target",
                "the zone that is {c}", "the {c} spot", "{c} zone", "the {c} circle", "the {c} patch")  # fmt: skip
"""Ways to name the zone of colour ``{c}``."""

PREFIXES = ("", "", "", "please ", "could you ", "can you ", "would you ", "could you please ", "i want you to ",
            "i'd like you to ", "now ", "robot, ", "go ahead and ", "i need you to ", "let's ", "you should ",
            "try to ", "please, ", "carefully ", "slowly ", "quickly ")  # fmt: skip
SUFFIXES = ("", "", "", " please", " for me", " now", ", thanks", " thank you", ", okay", " if you can",
            " right now", " when you are ready", " carefully", " slowly",
            " quickly", " smoothly")  # fmt: skip
"""Politeness around the frame (``""`` weighted so most phrasings keep one end bare)."""

_SHAPE_RE = "|".join(sorted(set(SHAPES.values())))


@dataclass(frozen=True)
class InstructionParts:
    """What an instruction says, whatever its wording.

    Attributes:
        task: the task whose template it matched (``reach``, ``push``, ``pick``).
        color: colour word of the named object.
        shape: shape word of the named object (a value of :data:`sim.randomization.SHAPES`).
        zone: colour word of the named zone, or None (tasks without a zone).
    """

    task: str
    color: str
    shape: str
    zone: str | None = None


def _template_regex(template: str) -> re.Pattern[str]:
    """A regex of one task template: ``{object}`` -> colour + shape, ``{zone}`` -> colour + ``zone``."""
    parts = re.split(r"(\{object\}|\{zone\})", template)
    slot = {"{object}": rf"(?P<color>[a-z]+) (?P<shape>{_SHAPE_RE})", "{zone}": r"(?P<zone>[a-z]+) zone"}
    return re.compile("".join(slot.get(p, re.escape(p)) for p in parts))


_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, _template_regex(t)) for name, task in TASKS.items() for t in task.templates
)


@lru_cache(maxsize=4096)
def parse_instruction(text: str) -> InstructionParts | None:
    """The parts of an instruction built from a task template, or None when it matches none.

    Case, surrounding spaces and a final ``.``/``!``/``?`` are ignored.
    """
    clean = " ".join(text.lower().split()).rstrip(".!?")
    for task, pattern in _PATTERNS:
        m = pattern.fullmatch(clean)
        if m:
            return InstructionParts(task, m["color"], m["shape"], m.groupdict().get("zone"))
    return None


def _pick(options: tuple[str, ...], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def rephrase(parts: InstructionParts, rng: np.random.Generator) -> str:
    """One random wording of ``parts`` from the phrase bank (lower case, single spaces).

    Every wording names the object's colour, and the zone's colour when there is a zone.
    """
    verbs, reordered = VERBS[parts.task], REORDERED[parts.task]
    i = int(rng.integers(len(verbs) + len(reordered)))
    frame = verbs[i] if i < len(verbs) else reordered[i - len(verbs)]
    shape = _pick(SHAPE_WORDS.get(parts.shape, (parts.shape,)), rng)
    obj = _pick(OBJECT_PHRASES, rng).format(c=parts.color, s=shape)
    zone = _pick(ZONE_PHRASES, rng).format(c=parts.zone) if parts.zone else ""
    prefix = _pick(PREFIXES, rng) if i < len(verbs) else ""  # "could you" + "the red cube: touch it" reads wrong
    text = prefix + frame.format(o=obj, z=zone) + _pick(SUFFIXES, rng)
    return " ".join(text.split())


def rephrase_instruction(text: str, rng: np.random.Generator) -> str:
    """``text`` reworded by :func:`rephrase`; unchanged when it matches no task template.

    The signature training expects of a rephraser (``latent_vla.train.train(rephraser=...)``).
    """
    parts = parse_instruction(text)
    return text if parts is None else rephrase(parts, rng)
