"""The shipped planner configs, ``configs/planner/<name>.yaml``: the one home of planner settings.

The PyTorch brain builds its planner from them, and the exporter records them (budget included) in a
bundle's manifest, where the runtime reads them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files
from typing import Any

import yaml


def planner_config(name: str) -> dict[str, Any]:
    """The shipped ``configs/planner/<name>.yaml`` as a dict.

    Raises:
        ValueError: listing the shipped names when there is no such file.
    """
    folder = files("configs") / "planner"
    path = folder / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
        raise ValueError(f"no planner config {name!r}; shipped: {names}")
    return dict(yaml.safe_load(path.read_text()))


def planner_config_with(name: str, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The shipped ``configs/planner/<name>.yaml`` with ``overrides`` over it; an ``objective`` mapping among
    them replaces only the objective weights it names (``{"objective": {"prior_weight": 4}}`` keeps the rest).

    Raises:
        ValueError: as :func:`planner_config`.
    """
    base, over = planner_config(name), dict(overrides or {})
    merged = {**base, **over}
    if isinstance(over.get("objective"), Mapping):
        merged["objective"] = {**(base.get("objective") or {}), **over["objective"]}
    return merged
