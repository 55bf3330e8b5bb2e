"""Every registered SO-101 env: Gymnasium API compliance, shapes, determinism, instructions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim
from latent_vla.base.robot_spec import SO101
from sim.tasks import TASKS

TASK_NAMES = sorted(TASKS)


@pytest.fixture(scope="module", params=TASK_NAMES)
def env(request):
    e = sim.make_env(request.param)
    yield e
    e.close()


def test_registered_ids():
    for task, env_id in sim.ENV_IDS.items():
        assert env_id in gym.registry, task
    assert set(TASK_NAMES) <= set(sim.ENV_IDS)


def test_unknown_task_lists_valid_ones():
    with pytest.raises(ValueError, match="valid: \\['pick', 'push', 'reach'\\]"):
        sim.make_env("juggle")


def test_check_env(env):
    check_env(env.unwrapped, skip_render_check=True)


def test_reset_step_shapes_and_finiteness(env):
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert set(obs["images"]) == {"front", "wrist"}
    for image in obs["images"].values():
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert image.std() > 5.0  # a real rendered scene, not a blank buffer
    assert obs["state"].shape == (SO101.num_joints,) and obs["state"].dtype == np.float32
    np.testing.assert_allclose(obs["state"], SO101.home_vector, atol=5.0)
    assert {"is_success", "task_distance", "reward_terms"} <= set(info)
    zero = np.zeros(SO101.num_joints, dtype=np.float32)
    home = SO101.home_vector.astype(np.float32)
    steps = env.unwrapped.episode_length
    for t in range(steps):
        action = zero if t < 5 else (home if t < 10 else env.action_space.sample())
        obs, reward, terminated, truncated, info = env.step(action)
        assert np.all(np.isfinite(obs["state"])) and np.isfinite(reward)
        assert env.observation_space.contains(obs)
        assert not terminated
        assert info["task_distance"] >= 0.0
        assert reward == pytest.approx(sum(info["reward_terms"].values()))
        assert truncated == (t == steps - 1)
    # no tunnelling or explosions: objects rest on the table or (knocked off) on the floor
    scene = env.unwrapped.scene
    for name in scene.object_body:
        z = scene.object_position(name)[2]
        assert z > -0.005 or -0.765 < z < -0.7, (name, z)  # never inside the table slab / floor
        assert np.all(np.abs(scene.data.qvel) < 100.0)


def test_deterministic_under_seed(env):
    actions = np.random.default_rng(0).uniform(SO101.lower, SO101.upper, (15, SO101.num_joints))
    runs = []
    for _ in range(2):
        obs, _ = env.reset(seed=11)
        trace = [obs["state"].copy(), obs["images"]["front"].copy()]
        for a in actions:
            obs, reward, *_ = env.step(a.astype(np.float32))
            trace += [obs["state"].copy(), np.float64(reward)]
        trace.append(obs["images"]["wrist"].copy())
        runs.append((obs["instruction"], trace))
    assert runs[0][0] == runs[1][0]
    for x, y in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_array_equal(x, y)
    other, _ = env.reset(seed=12)
    assert not np.array_equal(other["images"]["front"], runs[0][1][1])


@pytest.mark.parametrize("task", TASK_NAMES)
def test_instruction_names_the_target(task):
    env = sim.make_env(task)
    try:
        for seed in range(5):
            obs, _ = env.reset(seed=seed)
            u = env.unwrapped
            phrase = u.task.layout.describe(u.task.target)
            assert phrase in obs["instruction"]
            assert phrase.split()[1] in {"cube", "cylinder"}
            if u.task.zone is not None:
                assert u.task.layout.describe(u.task.zone) in obs["instruction"]
    finally:
        env.close()


def test_bad_actions_rejected(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.full(SO101.num_joints, np.nan, dtype=np.float32))


def test_robot_observation_dict():
    env = sim.make_env("reach")
    obs, _ = env.reset(seed=0)
    robot_obs = sim.robot_observation(obs, SO101)
    assert set(robot_obs) == {*SO101.action_keys, "front", "wrist"}
    assert robot_obs["elbow_flex.pos"] == pytest.approx(float(obs["state"][2]))
    assert robot_obs["front"].shape == (64, 64, 3)
    env.close()


def test_custom_image_size_and_render():
    env = sim.make_env("reach", image_height=48, image_width=80, render_mode="rgb_array",
                       render_size=(120, 160))
    obs, _ = env.reset(seed=0)
    assert obs["images"]["front"].shape == (48, 80, 3)
    frame = env.render()
    assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8 and frame.std() > 5.0
    check_env(env.unwrapped)  # including Gymnasium's render checks
    env.close()


def test_scene_twin_api():
    """The low-level scene the hardware twin reuses: targets in, tick, joints and FK out."""
    scene = sim.SO101Scene()
    scene.reset()
    target = SO101.home_vector + np.array([20.0, 10.0, -10.0, 0.0, 30.0, 30.0])
    sent = scene.set_targets(target)
    np.testing.assert_allclose(sent, target)
    for _ in range(30):  # 1 s
        scene.tick()
    assert scene.time == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(scene.joint_positions(), target, atol=2.0)
    np.testing.assert_allclose(scene.forward_kinematics(scene.joint_positions()), scene.tip_position(),
                               atol=1e-9)
    tip = scene.tip_position()
    assert 0.05 < np.hypot(tip[0], tip[1]) < 0.45 and 0.0 < tip[2] < 0.3
    batch = scene.forward_kinematics(np.stack([SO101.home_vector, target]))
    assert batch.shape == (2, 3)
    assert scene.render("front").shape == (64, 64, 3)
    with pytest.raises(ValueError, match="unknown camera"):
        scene.render("top")
    with pytest.raises(ValueError, match="finite"):
        scene.set_targets(np.full(6, np.inf))
    scene.close()


def test_task_success_semantics():
    """Success and distance follow the physical state: teleport objects / the arm and re-evaluate."""
    from sim.experts.ik import DLSIK, down_rotation

    # push: the cube on the zone centre succeeds, 10 cm away it does not
    env = sim.make_env("push")
    env.reset(seed=1)
    u = env.unwrapped
    scene, task = u.scene, u.task
    ev = task.evaluate()
    assert not ev.success and ev.distance > 0.03
    zone = scene.zone_position(task.zone)[:2]
    scene.set_object_pose(task.target, zone)
    scene.forward()
    ev = task.evaluate()
    assert ev.success and ev.distance == 0.0
    scene.set_object_pose(task.target, zone + np.array([0.1, 0.0]))
    scene.forward()
    ev = task.evaluate()
    assert not ev.success and ev.distance == pytest.approx(0.1 - task.goal_radius, abs=1e-6)
    env.close()

    # pick: a cube in the air but not in the hand is not picked
    env = sim.make_env("pick")
    env.reset(seed=2)
    u = env.unwrapped
    adr = u.scene.object_qpos[u.task.target]
    u.scene.data.qpos[adr + 2] = 0.1
    u.scene.forward()
    ev = u.task.evaluate()
    assert not ev.success and ev.reward_terms["lift"] == 0.0 and ev.reward_terms["grasp_to_object"] < 0.0
    env.close()

    # reach: put the tip on top of the target with IK
    env = sim.make_env("reach")
    env.reset(seed=3)
    u = env.unwrapped
    scene, task = u.scene, u.task
    assert not task.evaluate().success
    centre = scene.object_position(task.target)
    goal = centre + np.array([0.0, 0.0, scene.object_half_height(task.target) + 0.005])
    q_arm, err = DLSIK(scene, iterations=200).solve(
        scene.data.qpos[scene.qpos_ids[:5]], goal, down_rotation(float(np.arctan2(goal[1], goal[0])) + np.pi / 2)
    )
    assert err < 2e-3
    scene.data.qpos[scene.qpos_ids[:5]] = q_arm
    scene.forward()
    ev = task.evaluate()
    assert ev.success and ev.distance == 0.0 and ev.reward == 0.0
    env.close()


def test_distractor_count_varies_and_parked_objects_rest():
    env = sim.make_env("pick")
    counts = set()
    for seed in range(12):
        env.reset(seed=seed)
        u = env.unwrapped
        layout = u.task.layout
        assert u.task.target in layout.object_xy and u.task.target not in layout.parked
        on_table = [n for n in u.scene.object_body if u.scene.on_table(n)]
        assert sorted(on_table) == sorted(layout.object_xy)
        counts.add(len(on_table))
    assert len(counts) >= 2 and min(counts) >= 2  # target + 1..3 distractors
    for _ in range(30):
        env.step(SO101.home_vector.astype(np.float32))
    for name in layout.parked:  # parked objects stay put on the floor
        assert u.scene.object_position(name)[2] < -0.7
        assert np.abs(u.scene.data.qvel[u.scene.object_qvel[name] : u.scene.object_qvel[name] + 6]).max() < 1e-3
    env.close()


@pytest.mark.parametrize("task", TASK_NAMES)
def test_info_carries_the_named_objects_environment_state(task):
    """``info["environment_state"]`` = [target xyz, goal xyz] (metres): what collection stores as
    ``observation.environment_state`` for the auxiliary head."""
    env = sim.make_env(task)
    try:
        _, info = env.reset(seed=3)
        u = env.unwrapped
        state = info["environment_state"]
        assert state.shape == (6,) and state.dtype == np.float32
        assert len(u.task.ENVIRONMENT_STATE_NAMES) == 6
        np.testing.assert_allclose(state[:3], u.scene.object_position(u.task.target), atol=1e-6)
        if task == "push":
            np.testing.assert_allclose(state[3:], u.scene.zone_position(u.task.zone), atol=1e-6)
        elif task == "pick":
            np.testing.assert_allclose(state[3:5], state[:2], atol=1e-6)
            assert state[5] == pytest.approx(u.task.lift_height)
        else:
            np.testing.assert_allclose(state[3:], state[:3])
        _, _, _, _, info = env.step(u.scene.joint_positions().astype(np.float32))
        assert info["environment_state"].shape == (6,)
    finally:
        env.close()


def test_terminate_on_success_ends_the_episode_at_the_first_success():
    """With ``terminate_on_success`` the expert's reach ends (``terminated``) the step it touches the
    target; by default the same episode runs on to its full length, never ``terminated``."""
    from sim.experts import make_expert

    def run(**kwargs) -> tuple[list[tuple[bool, bool, bool]], int]:
        env = sim.make_env("reach", cameras=["front"], **kwargs)
        expert = make_expert(env)
        obs, _ = env.reset(seed=4)
        expert.reset(4)
        steps, done = [], False
        while not done:
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            steps.append((bool(info["is_success"]), terminated, truncated))
            done = terminated or truncated
        env.close()
        return steps, env.unwrapped.episode_length

    (default, length), (stopping, _) = run(), run(terminate_on_success=True)
    first = next(i for i, (success, _, _) in enumerate(default) if success)
    assert len(default) == length and not any(t for _, t, _ in default)
    assert len(stopping) == first + 1 and stopping[-1] == (True, True, False)
    assert stopping == [(s, i == first, False) for i, (s, _, _) in enumerate(default[: first + 1])]
