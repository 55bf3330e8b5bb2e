"""Instruction snapping: an instruction close to one the training data recorded is read as that one.

The multi-task policy is sharp around the few task embeddings it trained on: a held-out verb whose embedding
lies 5-8 % of the way to another task's halves pick's success (docs/training.md, "Phrasing invariance").
Snapping replaces an instruction's embedding ``(T,)`` by the nearest recorded instruction's (an *anchor*)
when it lies within that anchor's radius, and leaves it as it is otherwise.

An anchor's radius is ``fraction x`` its (squared, per-dimension) distance to the nearest anchor of
another dataset: "much closer to this recorded instruction than this one is to any other task". The
fraction is set per dataset (``train.snap``, keyed by the dataset folder's name), because tasks differ:
push's zone words move the embedding less than a new verb does, so snapping push instructions would
swap zones (0 = never snap to that dataset's instructions).

The anchors' texts, datasets and fractions are saved as ``instructions.json`` in the checkpoint; their
embeddings are computed from the model at load, and the export bakes them into the ``task_embed`` graph,
so the ONNX runtime snaps exactly as PyTorch does with nothing of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

SNAP_FILE = "instructions.json"
"""Checkpoint file of the :class:`SnapTable` (optional; a checkpoint without it does not snap)."""


@dataclass(frozen=True)
class SnapTable:
    """The recorded instructions a model may snap to.

    Attributes:
        texts: ``N`` distinct recorded instructions.
        sources: ``N`` dataset names (folder names), one per text.
        fractions: dataset name -> radius as a fraction of the distance to another dataset's nearest
            instruction, in ``[0, 1)``; a dataset not listed never snaps (0).
    """

    texts: tuple[str, ...]
    sources: tuple[str, ...]
    fractions: Mapping[str, float]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.sources):
            raise ValueError(f"{len(self.texts)} texts but {len(self.sources)} sources")
        if len(set(self.texts)) != len(self.texts):
            raise ValueError("texts must be distinct")
        if not all(isinstance(t, str) for t in (*self.texts, *self.sources)):
            raise ValueError("texts and sources must be strings")
        check_fractions(self.fractions, sorted(set(self.sources)))

    def fraction_per_text(self) -> np.ndarray:
        """``(N,)`` float32 fraction of each text's dataset (0 where not listed)."""
        return np.array([float(self.fractions.get(s, 0.0)) for s in self.sources], np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``instructions.json``)."""
        return {"texts": list(self.texts), "sources": list(self.sources), "fractions": dict(self.fractions)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SnapTable:
        """Inverse of :meth:`to_dict`; ValueError/KeyError/TypeError on malformed content."""
        if not isinstance(data, Mapping):
            raise TypeError(f"expected an object, got {type(data).__name__}")
        texts, sources, fractions = data["texts"], data["sources"], data["fractions"]
        if not isinstance(texts, list) or not isinstance(sources, list) or not isinstance(fractions, Mapping):
            raise TypeError("texts and sources must be lists, fractions an object")
        return cls(tuple(texts), tuple(sources), dict(fractions))


def check_fractions(fractions: Mapping[str, float], datasets: Sequence[str]) -> None:
    """Check ``train.snap``-style ``fractions`` against the ``datasets``' folder names.

    Raises:
        ValueError: a name that is no dataset's, a fraction outside ``[0, 1)``, or snapping with fewer than two
            datasets or with two datasets of one name (one line each).
    """
    unknown = sorted(set(fractions) - set(datasets))
    if unknown:
        raise ValueError(f"snap fractions name {unknown}, but the datasets are {list(datasets)} (folder names)")
    for name, f in fractions.items():
        if isinstance(f, bool) or not isinstance(f, int | float) or not (math.isfinite(f) and 0 <= f < 1):
            raise ValueError(f"the snap fraction of {name!r} must be a number in [0, 1) (0 = never snap), got {f!r}")
    if not any(f > 0 for f in fractions.values()):
        return
    if len(set(datasets)) < 2:
        raise ValueError("snapping needs two datasets or more: a radius is a fraction of the distance to another "
                         "dataset's nearest instruction")  # fmt: skip
    if len(set(datasets)) < len(datasets):
        raise ValueError(f"snapping tells datasets apart by folder name, and {list(datasets)} repeats one")


def snap_radii(anchors: Tensor, sources: list[str] | tuple[str, ...], fractions: Tensor) -> Tensor:
    """Each anchor's radius ``(N,)``: ``fractions`` x squared per-dimension distance to the nearest anchor of
    another source (``anchors`` ``(N, T)``; ``inf`` distance, so radius 0 with fraction 0, when none)."""
    gaps = torch.cdist(anchors.double(), anchors.double()).pow(2) / anchors.shape[1]  # (N, N)
    codes = {s: i for i, s in enumerate(dict.fromkeys(sources))}
    src = torch.tensor([codes[s] for s in sources])
    gaps = gaps.masked_fill(src[:, None] == src[None, :], math.inf)
    nearest = gaps.min(dim=1).values
    return torch.where(fractions > 0, fractions.double() * nearest, torch.zeros_like(nearest)).float()


class InstructionSnap(nn.Module):
    """Task embeddings ``(B, T)`` -> the nearest anchor's where it lies within that anchor's radius.

    Traceable into ONNX (squared distances, ArgMin, Gather, Where): the export bakes the anchors in.
    """

    def __init__(self, anchors: Tensor, radii: Tensor) -> None:
        super().__init__()
        if anchors.ndim != 2 or radii.shape != anchors.shape[:1]:
            raise ValueError(f"anchors must be (N, T) and radii (N,), got {tuple(anchors.shape)}, {tuple(radii.shape)}")
        self.register_buffer("anchors", anchors.detach().float().clone())
        self.register_buffer("radii", radii.detach().float().clone())

    def nearest(self, task: Tensor) -> tuple[Tensor, Tensor]:
        """``task`` ``(B, T)`` -> the nearest anchor's index ``(B,)`` and whether it lies within its radius ``(B,)``."""
        gaps = (task[:, None, :] - self.anchors[None]).pow(2).mean(-1)  # (B, N)
        index = gaps.argmin(dim=1)
        return index, gaps.gather(1, index[:, None])[:, 0] < self.radii[index]

    def forward(self, task: Tensor) -> Tensor:
        """``(B, T)`` -> ``(B, T)``."""
        index, inside = self.nearest(task)
        return torch.where(inside[:, None], self.anchors[index], task)


