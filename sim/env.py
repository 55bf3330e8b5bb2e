"""Gymnasium env of the SO-101 tabletop: language-named tasks over :class:`sim.scene.SO101Scene`.

Observation (``gymnasium.spaces.Dict``): ``images`` (camera -> uint8 ``(H, W, 3)``), ``state``
(float32 ``(J,)`` measured joints, robot units), ``instruction`` (``Text``). Action: absolute joint
targets in robot units, ``Box(spec.lower, spec.upper, (J,), float32)``. Reward: the task's dense
progress signal (minus metres to success). Episodes truncate after the task's length and never
terminate early; ``info["is_success"]`` says whether the task is achieved now.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from latent_vla.base.robot_spec import RobotSpec, get_robot_spec
from sim.scene import SO101Scene
from sim.tasks import TASKS, Evaluation, Task
from sim.tasks.base import INSTRUCTION_CHARSET

INSTRUCTION_MAX_LENGTH = 120

STATE_MARGIN = 10.0
"""Slack of the ``state`` space beyond the joint limits, robot units (joints overshoot slightly)."""


class SO101Env(gym.Env):
    """SO-101 tabletop env for one task.

    Args:
        task: ``"reach"``, ``"push"`` or ``"pick"``.
        image_height: camera image height, pixels.
        image_width: camera image width, pixels.
        cameras: cameras in the observation; defaults to the spec's (``front``, ``wrist``).
        render_mode: ``None`` or ``"rgb_array"`` (a larger, nicer overview frame for videos).
        episode_length: control steps per episode; defaults to the task's.
        spec: robot spec or its registered name.
        reset_noise: uniform noise on the home pose at reset, robot units (degrees / percent).
        visual_jitter: scale of light / camera / table jitter at reset (0 disables it).
        render_size: ``(height, width)`` of ``render()`` frames, pixels.
        instruction_templates: templates that replace the task's own for this env (fields the task
            fills: ``{object}``, and ``{zone}`` for push); None = the task's ``templates``.
        terminate_on_success: end the episode (``terminated``) at the first step the task is achieved,
            as LeRobot's gym environments do; by default episodes run their full length, so an
            evaluation also sees whether the arm stays at its goal.

    Attributes:
        scene: the :class:`sim.scene.SO101Scene` (experts may read its true state).
        task: the :class:`sim.tasks.Task` (target, zone, layout, instruction).
        spec_robot: the robot spec (``spec`` is Gymnasium's ``EnvSpec``).
        episode_length: control steps per episode.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        task: str = "reach",
        image_height: int = 64,
        image_width: int = 64,
        cameras: list[str] | tuple[str, ...] | None = None,
        render_mode: str | None = None,
        episode_length: int | None = None,
        spec: RobotSpec | str = "so101",
        reset_noise: float = 3.0,
        visual_jitter: float = 1.0,
        render_size: tuple[int, int] = (480, 640),
        instruction_templates: list[str] | tuple[str, ...] | None = None,
        terminate_on_success: bool = False,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; valid: {sorted(TASKS)}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}")
        self.spec_robot = get_robot_spec(spec) if isinstance(spec, str) else spec
        self.scene = SO101Scene(self.spec_robot, image_height, image_width)
        self.task: Task = TASKS[task](self.scene, instruction_templates)
        self.task_name = task
        self.cameras = tuple(cameras) if cameras is not None else tuple(self.spec_robot.camera_names)
        unknown = [c for c in self.cameras if c not in self.scene.camera_ids]
        if unknown:
            raise ValueError(f"unknown cameras {unknown}; valid: {sorted(self.scene.camera_ids)}")
        self.episode_length = int(episode_length or self.task.episode_length)
        if self.episode_length <= 0:
            raise ValueError(f"episode_length must be positive, got {self.episode_length}")
        self.render_mode = render_mode
        self.render_size = render_size
        self.reset_noise = float(reset_noise)
        self.visual_jitter = float(visual_jitter)
        self.terminate_on_success = bool(terminate_on_success)
        missing = self.task.charset() - set(INSTRUCTION_CHARSET)
        if missing:
            raise ValueError(
                f"instruction templates use characters outside {INSTRUCTION_CHARSET!r}: {''.join(sorted(missing))!r}"
            )

        spec_r = self.spec_robot
        j = spec_r.num_joints
        self.action_space = spaces.Box(
            spec_r.lower.astype(np.float32), spec_r.upper.astype(np.float32), (j,), np.float32
        )
        self.observation_space = spaces.Dict(
            {
                "images": spaces.Dict(
                    {c: spaces.Box(0, 255, (image_height, image_width, 3), np.uint8) for c in self.cameras}
                ),
                "state": spaces.Box(
                    (spec_r.lower - STATE_MARGIN).astype(np.float32),
                    (spec_r.upper + STATE_MARGIN).astype(np.float32),
                    (j,),
                    np.float32,
                ),
                "instruction": spaces.Text(
                    max_length=INSTRUCTION_MAX_LENGTH, min_length=1, charset=INSTRUCTION_CHARSET
                ),
            }
        )
        self._steps = 0

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start an episode: home pose plus noise, new layout, colours, lights and instruction."""
        super().reset(seed=seed)
        rng = self.np_random
        spec = self.spec_robot
        home = spec.home_vector + rng.uniform(-self.reset_noise, self.reset_noise, spec.num_joints)
        self.scene.reset(np.clip(home, spec.lower, spec.upper))
        self.task.reset(rng, self.visual_jitter)
        self._steps = 0
        return self._observation(), self._info(self.task.evaluate())

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        """Apply absolute joint targets (robot units, ``(J,)``) for one control tick (1 / fps s)."""
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (self.spec_robot.num_joints,):
            raise ValueError(f"action must have shape ({self.spec_robot.num_joints},), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action must be finite, got {action}")
        self.scene.set_targets(action)
        self.scene.tick()
        self._steps += 1
        evaluation = self.task.evaluate()
        terminated = self.terminate_on_success and bool(evaluation.success)
        truncated = self._steps >= self.episode_length
        return self._observation(), evaluation.reward, terminated, truncated, self._info(evaluation)

    def render(self) -> np.ndarray | None:
        """The ``rgb_array`` video frame: uint8 ``(H, W, 3)`` from the overview camera."""
        if self.render_mode != "rgb_array":
            return None
        return self.scene.render_pretty("overview", *self.render_size)

    def close(self) -> None:
        """Free the renderers."""
        self.scene.close()

    # -- helpers -------------------------------------------------------------------------------
    @property
    def instruction(self) -> str:
        """The current episode's instruction."""
        return self.task.instruction

    @property
    def elapsed_steps(self) -> int:
        """Control steps taken in this episode."""
        return self._steps

    def _observation(self) -> dict[str, Any]:
        state = np.clip(
            self.scene.joint_positions(),
            self.observation_space["state"].low,
            self.observation_space["state"].high,
        ).astype(np.float32)
        return {
            "images": {c: self.scene.render(c) for c in self.cameras},
            "state": state,
            "instruction": self.task.instruction,
        }

    def _info(self, evaluation: Evaluation) -> dict[str, Any]:
        return {
            "is_success": bool(evaluation.success),
            "task_distance": float(evaluation.distance),
            "reward_terms": dict(evaluation.reward_terms),
            "instruction": self.task.instruction,
            "task": self.task_name,
            "target": self.task.target,
            "object_gaps": self.task.object_gaps(),
            "environment_state": self.task.environment_state(),
            "progress": self.task.progress(),
        }
