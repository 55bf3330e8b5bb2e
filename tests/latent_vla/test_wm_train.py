"""Training: a tiny run lowers its losses, resumes its step count, runs from the CLI and under DDP."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
import torch
from synthetic_data import make_synthetic_dataset, tiny_run_settings

from latent_vla.app.cli import main as cli_main
from latent_vla.base.errors import UserError
from latent_vla.checkpoint import load_checkpoint, load_train_state, read_manifest
from latent_vla.data import WindowSampler, env_state_statistics, load_frames
from latent_vla.losses import LossWeights, WorldModelLoss
from latent_vla.model import WorldModel
from latent_vla.train import TRAINED_TOKENIZER_FIELDS, _GroundingPhase, build_model_config, make_tokenizer, train

SMALL_MODEL = [
    "model.latent_dim=32", "model.hidden=64", "model.head_hidden=32", "model.image_feat=32",
    "model.channels=[8,16,16]", "model.image_size=[32,32]",
]  # fmt: skip
FAST_TRAIN = [
    "train.batch_size=8",
    "train.horizon=2",
    "train.num_threads=1",
    "train.progress=false",
    "train.log_every=2",
]


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_tiny_training_lowers_every_loss(tiny_train_result):
    """Each optimized term falls between the first and the last 20 steps of an 80-step run.

    Two terms are judged by what they measure rather than their raw value: the raw consistency
    error and the covariance penalty both start near zero because a fresh encoder maps every frame to
    nearly the same latent (a collapsed start). ``consistency_rel`` (error / constant-latent error)
    is the prediction quality, and ``latent_std`` must grow away from the collapse.
    """
    res = tiny_train_result
    assert res.step == 80 and res.steps_this_call == 80
    rows = _rows(res.run_dir / "train_log.csv")
    assert [int(r["step"]) for r in rows] == list(range(10, 81, 10))

    def mean(rs, key):
        return float(np.mean([float(r[key]) for r in rs]))

    first, last = rows[:2], rows[-2:]
    for key in ("total", "consistency_rel", "cost", "success", "policy", "decoder", "variance", "env_state"):
        assert mean(last, key) < mean(first, key), f"{key} did not decrease: {mean(first, key)} -> {mean(last, key)}"
    assert mean(last, "latent_std") > mean(first, "latent_std")
    for row in rows:
        assert all(np.isfinite(float(v)) for v in row.values())
    assert list((res.run_dir / "tb").glob("events.out.tfevents.*"))


def test_trained_checkpoint_is_consistent(tiny_checkpoint_dir, tiny_dataset_dir):
    ck = load_checkpoint(tiny_checkpoint_dir)
    assert ck.step == 80 and ck.model.camera_names == ["front", "wrist"] and ck.spec.camera_names == ["front", "wrist"]
    assert ck.spec.action_keys == [f"{j.name}.pos" for j in ck.spec.joints] and ck.spec.num_joints == 6
    assert ck.config["train"]["steps"] == 80
    assert (tiny_checkpoint_dir / "stats.json").exists() and (tiny_checkpoint_dir / "optimizer.safetensors").exists()


def test_resume_continues_step_count(tiny_train_result, tiny_dataset_dir, tmp_path):
    run = tmp_path / "resumed"
    shutil.copytree(tiny_train_result.run_dir, run)
    before = load_checkpoint(run)
    res = train(tiny_run_settings(tiny_dataset_dir, run, steps=90))
    assert res.step == 90 and res.steps_this_call == 10
    assert read_manifest(run)["step"] == 90
    steps = [int(r["step"]) for r in _rows(run / "train_log.csv")]
    assert steps == list(range(10, 91, 10))  # the log continues where it stopped
    after = load_checkpoint(run)
    assert not torch.equal(before.model.dynamics[0].weight, after.model.dynamics[0].weight)
    np.testing.assert_array_equal(before.normalizer.state_mean, after.normalizer.state_mean)
    # already at the step budget: nothing to do, nothing changes
    assert train(tiny_run_settings(tiny_dataset_dir, run, steps=90)).steps_this_call == 0


def test_resume_refuses_mismatches(tiny_train_result, tmp_path):
    """Refused before any data is decoded: the data path does not even exist."""
    run = tmp_path / "mismatch"
    shutil.copytree(tiny_train_result.run_dir, run)
    before = sorted(p.name for p in run.iterdir())
    no_data = tmp_path / "no-such-dataset"
    settings = tiny_run_settings(no_data, run, steps=85)
    settings.model["latent_dim"] = 64
    with pytest.raises(UserError, match="latent_dim: checkpoint 32 vs config/dataset 64"):
        train(settings)
    settings = tiny_run_settings(no_data, run, steps=85)
    settings.resume = "false"
    with pytest.raises(UserError, match="already holds a checkpoint"):
        train(settings)
    settings = tiny_run_settings(no_data, tmp_path / "empty", steps=85)
    settings.resume = "true"
    with pytest.raises(UserError, match="holds no checkpoint"):
        train(settings)
    assert sorted(p.name for p in run.iterdir()) == before and not (tmp_path / "empty").exists()


def test_cli_trains_on_differently_named_cameras_without_task_signals(tmp_path, capsys):
    data = make_synthetic_dataset(
        tmp_path / "other", cameras=("top", "gripper_cam"), episodes=3, length=8, image_hw=(40, 40),
        with_task_signals=False, seed=3,
    )  # fmt: skip
    out = tmp_path / "run"
    code = cli_main(["train", f"data={data}", f"out={out}", "train.steps=4", *SMALL_MODEL, *FAST_TRAIN])
    assert code == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["step"] == 4 and summary["world_size"] == 1
    assert any("next.reward" in s for s in summary["skipped"]) and "cost" not in summary["last"]
    assert "next.reward" in capsys.readouterr().out
    ck = load_checkpoint(out)
    assert ck.model.camera_names == ["top", "gripper_cam"] and ck.spec.camera_names == ["top", "gripper_cam"]
    assert ck.spec.cameras[0].height == 32 and ck.normalizer.image_size == (32, 32)
    assert ck.model.env_state_dim == 0 and "env_state" not in summary["last"]  # no environment state: no head


def test_cli_reports_bad_inputs(tmp_path, capsys):
    (tmp_path / "plain").mkdir()
    assert cli_main(["train", f"data={tmp_path / 'plain'}", f"out={tmp_path / 'run'}"]) == 2
    assert "not a LeRobotDataset" in capsys.readouterr().err
    assert cli_main(["train", f"data={tmp_path}", "train.nonsense=1"]) == 2


def test_planning_switches_and_ema_target(tiny_dataset_dir, tmp_path):
    settings = tiny_run_settings(tiny_dataset_dir, tmp_path / "smooth", steps=4, log_every=2, target="ema")
    settings.train.loss.straightness = 0.1
    settings.train.loss.adversarial = 1.0
    settings.train.loss.action_noise = 0.05
    settings.train.loss.image_shift = 2
    settings.train.loss.policy_loss = "mse"  # the non-default
    res = train(settings)
    assert res.step == 4
    for key in ("adversarial", "curvature", "consistency", "policy"):
        assert np.isfinite(res.last[key])
    from latent_vla.checkpoint import load_train_state

    ema = load_train_state(res.run_dir)
    assert any(k.startswith("ema.") for k in ema)
    res2 = train(tiny_run_settings(tiny_dataset_dir, tmp_path / "smooth", steps=6, log_every=2, target="ema"))
    assert res2.step == 6  # resumes with its EMA target
    bad = tiny_run_settings(tiny_dataset_dir, tmp_path / "bad", steps=1)
    bad.train.loss.policy_loss = "huber"
    with pytest.raises(UserError, match="policy_loss"):
        train(bad)


def test_grounding_phase_trains_first_frames_then_the_full_objective(tiny_dataset_dir, tmp_path):
    """``train.grounding=0.5`` of 8 steps: 4 first-frame steps (no rollout terms), then the full objective."""
    res = train(tiny_run_settings(tiny_dataset_dir, tmp_path / "g", steps=8, log_every=1, grounding=0.5))
    rows = _rows(res.run_dir / "train_log.csv")
    assert [float(r["grounding"]) for r in rows] == [1.0] * 4 + [0.0] * 4
    for r in rows[:4]:  # the CSV header grew when the full objective's terms appeared
        assert r["consistency"] == r["decoder"] == r["policy"] == ""
        assert float(r["env_state"]) > 0  # the dataset records observation.environment_state
    for r in rows[4:]:
        assert float(r["consistency"]) >= 0 and float(r["decoder"]) > 0
    # a resumed run does not start over with grounding
    res2 = train(tiny_run_settings(tiny_dataset_dir, tmp_path / "g", steps=10, log_every=1, grounding=0.5))
    assert res2.step == 10
    assert [float(r["grounding"]) for r in _rows(res.run_dir / "train_log.csv")][8:] == [0.0, 0.0]


def test_grounding_phase_goes_on_while_the_environment_state_loss_is_high(tiny_dataset_dir, tmp_path, monkeypatch):
    """``train.grounding_loss``: past ``train.grounding`` the phase lasts while the loss is above it, up to
    ``train.grounding_max``; a loss already below it ends the phase at ``train.grounding``."""
    monkeypatch.setattr(_GroundingPhase, "WINDOW", 2)

    def phases(name, loss):
        run = tiny_run_settings(tiny_dataset_dir, tmp_path / name, steps=8, log_every=1, grounding=0.25,
                                grounding_loss=loss, grounding_max=0.5)  # fmt: skip
        return [float(r["grounding"]) for r in _rows(train(run).run_dir / "train_log.csv")]

    assert phases("high", 1e-9) == [1.0] * 4 + [0.0] * 4  # never low enough: until grounding_max
    assert phases("low", 1e9) == [1.0] * 2 + [0.0] * 6  # already below: grounding's share
    with pytest.raises(UserError, match="grounding_max"):
        train(tiny_run_settings(tiny_dataset_dir, tmp_path / "x", grounding_max=1.0))
    with pytest.raises(UserError, match="grounding_loss"):
        train(tiny_run_settings(tiny_dataset_dir, tmp_path / "y", grounding_loss=float("nan")))


def test_cosine_schedule_ends_the_run_near_zero_and_bad_names_are_refused(tiny_dataset_dir, tmp_path):
    """``train.lr_schedule=cosine``: warm-up, then a half cosine over the run's steps down to ~0."""
    res = train(tiny_run_settings(tiny_dataset_dir, tmp_path / "c", steps=12, log_every=1, warmup_steps=2,
                                  lr=1e-3, grounding=0.0, lr_schedule="cosine"))  # fmt: skip
    lrs = [float(r["lr"]) for r in _rows(res.run_dir / "train_log.csv")]
    assert lrs[1] == pytest.approx(1e-3)  # the end of the warm-up
    assert all(a > b for a, b in zip(lrs[1:], lrs[2:], strict=False))  # falling every step after it
    assert lrs[-1] < 0.03e-3
    flat = train(tiny_run_settings(tiny_dataset_dir, tmp_path / "k", steps=6, log_every=1, warmup_steps=2, lr=1e-3))
    assert [float(r["lr"]) for r in _rows(flat.run_dir / "train_log.csv")][1:] == [pytest.approx(1e-3)] * 5
    with pytest.raises(UserError, match="lr_schedule must be one of"):
        train(tiny_run_settings(tiny_dataset_dir, tmp_path / "x", lr_schedule="linear"))


