"""A time-boxed training run tells the truth: minutes used and left of its budget, not "0/100000 steps, 27 h"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from synthetic_data import tiny_run_settings

from latent_vla.train import _Progress, budget_progress, train


def test_a_time_boxed_run_counts_down_its_minutes() -> None:
    # 1 minute into a 5-minute budget at 4 steps/s: the 100,000 steps would take ~7 hours, the budget ends it
    done, text = budget_progress(elapsed_s=60.0, budget_s=300.0, step=240, start_step=0, total_steps=100_000)
    assert done == pytest.approx(0.2)
    assert text.startswith("1.0 of 5.0 min, 4.0 min left, step 240 ")
    assert "100000" not in text and "4.0 steps/s" in text


def test_a_step_bound_run_says_when_its_steps_end_it() -> None:
    # 100 of 200 steps in 10 s of a 5-minute budget: the steps end it 10 s from now
    done, text = budget_progress(elapsed_s=10.0, budget_s=300.0, step=100, start_step=0, total_steps=200)
    assert done == pytest.approx(0.5)
    assert "0.2 of 5.0 min, 0.2 min left, step 100 of 200" in text


def test_a_resumed_run_rates_only_its_own_steps() -> None:
    _, text = budget_progress(elapsed_s=30.0, budget_s=120.0, step=1090, start_step=1000, total_steps=100_000)
    assert "1.5 min left" in text and "(3.0 steps/s)" in text


def test_the_bar_shows_minutes_left_not_steps(tmp_path: Path) -> None:
    progress = _Progress(tmp_path, start_step=0, total_steps=100_000, budget_s=300.0, is_main=True, bar=True)
    try:
        for i in range(240):
            progress.add({"total": torch.tensor(1.0)}, grad_norm=1.0, elapsed_s=60.0 * (i + 1) / 240)
        progress.flush(240, 60.0, 1e-3)
        line = str(progress.bar)
    finally:
        progress.close()
    assert re.search(r"train\s+20%\|.*\| 1\.0 of 5\.0 min, 4\.0 min left, step 240 \(4\.0 steps/s\), total=1", line)
    assert "/100000" not in line and "step/s" not in line.replace("steps/s", "")


def test_training_prints_the_budget_bar(
    tiny_dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train(tiny_run_settings(tiny_dataset_dir, tmp_path / "run", steps=6, log_every=3, progress=True, minutes=2.0))
    err = capsys.readouterr().err
    assert "of 2.0 min" in err and "min left, step 6" in err
