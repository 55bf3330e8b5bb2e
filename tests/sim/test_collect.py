"""Collection into a LeRobotDataset: real MuJoCo episodes, real files, reopened with LeRobot."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import sim
from latent_vla.base.robot_spec import SO101
from sim.collect import CollectConfig, CollectError, check_output_dir, collect, split_seeds
from sim.dataset_features import dataset_features, features_mismatch, make_frame

REPO = "test/so101_reach"
STEPS = 8  # control steps per episode: tiny but real


def _cfg(out: Path, **kw) -> CollectConfig:
    base = dict(
        task="reach",
        episodes=3,
        seed=7,
        out=out,
        repo_id=REPO,
        workers=1,
        max_episode_steps=STEPS,
        progress=False,
    )
    base.update(kw)
    return CollectConfig(**base)


def _open(root: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(REPO, root=root, video_backend="pyav")


def _columns(ds) -> dict[str, np.ndarray]:
    """Non-video columns of a reopened dataset as numpy arrays, in frame order."""
    hf = ds.hf_dataset.with_format("numpy")
    keys = ["episode_index", "frame_index", "observation.state", "action", "next.success", "next.done"]
    keys += ["observation.environment_state"]
    return {k: np.asarray(hf[k]) for k in keys + ["task_index"]}


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("collect") / "reach"
    result = collect(_cfg(out))
    return out, result


# ----------------------------------------------------------------------------------------------
# features
# ----------------------------------------------------------------------------------------------
def test_dataset_features_follow_the_robot_spec():
    ft = dataset_features(SO101, (48, 80))
    assert list(ft) == [
        "observation.images.front",
        "observation.images.wrist",
        "observation.state",
        "action",
        "next.reward",
        "next.success",
        "next.done",
    ]
    assert ft["observation.images.front"] == {
        "dtype": "video",
        "shape": (48, 80, 3),
        "names": ["height", "width", "channels"],
    }
    assert ft["observation.state"]["names"] == SO101.action_keys
    assert ft["action"]["shape"] == (6,)
    plain = dataset_features(SO101, use_videos=False, task_signals=False)
    assert plain["observation.images.wrist"]["dtype"] == "image"
    assert plain["observation.images.wrist"]["shape"] == (64, 64, 3)  # the spec's size
    assert "next.reward" not in plain
    with pytest.raises(ValueError, match="unknown cameras"):
        dataset_features(SO101, {"top": (64, 64)})
    with_env = dataset_features(SO101, (16, 16), environment_state=("target.x", "target.y"))
    env_ft = with_env["observation.environment_state"]
    assert env_ft == {"dtype": "float32", "shape": (2,), "names": ["target.x", "target.y"]}
    imgs = {"front": np.zeros((16, 16, 3), np.uint8), "wrist": np.zeros((16, 16, 3), np.uint8)}
    args = (with_env, imgs, np.zeros(6), np.ones(6), "x", -1.0, False, False)
    with pytest.raises(ValueError, match="environment_state"):
        make_frame(*args)
    with pytest.raises(ValueError, match="expected shape"):
        make_frame(*args, environment_state=np.zeros(3))
    assert make_frame(*args, environment_state=[0.1, 0.2])["observation.environment_state"].dtype == np.float32


def test_make_frame_checks_shapes_and_features_mismatch_reports_differences():
    ft = dataset_features(SO101, (16, 16))
    imgs = {"front": np.zeros((16, 16, 3), np.uint8), "wrist": np.zeros((16, 16, 3), np.uint8)}
    frame = make_frame(ft, imgs, np.zeros(6), np.ones(6), "reach it", reward=-0.5, success=True, done=False)
    assert frame["next.success"].dtype == np.bool_ and frame["next.success"].shape == (1,)
    assert frame["action"].dtype == np.float32 and frame["task"] == "reach it"
    with pytest.raises(ValueError, match="wrist"):
        make_frame(ft, {"front": imgs["front"]}, np.zeros(6), np.ones(6), "x", -1.0, False, False)
    with pytest.raises(ValueError, match="next.reward"):
        make_frame(ft, imgs, np.zeros(6), np.ones(6), "x")
    with pytest.raises(ValueError, match="6 joint values"):
        make_frame(ft, imgs, np.zeros(5), np.ones(6), "x", -1.0, False, False)
    assert features_mismatch(ft, ft) == []
    problems = features_mismatch(ft, dataset_features(SO101, (32, 32)))
    assert any("observation.images.front" in p for p in problems)


def test_split_seeds_is_contiguous_and_complete():
    blocks = split_seeds(10, 7, 3)
    assert [s for b in blocks for s in b] == list(range(10, 17))
    assert len(blocks) == 3 and all(blocks)
    assert split_seeds(0, 2, 8) == [(0,), (1,)]


# ----------------------------------------------------------------------------------------------
# collect -> reopen round trip
# ----------------------------------------------------------------------------------------------
def test_round_trip_reopens_with_lerobot(collected):
    out, result = collected
    ds = _open(out)
    assert ds.num_episodes == 3 and ds.num_frames == 3 * STEPS
    assert ds.fps == int(SO101.fps) == result.fps
    assert ds.meta.robot_type == "so101"
    assert set(ds.meta.video_keys) == {"observation.images.front", "observation.images.wrist"}
    # one MP4 per episode and camera (no quadratic re-muxing of a growing file)
    assert len(list((out / "videos" / "observation.images.front").rglob("*.mp4"))) == 3
    item = ds[STEPS + 2]  # a frame of the second episode, decoded from video
    assert item["observation.images.front"].shape == (3, 64, 64)
    assert str(item["observation.images.wrist"].dtype) == "torch.float32"
    assert float(item["observation.images.front"].max()) > 0.05  # a rendered scene, not black
    assert item["observation.state"].shape == (6,) and item["action"].shape == (6,)
    assert str(item["next.success"].dtype) == "torch.bool"
    assert int(item["episode_index"]) == 1 and int(item["frame_index"]) == 2

    doc = json.loads((out / "collect.json").read_text())
    assert doc["episodes"] == 3 and doc["frames"] == 3 * STEPS and doc["fps"] == 30
    assert [e["seed"] for e in doc["per_episode"]] == [7, 8, 9]
    assert [e["episode_index"] for e in doc["per_episode"]] == [0, 1, 2]
    # The instruction is each frame's LeRobot task; it is the one collect.json recorded.
    assert item["task"] == doc["per_episode"][1]["instruction"]
    assert set(ds.meta.tasks.index) == {e["instruction"] for e in doc["per_episode"]}

    cols = _columns(ds)
    for rec in doc["per_episode"]:
        rows = cols["episode_index"] == rec["episode_index"]
        success = cols["next.success"][rows].reshape(-1)
        done = cols["next.done"][rows].reshape(-1)
        assert rec["frames"] == rows.sum() == STEPS
        assert rec["success"] == bool(success.any())
        assert rec["final_success"] == bool(success[-1])
        assert done.tolist() == [False] * (STEPS - 1) + [True]
    assert doc["pc_success"] == pytest.approx(100 * np.mean([r["success"] for r in doc["per_episode"]]))
    # Each frame's environment state is that of its observation: the reset's for the first frame.
    env = sim.make_env("reach")
    try:
        _, info = env.reset(seed=8)
        first = np.flatnonzero((cols["episode_index"] == 1) & (cols["frame_index"] == 0))[0]
        np.testing.assert_allclose(cols["observation.environment_state"][first], info["environment_state"], atol=1e-6)
    finally:
        env.close()
    # statistics: exact for the vectors, frame-sampled but sane for the images
    stats = ds.meta.stats
    np.testing.assert_allclose(stats["observation.state"]["mean"], cols["observation.state"].mean(0), atol=1e-3)
    np.testing.assert_allclose(stats["action"]["max"], cols["action"].max(0), atol=1e-4)
    img = stats["observation.images.front"]
    assert np.all((img["mean"] > 0.02) & (img["mean"] < 0.98)) and np.all(img["std"] > 0.01)
    # actions are joint targets inside the limits, states are measured joints
    assert np.all(cols["action"] >= SO101.lower - 1e-4) and np.all(cols["action"] <= SO101.upper + 1e-4)
    assert not np.allclose(cols["observation.state"][0], cols["observation.state"][STEPS - 1])


def test_output_checks_refuse_clearly(collected, tmp_path):
    out, _ = collected
    with pytest.raises(CollectError, match="mode=append"):
        collect(_cfg(out))  # mode=fail on an existing dataset
    ft = dataset_features(SO101, (32, 32))
    with pytest.raises(CollectError, match="different dataset"):
        check_output_dir(out, "append", ft, 30, "so101")
    with pytest.raises(CollectError, match="fps"):
        check_output_dir(out, "append", dataset_features(SO101, (64, 64)), 15, "so101")
    junk = tmp_path / "notes"
    junk.mkdir()
    (junk / "todo.txt").write_text("mine")
    for mode in ("fail", "append", "overwrite"):
        with pytest.raises(CollectError, match="holds no LeRobotDataset"):
            collect(_cfg(junk, mode=mode))
    assert (junk / "todo.txt").read_text() == "mine"
    with pytest.raises(CollectError, match=r"valid tasks: reach, push, pick"):
        collect(_cfg(tmp_path / "x", task="stack"))
    with pytest.raises(CollectError, match="policy"):
        collect(_cfg(tmp_path / "x", policy="telepathy"))
    assert not (tmp_path / "x").exists()


def test_reset_noise_widens_the_start_poses(collected, tmp_path):
    out, _ = collected
    wide = tmp_path / "wide"
    collect(_cfg(wide, reset_noise=25.0))
    home = np.asarray(SO101.home_vector)

    def start_offsets(root: Path) -> np.ndarray:
        cols = _columns(_open(root))
        first = cols["frame_index"] == 0
        return np.abs(cols["observation.state"][first] - home)  # (episodes, J), robot units

    default, widened = start_offsets(out), start_offsets(wide)
    assert default.max() < 3.0 + 1.0  # the env's +-3 degrees (plus settling)
    assert widened.max() > 6.0  # 3 episodes x 6 joints drawn from +-25: all below 6 has p < 1e-5
    with pytest.raises(CollectError, match="reset_noise"):
        collect(_cfg(tmp_path / "bad", reset_noise=-1.0))


def _decoded_vs_rendered(root: Path, seed: int) -> np.ndarray:
    """Per-pixel |decoded - rendered| of an episode's first frame, both cameras, 0..255 levels."""
    from latent_vla.data import load_frames

    cache = load_frames(root, episodes=[0], progress=False, video_backend="pyav")
    env = sim.make_env("reach")
    try:
        obs, _ = env.reset(seed=seed)
    finally:
        env.close()
    return np.stack([np.abs(cache.images[c][0].astype(int) - obs["images"][c]) for c in ("front", "wrist")])