def recorded_table(tasks: list[str], sources: list[str], fractions: Mapping[str, float]) -> SnapTable | None:
    """The :class:`SnapTable` of a training set's instructions (``tasks``, each with its dataset's name in
    ``sources``) with ``fractions`` (``train.snap``), or None when no fraction is above 0.

    Raises:
        ValueError: a fraction names no dataset of the training set, or snapping with one dataset.
    """
    if not any(f > 0 for f in fractions.values()):
        return None
    keep = [i for i, s in enumerate(sources) if s]
    return SnapTable(tuple(tasks[i] for i in keep), tuple(sources[i] for i in keep), dict(fractions))


def build_snap(table: SnapTable, embed: Any) -> InstructionSnap:
    """The :class:`InstructionSnap` of ``table``, anchors embedded by ``embed(texts) -> (N, T)`` tensor."""
    with torch.no_grad():
        anchors = embed(list(table.texts)).float().cpu()
    return InstructionSnap(anchors, snap_radii(anchors, table.sources, torch.from_numpy(table.fraction_per_text())))


def read_as(embed: Callable[[list[str]], Any], anchors: Sequence[str], instructions: Sequence[str]) -> dict[str, str]:
    """Which ``instructions`` a snapping ``embed(texts) -> (B, T)`` (``Checkpoint.embed_instruction``, a bundle's
    ``embed_task``) reads as one of the recorded ``anchors``: ``{instruction: anchor}``, recorded ones left out.

    An instruction is read as an anchor when its embedding equals that anchor's (a snap copies it exactly).
    """
    queries = sorted(set(instructions) - set(anchors))
    if not queries or not anchors:
        return {}
    table, got = np.asarray(embed(list(anchors))), np.asarray(embed(queries))  # (N, T), (Q, T)
    same = np.all(np.abs(got[:, None] - table[None]) <= 1e-6 * (1.0 + np.abs(table[None])), axis=-1)  # (Q, N)
    return {q: anchors[int(np.argmax(row))] for q, row in zip(queries, same, strict=True) if row.any()}
