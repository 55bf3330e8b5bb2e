"""Smoke test of ``benchmarks/export_latency.py`` on the shared bundle (tiny budget, no export)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from file_import import import_file

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "export_latency.py"


def _load():
    return import_file(SCRIPT)


def test_latency_benchmark_runs_and_reports(export_ckpt_dir, bundle_dir, tmp_path, capsys):
    bench = _load()
    args = argparse.Namespace(
        ckpt=str(export_ckpt_dir), bundle=str(bundle_dir), horizon=4, threads=1, repeats=10, grad_iterations=2,
        restarts=2, samples=16, out=str(tmp_path / "lat.json"),
    )  # fmt: skip
    figures = bench.run(args)
    bench.print_table(figures)
    assert "batch-1 latency" in capsys.readouterr().out
    res = figures["results"]
    assert set(res) == {"encoder", "policy", "grad_tick", "cem_tick"}
    for name in ("encoder", "policy"):
        assert set(res[name]) == {"torch", "ort_fp32", "ort_fp16", "ort_int8"}
    for row in res.values():
        for key, val in row.items():
            assert 0 < val["p50_ms"] <= val["p95_ms"]
            if key != "torch":
                assert val["speedup_vs_torch_p50"] == pytest.approx(row["torch"]["p50_ms"] / val["p50_ms"])
    assert figures["settings"]["horizon"] == 4 and figures["sizes_bytes"]["cost_grad@fp32"] > 0
    json.dumps(figures)  # JSON-ready
