"""An ONNX bundle as a LeRobot policy: LeRobot's eval loop plans with the numpy + onnxruntime brain."""

from __future__ import annotations

import numpy as np


def test_lerobot_eval_runs_a_bundle_brain(bundle_dir):
    from lerobot.envs.factory import make_env, make_env_pre_post_processors
    from lerobot.envs.utils import close_envs
    from lerobot.policies.factory import make_policy, make_pre_post_processors
    from lerobot.scripts.lerobot_eval import eval_policy

    from export.runtime.brain import BundleBrain
    from hardware.lerobot_policy import LatentVLAConfig
    from sim.lerobot_env_config import ENV_TYPE, LatentVLAEnv

    env_cfg = LatentVLAEnv(task="pick", episode_length=3, render_mode=None)
    policy_cfg = LatentVLAConfig(brain=str(bundle_dir), mode="grad", budget_ms=20.0)
    policy = make_policy(policy_cfg, env_cfg=env_cfg)
    pre, post = make_pre_post_processors(policy_cfg)
    env_pre, env_post = make_env_pre_post_processors(env_cfg, policy_cfg)
    envs = make_env(env_cfg, n_envs=1)
    try:
        info = eval_policy(envs[ENV_TYPE][0], policy, env_pre, env_post, pre, post, n_episodes=1, start_seed=2)
    finally:
        close_envs(envs)
    assert isinstance(policy.brains[0], BundleBrain)
    assert policy.brains[0].last_info is not None and np.isfinite(info["per_episode"][0]["sum_reward"])
