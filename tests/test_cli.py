"""The latent-vla entry point: help, Hydra overrides and strict keys, and one error path for every subcommand.

A user's mistake (a bad setting, path or file) exits 2 with exactly one line on stderr that names the
problem, never a traceback; ``--debug`` shows the traceback; a bug still shows its traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from latent_vla.app.cli import SUBCOMMANDS, compose, main
from latent_vla.base.errors import UserError
from latent_vla.base.paths import check_output_dir

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("collect", "train", "eval", "inspect", "export", "run", "demo", "improve"):
        assert name in out
    assert set(SUBCOMMANDS) == {"collect", "train", "eval", "inspect", "export", "run", "demo", "improve"}
    assert main(["eval", "--help"]) == 0
    assert "latent-vla eval" in capsys.readouterr().out


def test_help_imports_no_heavy_dependency() -> None:
    """Every subcommand module is imported on use: `--help` pulls in neither torch, MuJoCo nor LeRobot."""
    code = "import sys; from latent_vla.app.cli import main; main(['--help']); main(['eval', '--cfg']); "
    code += "print(sorted(m for m in ('torch', 'mujoco', 'lerobot', 'onnxruntime') if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_overrides_reach_the_config() -> None:
    cfg = compose("collect", ["task=push", "episodes=3"])
    assert cfg.task == "push"
    assert cfg.episodes == 3


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_config_composes(name: str) -> None:
    cfg = compose(name, [])
    assert cfg is not None and "out" in cfg  # the CLI checks every `out=` before any work


# --------------------------------------------------------------------------------------------------
# The table: every user mistake -> exit 2, one line on stderr naming the problem, no traceback.
# `{tmp}` is a fresh directory, `{file}` a plain file in it.
# --------------------------------------------------------------------------------------------------
USER_ERRORS: list[tuple[str, list[str], list[str]]] = [
    # (case id, argv, substrings of the one stderr line)
    ("unknown-subcommand", ["fly"], ["unknown subcommand 'fly'"]),
    ("unknown-key", ["collect", "no_such_key=1"], ["latent-vla collect:", "unknown setting 'no_such_key'"]),
    ("bad-override-syntax", ["collect", "episodes=["], ["bad override", "'['"]),
    ("unknown-config-option", ["run", "robot=nope"], ["robot/nope", "koch, so100, so101, twin"]),
    ("unresolvable-interpolation", ["eval", "ckpt={tmp}", "episodes=${{nope}}"], ["bad setting", "nope"]),
    ("missing-required", ["inspect"], ["ckpt and data are required"]),
    # eval (item 7)
    ("eval-neither-ckpt-nor-bundle", ["eval", "out={tmp}/o"], ["exactly one of ckpt=", "got neither"]),
    ("eval-both-ckpt-and-bundle", ["eval", "ckpt={tmp}", "bundle={tmp}", "out={tmp}/o"], ["got both"]),
    ("eval-episodes-0", ["eval", "ckpt={tmp}", "episodes=0", "out={tmp}/o"], ["episodes must be", ">= 1", "got 0"]),
    ("eval-episodes-negative", ["eval", "ckpt={tmp}", "episodes=-3", "out={tmp}/o"], ["episodes", "got -3"]),
    ("eval-episodes-text", ["eval", "ckpt={tmp}", "episodes=many", "out={tmp}/o"], ["episodes", "got 'many'"]),
    ("eval-unknown-task", ["eval", "ckpt={tmp}", "task=fly", "out={tmp}/o"], ["reach, push, pick", "'fly'"]),
    ("eval-unknown-planner", ["eval", "ckpt={tmp}", "planners=[grad,nope]", "out={tmp}/o"], ["planners", "'nope'"]),
    ("eval-no-planner", ["eval", "ckpt={tmp}", "planners=[]", "out={tmp}/o"], ["planners", "empty list"]),
    ("eval-bundle-random", ["eval", "bundle={tmp}", "planners=[random]", "out={tmp}/o"], ["not random"]),
    ("eval-bad-sweep", ["eval", "ckpt={tmp}", "sweep=[1,0]", "out={tmp}/o"], ["sweep.1", "> 0", "got 0"]),
    ("eval-out-is-a-file", ["eval", "ckpt={tmp}", "out={file}"], ["out=", "is not a directory"]),
    ("eval-out-unwritable", ["eval", "ckpt={tmp}", "out=/proc/latent_vla"], ["out=/proc/latent_vla", "not writable"]),
    ("eval-ckpt-missing", ["eval", "ckpt={tmp}/nope", "out={tmp}/o"], ["nope is not a directory"]),
    ("eval-ckpt-not-a-run", ["eval", "ckpt={tmp}", "out={tmp}/o"], ["no checkpoint.json"]),
    ("eval-bundle-missing", ["eval", "bundle={tmp}/nope", "planners=[policy]", "out={tmp}/o"], ["does not exist"]),
    # out= of the other subcommands (item 7)
    ("collect-out-unwritable", ["collect", "out=/proc/latent_vla"], ["latent-vla collect:", "not writable"]),
    ("collect-out-is-a-file", ["collect", "out={file}/data"], ["is a file"]),
    ("train-out-unwritable", ["train", "data={tmp}", "out=/proc/latent_vla"], ["latent-vla train:", "not writable"]),
    ("train-out-is-a-file", ["train", "data={tmp}", "out={file}"], ["latent-vla train:", "is not a directory"]),
    ("export-out-unwritable", ["export", "ckpt={tmp}", "out=/proc/latent_vla"], ["latent-vla export:", "not writable"]),
    ("inspect-out-unwritable", ["inspect", "ckpt={tmp}", "data={tmp}", "out=/proc/x"], ["not writable"]),
    ("run-out-unwritable", ["run", "out=/proc/latent_vla"], ["latent-vla run:", "not writable"]),
    ("demo-out-unwritable", ["demo", "out=/proc/latent_vla"], ["latent-vla demo:", "not writable"]),
    # collect, export, inspect, demo settings
    ("collect-unknown-task", ["collect", "task=stack", "out={tmp}/d"], ["unknown task 'stack'", "valid tasks"]),
    ("collect-episodes-0", ["collect", "episodes=0", "out={tmp}/d"], ["episodes must be >= 1"]),
    ("export-no-ckpt", ["export", "out={tmp}/b"], ["ckpt=<run dir> is required"]),
    ("export-ckpt-missing", ["export", "ckpt={tmp}/nope", "out={tmp}/b"], ["nope is not a directory"]),
    ("export-bad-horizon", ["export", "ckpt={tmp}", "export.horizon=0", "out={tmp}/b"], ["horizon must be >= 1"]),
    ("inspect-bad-episodes", ["inspect", "ckpt={tmp}", "data={tmp}", "episodes=0", "out={tmp}/i"], ["episodes"]),
    ("demo-unknown-stage", ["demo", "stages=[collect,fly]", "out={tmp}/demo"], ["unknown demo stage", "fly"]),
    # run (items 7 and 8)
    ("run-fps-negative", ["run", "fps=-30", "out={tmp}/r"], ["fps must be a finite number > 0 Hz", "got -30"]),
    ("run-fps-0", ["run", "fps=0", "out={tmp}/r"], ["fps", "got 0"]),
    ("run-fps-nan", ["run", "fps=nan", "out={tmp}/r"], ["fps", "got nan"]),
    ("run-steps-negative", ["run", "steps=-5", "out={tmp}/r"], ["steps must be an integer >= 1", "got -5"]),
    ("run-duration-negative", ["run", "steps=null", "duration_s=-1", "out={tmp}/r"], ["duration_s", "got -1"]),
    ("run-duration-inf", ["run", "steps=null", "duration_s=inf", "out={tmp}/r"], ["duration_s", "got inf"]),
    ("run-velocity-scale-0", ["run", "safety.velocity_scale=0", "out={tmp}/r"], ["velocity_scale", "got 0"]),
    ("run-empty-task-real-arm", ["run", "robot=so101", "task=''", "yes=true", "out={tmp}/r"], ["task=''", "empty"]),
    ("run-blank-task-twin", ["run", "task='  '", "out={tmp}/r"], ["empty", "task=null"]),
    (
        "run-no-task-real-arm",
        ["run", "robot=so101", "task=null", "yes=true", "out={tmp}/r"],
        ["required for a real arm"],
    ),
    ("run-brain-missing", ["run", "brain={tmp}/nope", "out={tmp}/r"], ["no such file or directory"]),
]


def _one_stderr_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(("argv", "expected"), [c[1:] for c in USER_ERRORS], ids=[c[0] for c in USER_ERRORS])
def test_user_errors_are_one_line(
    argv: list[str], expected: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("not a directory")
    args = [a.format(tmp=tmp_path, file=tmp_path / "file") for a in argv]
    assert main(args) == 2
    captured = capsys.readouterr()
    line = _one_stderr_line(captured.err)
    assert line.startswith("latent-vla"), line
    for text in expected:
        assert text in line, line
    assert not (tmp_path / "o").exists() and not (tmp_path / "r").exists()  # refused before any work


def test_debug_flag_and_variable_show_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["eval", f"ckpt={tmp_path}", "episodes=0", f"out={tmp_path}/o"]
    with pytest.raises(UserError, match="episodes must be"):
        main([*argv, "--debug"])
    monkeypatch.setenv("LATENT_VLA_DEBUG", "1")
    with pytest.raises(UserError, match="episodes must be"):
        main(argv)
    monkeypatch.setenv("LATENT_VLA_DEBUG", "0")
    assert main(argv) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_bug_still_shows_its_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import latent_vla.app.eval_cli as eval_cli

    def broken(cfg):  # a bug inside a subcommand: not the user's mistake
        return {}["missing"]

    monkeypatch.setattr(eval_cli, "main", broken)
    with pytest.raises(KeyError, match="missing"):
        main(["eval", f"ckpt={tmp_path}", f"out={tmp_path}/o"])


def _ctrl_c(cfg) -> None:
    raise KeyboardInterrupt


def _ctrl_c_in_a_c_extension_import(cfg) -> None:
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as exc:  # what CPython makes of a Ctrl-C while a C extension initializes
        raise ImportError("initialization failed") from exc


@pytest.mark.parametrize("interrupt", [_ctrl_c, _ctrl_c_in_a_c_extension_import])
def test_ctrl_c_is_one_line_and_exit_130(
    interrupt, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import latent_vla.app.eval_cli as eval_cli

    monkeypatch.setattr(eval_cli, "main", interrupt)
    assert main(["eval", f"ckpt={tmp_path}", f"out={tmp_path}/o"]) == 130
    assert _one_stderr_line(capsys.readouterr().err) == "latent-vla eval: interrupted"
    with pytest.raises((KeyboardInterrupt, ImportError)):
        main(["eval", f"ckpt={tmp_path}", f"out={tmp_path}/o", "--debug"])


def test_console_script_path_exits_2_with_one_line(tmp_path: Path) -> None:
    """The real process: `python -m latent_vla.app.cli` (what the console script runs)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("LATENT_VLA_DEBUG", None)
    cmd = [sys.executable, "-m", "latent_vla.app.cli", "run", "fps=-30", f"out={tmp_path}/r"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert _one_stderr_line(done.stderr) == "latent-vla run: fps must be a finite number > 0 Hz or null, got -30"
    done = subprocess.run([*cmd, "--debug"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1 and "Traceback" in done.stderr and "UserError" in done.stderr


# --------------------------------------------------------------------------------------------------
# check_output_dir
# --------------------------------------------------------------------------------------------------
def test_check_output_dir_accepts_writable_and_creatable_dirs_and_leaves_nothing(tmp_path: Path) -> None:
    assert check_output_dir(tmp_path) == tmp_path
    assert check_output_dir(tmp_path / "a" / "b", "out") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists() and list(tmp_path.iterdir()) == []  # probed, not created


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("{tmp}/file", "out={tmp}/file is not a directory"),
        ("{tmp}/file/sub", "its ancestor {tmp}/file is a file"),
        ("/proc/latent_vla/x", "cannot create a folder in /proc"),
        ("", "out= is empty"),
    ],
)
def test_check_output_dir_refuses(tmp_path: Path, path: str, message: str) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError) as info:
        check_output_dir(path.format(tmp=tmp_path), "out")
    assert message.format(tmp=tmp_path) in str(info.value)


def test_ctrl_c_in_a_demo_stage_stops_the_demo() -> None:
    """A stage's `latent-vla` exits 130 on Ctrl-C; the demo stops as interrupted, not as a failed stage."""
    from latent_vla.app.demo_cli import DemoStageError, StagePlan, run_stage

    with pytest.raises(KeyboardInterrupt):
        run_stage(StagePlan("eval", ["eval"]), lambda argv: 130)
    with pytest.raises(DemoStageError, match="exit code 2"):
        run_stage(StagePlan("eval", ["eval"]), lambda argv: 2)
