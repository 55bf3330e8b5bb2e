"""The one latent brain: observation + instruction in, robot action out, for every model source.

:class:`LatentBrain` runs one MPC tick: encode the observation once (no autograd), plan in latent space
with any planner of this package, execute the first action (temporal ensembling optional), and map it
from the model's ``[-1, 1]`` back to ``{"<joint>.pos": target}`` in robot units. What differs between a
training run (PyTorch) and an export bundle (onnxruntime) is only the :class:`Perception` (how an
observation becomes a latent) and the planner's backend; ``hardware.brain.load_brain`` builds either
from a path. numpy only: the torch-free runtime uses this class as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from latent_vla.base.robot_spec import RobotSpec
from planners.mpc import MPC
from planners.protocol import Planner


class Perception(Protocol):
    """How a model source sees: the robot spec, instruction and observation encoders, action decoding.

    Attributes:
        spec: the robot the model was made for (joint order and units).
    """

    spec: RobotSpec

    def embed_instruction(self, instruction: str) -> Any:
        """The task embedding ``(1, T)`` of one instruction (a numpy array or the backend's tensor)."""
        ...

    def encode_observation(self, observation: Mapping[str, Any], task: Any) -> Any:
        """LeRobot observation dict -> latent ``(1, Z)``, without autograd; raises on a malformed one."""
        ...

    def action_to_robot(self, action: np.ndarray) -> np.ndarray:
        """Model action ``(A,)`` in ``[-1, 1]`` -> joint targets ``(J,)`` in robot units."""
        ...


class LatentBrain:
    """Latent MPC brain: encode, plan with any planner, execute the first action(s).

    Args:
        perception: the model source's :class:`Perception`.
        planner: a built planner over the same model (any backend).
        instruction: the task in words; ``reset(instruction)`` replaces it.
        n_execute: actions executed per plan (1 = re-plan every tick).
        budget_ms: planning budget per tick, milliseconds (``None``: none); the one route a budget
            takes to a planner (``configs/planner/*.yaml: budget_ms``, or an override of it).
        temporal_ensemble: ``None`` (off) or the per-tick decay of the blending of overlapping plans
            (see :class:`planners.mpc.MPC`); needs ``n_execute`` 1.
        temporal_window: blend only the plans of the last this many ticks (``None``: all that cover it).

    Attributes:
        last_latent: the latent ``(1, Z)`` of the latest planning tick.
    """

    def __init__(
        self,
        perception: Perception,
        planner: Planner,
        instruction: str | None = None,
        n_execute: int = 1,
        budget_ms: float | None = None,
        temporal_ensemble: float | None = None,
        temporal_window: int | None = None,
    ) -> None:
        self.perception = perception
        self.spec: RobotSpec = perception.spec
        self.planner = planner
        self.mpc = MPC(
            planner, n_execute=n_execute, budget_ms=budget_ms, temporal_ensemble=temporal_ensemble,
            temporal_window=temporal_window,
        )  # fmt: skip
        self.instruction: str | None = None
        self.task: Any = None
        self.last_latent: Any = None
        self.reset(instruction)

    def reset(self, instruction: str | None = None) -> None:
        """New episode: forget the warm start; embed ``instruction`` when given (else keep the last one)."""
        if instruction is not None:
            self.task = self.perception.embed_instruction(instruction)  # (1, T); refuses a non-str
            self.instruction = instruction
        self.mpc.reset()
        self.last_latent = None

    def act(self, observation: Mapping[str, Any]) -> dict[str, float]:
        """Absolute joint targets ``{"<joint>.pos": value}`` in robot units for this observation.

        Raises:
            RuntimeError: no instruction was given yet.
            the perception's error: the observation lacks a joint or camera, or is malformed.
        """
        if self.task is None:
            raise RuntimeError(f"{type(self).__name__}: no instruction; call reset(instruction) first")
        z0 = None
        if self.mpc.needs_plan:
            z0 = self.perception.encode_observation(observation, self.task)  # (1, Z), no autograd
            self.last_latent = z0
        action = self.mpc.act(z0, self.task)  # (A,) in [-1, 1]
        return self.spec.vector_to_action(self.perception.action_to_robot(action.astype(np.float64)))

    @property
    def last_plan(self) -> np.ndarray | None:
        """The latest plan ``(H, A)`` in model units, or ``None`` before the first tick."""
        return self.mpc.last_plan

    @property
    def last_info(self) -> dict[str, Any] | None:
        """``info`` of the latest plan (``iterations``, ``cost``, ``plan_ms``...), a new dict per plan."""
        return self.mpc.last_info

    def stats(self) -> dict[str, float]:
        """Planning-time statistics of the current episode (``plan_ms_p50``, ``plan_ms_p95``...)."""
        return self.mpc.stats()
