"""Brains over a PyTorch training run: :class:`planners.brain.LatentBrain` with a checkpoint's perception.

``PlannerBrain`` plans with any shipped or given planner config; ``PolicyBrain`` executes the policy
head's chunk. The tick itself (encode once without autograd, plan, execute, unnormalize) is
``LatentBrain``'s, shared with the ONNX bundle's brain.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latent_vla.base.robot_spec import RobotSpec
from latent_vla.checkpoint import Checkpoint, load_checkpoint
from latent_vla.devices import resolve_device
from planners.brain import LatentBrain
from planners.protocol import Planner
from planners.registry import make_planner, split_mpc_settings
from planners.shipped import planner_config


class CheckpointPerception:
    """A training run's encoders and normalizer as a :class:`planners.brain.Perception` (PyTorch)."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self.spec: RobotSpec = checkpoint.spec

    def embed_instruction(self, instruction: str) -> Tensor:
        """``(1, T)`` task embedding."""
        return self.checkpoint.embed_instruction([instruction])

    def encode_observation(self, observation: Mapping[str, Any], task: Tensor) -> Tensor:
        """``(1, Z)`` latent of a LeRobot observation dict, no autograd."""
        return self.checkpoint.encode_observation(dict(observation), task)

    def action_to_robot(self, action: np.ndarray) -> np.ndarray:
        """``(A,)`` in ``[-1, 1]`` -> ``(J,)`` robot units."""
        return self.checkpoint.normalizer.action_from_model(action)


def resolve_planner(
    planner: Planner | str | Mapping[str, Any], model: Any, overrides: Mapping[str, Any]
) -> tuple[Planner, dict[str, Any]]:
    """A built planner and the MPC settings (``temporal_ensemble``, ``budget_ms``) of its config.

    ``planner`` is a built planner (no settings), a shipped config name or a config mapping; ``overrides``
    win over the config's keys.
    """
    if isinstance(planner, str):
        planner = planner_config(planner)
    if isinstance(planner, Mapping):
        cfg, mpc = split_mpc_settings({**dict(planner), **dict(overrides)})
        return make_planner(cfg, model), mpc
    if overrides:
        raise TypeError(f"planner overrides {sorted(overrides)} need a planner name or config")
    return planner, {}


class PlannerBrain(LatentBrain):
    """Latent MPC over a training run: encode, plan with any planner, execute the first action(s).

    Args:
        checkpoint: a ``latent_vla.checkpoint.Checkpoint`` or a run directory to load.
        planner: a built planner (over ``checkpoint.model``), a shipped config name
            (``"grad"``, ``"cem"``, ``"mppi"``, ``"random"``, ``"policy"``) or a config mapping.
        instruction: the task in words; ``reset(instruction)`` replaces it.
        n_execute: actions executed per plan (1 = re-plan every tick).
        map_location: device to load a checkpoint onto: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` or a
            ``torch.device`` (a CUDA device this machine lacks is a ``UserError``); a given ``Checkpoint``
            stays where it is.
        **overrides: planner config keys to override (``horizon=8``, ``budget_ms=33``,
            ``temporal_ensemble=None``...); ``budget_ms`` and ``temporal_ensemble`` configure the MPC loop.
            Temporal ensembling applies only with ``n_execute`` 1 (more asks for open-loop chunks).
    """

    def __init__(
        self,
        checkpoint: Checkpoint | str | os.PathLike,
        planner: Planner | str | Mapping[str, Any] = "grad",
        instruction: str | None = None,
        n_execute: int = 1,
        map_location: str | torch.device = "cpu",
        **overrides: Any,
    ) -> None:
        if not isinstance(checkpoint, Checkpoint):
            checkpoint = load_checkpoint(Path(checkpoint), map_location=resolve_device(map_location, "map_location"))
        self.checkpoint = checkpoint
        self.model = checkpoint.model.eval().requires_grad_(False)
        built, mpc = resolve_planner(planner, self.model, overrides)
        ensemble = mpc.get("temporal_ensemble") if n_execute == 1 else None
        super().__init__(
            CheckpointPerception(checkpoint), built, instruction, n_execute, mpc.get("budget_ms"), ensemble,
            mpc.get("temporal_window"),
        )  # fmt: skip

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, **kwargs: Any) -> PlannerBrain:
        """Load the checkpoint in ``run_dir`` and build the brain (``hardware.brain.load_brain`` uses this)."""
        return cls(Path(run_dir), **kwargs)

    @torch.no_grad()
    def imagine(self) -> np.ndarray | None:
        """What the model predicts the latest plan will look like: uint8 ``(H, h, w, 3)``, first camera."""
        if self.last_latent is None or self.last_plan is None:
            return None
        plan = torch.as_tensor(self.last_plan).to(self.last_latent)
        z = self.model.rollout(self.last_latent, plan[None])[0]  # (H, Z)
        images = self.model.decode(z)  # (H, 3, h, w) in [0, 1]
        return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class PolicyBrain(PlannerBrain):
    """The policy head alone: execute the first ``n_execute`` actions of each chunk, then re-query.

    Args:
        checkpoint: a ``Checkpoint`` or a run directory.
        instruction: the task in words.
        n_execute: actions executed per chunk (1 = query the policy every tick).
        map_location: device to load a checkpoint onto.
        **overrides: keys of ``configs/planner/policy.yaml`` to override (``temporal_ensemble=None``...).
    """

    def __init__(
        self,
        checkpoint: Checkpoint | str | os.PathLike,
        instruction: str | None = None,
        n_execute: int = 1,
        map_location: str | torch.device = "cpu",
        **overrides: Any,
    ) -> None:
        super().__init__(checkpoint, "policy", instruction, n_execute, map_location, **overrides)
