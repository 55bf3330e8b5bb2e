"""Assemble the demo's report from the files each stage wrote under ``<out>``.

Reads ``data/collect.json``, the training CSV log in ``run/``, ``inspect/*.png``, ``eval/eval.json``
(+ ``sweep.png`` and GIFs), ``bundle/export_report.json``, ``eval_bundle/eval.json`` and
``twin/run_report.json``; writes ``report/index.html``, its PNG/GIF figures and ``demo.json``
(every number the page shows), and prints a summary table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from latent_vla.app.report import (
    ReportSection,
    copy_figures,
    plot_training_curves,
    read_csv,
    read_json,
    render_html,
)

EVAL_COLUMNS = ("planner", "task", "episodes", "success_rate", "avg_episode_length", "plan_ms_p50",
                "plan_ms_p95", "iterations_mean", "success_delta_vs_best_baseline")


def _number(text: str) -> float | str:
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def _pick(d: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: d[k] for k in keys if k in d}


def _twin_row(run: Mapping[str, Any]) -> dict[str, Any]:
    loop = run.get("loop", {})
    safety = loop.get("safety", {})
    return {
        "instruction": run.get("task"),
        "ticks": loop.get("ticks"),
        "fps_achieved": loop.get("fps_achieved"),
        "deadline_misses": loop.get("deadline_misses"),
        "jitter_ms_p50": loop.get("jitter_ms", {}).get("p50"),
        "jitter_ms_p99": loop.get("jitter_ms", {}).get("p99"),
        "brain_ms_p50": loop.get("brain_ms", {}).get("p50"),
        "brain_ms_p99": loop.get("brain_ms", {}).get("p99"),
        "safety_interventions": safety.get("interventions"),
        "is_success": run.get("is_success"),
        "task_distance_m": run.get("task_distance"),
    }


def _eval_rows(records: list[dict[str, Any]] | None, source: str) -> list[dict[str, Any]]:
    rows = []
    for r in records or []:
        row = {"source": source}
        row.update({c: r[c] for c in EVAL_COLUMNS if c in r})
        rows.append(row)
    return rows


def _find_training_log(run_dir: Path) -> Path | None:
    logs = sorted(run_dir.rglob("*.csv")) if run_dir.is_dir() else []
    return logs[0] if logs else None


def collect_sections(out: Path, fig_dir: Path) -> tuple[list[ReportSection], dict[str, Any]]:
    """Build every report section from ``out``; returns the sections and the JSON summary."""
    summary: dict[str, Any] = {}
    sections: list[ReportSection] = []

    eval_records = read_json(out / "eval" / "eval.json")
    bundle_records = read_json(out / "eval_bundle" / "eval.json")
    rows = _eval_rows(eval_records, "pytorch") + _eval_rows(bundle_records, "onnx bundle")
    summary["eval"] = eval_records
    summary["eval_bundle"] = bundle_records
    sec = ReportSection("Closed-loop results (same seeded episodes for every planner)", table=rows)
    if not rows:
        sec.notes.append("missing: no eval.json (the eval stages did not run)")
    sec.figures += [str(p.relative_to(fig_dir.parent)) for p in copy_figures(out / "eval", fig_dir, ["sweep.png"])]
    sections.append(sec)

    collect = read_json(out / "data" / "collect.json")
    summary["collect"] = collect
    collect_keys = ("task", "episodes", "frames", "pc_success", "avg_sum_reward", "workers", "frames_per_s", "wall_s")
    sec = ReportSection("Expert demonstrations", table=[_pick(collect, collect_keys)] if collect else [])
    if not collect:
        sec.notes.append("missing: no data/collect.json")
    sections.append(sec)

    log = _find_training_log(out / "run")
    sec = ReportSection("Training")
    rows_csv = read_csv(log) if log else []
    if rows_csv:
        last = rows_csv[-1]
        sec.table = [{k: _number(v) for k, v in last.items()}]
        summary["train_last"] = last
        if plot_training_curves(rows_csv, fig_dir / "training_curves.png"):
            sec.figures.append(f"{fig_dir.name}/training_curves.png")
    else:
        sec.notes.append("missing: no training CSV log in run/")
    sections.append(sec)

    sec = ReportSection("What the model imagines")
    gifs = copy_figures(out / "eval", fig_dir, ["*.gif"])[:4]
    pngs = copy_figures(out / "inspect", fig_dir, ["*.png"])
    sec.figures += [str(p.relative_to(fig_dir.parent)) for p in [*pngs, *gifs]]
    if not sec.figures:
        sec.notes.append("missing: no inspect/ images or eval GIFs")
    sections.append(sec)

    export = read_json(out / "bundle" / "export_report.json")
    summary["export"] = export
    export_keys = ("graph", "precision", "file", "bytes", "max_abs_err", "tol", "ok")
    files = export.get("files", []) if export else []
    sec = ReportSection("Export (ONNX bundle): size and error against PyTorch",
                        table=[_pick(f, export_keys) for f in files])
    if not export:
        sec.notes.append("missing: no bundle/export_report.json")
    sections.append(sec)

    run = read_json(out / "twin" / "run_report.json")
    summary["twin_run"] = run
    sec = ReportSection("MuJoCo twin through the control loop and safety layer", table=[_twin_row(run)] if run else [])
    if not run:
        sec.notes.append("missing: no twin/run_report.json")
    sections.append(sec)
    return sections, summary


def print_summary(rows: list[dict[str, Any]]) -> None:
    """Print the results table with rich."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="latent-vla demo: closed-loop results")
    cols = [c for c in ("source", *EVAL_COLUMNS) if any(c in r for r in rows)]
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*[f"{r[c]:.3g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols])
    Console().print(table)


def write_report(out: Path, cfg: Mapping[str, Any], timings: Mapping[str, float]) -> Path:
    """Write ``<out>/report/index.html`` and ``<out>/demo.json``; returns the page's path."""
    out = Path(out)
    report_dir = out / "report"
    fig_dir = report_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    sections, summary = collect_sections(out, fig_dir)
    timing_rows = [{"stage": k, "seconds": round(v, 1)} for k, v in timings.items()]
    sections.append(ReportSection("Stage wall times", table=timing_rows))
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    subtitle = f"task {cfg.get('task')} · seed {cfg.get('seed')} · generated {stamp}"
    page = report_dir / "index.html"
    page.write_text(render_html("latent-vla demo report", subtitle, sections))
    summary.update({"config": dict(cfg), "timings_s": dict(timings), "generated": stamp, "report": str(page)})
    (out / "demo.json").write_text(json.dumps(summary, indent=2, default=str))
    print_summary(sections[0].table)
    return page
