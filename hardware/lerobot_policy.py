"""Our brain as a LeRobot policy: ``--policy.type=latent_vla --policy.brain=<run or bundle dir>``.

Importing this module registers the policy type ``latent_vla`` with LeRobot's own registry
(``PreTrainedConfig.register_subclass``). LeRobot's factory then finds everything by its naming rules:
``make_policy`` builds :class:`LatentVLAPolicy` (config class name minus ``Config`` plus ``Policy``, same
module) and ``make_pre_post_processors`` calls :func:`make_latent_vla_pre_post_processors`. Inside, the
policy is a thin adapter over the one brain interface (``hardware.brain.load_brain``: a training run,
an ONNX bundle or ``"scripted"``): LeRobot's batch (``observation.state`` ``(B, J)``,
``observation.images.<camera>`` ``(B, 3, H, W)`` in ``[0, 1]``, ``task`` ``list[str]``) becomes one
robot observation dict per env, each env gets its own brain (its own MPC warm start), and the brains'
``"<joint>.pos"`` targets come back as a ``(B, J)`` tensor in robot units.

Only LeRobot's tools need this module; ``latent-vla`` runs its brains without it. It plans, it does
not train: train with ``latent-vla train``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import FeatureType
from lerobot.optim.optimizers import OptimizerConfig
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.processor import DeviceProcessorStep, PolicyAction, PolicyProcessorPipeline
from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action
from lerobot.utils.constants import (
    ACTION,
    OBS_IMAGES,
    OBS_STATE,
    POLICY_POSTPROCESSOR_DEFAULT_NAME,
    POLICY_PREPROCESSOR_DEFAULT_NAME,
)
from torch import Tensor

from hardware.brain import BRAIN_MODES, Brain, load_brain
from latent_vla.base.robot_spec import RobotSpec, get_robot_spec

POLICY_TYPE = "latent_vla"
"""The ``--policy.type`` of our brain in LeRobot's tools."""

NOT_TRAINABLE = "a latent_vla policy plans with a trained world model; train it with `latent-vla train`"


@PreTrainedConfig.register_subclass(POLICY_TYPE)
@dataclass
class LatentVLAConfig(PreTrainedConfig):
    """Which brain LeRobot runs, and how.

    Attributes:
        brain: a training run directory (``model.safetensors``), an ONNX bundle directory
            (``manifest.json``) or ``"scripted"``.
        mode: ``"policy"`` (policy head only) or a planner: ``"grad"``, ``"cem"``, ``"mppi"``
            (``"random"``: training runs only).
        budget_ms: planning budget per control tick, milliseconds; ``None`` keeps the planner config's.
        robot: the arm the env or robot is (a registered robot spec); a brain made for another arm
            (other joint names or units) is refused.
        instruction: used when the env gives no ``task`` (LeRobot passes ``""`` for envs without one).
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` graphs of a bundle; ``None``: fp32.
        brain_sha256: pin of a bundle: the sha256 of its ``manifest.json`` that ``latent-vla export``
            printed.
        device: where returned actions live; the brain itself runs on the CPU.
    """

    brain: str = ""
    mode: str = "grad"
    budget_ms: float | None = None
    robot: str = "so101"
    instruction: str | None = None
    precision: str | None = None
    brain_sha256: str | None = None
    device: str | None = "cpu"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.brain:
            raise ValueError(
                "policy.brain is required: a training run directory, an ONNX bundle directory or 'scripted'"
            )
        if self.mode not in BRAIN_MODES:
            raise ValueError(f"policy.mode must be one of {BRAIN_MODES}, got {self.mode!r}")
        if self.budget_ms is not None and not self.budget_ms > 0:
            raise ValueError(f"policy.budget_ms must be > 0 milliseconds or null, got {self.budget_ms}")
        get_robot_spec(self.robot)  # refuses an unknown robot name

    @property
    def observation_delta_indices(self) -> None:
        """One observation per tick (the brain keeps its own state)."""
        return None

    @property
    def action_delta_indices(self) -> None:
        """Not trained by LeRobot."""
        return None

    @property
    def reward_delta_indices(self) -> None:
        """Not trained by LeRobot."""
        return None

    def get_optimizer_preset(self) -> OptimizerConfig:
        """Refused: see :data:`NOT_TRAINABLE`."""
        raise NotImplementedError(NOT_TRAINABLE)

    def get_scheduler_preset(self) -> None:
        """No scheduler (not trained by LeRobot)."""
        return None

    def validate_features(self) -> None:
        """Refuse features that cannot feed the robot: ``observation.state`` / ``action`` of another size."""
        spec = get_robot_spec(self.robot)
        for key, feature in {**(self.input_features or {}), **(self.output_features or {})}.items():
            if key in (OBS_STATE, ACTION) and tuple(feature.shape) != (spec.num_joints,):
                raise ValueError(
                    f"{key} has shape {tuple(feature.shape)}, but robot {self.robot!r} has {spec.num_joints} "
                    f"joints {spec.action_keys}"
                )


