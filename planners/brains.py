"""Brains over a trained world model: gradient-planning MPC and the policy head alone.

Both implement the Brain interface of ``hardware.brain`` (docs/architecture.md, section 6): a LeRobot
robot observation dict (``"<joint>.pos"`` floats in robot units and one uint8 ``(H, W, 3)`` image per
camera) in, absolute joint targets ``{"<joint>.pos": value}`` out, ``reset(instruction)`` between
episodes. Each planning tick encodes the observation once without autograd, plans in latent space
and maps the first action from the model's ``[-1, 1]`` back to robot units with the checkpoint's
normalizer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor

from planners.mpc import MPC
from planners.protocol import Planner
from planners.registry import make_planner


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


def _load(checkpoint: Any, map_location: str | torch.device) -> Any:
    if isinstance(checkpoint, str | os.PathLike):
        from latent_vla.checkpoint import load_checkpoint

        return load_checkpoint(Path(checkpoint), map_location=map_location)
    return checkpoint


class PlannerBrain:
    """Latent MPC brain: encode, plan with any planner, execute the first action(s).

    Args:
        checkpoint: a ``latent_vla.checkpoint.Checkpoint`` or a run directory to load.
        planner: a built planner (over ``checkpoint.model``), a shipped config name
            (``"grad"``, ``"cem"``, ``"mppi"``, ``"random"``, ``"policy"``) or a config mapping.
        instruction: the task in words; ``reset(instruction)`` replaces it.
        n_execute: actions executed per plan (1 = re-plan every tick).
        budget_ms: planning budget per tick, milliseconds (``None``: the planner's own).
        map_location: device to load a checkpoint onto.
        temporal_ensemble: blend the overlapping plans of the last ticks (see :class:`planners.mpc.MPC`);
            ``None`` = the planner config's ``temporal_ensemble`` key when ``n_execute`` is 1, else off.
        **planner_overrides: planner config keys to override (e.g. ``horizon=8``).
    """

    def __init__(
        self,
        checkpoint: Any,
        planner: Planner | str | Mapping[str, Any] = "grad",
        instruction: str | None = None,
        n_execute: int = 1,
        budget_ms: float | None = None,
        map_location: str | torch.device = "cpu",
        temporal_ensemble: float | None = None,
        **planner_overrides: Any,
    ) -> None:
        self.checkpoint = _load(checkpoint, map_location)
        self.model = self.checkpoint.model.eval().requires_grad_(False)
        self.spec = self.checkpoint.spec
        if isinstance(planner, str):
            planner = planner_config(planner)
        configured_ensemble = None
        if isinstance(planner, Mapping):
            planner = {**dict(planner), **planner_overrides}
            configured_ensemble = planner.pop("temporal_ensemble", None)  # an MPC setting, not the planner's
            planner = make_planner(planner, self.model)
        elif planner_overrides:
            raise TypeError(f"planner overrides {sorted(planner_overrides)} need a planner name or config")
        if temporal_ensemble is None and n_execute == 1:  # n_execute > 1 asks for open-loop chunks instead
            temporal_ensemble = configured_ensemble
        self.planner: Planner = planner
        self.mpc = MPC(planner, n_execute=n_execute, budget_ms=budget_ms, temporal_ensemble=temporal_ensemble)
        self.instruction: str | None = None
        self.task: Tensor | None = None
        self.last_latent: Tensor | None = None
        self.reset(instruction)

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, **kwargs: Any) -> PlannerBrain:
        """Load the checkpoint in ``run_dir`` and build the brain (``hardware.brain.load_brain`` uses this)."""
        return cls(Path(run_dir), **kwargs)

    def reset(self, instruction: str | None = None) -> None:
        """New episode: forget the warm start; embed ``instruction`` when given (else keep the last one)."""
        if instruction is not None:
            self.instruction = instruction
            self.task = self.checkpoint.embed_instruction([instruction])  # (1, T)
        self.mpc.reset()
        self.last_latent = None

    def act(self, observation: dict[str, Any]) -> dict[str, float]:
        """Absolute joint targets ``{"<joint>.pos": value}`` in robot units for this observation.

        Raises:
            RuntimeError: no instruction was given yet.
            KeyError: the observation lacks a joint or a camera of the model.
        """
        if self.task is None:
            raise RuntimeError(f"{type(self).__name__}: no instruction; call reset(instruction) first")
        z0 = None
        if self.mpc.needs_plan:
            z0 = self.checkpoint.encode_observation(observation, self.task)  # (1, Z), no autograd
            self.last_latent = z0
        action = self.mpc.act(z0, self.task)  # (A,) in [-1, 1]
        robot = self.checkpoint.normalizer.action_from_model(action.detach().cpu().numpy().astype(np.float64))
        return self.spec.vector_to_action(robot)

    @property
    def last_plan(self) -> Tensor | None:
        """The latest plan ``(H, A)`` in model units, or ``None`` before the first tick."""
        return self.mpc.last_plan

    @property
    def last_info(self) -> dict[str, Any] | None:
        """``info`` of the latest plan (``iterations``, ``cost``, ``plan_ms``...), a new dict per plan."""
        return self.mpc.last_info

    @torch.no_grad()
    def imagine(self) -> np.ndarray | None:
        """What the model predicts the latest plan will look like: uint8 ``(H, h, w, 3)``, first camera."""
        if self.last_latent is None or self.mpc.last_plan is None:
            return None
        z = self.model.rollout(self.last_latent, self.mpc.last_plan[None])[0]  # (H, Z)
        images = self.model.decode(z)  # (H, 3, h, w) in [0, 1]
        return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def stats(self) -> dict[str, float]:
        """Planning-time statistics of the current episode (``plan_ms_p50``, ``plan_ms_p95``...)."""
        return self.mpc.stats()


class PolicyBrain(PlannerBrain):
    """The policy head alone: execute the first ``n_execute`` actions of each chunk, then re-query.

    Args:
        checkpoint: a ``Checkpoint`` or a run directory.
        instruction: the task in words.
        n_execute: actions executed per chunk (1 = query the policy every tick).
        map_location: device to load a checkpoint onto.
        temporal_ensemble: blend the overlapping chunks (ACT); ``None`` = the shipped policy config's
            setting (on, decay 0) when ``n_execute`` is 1.
    """

    def __init__(
        self,
        checkpoint: Any,
        instruction: str | None = None,
        n_execute: int = 1,
        map_location: str | torch.device = "cpu",
        temporal_ensemble: float | None = None,
    ) -> None:
        super().__init__(
            checkpoint,
            "policy",
            instruction,
            n_execute=n_execute,
            map_location=map_location,
            temporal_ensemble=temporal_ensemble,
        )
