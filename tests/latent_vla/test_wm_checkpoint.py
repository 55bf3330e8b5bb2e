"""Checkpoints: save -> load gives identical outputs; corrupt, incomplete or mismatched ones are refused."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from test_wm_model import inputs, small_config

from latent_vla.base.errors import UserError
from latent_vla.base.normalize import Normalizer
from latent_vla.base.robot_spec import SO101
from latent_vla.base.text import Tokenizer
from latent_vla.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_optimizer_state,
    load_train_state,
    read_manifest,
    save_checkpoint,
)
from latent_vla.model import WorldModel


def _trained_pieces(seed: int = 0):
    torch.manual_seed(seed)
    model = WorldModel(small_config())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, state, tokens = inputs(model.config)
    for _ in range(2):
        task = model.embed_task(tokens)
        z = model.encode(images, state, task)
        loss = model.cost(model.rollout(z, torch.rand(5, 3, 6)), task).mean() + model.decode(z).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    rng = np.random.default_rng(seed)
    norm = Normalizer.from_arrays(rng.normal(size=(50, 6)), rng.normal(size=(50, 6)), (32, 32), ("front", "wrist"))
    return model, opt, norm, Tokenizer(num_buckets=100)


@pytest.fixture(scope="module")
def pieces():
    return _trained_pieces()


@pytest.fixture
def saved(tmp_path, pieces):
    model, opt, norm, tok = pieces
    run = tmp_path / "run"
    save_checkpoint(
        run, model, norm, tok, SO101, {"train": {"lr": 1e-3}}, 42, opt, train_state={"ema.x": torch.ones(3)}
    )
    return run, model, opt, norm, tok


def test_save_load_identical_outputs(saved):
    run, model, opt, norm, tok = saved
    ck = load_checkpoint(run)
    assert ck.step == 42 and ck.config == {"train": {"lr": 1e-3}} and ck.spec == SO101
    assert ck.tokenizer == tok and not ck.model.training
    np.testing.assert_array_equal(ck.normalizer.action_min, norm.action_min)
    model.eval()
    images, state, tokens = inputs(model.config)
    with torch.no_grad():
        t1, t2 = model.embed_task(tokens), ck.model.embed_task(tokens)
        z1, z2 = model.encode(images, state, t1), ck.model.encode(images, state, t2)
        a = torch.rand(5, 4, 6)
        assert torch.equal(t1, t2) and torch.equal(z1, z2)
        assert torch.equal(model.rollout(z1, a), ck.model.rollout(z2, a))
        assert torch.equal(model.cost(z1, t1), ck.model.cost(z2, t2))
        assert torch.equal(model.policy(z1, t1), ck.model.policy(z2, t2))
        assert torch.equal(model.decode(z1), ck.model.decode(z2))
    assert not list(run.glob("*.pt")) and not list(run.glob("*.pkl")) and not list(run.glob(".ckpt-*"))


def test_optimizer_and_train_state_roundtrip(saved):
    run, model, opt, _, _ = saved
    ck = load_checkpoint(run)
    opt2 = torch.optim.AdamW(ck.model.parameters(), lr=1e-3)
    load_optimizer_state(run, opt2)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for idx, st in s1["state"].items():
        for key, value in st.items():
            assert torch.equal(value, s2["state"][idx][key])
    assert torch.equal(load_train_state(run)["ema.x"], torch.ones(3))
    with pytest.raises(CheckpointError, match="SGD"):
        load_optimizer_state(run, torch.optim.SGD(ck.model.parameters(), lr=0.1))


def test_observation_helpers(saved):
    run, *_ = saved
    ck = load_checkpoint(run)
    obs = {k: 1.0 for k in SO101.action_keys}
    obs |= {c: np.zeros((64, 64, 3), dtype=np.uint8) for c in ("front", "wrist")}
    task = ck.embed_instruction("reach the red target")
    z = ck.encode_observation(obs, task)
    assert task.shape == (1, 16) and z.shape == (1, 32 + 6)  # learned block + joint block
    with pytest.raises(KeyError, match="wrist"):
        ck.observation_to_model({k: v for k, v in obs.items() if k != "wrist"})


def test_resave_replaces_files_and_drops_stale_optimizer(saved):
    run, model, _, norm, tok = saved
    save_checkpoint(run, model, norm, tok, SO101, {}, 43)
    assert read_manifest(run)["step"] == 43
    assert not (run / "optimizer.safetensors").exists() and not (run / "train_state.safetensors").exists()
    assert load_checkpoint(run).step == 43


def test_corrupt_and_incomplete_checkpoints_are_refused(saved, tmp_path):
    run, *_ = saved
    with pytest.raises(CheckpointError, match="not a directory"):
        load_checkpoint(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="not a latent-vla checkpoint"):
        load_checkpoint(empty)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(run, corrupt)
    data = bytearray((corrupt / "model.safetensors").read_bytes())
    data[100:120] = b"\xff" * 20
    (corrupt / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(corrupt)

    garbage = tmp_path / "garbage"
    shutil.copytree(run, garbage)
    (garbage / "model.safetensors").write_bytes(b"not a safetensors file at all")
    manifest = json.loads((garbage / "checkpoint.json").read_text())
    manifest["files"]["model.safetensors"] = hashlib.sha256(b"not a safetensors file at all").hexdigest()
    (garbage / "checkpoint.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(garbage)

    missing = tmp_path / "missing"
    shutil.copytree(run, missing)
    (missing / "stats.json").unlink()
    with pytest.raises(CheckpointError, match="stats.json is missing"):
        load_checkpoint(missing)


def test_weights_that_do_not_fit_model_json_are_refused(saved, tmp_path):
    run, *_ = saved
    other = tmp_path / "other"
    shutil.copytree(run, other)
    cfg = json.loads((other / "model.json").read_text())
    cfg["latent_dim"] = 64
    (other / "model.json").write_text(json.dumps(cfg))
    manifest = json.loads((other / "checkpoint.json").read_text())
    manifest["files"]["model.json"] = hashlib.sha256((other / "model.json").read_bytes()).hexdigest()
    (other / "checkpoint.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint(other)


def test_checkpoint_errors_are_user_errors():
    assert issubclass(CheckpointError, UserError) and issubclass(CheckpointError, RuntimeError)


def _write(run, name: str, content: bytes, rehash: bool = True) -> None:
    """Replace ``run/name`` and (unless told not to) record its new sha256 in checkpoint.json."""
    (run / name).write_bytes(content)
    if rehash and name != "checkpoint.json":
        manifest = json.loads((run / "checkpoint.json").read_text())
        manifest["files"][name] = hashlib.sha256(content).hexdigest()
        (run / "checkpoint.json").write_text(json.dumps(manifest))


def _edited_json(run, name: str, fn) -> bytes:
    data = json.loads((run / name).read_text())
    fn(data)
    return json.dumps(data).encode()


def _pop_action_joint(d):
    d["action_min"].pop(), d["action_max"].pop()


# (file, raw bytes or an edit of its parsed JSON, what the error must say)
BAD_METADATA = [
    ("checkpoint.json", lambda d: d.pop("files"), r"checkpoint\.json has no 'files' table"),
    ("checkpoint.json", lambda d: d["files"].update({"../x": "0" * 64}), r"'\.\./x' is not a plain file name"),
    ("checkpoint.json", lambda d: d["files"].pop("spec.json"), r"files table lacks \['spec\.json'\]"),
    ("checkpoint.json", lambda d: d.update(step="many"), "step must be a non-negative integer"),
    ("checkpoint.json", b'{"format": 1, "step": "\xe9"}', r"checkpoint\.json is not UTF-8 text"),
    ("checkpoint.json", b"[" * 100_000, r"checkpoint\.json is nested too deeply"),
    ("checkpoint.json", b"[1]", r"checkpoint\.json must hold a JSON object, not list"),
    ("config.yaml", b"train: {lr: [1, 2\n", r"config\.yaml is not valid YAML: while parsing a flow"),
    ("config.yaml", b"[" * 100_000, r"config\.yaml is nested too deeply"),
    ("config.yaml", b"- 1\n- 2\n", r"config\.yaml must hold a mapping of settings, not list"),
    ("config.yaml", b"lr: \xff\n", r"config\.yaml is not UTF-8 text"),
    ("stats.json", b'{"state_mean": "\xff"}', r"stats\.json is not UTF-8 text"),
    ("stats.json", b"[" * 100_000, r"stats\.json is nested too deeply"),
    ("stats.json", lambda d: d.pop("action_max"), r"stats\.json is malformed: .*action_max"),
    ("stats.json", lambda d: d["state_std"].__setitem__(0, float("nan")), r"stats\.json is malformed: .*non-finite"),
    ("stats.json", _pop_action_joint, r"stats\.json has 6 state / 5 action values, model\.json 6 / 6"),
    ("stats.json", lambda d: d.update(camera_names=["front"]), r"cameras \['front'\] != model\.json's \['front', 'wr"),
    ("stats.json", lambda d: d.update(image_size=[64, 64]), r"image size \[64, 64\] != model\.json's \[32, 32\]"),
    (
        "stats.json",
        lambda d: d["action_max"].__setitem__(0, 1e6),
        r"action_max of shoulder_pan is 1e\+06, outside -132",
    ),
    ("stats.json", lambda d: d.update(action_min=[-1e6] * 6), r"action_min of shoulder_pan is -1e\+06"),
    ("spec.json", lambda d: d["joints"][1].update(lower=200.0), "non-finite or inverted joint limits"),
    ("spec.json", lambda d: d["joints"][0].update(upper="far"), "non-numeric joint limits"),
    ("spec.json", lambda d: d["joints"].pop(), r"model\.json action_dim 6 != robot 'so101''s 5 joints"),
    ("tokenizer.json", lambda d: d.update(num_buckets=1000), r"yields ids up to 1000, model\.json has 101 rows"),
    ("model.json", lambda d: d.update(latent_dim="big"), r"model\.json is malformed"),
    ("model.json", lambda d: d.update(hidden=-5), r"model\.json describes no buildable model"),
    ("model.json", lambda d: d.update(mystery=1), r"model\.json is malformed: unknown model config keys \['mystery'\]"),
]


@pytest.mark.parametrize(("name", "edit", "message"), BAD_METADATA)
def test_bad_metadata_is_refused_at_load(saved, tmp_path, name, edit, message):
    run = tmp_path / "bad"
    shutil.copytree(saved[0], run)
    _write(run, name, edit if isinstance(edit, bytes) else _edited_json(run, name, edit))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(run)


def test_optimizer_entry_without_class_is_refused(saved, tmp_path):
    run = tmp_path / "bad"
    shutil.copytree(saved[0], run)
    _write(run, "checkpoint.json", _edited_json(run, "checkpoint.json", lambda d: d["optimizer"].pop("class")))
    with pytest.raises(CheckpointError, match="optimizer entry lacks class or param_groups"):
        load_optimizer_state(run, torch.optim.AdamW(load_checkpoint(run).model.parameters()))
