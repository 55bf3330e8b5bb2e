"""Simulated SO-101 tabletop world: MuJoCo scenes, language-named tasks, scripted experts, collection.

``import sim`` registers the Gymnasium ids ``LatentVLA/SO101Reach-v0``, ``LatentVLA/SO101Push-v0``
and ``LatentVLA/SO101Pick-v0``, and their LeRobot-layout twins ``LatentVLA/SO101<Task>-LeRobot-v0``
(``sim.lerobot_env``; cheap: MuJoCo is imported only when an env is made).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym

if TYPE_CHECKING:
    from sim.env import SO101Env
    from sim.scene import SO101Scene

ENV_IDS: dict[str, str] = {
    "reach": "LatentVLA/SO101Reach-v0",
    "push": "LatentVLA/SO101Push-v0",
    "pick": "LatentVLA/SO101Pick-v0",
}
"""Task name -> registered Gymnasium id."""

LEROBOT_ENV_IDS: dict[str, str] = {task: env_id.replace("-v0", "-LeRobot-v0") for task, env_id in ENV_IDS.items()}
"""Task name -> Gymnasium id of the env in LeRobot's sim layout (``pixels``, ``agent_pos``; ``sim.lerobot_env``)."""

for _task, _env_id in ENV_IDS.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point="sim.env:SO101Env", kwargs={"task": _task})
    if LEROBOT_ENV_IDS[_task] not in gym.registry:
        # No OrderEnforcing / PassiveEnvChecker wrapper: LeRobot asks the outermost env for
        # `task_description` (tests/sim/test_envs.py checks the env below with Gymnasium's checker).
        gym.register(
            id=LEROBOT_ENV_IDS[_task],
            entry_point="sim.lerobot_env:LeRobotSO101Env",
            kwargs={"task": _task},
            order_enforce=False,
            disable_env_checker=True,
        )


def make_env(task: str, **kwargs: Any) -> gym.Env:
    """Make the Gymnasium env of a task (``reach``, ``push`` or ``pick``).

    ``kwargs`` go to :class:`sim.env.SO101Env` (``image_height``, ``image_width``, ``cameras``,
    ``render_mode``, ``episode_length``, ...). ``env.unwrapped`` is the ``SO101Env``.

    Raises:
        ValueError: listing the valid tasks when ``task`` is unknown.
    """
    if task not in ENV_IDS:
        raise ValueError(f"unknown task {task!r}; valid: {sorted(ENV_IDS)}")
    return gym.make(ENV_IDS[task], **kwargs)


def __getattr__(name: str) -> Any:
    # Lazy re-exports: keep `import sim` free of MuJoCo.
    if name == "robot_observation":
        from sim.observation import robot_observation

        return robot_observation
    if name == "SO101Env":
        from sim.env import SO101Env

        return SO101Env
    if name == "SO101Scene":
        from sim.scene import SO101Scene

        return SO101Scene
    raise AttributeError(f"module 'sim' has no attribute {name!r}")


__all__ = ["ENV_IDS", "LEROBOT_ENV_IDS", "SO101Env", "SO101Scene", "make_env", "robot_observation"]