def test_videos_keep_the_rendered_colours(collected, tmp_path):
    """The default (yuv444p, crf 0) decodes to the frames the env rendered; LeRobot's yuv420p/crf 30 does not."""
    out, _ = collected
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["features"]["observation.images.front"]["info"]["video.pix_fmt"] == "yuv444p"
    assert _decoded_vs_rendered(out, seed=7).max() <= 3  # RGB <-> YUV rounding only
    lossy = tmp_path / "lossy"
    collect(_cfg(lossy, episodes=1, pix_fmt="yuv420p", crf=30))
    assert _decoded_vs_rendered(lossy, seed=7).max() > 30  # small objects lose their colour
    with pytest.raises(CollectError, match="pix_fmt"):
        collect(_cfg(tmp_path / "bad", pix_fmt="rgb24"))
    with pytest.raises(CollectError, match="needs vcodec=h264"):
        collect(_cfg(tmp_path / "bad", vcodec="libsvtav1"))
    with pytest.raises(CollectError, match="crf"):
        collect(_cfg(tmp_path / "bad", crf=60))
    with pytest.raises(CollectError, match="streaming_encoding=false"):
        collect(_cfg(tmp_path / "bad", streaming_encoding=False))
    assert not (tmp_path / "bad").exists()


def test_interrupt_mid_episode_keeps_finished_episodes(tmp_path):
    class StopMidThirdEpisode:
        """Reads like a Ctrl-C that lands in the middle of the third episode."""

        def __init__(self) -> None:
            self.calls, self.flag = 0, False

        def is_set(self) -> bool:
            self.calls += 1
            return self.flag or self.calls > 2 * STEPS + STEPS // 2

        def set(self) -> None:
            self.flag = True

    out = tmp_path / "interrupted"
    result = collect(_cfg(out, episodes=4, seed=3), stop=StopMidThirdEpisode())
    assert result.interrupted and len(result.episodes) == 2
    ds = _open(out)
    assert ds.num_episodes == 2 and ds.num_frames == 2 * STEPS
    ds[2 * STEPS - 1]  # the last kept frame decodes
    doc = json.loads((out / "collect.json").read_text())
    assert doc["interrupted"] is True and doc["episodes_requested"] == 4
    assert [e["seed"] for e in doc["per_episode"]] == [3, 4]
    assert not list(tmp_path.glob(".interrupted.collect-*"))  # staging cleaned up