class LatentVLAPolicy(PreTrainedPolicy):
    """A ``hardware.brain`` brain behind LeRobot's ``PreTrainedPolicy`` interface (one brain per env).

    Args:
        config: the :class:`LatentVLAConfig`; ``input_features`` (filled in by LeRobot's ``make_policy``
            from an env or dataset) are checked against the brain's cameras and joints.
        brain: an already built brain for the first env (tests, custom set-ups); more envs load more
            from ``config.brain``.
    """

    config_class = LatentVLAConfig
    name = POLICY_TYPE

    def __init__(self, config: LatentVLAConfig, brain: Brain | None = None, **kwargs: Any) -> None:
        super().__init__(config)
        config.validate_features()
        self.robot_spec: RobotSpec = get_robot_spec(config.robot)
        self.brains: list[Brain] = [brain if brain is not None else self._load_brain()]
        self.spec: RobotSpec = getattr(self.brains[0], "spec", self.robot_spec)
        self._check_cameras()
        self._started: list[bool] = [False]

    # -- LeRobot's interface ---------------------------------------------------------------------
    def reset(self) -> None:
        """New episodes in every env: each brain forgets its warm start at its next tick."""
        self._started = [False] * len(self.brains)

    def select_action(self, batch: dict[str, Any], **kwargs: Any) -> Tensor:
        """One tick of each env's brain: ``(B, J)`` absolute joint targets, robot units.

        Raises:
            ValueError: a missing state or camera, or no instruction (empty ``task``, no ``config.instruction``).
        """
        observations = self._robot_observations(batch)
        tasks = self._tasks(batch, len(observations))
        actions = []
        # LeRobot calls this under torch.inference_mode(); the gradient planner needs autograd w.r.t. its
        # actions, also when it is built (the brain freezes the model and encodes without autograd itself).
        with torch.inference_mode(False), torch.enable_grad():
            while len(self.brains) < len(observations):  # one brain per env of a vector env
                self.brains.append(self._load_brain())
                self._started.append(False)
            for i, (observation, task) in enumerate(zip(observations, tasks, strict=True)):
                brain = self.brains[i]
                if not self._started[i] or task != getattr(brain, "instruction", task):
                    brain.reset(task)  # a new episode or a new instruction: no stale warm start
                    self._started[i] = True
                actions.append(self.spec.action_to_vector(brain.act(observation)))
        return torch.as_tensor(np.stack(actions), dtype=torch.float32, device=self.config.device)

    def predict_action_chunk(self, batch: dict[str, Any], **kwargs: Any) -> Tensor:
        """``(B, 1, J)``: the brain re-plans every tick (MPC), so its chunk is the next action."""
        return self.select_action(batch)[:, None]

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict | None]:
        """Refused: see :data:`NOT_TRAINABLE`."""
        raise NotImplementedError(NOT_TRAINABLE)

    def get_optim_params(self) -> dict:
        """Refused: see :data:`NOT_TRAINABLE`."""
        raise NotImplementedError(NOT_TRAINABLE)

    # -- helpers ---------------------------------------------------------------------------------
    def _load_brain(self) -> Brain:
        cfg = self.config
        kwargs: dict[str, Any] = {} if cfg.precision is None else {"precision": cfg.precision}
        path = Path(cfg.brain).expanduser()
        if cfg.brain != "scripted" and not path.exists():
            raise FileNotFoundError(f"policy.brain {cfg.brain!r}: no such run or bundle directory")
        with torch.inference_mode(False), torch.enable_grad():  # a planner checks its gradients when built
            return load_brain(cfg.brain, None, robot_spec=self.robot_spec, mode=cfg.mode, budget_ms=cfg.budget_ms,
                              brain_sha256=cfg.brain_sha256, **kwargs)  # fmt: skip

    def _check_cameras(self) -> None:
        images = [k for k, f in (self.config.input_features or {}).items() if f.type is FeatureType.VISUAL]
        if not images:
            return  # features not given: checked per batch instead
        missing = [c for c in self.spec.camera_names if f"{OBS_IMAGES}.{c}" not in images]
        if missing:
            raise ValueError(
                f"brain {self.config.brain!r} reads cameras {self.spec.camera_names}; the env gives {images}"
            )

    def _robot_observations(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """LeRobot batch -> one robot observation dict per env (``"<joint>.pos"`` + uint8 ``(H, W, 3)``)."""
        if OBS_STATE not in batch:
            raise ValueError(f"batch has no {OBS_STATE!r}; keys: {sorted(batch)}")
        state = torch.as_tensor(batch[OBS_STATE]).detach().cpu().reshape(-1, self.spec.num_joints).numpy()  # (B, J)
        images: dict[str, np.ndarray] = {}
        for camera in self.spec.camera_names:
            key = f"{OBS_IMAGES}.{camera}"
            if key not in batch:
                raise ValueError(f"batch has no {key!r} (the brain reads cameras {self.spec.camera_names})")
            image = torch.as_tensor(batch[key]).detach().cpu()  # (B, 3, H, W) in [0, 1]
            images[camera] = (image * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return [
            {**self.spec.vector_to_action(state[i]), **{c: images[c][i] for c in images}} for i in range(len(state))
        ]

    def _tasks(self, batch: dict[str, Any], n: int) -> list[str]:
        raw = batch.get("task")
        tasks = [raw] * n if isinstance(raw, str) else list(raw or [""] * n)
        tasks = [t if t else (self.config.instruction or "") for t in tasks]
        if len(tasks) != n or (not all(tasks) and self.config.brain != "scripted"):
            raise ValueError(f"need one instruction per env; got task={raw!r} for {n} envs and no policy.instruction")
        return tasks


def make_latent_vla_pre_post_processors(
    config: LatentVLAConfig, dataset_stats: dict[str, dict[str, Tensor]] | None = None
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]], PolicyProcessorPipeline[PolicyAction, PolicyAction]
]:
    """LeRobot's processor pair for our brain: identity in (the brain normalizes with its own stats),
    actions to the CPU out. ``dataset_stats`` is unused."""
    pre = PolicyProcessorPipeline[dict[str, Any], dict[str, Any]](steps=[], name=POLICY_PREPROCESSOR_DEFAULT_NAME)
    post = PolicyProcessorPipeline[PolicyAction, PolicyAction](
        steps=[DeviceProcessorStep(device="cpu")],
        name=POLICY_POSTPROCESSOR_DEFAULT_NAME,
        to_transition=policy_action_to_transition,
        to_output=transition_to_policy_action,
    )
    return pre, post