def test_weight_average_is_the_saved_model_and_resumes_from_the_online_weights(tiny_dataset_dir, tmp_path):
    """``train.average_tau``: the checkpoint's model is the average, the online weights ride along in
    ``train_state.safetensors``, and a resume restores both (here a resume with nothing left to do)."""

    def saved(run):
        model = {k: v.clone() for k, v in load_checkpoint(run).model.state_dict().items()}
        online = {k[len("online.") :]: v for k, v in load_train_state(run).items() if k.startswith("online.")}
        return model, online

    same = train(tiny_run_settings(tiny_dataset_dir, tmp_path / "one", steps=6, grounding=0.0, average_tau=1.0))
    model, online = saved(same.run_dir)
    assert online.keys() == model.keys() and all(torch.equal(model[k], online[k]) for k in model)  # tau 1: no memory
    run = train(tiny_run_settings(tiny_dataset_dir, tmp_path / "avg", steps=6, grounding=0.0, average_tau=0.3)).run_dir
    model, online = saved(run)
    moved = [k for k in model if k.endswith("weight") and not torch.equal(model[k], online[k])]
    assert "dynamics.0.weight" in moved and "policy_head.z_in.weight" in moved  # the average lags the online weights
    again = train(tiny_run_settings(tiny_dataset_dir, run, steps=6, grounding=0.0, average_tau=0.3))
    assert again.steps_this_call == 0
    model2, online2 = saved(run)
    assert all(torch.equal(model[k], model2[k]) and torch.equal(online[k], online2[k]) for k in model)
    off = train(tiny_run_settings(tiny_dataset_dir, tmp_path / "off", steps=2, grounding=0.0, average_tau=0.0))
    assert not any(k.startswith("online.") for k in load_train_state(off.run_dir))
    with pytest.raises(UserError, match="average_tau"):
        train(tiny_run_settings(tiny_dataset_dir, tmp_path / "x", average_tau=1.5))


