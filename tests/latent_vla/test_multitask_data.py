"""Several LeRobotDatasets as one training set: checks, merge, union statistics, reworded instructions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from synthetic_data import make_synthetic_dataset, tiny_run_settings

from latent_vla.base.errors import UserError
from latent_vla.base.text import Tokenizer
from latent_vla.data import (
    DatasetError,
    WindowSampler,
    check_datasets_match,
    dataset_paths,
    load_datasets,
    load_frames,
    split_episodes,
)

REACH = ("touch the red cube", "touch the blue cube")
PUSH = ("push the red cube into the green zone", "push the blue cube into the yellow zone")


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory) -> tuple[Path, Path]:
    """A reach-like and a push-like synthetic dataset of the same robot (push at another image size)."""
    root = tmp_path_factory.mktemp("multitask")
    a = make_synthetic_dataset(root / "reach", episodes=4, length=12, instructions=REACH)
    b = make_synthetic_dataset(root / "push", episodes=3, length=12, instructions=PUSH, seed=1, image_hw=(48, 48))
    return a, b


def _edited_copy(src: Path, dst: Path, edit) -> Path:
    """A copy of a dataset whose meta/info.json went through ``edit(info)`` (no frames rewritten)."""
    shutil.copytree(src, dst)
    info = json.loads((dst / "meta" / "info.json").read_text())
    edit(info)
    (dst / "meta" / "info.json").write_text(json.dumps(info))
    return dst


def test_merged_cache_is_the_union(two_tasks) -> None:
    a, b = two_tasks
    merged = load_datasets([str(a), str(b)], (64, 64), progress=False)
    ca, cb = load_frames(a, (64, 64), progress=False), load_frames(b, (64, 64), progress=False)
    assert merged.sources == [str(a), str(b)] and merged.num_episodes == 7
    assert merged.num_frames == ca.num_frames + cb.num_frames == 7 * 12
    assert merged.episode_source.tolist() == [0] * 4 + [1] * 3
    assert sorted(merged.tasks) == sorted(REACH + PUSH) and merged.skipped == []
    assert merged.env_state is not None and merged.env_state.shape == (84, 2)
    np.testing.assert_array_equal(merged.images["front"][48:], cb.images["front"])  # resized to 64x64 as well
    texts = [merged.tasks[i] for i in merged.task_index]
    assert texts == [ca.tasks[i] for i in ca.task_index] + [cb.tasks[i] for i in cb.task_index]
    s, e = merged.episode_bounds[4]
    assert (s, e) == (48, 60) and merged.tasks[merged.task_index[s]] in PUSH
    norm = merged.normalizer((64, 64))  # statistics over the union of both datasets
    union = np.concatenate([ca.state, cb.state])
    np.testing.assert_allclose(norm.state_mean, union.mean(0), rtol=1e-5, atol=1e-5)
    assert np.allclose(norm.action_min, np.minimum(ca.action.min(0), cb.action.min(0)))


def test_one_path_stays_one_dataset(two_tasks) -> None:
    a, _ = two_tasks
    assert dataset_paths(str(a)) == [str(a)] and dataset_paths([str(a)]) == [str(a)]
    single = load_datasets([a], (64, 64), progress=False)
    assert single.sources == [str(a)] and single.episode_source.tolist() == [0] * 4
    for bad, words in (([], "a list of them"), ([str(a), str(a)], "twice"), (3, "a list of them")):
        with pytest.raises(UserError, match=words):
            dataset_paths(bad)


@pytest.mark.parametrize(
    ("name", "edit", "words"),
    [
        ("fps", lambda i: i.update(fps=5), ["do not share an fps", "10 vs 5"]),
        (
            "robot",
            lambda i: i["features"]["observation.state"].update(names=[f"j{k}" for k in range(6)]),
            ["do not share a robot", "observation.state", "j0"],
        ),
        (
            "cameras",
            lambda i: i["features"].update({"observation.images.top": i["features"].pop("observation.images.wrist")}),
            ["do not share cameras", "model.camera_names=[front]"],
        ),
    ],
)
def test_mismatched_datasets_are_refused_in_one_line(two_tasks, tmp_path, name, edit, words) -> None:
    a, _ = two_tasks
    other = _edited_copy(a, tmp_path / name, edit)
    with pytest.raises(DatasetError) as exc:
        load_datasets([a, other], (64, 64), progress=False)
    message = str(exc.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_env_state_of_another_size_and_missing_rewards_are_dropped_with_notes(two_tasks, tmp_path) -> None:
    a, _ = two_tasks
    wide = make_synthetic_dataset(tmp_path / "wide", episodes=2, length=8, env_state_dim=3, instructions=REACH)
    plain = make_synthetic_dataset(tmp_path / "plain", episodes=2, length=8, with_task_signals=False)
    cams, notes = check_datasets_match([str(a), str(wide)])
    assert cams == ["front", "wrist"] and len(notes) == 1 and "environment_state dropped" in notes[0]
    merged = load_datasets([a, wide], (64, 64), progress=False)
    assert merged.env_state is None and merged.reward is not None and merged.skipped == notes
    merged = load_datasets([a, plain], (64, 64), progress=False)
    assert merged.reward is None and merged.success is None and merged.env_state is None
    assert any("no next.reward in" in n and "plain" in n for n in merged.skipped)
    assert not any(n.startswith("no next.reward:") for n in merged.skipped)  # said once, with the dataset


def test_split_keeps_held_out_episodes_of_every_dataset() -> None:
    groups = np.array([0] * 10 + [1] * 3)
    train, val = split_episodes(13, 0.2, seed=0, groups=groups)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(13))
    assert set(groups[val]) == {0, 1} and len(val) == 3
    np.testing.assert_array_equal(split_episodes(13, 0.2, 0)[1], split_episodes(13, 0.2, 0, np.zeros(13))[1])


def test_sampler_rewords_instructions_with_the_given_probability(two_tasks) -> None:
    from sim.phrasing import rephrase_instruction

    cache = load_datasets([two_tasks[0], two_tasks[1]], (64, 64), progress=False)
    norm, tok = cache.normalizer((64, 64)), Tokenizer()
    plain = WindowSampler(cache, norm, tok, 2, 4)
    worded = WindowSampler(cache, norm, tok, 2, 4, rephrase=rephrase_instruction, rephrase_prob=1.0)
    originals = {tuple(row) for row in tok.encode(cache.tasks).tolist()}
    tokens = plain.sample(32, np.random.default_rng(0)).tokens.tolist()
    assert {tuple(r) for r in tokens} <= originals
    tokens = worded.sample(64, np.random.default_rng(0)).tokens.tolist()
    assert sum(tuple(r) not in originals for r in tokens) > 40  # a few rewordings equal a template by chance
    again = worded.sample(64, np.random.default_rng(0)).tokens.tolist()
    assert again == tokens  # seeded: the same rewordings
    assert plain.seen_words == {p for text in cache.tasks for p in tok.pieces(text)}  # training saves them
    short = WindowSampler(cache, norm, Tokenizer(max_len=3), 2, 4)  # what max_len cuts, the model never read
    assert short.seen_words == {p for text in cache.tasks for p in tok.pieces(text)[:3]} < plain.seen_words
    assert worded.seen_words > plain.seen_words  # + the rewordings' words, whose ids all the rows hold:
    assert {i for row in tokens for i in row} - {0} <= set(tok.encode(sorted(worded.seen_words)).ravel())
    with pytest.raises(ValueError, match="rephrase_prob"):
        WindowSampler(cache, norm, tok, 2, 4, rephrase=rephrase_instruction, rephrase_prob=1.5)


def test_a_rephrase_pool_keeps_that_many_rewordings_per_instruction(two_tasks) -> None:
    from sim.phrasing import rephrase_instruction

    cache = load_datasets([two_tasks[0], two_tasks[1]], (64, 64), progress=False)
    norm, tok = cache.normalizer((64, 64)), Tokenizer()
    pooled = WindowSampler(cache, norm, tok, 2, 4, rephrase=rephrase_instruction, rephrase_prob=1.0, rephrase_pool=3)
    rng = np.random.default_rng(0)
    rows = {tuple(r) for _ in range(8) for r in pooled.sample(64, rng).tokens.tolist()}
    assert len(rows) <= 3 * len(cache.tasks) and len(rows) > len(cache.tasks)  # several per instruction, no more
    assert all(len(pool) == 3 for pool in pooled._pool.values())
    assert {i for r in rows for i in r} - {0} <= set(tok.encode(sorted(pooled.seen_words)).ravel())
    with pytest.raises(ValueError, match="rephrase_pool"):
        WindowSampler(cache, norm, tok, 2, 4, rephrase=rephrase_instruction, rephrase_prob=1.0, rephrase_pool=-1)


def test_one_model_trains_on_two_datasets_with_reworded_instructions(two_tasks, tmp_path, capsys) -> None:
    from latent_vla.checkpoint import load_checkpoint
    from latent_vla.train import train
    from sim.phrasing import rephrase_instruction

    a, b = two_tasks
    settings = tiny_run_settings([str(a), str(b)], tmp_path / "run", steps=6, rephrase=0.5, val_fraction=0.3)
    with pytest.raises(UserError, match="needs a rephraser"):
        train(settings)
    result = train(settings, rephraser=rephrase_instruction)
    out = capsys.readouterr().out
    assert "2 datasets as one training set" in out and "4 of 4 dataset instructions" in out
    assert result.step == 6 and result.val
    ck = load_checkpoint(result.run_dir)
    assert ck.config["data"] == [str(a), str(b)]
    task = ck.embed_instruction(["could you kindly nudge the crimson thingamajig, merci"])  # unseen words
    assert task.shape[0] == 1 and bool(task.isfinite().all())
    known = set(ck.tokenizer.known_words or ())  # the words training read: the dataset's, then rewordings
    tasks = load_datasets([a, b], (64, 64), progress=False).tasks
    assert {p for text in tasks for p in Tokenizer().pieces(text)} < known
    assert ck.tokenizer.token_ids("thingamajig merci") == []  # words the model never read are dropped


def test_training_records_the_instructions_to_snap_to(two_tasks, tmp_path) -> None:
    from latent_vla.checkpoint import load_checkpoint
    from latent_vla.train import train

    a, b = two_tasks
    with pytest.raises(UserError, match=r"train.snap: snap fractions name \['pick'\]"):
        tiny_run_settings([a, b], tmp_path / "bad", steps=2, snap={"pick": 0.2})
    with pytest.raises(UserError, match="two datasets or more"):
        tiny_run_settings(a, tmp_path / "one", steps=2, snap={"reach": 0.2})
    with pytest.raises(UserError, match=r"train.snap: the snap fraction of 'reach' must be a number in \[0, 1\)"):
        tiny_run_settings([a, b], tmp_path / "far", steps=2, snap={"reach": 1.0})
    cache = load_datasets([a, b], (64, 64), progress=False)
    want = {**{t: "reach" for t in REACH}, **{t: "push" for t in PUSH}}
    assert dict(zip(cache.tasks, cache.task_sources(), strict=True)) == want
    ck = load_checkpoint(train(tiny_run_settings([a, b], tmp_path / "run", steps=3, snap={"reach": 0.5})).run_dir)
    assert ck.snap_table is not None and dict(zip(ck.snap_table.texts, ck.snap_table.sources, strict=True)) == want
    radii = dict(zip(ck.snap_table.texts, ck.snap.radii.tolist(), strict=True))
    assert all(radii[t] > 0 for t in REACH) and all(radii[t] == 0 for t in PUSH)


def test_train_cli_takes_a_list_of_datasets(two_tasks, tmp_path) -> None:
    from latent_vla.app.cli import main

    a, b = two_tasks
    out = tmp_path / "cli"
    code = main(["train", f"data=[{a},{b}]", f"out={out}", "train.steps=3", "train.batch_size=8",
                 "train.horizon=2", "train.progress=false", "train.num_threads=1", "train.val_every=0",
                 "train.rephrase=0.3", "train.snap={reach:0.5}", "model.latent_dim=16", "model.hidden=64",
                 "model.head_hidden=32", "model.image_feat=32", "model.channels=[8,8,16,16]"])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["step"] == 3 and json.loads((out / "instructions.json").read_text())["fractions"] == {"reach": 0.5}
    assert main(["train", f"data=[{a},{a}]", f"out={tmp_path / 'twice'}"]) == 2
    assert main(["train", f"data={a}", f"out={tmp_path / 'bad'}", "train.rephrase=2"]) == 2
    assert main(["train", f"data={a}", f"out={tmp_path / 'bad'}", "train.loss.phrasing=1"]) == 2  # nothing reworded


def _tiny_model(cache, tok: Tokenizer):
    from latent_vla.model import ModelConfig, WorldModel

    return WorldModel(ModelConfig(
        camera_names=tuple(cache.images), state_dim=cache.state.shape[1], action_dim=cache.action.shape[1],
        image_size=(64, 64), latent_dim=16, chunk_len=4, vocab_size=tok.vocab_size, task_dim=16, word_dim=16,
        channels=(8, 16), image_feat=16, state_feat=16, hidden=32, head_hidden=16,
    ))  # fmt: skip


def test_phrasing_invariance_pulls_rewordings_to_the_recorded_instruction(two_tasks) -> None:
    import torch

    from latent_vla.data import Batch
    from latent_vla.losses import LossWeights, WorldModelLoss, _Terms
    from sim.phrasing import rephrase_instruction

    cache = load_datasets([two_tasks[0], two_tasks[1]], (64, 64), progress=False)
    norm, tok = cache.normalizer((64, 64)), Tokenizer()
    assert WindowSampler(cache, norm, tok, 2, 4).sample(4, np.random.default_rng(0)).anchor_tokens is None
    dropped = WindowSampler(cache, norm, tok, 2, 4, word_dropout=0.5).sample(8, np.random.default_rng(0))
    assert dropped.anchor_tokens is None and dropped.phrased_tokens is None  # dropped words are never pulled
    batch = WindowSampler(cache, norm, tok, 2, 4, rephrase=rephrase_instruction, rephrase_prob=1.0).sample(
        16, np.random.default_rng(0)
    )
    originals = {tuple(row) for row in tok.encode(cache.tasks).tolist()}
    assert batch.anchor_tokens is not None and {tuple(r) for r in batch.anchor_tokens.tolist()} <= originals
    assert (batch.tokens != batch.anchor_tokens).any(dim=1).sum() > 10  # the windows train on rewordings
    assert torch.equal(batch.phrased_tokens, batch.tokens)  # without word dropout, what is pulled is what is read

    torch.manual_seed(0)
    model = _tiny_model(cache, tok)
    on = WorldModelLoss(model, LossWeights(image_shift=0, decoder_batch=2, phrasing=3.0)).eval()
    off = WorldModelLoss(model, LossWeights(image_shift=0, decoder_batch=2)).eval()
    total_on, terms = on(batch)
    gap = float(terms["phrasing"])
    assert gap > 0 and float(off(batch)[1]["phrasing"]) == pytest.approx(gap)  # logged even at weight 0
    assert float((total_on - off(batch)[0]).detach()) == pytest.approx(3.0 * gap, rel=1e-4)
    same = Batch(**{**batch.__dict__, "phrased_tokens": batch.anchor_tokens})
    assert float(on(same)[1]["phrasing"]) == 0.0
    assert float(on(batch, first_frame=True)[1]["phrasing"]) == pytest.approx(gap)  # the grounding phase too
    acc = _Terms(torch.zeros(()))
    on._phrasing(batch, acc)
    acc.total.backward()  # the gradient reaches the text encoder through the reworded side only
    assert model.text.embed.weight.grad is not None and model.text.embed.weight.grad.abs().sum() > 0


def test_phrasing_invariance_pulls_the_reworded_words_not_the_dropped_ones(two_tasks) -> None:
    import torch

    from latent_vla.losses import LossWeights, WorldModelLoss
    from sim.phrasing import rephrase_instruction

    cache = load_datasets([two_tasks[0], two_tasks[1]], (64, 64), progress=False)
    norm, tok = cache.normalizer((64, 64)), Tokenizer()
    sampler = WindowSampler(cache, norm, tok, 2, 4, rephrase=rephrase_instruction, rephrase_prob=0.5, word_dropout=0.6)
    batch = sampler.sample(32, np.random.default_rng(1))
    assert batch.phrased_tokens is not None and batch.anchor_tokens is not None
    reworded = (batch.phrased_tokens != batch.anchor_tokens).any(dim=1)
    assert 0 < int(reworded.sum()) < 32
    assert not torch.equal(batch.tokens, batch.phrased_tokens)  # the model reads the word-dropped instructions
    kept = batch.tokens[batch.tokens > 0]
    assert np.isin(kept.numpy(), batch.phrased_tokens.numpy()).all()  # dropped from the reworded ones

    torch.manual_seed(0)
    model = _tiny_model(cache, tok)
    loss = WorldModelLoss(model, LossWeights(image_shift=0, decoder_batch=2, phrasing=1.0)).eval()
    with torch.no_grad():
        pulled = model.embed_task(batch.phrased_tokens[reworded])
        want = ((pulled - model.embed_task(batch.anchor_tokens[reworded])) ** 2).mean()
    assert float(loss(batch)[1]["phrasing"]) == pytest.approx(float(want), rel=1e-5)  # reworded rows, undropped
    unchanged = type(batch)(**{**batch.__dict__, "phrased_tokens": batch.anchor_tokens})
    assert float(loss(unchanged)[1]["phrasing"]) == 0.0  # word dropout alone pulls nothing
