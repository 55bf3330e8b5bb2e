"""Our tasks as LeRobot sim envs: the observation layout of gym-aloha / gym-pusht / gym-xarm.

LeRobot's evaluation loop (``lerobot.scripts.lerobot_eval.rollout``) reads a vector env whose
observations hold ``pixels`` (camera -> uint8 ``(H, W, 3)``) and ``agent_pos`` (float32 ``(J,)``),
turns them into ``observation.images.<camera>`` / ``observation.state`` with
``lerobot.envs.utils.preprocess_observation``, and asks the *outermost* env of each vector slot for
``task_description`` (the language instruction, ``add_envs_task``) and ``_max_episode_steps``.
:class:`LeRobotSO101Env` gives :class:`sim.env.SO101Env` exactly that surface; nothing else changes
(same scene, seeds, rewards and ``info["is_success"]``), so ``env.reset(seed=s)`` starts the same episode
as ``sim.make_env(task).reset(seed=s)``.

Gymnasium ids (registered on ``import sim`` without the order and checker wrappers, so that ``gym.make`` returns
this class itself and LeRobot's ``hasattr(env, "task_description")`` sees it)::

    LatentVLA/SO101Reach-LeRobot-v0, LatentVLA/SO101Push-LeRobot-v0, LatentVLA/SO101Pick-LeRobot-v0

Pass no ``max_episode_steps`` to ``gym.make``: a ``TimeLimit`` wrapper would hide ``task_description``
(``episode_length`` sets the length). The LeRobot ``EnvConfig`` of these envs is
``sim.lerobot_env_config.LatentVLAEnv`` (type ``latent_vla``), kept apart because importing LeRobot
costs seconds. gym + numpy only.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sim.env import SO101Env


class LeRobotSO101Env(gym.Wrapper):
    """An :class:`SO101Env` with LeRobot's sim-env observation keys and attributes.

    Observation (``gymnasium.spaces.Dict``): ``pixels`` (``Dict({camera: Box(0, 255, (H, W, 3),
    uint8)})``) and ``agent_pos`` (``Box((J,), float32)``, measured joints, robot units). The
    instruction is not in the observation; LeRobot reads it from :attr:`task_description`.

    Args:
        task: ``"reach"``, ``"push"`` or ``"pick"``.
        terminate_on_success: end the episode (``terminated``) at the first successful step, as
            gym-pusht does. LeRobot's eval reads success only when an episode ends
            (``final_info["is_success"]``), so with ``True`` its ``pc_success`` is "achieved at any step",
            the definition ``latent-vla eval`` uses; with ``False`` it is "achieved at the last step".
        **kwargs: :class:`sim.env.SO101Env` arguments (``image_height``, ``image_width``, ``cameras``,
            ``episode_length``, ``render_mode``, ...).

    Attributes:
        task: the task name (``"reach"``...), as LIBERO envs name theirs.
        _max_episode_steps: control steps per episode (LeRobot's rollout reads it).
    """

    def __init__(self, task: str = "reach", terminate_on_success: bool = True, **kwargs: Any) -> None:
        super().__init__(SO101Env(task=task, terminate_on_success=terminate_on_success, **kwargs))
        inner = self.env.observation_space
        assert isinstance(inner, spaces.Dict)
        self.observation_space = spaces.Dict({"pixels": inner["images"], "agent_pos": inner["state"]})
        self.task = task
        self._max_episode_steps = self.so101.episode_length

    @property
    def terminate_on_success(self) -> bool:
        """Whether an episode ends at its first success (the wrapped env ends it)."""
        return self.so101.terminate_on_success

    @property
    def so101(self) -> SO101Env:
        """The wrapped :class:`SO101Env` (scene, task, robot spec)."""
        env = self.env
        assert isinstance(env, SO101Env)
        return env

    @property
    def task_description(self) -> str:
        """The current episode's instruction, e.g. ``"push the red cube into the green zone"``."""
        return self.so101.instruction

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start an episode (the same one ``SO101Env.reset(seed=seed)`` starts)."""
        obs, info = self.env.reset(seed=seed, options=options)
        return lerobot_observation(obs), info

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        """One control tick with absolute joint targets ``(J,)`` in robot units."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return lerobot_observation(obs), float(reward), bool(terminated), bool(truncated), info


def lerobot_observation(obs: dict[str, Any]) -> dict[str, Any]:
    """An ``SO101Env`` observation in LeRobot's sim layout: ``{"pixels": {camera: (H, W, 3) uint8},
    "agent_pos": (J,) float32}`` (the instruction is dropped; LeRobot reads ``task_description``)."""
    return {"pixels": dict(obs["images"]), "agent_pos": np.asarray(obs["state"], dtype=np.float32)}
