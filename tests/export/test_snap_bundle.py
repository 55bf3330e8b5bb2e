"""A checkpoint with recorded instructions to snap to (``instructions.json``: hashed, verified, rebuilt on load)
exports a ``task_embed`` graph with the anchors baked in: the numpy/onnxruntime bundle snaps as PyTorch does."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from export_helpers import HORIZON, make_checkpoint

from export.exporter import ExportSettings, export_bundle
from export.runtime import load_bundle
from latent_vla.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from latent_vla.instruction_snap import SNAP_FILE, SnapTable, read_as

TEXTS = ("touch the red cube", "touch the blue cube", "push the red cube into the green zone")
TABLE = SnapTable(TEXTS, ("reach", "reach", "push"), {"reach": 0.9})
QUERIES = [*TEXTS, "touch the red cube please", "touch the blue cube now", "an unrelated zebra"]


@pytest.fixture(scope="module")
def snapping(tmp_path_factory):
    """(run dir, loaded checkpoint) of a small random model saved with :data:`TABLE`."""
    root = tmp_path_factory.mktemp("snap")
    src = load_checkpoint(make_checkpoint(root / "src"))
    run = root / "run"
    save_checkpoint(run, src.model, src.normalizer, src.tokenizer, src.spec, {}, 3, snap_table=TABLE)
    return run, load_checkpoint(run)


def test_the_bundle_snaps_as_pytorch_does(snapping, tmp_path) -> None:
    torch.set_num_threads(1)
    _, ck = snapping
    settings = ExportSettings(horizon=HORIZON, precisions=("fp32",), default_instruction=None)
    bundle = load_bundle(export_bundle(ck, tmp_path / "bundle", settings, progress=False).path)
    assert bundle.manifest.model["instruction_snap"] == TABLE.to_dict()
    _, inside = ck.snap.nearest(ck.raw_embedding(QUERIES))
    assert inside[3:].any() and not inside.all()  # both kinds among the unrecorded phrasings
    got = np.concatenate([bundle.embed_task([q]) for q in QUERIES])
    np.testing.assert_allclose(got, ck.embed_instruction(QUERIES).numpy(), atol=1e-5)
    index, inside = ck.snap.nearest(ck.raw_embedding(QUERIES[3:]))
    want = {q: TEXTS[i] for q, i, ok in zip(QUERIES[3:], index.tolist(), inside.tolist(), strict=True) if ok}
    assert want and read_as(ck.embed_instruction, TEXTS, QUERIES) == want  # what eval records
    assert read_as(bundle.embed_task, TEXTS, QUERIES) == want


def test_checkpoint_saves_snaps_and_verifies_its_instructions(snapping, tmp_path) -> None:
    src, ck = snapping
    run = tmp_path / "run"
    shutil.copytree(src, run)
    assert ck.snap_table == TABLE and SNAP_FILE in json.loads((run / "checkpoint.json").read_text())["files"]
    queries = QUERIES
    raw, got = ck.raw_embedding(queries), ck.embed_instruction(queries)
    index, inside = ck.snap.nearest(raw)
    torch.testing.assert_close(got[:3], raw[:3])  # a recorded instruction is its own anchor
    for q in range(3, len(queries)):
        torch.testing.assert_close(got[q], ck.snap.anchors[index[q]] if inside[q] else raw[q])
    assert index[2] == 2 and not inside[2]  # the push anchor (fraction 0) never snaps, not even to itself
    (run / SNAP_FILE).write_text(json.dumps({**TABLE.to_dict(), "fractions": {"reach": 2}}))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_checkpoint(run)
    save_checkpoint(run, ck.model, ck.normalizer, ck.tokenizer, ck.spec, {}, 4)  # no table: the file goes
    assert not (run / SNAP_FILE).exists() and load_checkpoint(run).snap is None
