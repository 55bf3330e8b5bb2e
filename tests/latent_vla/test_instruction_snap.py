"""Instruction snapping: radii relative to the nearest other dataset's instruction, the snap itself and the
table's checks (the checkpoint and the bundle: tests/export/test_snap_bundle.py)."""

from __future__ import annotations

import pytest
import torch

from latent_vla.instruction_snap import InstructionSnap, SnapTable, check_fractions, recorded_table, snap_radii

# Two "reach" anchors and one "push" anchor on a line, T = 2: squared per-dimension gaps are |dx|^2 / 2.
ANCHORS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
SOURCES = ("reach", "reach", "push")


def test_radius_is_a_fraction_of_the_gap_to_another_datasets_nearest_instruction() -> None:
    radii = snap_radii(ANCHORS, SOURCES, torch.tensor([0.5, 0.5, 0.0]))
    # reach anchors: nearest push anchor at dx 5 and 4 (never the other reach anchor); push: fraction 0
    torch.testing.assert_close(radii, torch.tensor([0.5 * 25 / 2, 0.5 * 16 / 2, 0.0]))


def test_snap_replaces_only_embeddings_inside_their_nearest_anchors_radius() -> None:
    snap = InstructionSnap(ANCHORS, snap_radii(ANCHORS, SOURCES, torch.tensor([0.1, 0.1, 0.0])))  # radii 1.25, 0.8, 0
    task = torch.tensor([[0.3, 0.4], [1.0, 1.4], [5.0, 0.1], [2.9, 0.0]])
    out = snap(task)
    torch.testing.assert_close(out[0], ANCHORS[0])  # gap 0.125 <= 1.25
    torch.testing.assert_close(out[1], task[1])  # nearest is anchor 1, gap 0.98 > 0.8: kept as it is
    torch.testing.assert_close(out[2], task[2])  # nearest is the push anchor, radius 0: never snapped
    torch.testing.assert_close(out[3], task[3])  # nearest anchor 1 at gap 1.805 > 0.8
    index, inside = snap.nearest(task)
    assert index.tolist() == [0, 1, 2, 1] and inside.tolist() == [True, False, False, False]


def test_the_table_refuses_what_cannot_snap() -> None:
    with pytest.raises(ValueError, match=r"fractions name \['pick'\]"):
        SnapTable(("a", "b"), ("reach", "push"), {"pick": 0.2})
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        SnapTable(("a", "b"), ("reach", "push"), {"reach": 1.5})
    with pytest.raises(ValueError, match="two datasets or more"):
        SnapTable(("a", "b"), ("reach", "reach"), {"reach": 0.2})
    with pytest.raises(ValueError, match="repeats one"):
        check_fractions({"reach": 0.2}, ["reach", "push", "reach"])
    with pytest.raises(ValueError, match="distinct"):
        SnapTable(("a", "a"), ("reach", "push"), {})
    with pytest.raises(TypeError, match="lists"):
        SnapTable.from_dict({"texts": "a", "sources": [], "fractions": {}})
    assert recorded_table(["a", "b"], ["reach", "push"], {"reach": 0.0}) is None  # nothing would snap: no file
    table = recorded_table(["a", "b", "c"], ["reach", "", "push"], {"reach": 0.2})
    assert table is not None and table.texts == ("a", "c") and SnapTable.from_dict(table.to_dict()) == table