@pytest.mark.parametrize("how", ["keyboard_interrupt", "sigterm"])
def test_interrupt_between_episodes_keeps_finished_episodes(tmp_path, how):
    def after_two(record: dict) -> None:
        if record["seed"] == 1:
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)  # handled: sets the stop flag
            else:
                raise KeyboardInterrupt

    out = tmp_path / how
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    result = collect(_cfg(out, episodes=4, seed=0), on_episode=after_two)
    assert result.interrupted and [e.seed for e in result.episodes] == [0, 1]
    assert _open(out).num_episodes == 2
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # restored


def test_a_failing_episode_keeps_the_finished_ones_and_raises(tmp_path, monkeypatch):
    import sim.collect_worker as cw

    real = cw._episode

    def flaky(env, policy, seed, *args):
        if seed == 1:
            raise FloatingPointError("simulated blow-up")
        return real(env, policy, seed, *args)

    monkeypatch.setattr(cw, "_episode", flaky)
    out = tmp_path / "flaky"
    with pytest.raises(RuntimeError, match=r"1 finished episodes kept(.|\n)*simulated blow-up"):
        collect(_cfg(out, episodes=3, seed=0))
    assert _open(out).num_episodes == 1
    assert [e["seed"] for e in json.loads((out / "collect.json").read_text())["per_episode"]] == [0]


