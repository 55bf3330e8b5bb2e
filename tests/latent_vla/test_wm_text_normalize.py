"""Tokenizer and Normalizer: numpy-only, deterministic, invertible, clear errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latent_vla.base.normalize import Normalizer, resize_uint8
from latent_vla.base.text import Tokenizer


def test_tokenizer_shapes_padding_and_determinism():
    tok = Tokenizer(num_buckets=512, max_len=10)
    ids = tok.encode(["Push the RED cube!", "", "reach"])
    assert ids.shape == (3, 10) and ids.dtype == np.int64
    assert (ids[1] == 0).all()  # empty instruction -> all padding
    assert (ids[0][:7] > 0).all() and (ids[0][7:] == 0).all()  # 4 words + 3 bigrams
    assert ids.max() <= 512
    np.testing.assert_array_equal(
        ids, Tokenizer(num_buckets=512, max_len=10).encode(["push the red cube", "", "reach"])
    )


def test_tokenizer_unseen_words_and_truncation():
    tok = Tokenizer(num_buckets=64, max_len=4)
    ids = tok.encode("zyzzyva quux frobnicate the flibbertigibbet please")
    assert ids.shape == (1, 4) and (ids > 0).all() and (ids <= 64).all()


def test_tokenizer_bigrams_see_word_order():
    tok = Tokenizer()
    a, b = tok.encode(["red cube into green zone", "green cube into red zone"])
    assert sorted(a[:5]) == sorted(b[:5])  # same bag of words
    assert not np.array_equal(np.sort(a), np.sort(b))  # bigrams differ


def test_tokenizer_roundtrip_and_errors():
    tok = Tokenizer(num_buckets=100, max_len=5, bigrams=False)
    assert Tokenizer.from_dict(tok.to_dict()) == tok
    with pytest.raises(ValueError, match="num_buckets"):
        Tokenizer(num_buckets=1)
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        Tokenizer.from_dict({"kind": "bpe"})
    with pytest.raises(TypeError, match="expected str"):
        tok.encode([3])


def test_a_trained_tokenizer_ignores_words_its_model_never_read():
    tok = Tokenizer(num_buckets=100_000)
    trained = tok.with_known_words(tok.pieces("touch the red cube") + tok.pieces("push the blue cube"))
    ids = trained.encode("kindly touch the flibbertigibbet red cube")[0]
    words = tok.token_ids("touch the red cube")  # touch, the, red, cube, "touch the", "the red", "red cube"
    assert ids[ids > 0].tolist() == words[:5] + words[6:]  # unknown words and the pairs they break are gone
    assert trained.encode("zyzzyva quux").tolist() == [[0] * tok.max_len]  # nothing known: all padding
    assert Tokenizer.from_dict(trained.to_dict()) == trained
    assert tok.encode("kindly touch it")[0, 0] > 0  # training's tokenizer keeps every id
    with pytest.raises(ValueError, match="known_ids must lie in 1 .. 100000"):
        Tokenizer(num_buckets=100_000, known_ids=(0, 5))


def test_an_unseen_word_sharing_a_trained_words_bucket_is_still_ignored():
    small = Tokenizer(num_buckets=64, bigrams=False)
    touch = small.token_ids("touch")[0]
    twin = next(w for w in (f"zq{n}" for n in range(10_000)) if small.token_ids(w) == [touch])  # same bucket
    by_words = small.with_known_words(small.pieces("touch the red cube"))
    assert by_words.token_ids(f"{twin} the red cube") == small.token_ids("the red cube")  # the twin is dropped
    by_ids = Tokenizer(num_buckets=64, bigrams=False, known_ids=tuple(small.token_ids("touch the red cube")))
    assert by_ids.token_ids(f"{twin} the red cube") == small.token_ids("touch the red cube")  # 12-03 checkpoints:
    # an unseen word read as the trained word whose bucket it shares


def _normalizer():
    rng = np.random.default_rng(0)
    states = rng.normal(10.0, 5.0, (500, 6))
    actions = rng.uniform(-50.0, 80.0, (500, 6))
    actions[:, 5] = 42.0  # a joint that never moved
    return Normalizer.from_arrays(states, actions, (32, 32), ("front", "wrist")), states, actions


def test_normalizer_state_and_action_maps():
    norm, states, actions = _normalizer()
    s = norm.state_to_model(states)
    assert s.dtype == np.float32 and abs(s.mean()) < 1e-4 and abs(s.std() - 1.0) < 1e-3
    np.testing.assert_allclose(norm.state_from_model(s), states, rtol=1e-5, atol=1e-4)
    a = norm.action_to_model(actions)
    assert a.dtype == np.float32
    assert a[:, :5].min() == pytest.approx(-1.0, abs=1e-6) and a[:, :5].max() == pytest.approx(1.0, abs=1e-6)
    assert np.isfinite(a[:, 5]).all() and np.allclose(a[:, 5], 0.0)
    np.testing.assert_allclose(norm.action_from_model(a), actions, rtol=1e-5, atol=1e-3)
    out = norm.action_from_model(np.full((2, 6), 5.0))  # clipped to the data range
    np.testing.assert_allclose(out[0, :5], norm.action_max[:5], rtol=1e-6)


def test_normalizer_serialization_and_errors():
    norm, _, _ = _normalizer()
    again = Normalizer.from_dict(norm.to_dict())
    for key in ("state_mean", "state_std", "action_min", "action_max"):
        np.testing.assert_array_equal(getattr(norm, key), getattr(again, key))
    assert again.image_size == (32, 32) and again.camera_names == ("front", "wrist")
    with pytest.raises(ValueError, match="last dimension 6"):
        norm.state_to_model(np.zeros(5))
    with pytest.raises(ValueError, match="uint8"):
        norm.image_to_model(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W, 3\)"):
        norm.image_to_model(np.zeros((3, 8, 8), dtype=np.uint8))
    with pytest.raises(KeyError, match="action_min"):
        Normalizer.from_dict({"state_mean": [0], "state_std": [1]})
    with pytest.raises(ValueError, match="non-finite"):
        Normalizer([np.nan], [1], [0], [1])


def test_image_to_model_resizes_like_torch():
    norm, _, _ = _normalizer()
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    out = norm.image_to_model(img)
    assert out.shape == (2, 3, 32, 32) and out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    x = torch.from_numpy(img).permute(0, 3, 1, 2).float()
    # 64 -> 32 is an integer factor in height (area), 96 -> 32 too: both are block means.
    ref = F.avg_pool2d(x, (2, 3)).round() / 255.0
    np.testing.assert_allclose(out, ref.numpy(), atol=1.0 / 255 + 1e-6)
    odd = resize_uint8(img[0], 40, 50)  # non-integer factors: bilinear, half-pixel centres
    ref = F.interpolate(x[:1], size=(40, 50), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    assert odd.shape == (40, 50, 3) and np.abs(odd.astype(float) - ref).max() <= 1.0
    same = norm.image_to_model(img[0, :32, :32])
    np.testing.assert_allclose(same, img[0, :32, :32].transpose(2, 0, 1) / 255.0, atol=1e-7)


def test_text_and_normalize_do_not_import_torch():
    code = "import sys, latent_vla.base.text, latent_vla.base.normalize, latent_vla; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