def test_first_frame_objective_moves_the_encoder_but_not_the_dynamics(tiny_dataset_dir):
    """Grounding: the image encoder learns where the named object is; the joint state is blanked."""
    settings = tiny_run_settings(tiny_dataset_dir, "unused", steps=1)
    cache = load_frames(tiny_dataset_dir, progress=False)
    tok = make_tokenizer(settings.tokenizer)
    model = WorldModel(build_model_config(settings.model, cache, tok, env_state_head=True))
    stats = env_state_statistics(cache.env_state)
    model.set_env_state_stats(*stats)
    norm = cache.normalizer(model.config.image_size)
    episodes = np.arange(cache.num_episodes)
    sampler = WindowSampler(cache, norm, tok, 2, model.config.chunk_len, episodes, env_state_stats=stats)
    batch = sampler.sample(4, np.random.default_rng(0))
    loss = WorldModelLoss(model, LossWeights())
    total, terms = loss(batch, None, first_frame=True)
    assert set(terms) == {"env_state", "variance", "covariance", "latent_std", "total"}
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.image_encoder.parameters())
    for part in (model.dynamics, model.decoder, model.policy_head):
        assert all(p.grad is None or not p.grad.any() for p in part.parameters())
    weight = model.state_encoder[0].weight  # the joints are blanked: their input weights learn nothing
    assert weight.grad is None or not weight.grad.any()


