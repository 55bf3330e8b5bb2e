"""Ctrl-C / SIGTERM during training: a resumable checkpoint, a one-line message, logs that continue.

Every run here is real training on the tiny synthetic dataset, interrupted by a real signal.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from synthetic_data import tiny_run_settings
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from latent_vla.app.cli import main as cli_main
from latent_vla.base.errors import UserError
from latent_vla.checkpoint import load_checkpoint, read_manifest
from latent_vla.train import train

SMALL = [
    "model.latent_dim=32", "model.hidden=64", "model.head_hidden=32", "model.image_feat=32",
    "model.channels=[8,16,16]", "model.image_size=[32,32]", "train.batch_size=8", "train.horizon=2",
    "train.num_threads=1", "train.progress=false", "train.log_every=2", "train.val_every=0",
]  # fmt: skip


def _log_steps(run: Path) -> list[int]:
    with open(run / "train_log.csv") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def _tb_steps(run: Path) -> list[int]:
    """Steps of ``train/total`` as TensorBoard shows them (purged events dropped, all event files read)."""
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    return [e.step for e in acc.Scalars("train/total")]


def _signal_once_logging(run: Path, signum: int, pid: int | None = None) -> threading.Thread:
    """Send ``signum`` to ``pid`` (default: this process) once ``train_log.csv`` exists: the loop is under way."""

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (run / "train_log.csv").exists():
            time.sleep(0.02)
        os.kill(pid or os.getpid(), signum)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_sigint_saves_a_checkpoint_and_the_rerun_resumes(tiny_dataset_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", f"data={tiny_dataset_dir}", f"out={out}", *SMALL, "train.minutes=1"]
    watcher = _signal_once_logging(out, signal.SIGINT)
    assert cli_main([*args, "train.steps=100000"]) == 130
    watcher.join()
    err = capsys.readouterr().err.strip().splitlines()
    step = read_manifest(out)["step"]
    assert 2 <= step < 100000 and load_checkpoint(out).step == step
    assert err[-1].startswith("latent-vla train: stopped by SIGINT") and f"checkpoint saved in {out}" in err[-1]
    assert f"continue from step {step}" in err[-1] and "Traceback" not in "\n".join(err)
    assert json.loads((out / "train_summary.json").read_text())["interrupted"] == "SIGINT"
    assert _log_steps(out)[-1] == step  # the log reaches the saved step, no further

    assert cli_main([*args, f"train.steps={step + 6}"]) == 0  # the same out= resumes
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["step"] == step + 6 and summary["steps_this_call"] == 6 and summary["interrupted"] is None
    logged = _log_steps(out)
    assert logged == sorted(set(logged)) and logged[-1] == step + 6
    tb = _tb_steps(out)
    assert tb == sorted(set(tb)) and tb[-1] == step + 6
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 2  # one run (tb/), one file per call


@pytest.mark.slow
def test_sigterm_stops_the_command_with_a_checkpoint(tiny_dataset_dir, tmp_path):
    """A real ``latent-vla train`` process, stopped as a scheduler stops it: exit 143, one line, a checkpoint."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "latent_vla.app.cli", "train", f"data={tiny_dataset_dir}", f"out={out}", *SMALL]
    cmd += ["train.steps=100000", "train.minutes=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _signal_once_logging(out, signal.SIGTERM, pid=proc.pid)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    last = err.strip().splitlines()[-1]
    step = load_checkpoint(out).step
    assert last.startswith("latent-vla train: stopped by SIGTERM") and f"step {step}" in last and step >= 2


def test_rerun_after_a_crash_drops_the_log_past_the_checkpoint(tiny_dataset_dir, tmp_path):
    """A run killed between saves logged beyond its checkpoint; the re-run rewinds CSV and TensorBoard to it."""
    out, saved = tmp_path / "run", tmp_path / "step4"
    train(tiny_run_settings(tiny_dataset_dir, out, steps=4, log_every=1))
    shutil.copytree(out, saved, ignore=shutil.ignore_patterns("tb", "train_log.csv"))
    train(tiny_run_settings(tiny_dataset_dir, out, steps=8, log_every=1))
    for f in saved.iterdir():  # back to the checkpoint of step 4, the logs of step 8: as after a kill -9
        shutil.copy2(f, out / f.name)
    assert _log_steps(out) == [1, 2, 3, 4, 5, 6, 7, 8]
    res = train(tiny_run_settings(tiny_dataset_dir, out, steps=6, log_every=1))
    assert res.step == 6 and res.steps_this_call == 2
    assert _log_steps(out) == [1, 2, 3, 4, 5, 6]
    assert _tb_steps(out) == [1, 2, 3, 4, 5, 6]


def test_foreign_out_directories_are_refused_before_decoding(tmp_path, capsys):
    """The data path does not exist: each refusal must come before the dataset is read."""
    no_data = tmp_path / "no-such-dataset"
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.tex").write_text("not a run")
    with pytest.raises(UserError, match="is not a latent-vla run .*thesis.tex"):
        train(tiny_run_settings(no_data, notes))
    assert [p.name for p in notes.iterdir()] == ["thesis.tex"]
    a_file = notes / "thesis.tex"
    for out, why in (
        (a_file, "is not a directory"),
        (Path("/proc/x"), "is not writable"),
        (a_file / "run", "is a file"),
    ):
        with pytest.raises(UserError, match=why):
            train(tiny_run_settings(no_data, out))
        assert cli_main(["train", f"data={no_data}", f"out={out}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0] and f"out={out}" in err[0]


def test_leftovers_of_a_run_that_never_saved_restart_cleanly(tiny_dataset_dir, tmp_path):
    """``train_log.csv`` and ``tb/`` without a checkpoint (a crash before the first save): a fresh run over them."""
    first, out = tmp_path / "first", tmp_path / "run"
    train(tiny_run_settings(tiny_dataset_dir, first, steps=4, log_every=1))
    shutil.copytree(first, out, ignore=lambda d, names: [n for n in names if n not in ("train_log.csv", "tb")])
    res = train(tiny_run_settings(tiny_dataset_dir, out, steps=2, log_every=1))
    assert res.step == 2 and res.steps_this_call == 2
    assert _log_steps(out) == [1, 2] and _tb_steps(out) == [1, 2]
