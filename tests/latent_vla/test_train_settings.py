"""Train settings: ModelConfig is the schema of the ``model`` group; nonsense is refused at config time."""

from __future__ import annotations

from dataclasses import fields

import pytest

from latent_vla.app.cli import compose
from latent_vla.app.cli import main as cli_main
from latent_vla.base.errors import UserError
from latent_vla.base.text import Tokenizer
from latent_vla.data import load_frames
from latent_vla.model import ModelConfig, WorldModel
from latent_vla.train import FROM_DATASET, build_model_config, model_settings, settings_from_config, train

# A valid value other than the default for every settable ModelConfig field (Hydra override syntax).
NON_DEFAULT = {
    "camera_names": "[wrist]",
    "image_size": "[32,48]",
    "latent_dim": "48",
    "chunk_len": "5",
    "task_dim": "16",
    "text_encoder": "gru",
    "word_dim": "12",
    "channels": "[8,16]",
    "image_feat": "24",
    "keypoints": "3",
    "film": "false",
    "attention": 2,
    "proprio_latent": "false",
    "state_feat": "20",
    "hidden": "40",
    "head_hidden": "24",
    "norm": "layernorm",
    "simnorm_dim": "4",
    "dynamics_heads": "2",
}


def test_every_model_config_field_is_settable_from_the_config(tiny_dataset_dir):
    settable = {f.name for f in fields(ModelConfig)} - set(FROM_DATASET)
    assert set(NON_DEFAULT) == settable  # a new ModelConfig field needs a line here, nothing else
    overrides = [f"model.{k}={v}" for k, v in NON_DEFAULT.items()]
    settings = settings_from_config(compose("train", [f"data={tiny_dataset_dir}", *overrides]))
    before = dict(settings.model)
    cache = load_frames(tiny_dataset_dir, settings.model["image_size"], settings.model["camera_names"], progress=False)
    tokenizer = Tokenizer(**settings.tokenizer)
    cfg = build_model_config(settings.model, cache, tokenizer)
    default = ModelConfig(camera_names=("front", "wrist"), state_dim=6, action_dim=6)
    for name in settable:
        assert getattr(cfg, name) != getattr(default, name), name
        want = settings.model[name]
        assert getattr(cfg, name) == (tuple(want) if isinstance(want, list) else want), name
    assert cfg.camera_names == ("wrist",) and cfg.image_size == (32, 48) and cfg.norm == "layernorm"
    # dimensions come from the dataset and the tokenizer, and are never written back into the settings
    assert (cfg.state_dim, cfg.action_dim, cfg.vocab_size) == (6, 6, tokenizer.num_buckets + 1)
    assert settings.model == before and not set(FROM_DATASET) & set(settings.model)
    WorldModel(cfg)  # and the model builds


@pytest.mark.parametrize(
    "group, message",
    [
        ({"nonsense": 1}, "Key 'nonsense' not in 'ModelConfig'"),
        ({"vocab_buckets": 10}, "Key 'vocab_buckets' not in 'ModelConfig'"),  # the tokenizer group's now
        ({"state_dim": 6}, "model.state_dim is not a setting"),
        ({"vocab_size": 10}, "model.vocab_size is not a setting"),
        ({"latent_dim": "wide"}, "model.latent_dim"),
        ({"latent_dim": 30}, "not a multiple of simnorm_dim"),
        ({"norm": "batchnorm"}, "norm must be one of"),
        ({"image_size": [64]}, r"image_size must be \(h, w\)"),
    ],
)
def test_bad_model_settings_are_refused(group, message):
    with pytest.raises(UserError, match=message):
        model_settings(group)
    with pytest.raises(UserError, match=message):
        settings_from_config({"data": "/x", "model": group})


@pytest.mark.parametrize(
    "override",
    [
        "train.minutes=-1",
        "train.minutes=0",
        "train.steps=0",
        "train.steps=-5",
        "train.batch_size=0",
        "train.lr=nan",
        "train.lr=inf",
        "train.lr=0",
        "train.save_every_minutes=nan",
        "train.grad_clip=-1",
        "train.val_fraction=1.5",
        "train.ema_tau=0",
        "train.loss.consistency=nan",
        "train.loss.cost_to_go=1",
        "train.target=online",
        "tokenizer.num_buckets=1",
        "resume=maybe",
    ],
)
def test_nonsense_numbers_are_refused_at_config_time(override, tmp_path, capsys):
    key = override.split("=")[0]
    with pytest.raises(UserError, match=key.split(".")[-1]):
        settings_from_config(compose("train", [f"data={tmp_path}", override]))
    out = tmp_path / "run"
    assert cli_main(["train", f"data={tmp_path / 'no-such-dataset'}", f"out={out}", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key.split(".")[-1] in err[0] and not out.exists()


@pytest.mark.parametrize(("field", "value"), [("known_ids", [3, 4]), ("known_words", ["red", "red cube"])])
def test_known_words_are_written_by_training_never_set(tmp_path, field, value):
    with pytest.raises(UserError, match=f"tokenizer.{field} is written by training"):
        settings_from_config({"data": str(tmp_path), "tokenizer": {field: value}})


def test_train_checks_settings_changed_after_validation(tiny_dataset_dir, tmp_path):
    """Settings edited in code are checked again by train(), before the dataset is decoded."""
    settings = settings_from_config({"data": str(tmp_path / "no-such-dataset"), "out": str(tmp_path / "run")})
    settings.train.minutes = -1.0
    with pytest.raises(UserError, match="train.minutes=-1.0"):
        train(settings)
    settings.train.minutes, settings.train.lr = 1.0, float("nan")
    with pytest.raises(UserError, match="train.lr=nan"):
        train(settings)
    assert not (tmp_path / "run").exists()
