"""Our tasks as LeRobot envs: LeRobot's own make_env, preprocess_observation and eval loop run in them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import sim
from latent_vla.base.robot_spec import SO101
from sim.experts import make_expert
from sim.lerobot_env import LeRobotSO101Env

TASKS = sorted(sim.ENV_IDS)


def test_same_episode_as_the_sim_env_with_lerobot_keys():
    plain = sim.make_env("push")
    lerobot_env = gym.make(sim.LEROBOT_ENV_IDS["push"])
    try:
        assert isinstance(lerobot_env, LeRobotSO101Env)  # no wrapper hides task_description from LeRobot
        obs, _ = plain.reset(seed=7)
        lobs, _ = lerobot_env.reset(seed=7)
        assert set(lobs) == {"pixels", "agent_pos"} and lerobot_env.observation_space.contains(lobs)
        np.testing.assert_array_equal(lobs["agent_pos"], obs["state"])
        for camera in ("front", "wrist"):
            np.testing.assert_array_equal(lobs["pixels"][camera], obs["images"][camera])
        assert lerobot_env.task_description == obs["instruction"] and lerobot_env.task == "push"
        assert lerobot_env._max_episode_steps == plain.unwrapped.episode_length == 150
    finally:
        plain.close()
        lerobot_env.close()


def test_terminates_at_first_success_only_when_asked():
    for terminate in (True, False):
        env = LeRobotSO101Env("reach", terminate_on_success=terminate)
        expert = make_expert(env.so101)
        obs, _ = env.reset(seed=0)
        expert.reset(0)
        for _ in range(env._max_episode_steps):
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            if info["is_success"] or terminated or truncated:
                break
        env.close()
        assert info["is_success"], "the reach expert succeeds on seed 0"
        assert terminated is terminate and not truncated


def test_env_config_refuses_an_unknown_task():
    from sim.lerobot_env_config import LatentVLAEnv

    with pytest.raises(ValueError, match="env.task must be one of \\['pick', 'push', 'reach'\\]"):
        LatentVLAEnv(task="juggle")


def tiny_act_config():
    """A CPU-sized, randomly initialized ACT (no pretrained backbone: nothing is downloaded)."""
    from lerobot.policies.act.configuration_act import ACTConfig

    return ACTConfig(
        device="cpu", pretrained_backbone_weights=None, dim_model=32, n_heads=2, dim_feedforward=64,
        n_encoder_layers=1, n_vae_encoder_layers=1, chunk_size=4, n_action_steps=4,
    )  # fmt: skip


@pytest.mark.parametrize("task", TASKS)
def test_lerobot_eval_runs_act_in_each_task(task):
    """LeRobot's make_env, make_policy (features from our EnvConfig) and eval_policy, unchanged."""
    from lerobot.envs.factory import make_env, make_env_pre_post_processors
    from lerobot.envs.utils import add_envs_task, close_envs, preprocess_observation
    from lerobot.policies.factory import make_policy, make_pre_post_processors
    from lerobot.scripts.lerobot_eval import eval_policy

    from sim.lerobot_env_config import ENV_TYPE, LatentVLAEnv

    torch.manual_seed(0)
    env_cfg = LatentVLAEnv(task=task, episode_length=5, render_mode=None)
    envs = make_env(env_cfg, n_envs=1)
    vec = envs[ENV_TYPE][0]
    try:
        obs, _ = vec.reset(seed=[0])
        batch = add_envs_task(vec, preprocess_observation(obs))
        assert batch["task"] == [vec.envs[0].task_description] and batch["task"][0]
        assert batch["observation.state"].shape == (1, SO101.num_joints)
        assert batch["observation.images.front"].shape == (1, 3, 64, 64)

        policy_cfg = tiny_act_config()
        policy = make_policy(policy_cfg, env_cfg=env_cfg)
        assert set(policy_cfg.input_features) == {"observation.state", "observation.images.front",
                                                  "observation.images.wrist"}  # fmt: skip
        pre, post = make_pre_post_processors(policy_cfg)
        env_pre, env_post = make_env_pre_post_processors(env_cfg, policy_cfg)
        info = eval_policy(vec, policy, env_pre, env_post, pre, post, n_episodes=1, start_seed=3)
    finally:
        close_envs(envs)
    (episode,) = info["per_episode"]
    assert episode["seed"] == 3 and np.isfinite(episode["sum_reward"])
    assert 0.0 <= info["aggregated"]["pc_success"] <= 100.0
