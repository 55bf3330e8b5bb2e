"""The latent-vla entry point: help, unknown subcommands, Hydra overrides and strict keys."""

from __future__ import annotations

import pytest

from latent_vla.app.cli import SUBCOMMANDS, compose, main


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("collect", "train", "eval", "inspect", "export", "run", "demo"):
        assert name in out
    assert set(SUBCOMMANDS) == {"collect", "train", "eval", "inspect", "export", "run", "demo"}


def test_unknown_subcommand_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fly"]) == 2
    assert "unknown subcommand 'fly'" in capsys.readouterr().err


def test_unknown_key_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collect", "no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_config_composes(name: str) -> None:
    cfg = compose(name, [])
    assert cfg is not None


def test_overrides_reach_the_config() -> None:
    cfg = compose("collect", ["task=push", "episodes=3"])
    assert cfg.task == "push"
    assert cfg.episodes == 3