def test_a_short_video_discards_its_shard(tmp_path, monkeypatch):
    import sim.collect_worker as cw

    real, seen = cw._check_video_lengths, []

    def second_is_short(ds, frames, fps):
        seen.append(frames)
        real(ds, frames, fps)  # the real check passes on real episodes...
        if len(seen) == 2:
            real(ds, frames + 3, fps)  # ...and fails when the lengths disagree

    monkeypatch.setattr(cw, "_check_video_lengths", second_is_short)
    out = tmp_path / "short"
    with pytest.raises(RuntimeError, match="0 finished episodes kept(.|\n)*dropped frames"):
        collect(_cfg(out, episodes=3, seed=0))
    assert not out.exists() and seen == [STEPS, STEPS]


def test_append_then_workers_reproduce_the_same_episodes(collected, tmp_path):
    """Episode i uses seed S+i whatever the worker count; append extends the dataset in order."""
    out, _ = collected
    two = tmp_path / "two_workers"
    collect(_cfg(two, episodes=2, workers=2))  # seeds 7, 8 in two forked workers, merged
    collect(_cfg(two, episodes=1, seed=9, mode="append"))  # seed 9 appended
    a, b = _columns(_open(out)), _columns(_open(two))
    assert b["episode_index"].max() == 2
    np.testing.assert_allclose(a["observation.state"], b["observation.state"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(a["action"], b["action"], rtol=0, atol=1e-5)
    doc = json.loads((two / "collect.json").read_text())
    assert [e["seed"] for e in doc["per_episode"]] == [7, 8, 9]
    assert [e["run"] for e in doc["per_episode"]] == [0, 0, 1]
    assert doc["dataset_total_episodes"] == 3 and len(doc["runs"]) == 2


def test_overwrite_replaces_the_dataset(collected, tmp_path):
    out = tmp_path / "ow"
    collect(_cfg(out, episodes=2, policy="random", noise=0.05))
    collect(_cfg(out, episodes=1, mode="overwrite"))
    ds = _open(out)
    assert ds.num_episodes == 1
    assert json.loads((out / "collect.json").read_text())["config"]["policy"] == "expert"


# ----------------------------------------------------------------------------------------------
# the `latent-vla collect` subcommand
# ----------------------------------------------------------------------------------------------
def test_cli_tiny_budget(tmp_path, capsys):
    from latent_vla.app.cli import main

    out = tmp_path / "cli"
    args = ["collect", "task=reach", "episodes=2", f"max_episode_steps={STEPS}", f"out={out}"]
    args += ["workers=1", "progress=false", f"repo_id={REPO}", "seed=1"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "pc_success" in text and "frames/s" in text and "2 / 2" in text
    assert _open(out).num_episodes == 2
    assert main(args) == 2  # mode=fail: the dataset now exists
    assert "mode=append" in capsys.readouterr().err
    assert main(["collect", "task=stack", f"out={tmp_path / 'y'}"]) == 2
    assert "valid tasks" in capsys.readouterr().err


@pytest.mark.slow
def test_sigint_to_the_cli_leaves_a_readable_dataset(tmp_path):
    """Ctrl-C on a real `latent-vla collect` with two workers: finished episodes survive."""
    out = tmp_path / "sig"
    cmd = [sys.executable, "-m", "latent_vla.app.cli", "collect", "task=reach", "episodes=400"]
    cmd += [f"max_episode_steps={STEPS}", f"out={out}", "workers=2", "progress=false", f"repo_id={REPO}"]
    env = {**os.environ, "MUJOCO_GL": "egl", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        staging = tmp_path / f".sig.collect-{proc.pid}"
        deadline = time.monotonic() + 120
        while not all((staging / f"shard-{k}" / "videos").is_dir() for k in (0, 1)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "workers saved no episode in time"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    doc = json.loads((out / "collect.json").read_text())
    assert doc["interrupted"] is True and 2 <= doc["episodes"] < 400
    ds = _open(out)
    assert ds.num_episodes == doc["episodes"] and ds.num_frames == doc["episodes"] * STEPS
    seeds = [e["seed"] for e in doc["per_episode"]]
    assert seeds == sorted(seeds) and seeds[0] == 0 and 200 in seeds  # both workers' blocks
    ds[ds.num_frames - 1]
    assert not staging.exists()


def _collect_in_own_group(out: Path, episodes: int) -> subprocess.Popen:
    """`latent-vla collect` with two workers in a process group of its own, so that a Ctrl-C can reach
    every process of it (the fork server, the workers), as one typed in a terminal does."""
    cmd = [sys.executable, "-m", "latent_vla.app.cli", "collect", "task=reach", f"episodes={episodes}"]
    cmd += [f"max_episode_steps={STEPS}", f"out={out}", "workers=2", "progress=false", f"repo_id={REPO}"]
    env = {**os.environ, "MUJOCO_GL": "egl", "HF_HUB_OFFLINE": "1"}
    env.pop("LATENT_VLA_DEBUG", None)
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _wait_until(ready, proc: subprocess.Popen, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{what} did not happen in time"
        time.sleep(0.05)


def _ctrl_c(proc: subprocess.Popen, times: int = 1) -> tuple[str, str]:
    try:
        for i in range(times):
            if i:
                time.sleep(0.2)
            os.killpg(proc.pid, signal.SIGINT)
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_ctrl_c_in_the_first_seconds_is_a_clean_interrupt(tmp_path):
    """Ctrl-C while the fork server still imports LeRobot: it died of it and every worker start raised EOFError."""
    out = tmp_path / "early"
    proc = _collect_in_own_group(out, 400)
    staging = tmp_path / f".early.collect-{proc.pid}"
    _wait_until(staging.is_dir, proc, "collect start")
    time.sleep(1.0)  # the fork server is importing LeRobot and the sim now (seconds)
    stdout, stderr = _ctrl_c(proc)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "EOFError" not in stderr, stderr
    assert [line for line in stderr.splitlines() if line.strip()] == ["no episode finished; nothing was written."]
    assert "(interrupted)" in stdout
    assert not staging.exists() and not out.exists()


@pytest.mark.slow
def test_double_ctrl_c_aborts_and_leaves_no_staging_folder(tmp_path):
    """A second Ctrl-C aborts at once: `out` untouched, one line, and no hidden staging folder left behind by
    workers that kept finishing their shards into it (SIGTERM only asks them to)."""
    out = tmp_path / "twice"
    proc = _collect_in_own_group(out, 400)
    staging = tmp_path / f".twice.collect-{proc.pid}"
    _wait_until(lambda: all((staging / f"shard-{k}" / "videos").is_dir() for k in (0, 1)), proc, "two workers saving")
    stdout, stderr = _ctrl_c(proc, times=2)
    assert proc.returncode == 130, stderr
    ours = [line for line in stderr.splitlines() if line.strip() and "resource_tracker" not in line]
    assert ours[:1] == ["latent-vla collect: interrupted"], stderr  # (a killed worker may leave a semaphore warning)
    time.sleep(2.0)  # a worker left running would write into the staging folder again now
    assert not staging.exists() and not out.exists()


def test_cameras_records_only_the_named_ones(collected, tmp_path):
    """``cameras=("front",)`` writes one camera stream of the same episodes (the same seeds give the same
    expert actions); unknown, repeated or missing names are refused before anything is written."""
    out, _ = collected
    front = tmp_path / "front"
    collect(_cfg(front, cameras=("front",)))
    ds, full = _open(front), _open(out)
    assert ds.meta.video_keys == ["observation.images.front"]
    assert full.meta.video_keys == ["observation.images.front", "observation.images.wrist"]
    assert np.array_equal(_columns(ds)["action"], _columns(full)["action"])  # same episodes, same expert
    for bad in (("top",), ("front", "front"), ()):
        with pytest.raises(CollectError, match="cameras must name distinct cameras"):
            collect(_cfg(tmp_path / "bad", cameras=bad))
    assert not (tmp_path / "bad").exists()
