"""Instructions in the user's words: the phrase bank, a user's templates in the env, unseen words."""

from __future__ import annotations

import numpy as np
import pytest

import sim
from latent_vla.base.text import Tokenizer
from sim.phrasing import InstructionParts, parse_instruction, rephrase, rephrase_instruction
from sim.tasks import TASKS

HELD_OUT = ("kindly make contact with the {object}", "your job: find the {object} and rest the jaws on it")
"""Phrasings of our own for reach, in no template and no phrase bank (the issue's held-out set differs)."""


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_template_parses_back_into_its_parts(task: str) -> None:
    for template in TASKS[task].templates:
        text = template.format(object="purple cylinder" if task == "reach" else "red cube", zone="cyan zone")
        parts = parse_instruction(text.capitalize() + ".")
        shape = "cylinder" if task == "reach" else "cube"
        assert parts == InstructionParts(task, "purple" if task == "reach" else "red", shape,
                                         "cyan" if "{zone}" in template else None), text  # fmt: skip
    assert parse_instruction("reach the red target") is None  # not a known shape: a user's own wording
    assert parse_instruction("dance with the red cube") is None


def test_rephrasings_keep_verb_object_colour_and_zone_and_vary() -> None:
    rng = np.random.default_rng(0)
    push = InstructionParts("push", "red", "cube", "green")
    texts = [rephrase(push, rng) for _ in range(300)]
    assert all("red" in t and "green" in t and "{" not in t and "  " not in t for t in texts)
    assert len(set(texts)) > 150  # synonyms, orders, articles, politeness
    assert any(t.startswith(("please", "could you", "can you")) for t in texts)
    assert any(t.index("green") < t.index("red") for t in texts)  # the zone named first
    assert any("that is red" in t or "which is red" in t for t in texts)  # the colour after the shape
    words = {w for t in texts for w in t.split()}
    assert {"push", "slide", "shove", "nudge"} <= words
    reach = [rephrase(InstructionParts("reach", "blue", "cylinder"), rng) for _ in range(200)]
    assert all("blue" in t and "zone" not in t for t in reach)
    assert {"touch", "tap", "poke"} <= {w for t in reach for w in t.split()}
    again = np.random.default_rng(0)
    assert [rephrase(push, again) for _ in range(300)] == texts  # seeded
    assert rephrase_instruction("wave at the camera", rng) == "wave at the camera"  # unknown: unchanged


def test_unseen_words_never_raise_in_the_tokenizer() -> None:
    tok = Tokenizer(num_buckets=64, max_len=8)
    odd = ["flibbertigibbet the zyzzyva", "naïve café ☃ 日本語", "", "   ", "!!!???", "a" * 500,
           "could you PLEASE tap the Red Cube?"]  # fmt: skip
    ids = tok.encode(odd)
    assert ids.shape == (len(odd), 8) and ids.min() >= 0 and ids.max() < tok.vocab_size
    assert not ids[2].any() and not ids[3].any() and not ids[4].any()  # nothing to encode: all padding
    assert (tok.encode("could you please tap the red cube") == ids[6]).all()  # case and punctuation ignored
    rng = np.random.default_rng(1)
    texts = [rephrase_instruction("push the red cube into the green zone", rng) for _ in range(100)]
    assert Tokenizer().encode(texts).shape == (100, 24)


def test_env_uses_the_templates_it_is_given_and_reports_object_gaps() -> None:
    env = sim.make_env("reach", instruction_templates=list(HELD_OUT), episode_length=3)
    try:
        seen = set()
        for seed in range(6):
            obs, info = env.reset(seed=seed)
            seen.add(obs["instruction"].split(" the ")[0])
            task = env.unwrapped.task
            assert task.layout.describe(task.target) in obs["instruction"]
            gaps = info["object_gaps"]
            assert info["target"] == task.target and task.target in gaps and len(gaps) >= 2  # >= 1 distractor
            assert set(gaps) == set(task.layout.object_xy) and all(g >= 0 for g in gaps.values())
            assert gaps[task.target] == pytest.approx(info["task_distance"])  # reach: the same distance
        assert seen == {"kindly make contact with", "your job: find"}
        assert env.unwrapped.task.instruction_templates == HELD_OUT
    finally:
        env.close()
    default = sim.make_env("push")
    try:
        assert default.unwrapped.task.instruction_templates == TASKS["push"].templates
    finally:
        default.close()


@pytest.mark.parametrize(
    ("task", "templates", "words"),
    [
        ("reach", ["go to the {object}", "put it in the {zone}"], ["unknown field {zone}", "fills {object}"]),
        ("push", ["push the {thing} to the {zone}"], ["unknown field {thing}", "{object}, {zone}"]),
        ("reach", ["go to the {}"], ["unknown field {}"]),
        ("reach", ["go to the {object"], ["not a valid template"]),
        ("reach", [], ["non-empty list"]),
        ("reach", ["touch the {object} → now"], ["uses '→'"]),
    ],
)
def test_bad_templates_are_refused_in_one_line(task: str, templates: list[str], words: list[str]) -> None:
    with pytest.raises(ValueError) as exc:
        TASKS[task].check_templates(templates)
    assert "\n" not in str(exc.value) and all(w in str(exc.value) for w in words), str(exc.value)
    assert TASKS["push"].template_fields() == ("object", "zone") and TASKS["pick"].template_fields() == ("object",)
