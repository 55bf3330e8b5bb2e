"""The pretrained subword table (``tokenizer.pretrained``): shipped in the wordllama wheel, read without any
download, appended to the hashed ids, averaged through a frozen table by the text encoder, trained with
word dropout, and checked against the checkpoint's model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic_data import make_synthetic_dataset, tiny_run_settings

from latent_vla.base.pretrained_text import TABLES, load_table, subword_ids
from latent_vla.base.text import Tokenizer
from latent_vla.checkpoint import _fit_problems
from latent_vla.model import ModelConfig, WorldModel

NAME = "wordllama-l2-256"


def _sentence(text: str) -> np.ndarray:
    rows = load_table(NAME)[subword_ids(NAME, text)].astype(np.float32)
    mean = rows.mean(0)
    return mean / np.linalg.norm(mean)


def test_the_shipped_table_puts_a_paraphrase_next_to_its_verb() -> None:
    table = load_table(NAME)
    assert table.shape == TABLES[NAME].size and table.dtype == np.float16 and not table.flags.writeable
    refs = {verb: _sentence(text) for verb, text in (("touch", "touch the red cube"), ("lift", "lift the red cube"),
                                                     ("push", "push the red cube into the green zone"))}  # fmt: skip
    for text, verb in (("make contact with the red cube", "touch"), ("elevate the red cube", "lift"),
                       ("shove the red cube to the green zone", "push")):  # fmt: skip
        scores = {v: float(_sentence(text) @ r) for v, r in refs.items()}
        assert max(scores, key=scores.get) == verb, (text, scores)
    assert subword_ids(NAME, "Touch THE cube") == subword_ids(NAME, "touch the cube")  # lower-cased


def test_the_tokenizer_appends_subword_ids_above_the_hashed_ones() -> None:
    plain = Tokenizer(num_buckets=512, max_len=40)
    tok = Tokenizer(num_buckets=512, max_len=40, pretrained=NAME)
    ids = tok.encode("kindly make contact with the flibbertigibbet")[0]
    hashed, sub = ids[(ids > 0) & (ids < 513)], ids[ids >= 513]
    assert hashed.tolist() == plain.token_ids("kindly make contact with the flibbertigibbet")
    assert (sub - 513).tolist() == subword_ids(NAME, "kindly make contact with the flibbertigibbet")
    assert ids[: len(hashed)].tolist() == hashed.tolist()  # hashed first, then the subwords, then padding
    short = Tokenizer(num_buckets=512, max_len=8, pretrained=NAME).encode(
        "kindly make contact with the flibbertigibbet"
    )
    assert (short[0] >= 513).sum() == 4 and (short[0] > 0).all()  # subwords get at most half of max_len
    known = tok.with_known_words(tok.pieces("touch the red cube"))
    assert "red cube" in known.known_words and len(known.known_words) == 7  # 4 words, 3 pairs: no subwords
    ids = known.encode("make contact with the red cube")[0]
    assert (ids[ids >= 513] - 513).tolist() == subword_ids(NAME, "make contact with the red cube")  # kept
    assert Tokenizer.from_dict(known.to_dict()) == known
    with pytest.raises(ValueError, match="unknown pretrained text table 'glove'"):
        Tokenizer(pretrained="glove")


def test_a_table_whose_package_is_missing_is_refused_in_one_line(monkeypatch) -> None:
    from dataclasses import replace

    import latent_vla.base.pretrained_text as pretrained_text

    gone = replace(TABLES[NAME], package="no_such_package_here", requirement="no_such_package_here==1.0")
    monkeypatch.setitem(pretrained_text.TABLES, "gone", gone)
    with pytest.raises(
        ValueError, match="needs the package no_such_package_here: pip install no_such_package_here==1.0"
    ):
        Tokenizer(pretrained="gone")


def _model(pretrained: str | None, vocab: int) -> WorldModel:
    torch.manual_seed(0)
    return WorldModel(ModelConfig(camera_names=("front",), state_dim=6, action_dim=6, image_size=(16, 16),
                                  channels=(8, 16), vocab_size=vocab, pretrained_text=pretrained))  # fmt: skip


def test_the_text_encoder_reads_an_unknown_verb_through_the_frozen_table() -> None:
    texts = ("make contact with the red cube", "elevate the red cube")
    tok = Tokenizer(num_buckets=16384, max_len=40, pretrained=NAME)
    known = tok.with_known_words(tok.pieces("the red cube"))
    ids = [known.encode(t)[0] for t in texts]
    hashed = [i[(i > 0) & (i < tok.vocab_size)].tolist() for i in ids]
    assert hashed[0] == hashed[1] and len(hashed[0]) == 5
    model = _model(NAME, tok.vocab_size)
    assert "text.pretrained_table" not in model.state_dict()  # comes from its package, not from checkpoints
    assert not any(p is model.text.pretrained_table for p in model.parameters())
    a, b = (model.embed_task(torch.from_numpy(i[None])) for i in ids)
    assert not torch.allclose(a, b, atol=1e-3)  # equal hashed ids (only "the red cube" is known), other verbs
    (a - b).square().sum().backward()
    assert model.text.pretrained_table.grad is None and model.text.pretrained_proj.weight.grad.abs().sum() > 0
    bag = Tokenizer(num_buckets=16384, max_len=40).with_known_words(known.known_words)
    without = _model(None, bag.vocab_size)
    a, b = (without.embed_task(torch.from_numpy(bag.encode(t))) for t in texts)
    torch.testing.assert_close(a, b)  # the bag alone cannot tell them apart


def test_a_checkpoint_whose_tokenizer_and_model_disagree_on_the_table_is_refused() -> None:
    from latent_vla.base.normalize import Normalizer
    from latent_vla.base.robot_spec import SO101

    rng = np.random.default_rng(0)
    norm = Normalizer.from_arrays(rng.uniform(-1, 1, (50, 6)), rng.uniform(-1, 1, (50, 6)), (16, 16), ("front",))
    cfg = _model(NAME, 513).config
    assert _fit_problems(cfg, norm, Tokenizer(num_buckets=512, pretrained=NAME), SO101) == []
    assert "pretrained None != model.json's 'wordllama-l2-256'" in _fit_problems(cfg, norm, Tokenizer(num_buckets=512),
                                                                                 SO101)[0]  # fmt: skip
    assert "subword ids start at 257" in _fit_problems(cfg, norm, Tokenizer(num_buckets=256, pretrained=NAME),
                                                         SO101)[0]  # fmt: skip


def test_word_dropout_leaves_out_hashed_ids_and_keeps_the_subwords(tmp_path) -> None:
    from latent_vla.data import WindowSampler, load_frames

    data = make_synthetic_dataset(tmp_path / "d", episodes=2, length=12)
    cache = load_frames(data, (32, 32), progress=False)
    tok = Tokenizer(num_buckets=512, max_len=40, pretrained=NAME)
    full = WindowSampler(cache, cache.normalizer((32, 32)), tok, 2, 4).sample(64, np.random.default_rng(0)).tokens
    dropped = WindowSampler(cache, cache.normalizer((32, 32)), tok, 2, 4, word_dropout=0.5)
    tokens = dropped.sample(64, np.random.default_rng(0)).tokens
    for a, b in zip(full.numpy(), tokens.numpy(), strict=True):
        assert sorted(b[b >= 513]) == sorted(a[a >= 513])  # every subword kept
        assert set(b[(b > 0) & (b < 513)]) <= set(a[(a > 0) & (a < 513)])
        assert (b[: (b > 0).sum()] > 0).all()  # kept ids packed to the left
    hashed = lambda t: int(((t > 0) & (t < 513)).sum())  # noqa: E731
    assert 0.35 < hashed(tokens) / hashed(full) < 0.65
    with pytest.raises(ValueError, match="word_dropout"):
        WindowSampler(cache, cache.normalizer((32, 32)), tok, 2, 4, word_dropout=1.0)


@pytest.mark.parametrize("name", [NAME, "minilm-l6"])
def test_a_run_with_the_table_trains_saves_and_loads(tmp_path, name: str) -> None:
    from latent_vla.checkpoint import load_checkpoint
    from latent_vla.train import train

    data = make_synthetic_dataset(tmp_path / "d", episodes=3, length=12)
    settings = tiny_run_settings(data, tmp_path / "run", steps=6, word_dropout=0.3, average_tau=0.5)
    settings.tokenizer = {**settings.tokenizer, "pretrained": name, "max_len": 40}
    result = train(settings)
    ck = load_checkpoint(result.run_dir)
    assert ck.model.config.pretrained_text == name and ck.tokenizer.pretrained == name
    assert ck.tokenizer.known_ids is None and "thingamajig" not in ck.tokenizer.known_words  # words, not ids
    task = ck.embed_instruction(["could you elevate the crimson thingamajig"])
    assert task.shape == (1, ck.model.task_dim) and bool(task.isfinite().all())
