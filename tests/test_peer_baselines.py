"""Smoke test of ``benchmarks/peer_baselines.py --smoke``: ACT trained by LeRobot's code, then ACT and our
brain evaluated by LeRobot's eval loop on the same seeded episodes (an existing dataset and run)."""

from __future__ import annotations

import json
from pathlib import Path

from file_import import import_file

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "peer_baselines.py"


def _load():
    return import_file(SCRIPT)


def test_peer_baselines_smoke(sim_reach_dataset_dir, tiny_checkpoint_dir, tmp_path, capsys):
    bench = _load()
    out = tmp_path / "peer.json"
    given = ["--data", f"reach={sim_reach_dataset_dir}", "--run", f"reach={tiny_checkpoint_dir}"]
    figures = bench.main(["--smoke", "--work", str(tmp_path / "work"), "--out", str(out), "--seed", "7", *given])
    assert "| reach | ACT (LeRobot) |" in capsys.readouterr().out
    rows = figures["rows"]
    assert [r["policy"] for r in rows] == ["ACT (LeRobot)", "ours: policy head", "ours: gradient planner"]
    for row in rows:
        assert row["seeds"] == [7] and 0.0 <= row["pc_success"] <= 100.0
    act = rows[0]["train"]
    assert act["steps"] == 2 and act["cpu_s"] > 0
    assert (tmp_path / "work" / "reach" / "act" / "config.json").is_file()  # lerobot-eval --policy.path loads it
    assert json.loads(out.read_text())["rows"][0]["task"] == "reach"
