"""A model with a pretrained text channel (``tokenizer.pretrained``: the subword table or the MiniLM sentence
encoder) exports: the ``task_embed`` graph holds the frozen weights, the bundle's tokenizer appends the same
subword ids, and the numpy/onnxruntime bundle embeds any instruction, words no training held included, as
PyTorch does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_helpers import HORIZON, make_checkpoint

from export.exporter import ExportSettings, export_bundle
from export.runtime import load_bundle
from latent_vla.checkpoint import load_checkpoint

NAMES = ("wordllama-l2-256", "minilm-l6")


@pytest.mark.parametrize("name", NAMES)
def test_the_bundle_embeds_unseen_phrasings_as_pytorch_does(tmp_path, name: str) -> None:
    torch.set_num_threads(1)
    ckpt = load_checkpoint(make_checkpoint(tmp_path / "run", seed=5, pretrained=name))
    settings = ExportSettings(horizon=HORIZON, precisions=("fp32",), default_instruction=None)
    bundle = load_bundle(export_bundle(ckpt, tmp_path / "bundle", settings, progress=False).path)
    assert bundle.tokenizer == ckpt.tokenizer and bundle.tokenizer.pretrained == name
    texts = ["kindly make contact with the red cube", "elevate the blue can, merci", "reach the red target"]
    with torch.no_grad():
        ref = ckpt.model.embed_task(torch.from_numpy(ckpt.tokenizer.encode(texts))).numpy()
    got = np.concatenate([bundle.embed_task([t]) for t in texts])
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert np.abs(got[0] - got[1]).max() > 1e-2
