"""Our brain as a LeRobot policy: built by LeRobot's factory, run by LeRobot's eval loop in our envs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lerobot.configs.types import FeatureType, PolicyFeature

from hardware.brain import load_brain
from hardware.lerobot_policy import LatentVLAConfig, LatentVLAPolicy
from latent_vla.base.robot_spec import SO101

EPISODE_STEPS = 4


def _make(env_cfg, policy_cfg):
    from lerobot.envs.factory import make_env_pre_post_processors
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    policy = make_policy(policy_cfg, env_cfg=env_cfg)
    return policy, make_pre_post_processors(policy_cfg), make_env_pre_post_processors(env_cfg, policy_cfg)


def test_lerobot_eval_runs_our_brain_and_acts_as_latent_vla_would(tiny_checkpoint_dir):
    """LeRobot's make_policy / processors / rollout over two envs; each env's actions are the ones our
    brain gives for the same seeded episode outside LeRobot (images and state survive the round trip)."""
    from lerobot.envs.factory import make_env
    from lerobot.envs.utils import close_envs
    from lerobot.scripts.lerobot_eval import eval_policy, rollout

    import sim
    from sim.lerobot_env_config import ENV_TYPE, LatentVLAEnv
    from sim.observation import robot_observation

    env_cfg = LatentVLAEnv(task="reach", episode_length=EPISODE_STEPS, render_mode=None, terminate_on_success=False)
    policy_cfg = LatentVLAConfig(brain=str(tiny_checkpoint_dir), mode="policy")
    policy, (pre, post), (env_pre, env_post) = _make(env_cfg, policy_cfg)
    assert isinstance(policy, LatentVLAPolicy)
    envs = make_env(env_cfg, n_envs=2)
    vec = envs[ENV_TYPE][0]
    try:
        data = rollout(vec, policy, env_pre, env_post, pre, post, seeds=[5, 6])
        info = eval_policy(vec, policy, env_pre, env_post, pre, post, n_episodes=2, start_seed=5)
    finally:
        close_envs(envs)
    assert data["action"].shape == (2, EPISODE_STEPS, SO101.num_joints) and len(policy.brains) == 2
    assert [e["seed"] for e in info["per_episode"]] == [5, 6]

    brain = load_brain(str(tiny_checkpoint_dir), mode="policy")
    for b, seed in enumerate((5, 6)):
        env = sim.make_env("reach", episode_length=EPISODE_STEPS)
        obs, _ = env.reset(seed=seed)
        brain.reset(obs["instruction"])
        for t in range(EPISODE_STEPS):
            action = SO101.action_to_vector(brain.act(robot_observation(obs, SO101)))
            np.testing.assert_allclose(data["action"][b, t].numpy(), action, rtol=1e-5, atol=1e-4)
            obs, *_ = env.step(action)
        env.close()


def test_grad_planner_brain_in_lerobot_rollout(tiny_checkpoint_dir):
    from lerobot.envs.factory import make_env
    from lerobot.envs.utils import close_envs
    from lerobot.scripts.lerobot_eval import eval_policy

    import sim
    from sim.lerobot_env_config import ENV_TYPE, LatentVLAEnv

    env_cfg = LatentVLAEnv(task="push", episode_length=3, render_mode=None)
    policy_cfg = LatentVLAConfig(brain=str(tiny_checkpoint_dir), mode="grad", budget_ms=20.0)
    policy, (pre, post), (env_pre, env_post) = _make(env_cfg, policy_cfg)
    envs = make_env(env_cfg, n_envs=1)
    try:
        info = eval_policy(envs[ENV_TYPE][0], policy, env_pre, env_post, pre, post, n_episodes=1, start_seed=0)
    finally:
        close_envs(envs)
    assert np.isfinite(info["per_episode"][0]["sum_reward"])
    env = sim.make_env("push")
    assert policy.brains[0].instruction == env.reset(seed=0)[0]["instruction"]  # the env's reached the brain
    env.close()


def test_refuses_a_robot_or_features_the_brain_does_not_fit(tiny_checkpoint_dir):
    with pytest.raises(ValueError, match="policy.brain is required"):
        LatentVLAConfig()
    with pytest.raises(ValueError, match="policy.mode must be one of"):
        LatentVLAConfig(brain="scripted", mode="dream")
    five = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(5,))}
    with pytest.raises(ValueError, match="observation.state has shape \\(5,\\), but robot 'so101' has 6 joints"):
        LatentVLAPolicy(LatentVLAConfig(brain=str(tiny_checkpoint_dir), input_features=five))
    front_only = {"observation.images.front": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 64, 64))}
    with pytest.raises(ValueError, match="reads cameras \\['front', 'wrist'\\]"):
        LatentVLAPolicy(LatentVLAConfig(brain=str(tiny_checkpoint_dir), input_features=front_only))
    with pytest.raises(ValueError, match="uses units|trained for joints"):
        LatentVLAPolicy(LatentVLAConfig(brain=str(tiny_checkpoint_dir), robot="koch"))
    with pytest.raises(FileNotFoundError, match="no such run or bundle directory"):
        LatentVLAPolicy(LatentVLAConfig(brain="/nonexistent/run"))


def test_needs_an_instruction_from_the_env_or_the_config(tiny_checkpoint_dir):
    policy = LatentVLAPolicy(LatentVLAConfig(brain=str(tiny_checkpoint_dir), mode="policy"))
    batch = {
        "observation.state": torch.as_tensor(SO101.home_vector, dtype=torch.float32)[None],
        "observation.images.front": torch.rand(1, 3, 64, 64),
        "observation.images.wrist": torch.rand(1, 3, 64, 64),
        "task": [""],
    }
    with pytest.raises(ValueError, match="one instruction per env"):
        policy.select_action(batch)
    policy.config.instruction = "reach the red target"
    assert policy.select_action(batch).shape == (1, SO101.num_joints)
    assert policy.brains[0].instruction == "reach the red target"
    with pytest.raises(NotImplementedError, match="latent-vla train"):
        policy.forward(batch)


def test_builds_under_lerobots_no_grad(tiny_checkpoint_dir):
    """LeRobot may build or step the policy under no_grad / inference_mode; the planner still gets autograd."""
    with torch.inference_mode():
        policy = LatentVLAPolicy(LatentVLAConfig(brain=str(tiny_checkpoint_dir), mode="grad", instruction="reach"))
        batch = {
            "observation.state": torch.as_tensor(SO101.home_vector, dtype=torch.float32)[None],
            "observation.images.front": torch.rand(1, 3, 64, 64),
            "observation.images.wrist": torch.rand(1, 3, 64, 64),
        }
        assert torch.isfinite(policy.select_action(batch)).all()