@pytest.mark.slow
def test_ddp_two_processes(tiny_dataset_dir, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "latent_vla.app.cli", "train", f"data={tiny_dataset_dir}", f"out={out}", "train.steps=4",
        *SMALL_MODEL, *FAST_TRAIN,
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["step"] == 4
    assert load_checkpoint(out).step == 4


def test_trains_on_a_real_sim_collection(sim_reach_dataset_dir, tmp_path):
    """The world model reads what ``latent-vla collect`` writes (MuJoCo SO-101 reach, expert episodes)."""
    res = train(tiny_run_settings(sim_reach_dataset_dir, tmp_path / "sim", steps=6, log_every=2, val_fraction=0.0))
    assert res.step == 6 and res.skipped == []
    for key in ("consistency", "cost", "success", "policy", "decoder"):
        assert np.isfinite(res.last[key])
    ck = load_checkpoint(res.run_dir)
    assert ck.model.camera_names == ["front", "wrist"] and ck.spec.name == "so101"
    from latent_vla.data import load_frames

    cache = load_frames(sim_reach_dataset_dir, (64, 64), progress=False)
    assert cache.reward is not None and (cache.reward <= 0).all()  # reward = -distance, metres
    np.testing.assert_allclose(ck.normalizer.state_mean, cache.state.mean(0), rtol=1e-5, atol=1e-4)
    # The collector records the named object's position; training regresses it from the latent.
    assert cache.env_state is not None and cache.env_state.shape == (cache.num_frames, 6)
    assert ck.model.env_state_dim == 6 and np.isfinite(res.last["env_state"])
    np.testing.assert_allclose(ck.model.env_state_mean.numpy(), cache.env_state.mean(0), atol=1e-5)
    with torch.no_grad():
        z = torch.rand(3, ck.model.latent_dim)
        metres = ck.model.environment_state(z)
        np.testing.assert_allclose(
            metres.numpy(),
            (ck.model.env_state_standardized(z) * ck.model.env_state_std + ck.model.env_state_mean).numpy(),
        )


def test_hydra_configs_compose_and_validate():
    from hydra.errors import ConfigCompositionException

    from latent_vla.app.cli import compose
    from latent_vla.base.text import Tokenizer
    from latent_vla.train import LossWeights, TrainSettings, model_settings, settings_from_config

    cfg = compose("train", ["data=/x", "train=planning", "model.norm=layernorm", "train.minutes=1"])
    s = settings_from_config(cfg)
    assert s.train.loss.adversarial == 1.0 and s.train.loss.straightness == 0.1 and s.train.minutes == 1.0
    assert s.model["norm"] == "layernorm" and s.train.batch_size == 64
    # the YAML defaults are the dataclass defaults (one schema, no drift)
    default = settings_from_config(compose("train", ["data=/x"]))
    assert default.model == model_settings({}) and default.train.loss == LossWeights()
    assert default.tokenizer == {k: v for k, v in asdict(Tokenizer()).items() if k not in TRAINED_TOKENIZER_FIELDS}
    assert {k: v for k, v in vars(default.train).items() if k != "loss"} == {
        k: v for k, v in vars(TrainSettings()).items() if k != "loss"
    }
    with pytest.raises(ConfigCompositionException):
        compose("train", ["data=/x", "train.loss.nonsense=1"])
    with pytest.raises(UserError, match="batch_size"):
        settings_from_config({"data": "/x", "train": {"batch_size": "many"}})
