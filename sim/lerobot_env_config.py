"""LeRobot ``EnvConfig`` of our tasks: ``--env.type=latent_vla --env.task=push`` in LeRobot's tools.

Importing this module registers the env type ``latent_vla`` with
``lerobot.envs.configs.EnvConfig.register_subclass`` (LeRobot's own registry), after which LeRobot's
``make_env`` builds our envs (``sim.lerobot_env.LeRobotSO101Env``) as a ``SyncVectorEnv``,
``env_to_policy_features`` gives a policy its features, and ``lerobot_eval.eval_policy`` / ``rollout``
run in them unchanged::

    import sim.lerobot_env_config  # registers the env type
    from lerobot.envs.factory import make_env
    from sim.lerobot_env_config import LatentVLAEnv

    envs = make_env(LatentVLAEnv(task="push"), n_envs=1)   # {"latent_vla": {0: SyncVectorEnv}}

The features match what ``latent-vla collect`` writes (``observation.images.<camera>``,
``observation.state``, ``action``), so a LeRobot policy trained on our datasets runs in these envs as
it is. Kept apart from ``sim.lerobot_env`` because importing LeRobot takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE

from latent_vla.base.robot_spec import get_robot_spec
from sim import LEROBOT_ENV_IDS

ENV_TYPE = "latent_vla"
"""The ``--env.type`` of our envs in LeRobot's tools."""


@EnvConfig.register_subclass(ENV_TYPE)
@dataclass
class LatentVLAEnv(EnvConfig):
    """One of our tasks as a LeRobot env.

    Attributes:
        task: ``reach``, ``push`` or ``pick``.
        fps: control rate, Hz (the robot spec's; LeRobot writes eval videos at it).
        robot: registered robot spec of the simulated arm (joint names, limits, cameras).
        episode_length: control steps per episode; ``None`` = the task's (60 reach, 150 push / pick).
        observation_height: camera image height, pixels.
        observation_width: camera image width, pixels.
        cameras: cameras in ``pixels``; empty = the robot spec's (``front``, ``wrist``).
        terminate_on_success: end an episode at its first success, so that LeRobot's ``pc_success``
            means "achieved at any step", as in ``latent-vla eval`` (see ``sim.lerobot_env``).
        render_mode: ``"rgb_array"`` (eval videos of the overview camera) or ``None``.
    """

    task: str | None = "reach"
    fps: int = 30
    robot: str = "so101"
    episode_length: int | None = None
    observation_height: int = 64
    observation_width: int = 64
    cameras: list[str] = field(default_factory=list)
    terminate_on_success: bool = True
    render_mode: str | None = "rgb_array"

    def __post_init__(self) -> None:
        if self.task not in LEROBOT_ENV_IDS:
            raise ValueError(f"env.task must be one of {sorted(LEROBOT_ENV_IDS)}, got {self.task!r}")
        if self.episode_length is not None and self.episode_length < 1:
            raise ValueError(f"env.episode_length must be >= 1 control steps, got {self.episode_length}")
        spec = get_robot_spec(self.robot)
        if not self.cameras:
            self.cameras = list(spec.camera_names)
        j = spec.num_joints
        hwc = (self.observation_height, self.observation_width, 3)
        self.features = {
            ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(j,)),
            "agent_pos": PolicyFeature(type=FeatureType.STATE, shape=(j,)),
            **{f"pixels/{c}": PolicyFeature(type=FeatureType.VISUAL, shape=hwc) for c in self.cameras},
        }
        self.features_map = {
            ACTION: ACTION,
            "agent_pos": OBS_STATE,
            **{f"pixels/{c}": f"{OBS_IMAGES}.{c}" for c in self.cameras},
        }

    @property
    def package_name(self) -> str:
        """What LeRobot's ``make_env`` imports when the Gymnasium id is not registered yet."""
        return "sim"

    @property
    def gym_id(self) -> str:
        """The task's LeRobot-layout Gymnasium id, e.g. ``LatentVLA/SO101Push-LeRobot-v0``."""
        return LEROBOT_ENV_IDS[str(self.task)]

    @property
    def gym_kwargs(self) -> dict:
        """``gym.make`` keyword arguments (no ``max_episode_steps``: see ``sim.lerobot_env``)."""
        return {
            "image_height": self.observation_height,
            "image_width": self.observation_width,
            "cameras": list(self.cameras),
            "episode_length": self.episode_length,
            "spec": self.robot,
            "terminate_on_success": self.terminate_on_success,
            "render_mode": self.render_mode,
        }
