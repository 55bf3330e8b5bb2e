"""Assemble the demo's report from the files each stage wrote under ``<out>``.

Reads ``data/collect.json`` (``data/<task>/collect.json`` for a multi-task demo), the training CSV
log in ``run/``, ``inspect/*.png``, ``eval/eval.json`` (+ ``sweep.png`` and GIFs),
``bundle/export_report.json``, ``eval_bundle/eval.json`` and
``twin/run_report.json``; writes ``report/index.html``, its PNG/GIF figures and ``demo.json``
(every number the page shows), and prints a summary table.

The page leads with what a user wants to see: the GIF ``latent-vla eval`` recorded of a successful
held-out episode (the real camera beside the model's decoded imagination; the closest episode, said
so, when none succeeded), then the success table, then success against planner iterations, then the
details.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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

EVAL_COLUMNS = (
    "planner",
    "task",
    "episodes",
    "success_rate",
    "avg_episode_length",
    "plan_ms_p50",
    "plan_ms_p95",
    "iterations_mean",
    "kept_policy_rate",
    "success_delta_vs_best_baseline",
)


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


@dataclass(frozen=True)
class LeadEpisode:
    """The recorded evaluation episode the report leads with (one entry of an ``eval.json`` record)."""

    gif: Path
    planner: str
    seed: int
    success: bool
    first_success_step: int | None
    steps: int
    final_distance: float  # metres, the task's distance at the end
    task: str = ""  # the record's task (named in the caption)

    def caption(self, successes: int, episodes: int) -> str:
        """One sentence on what the GIF shows; ``successes`` of ``episodes`` evaluated episodes (all planners)."""
        views = ("Left: the real camera; middle and right: what the model imagined (decoded latents) 1 step "
                 "and the whole horizon ahead along the plan it chose.")  # fmt: skip
        if self.success:
            return (f"Planner {self.planner} on held-out {self.task} episode (seed {self.seed}): reached the goal "
                    f"at tick {self.first_success_step} of {self.steps}. {views}")  # fmt: skip
        which = (
            "No evaluated episode succeeded"
            if successes == 0
            else (f"No recorded episode succeeded ({successes} of {episodes} evaluated episodes did, without a GIF)")
        )
        return (f"{which}; this is the closest one: {self.task} with planner {self.planner}, seed {self.seed}, "
                f"{100 * self.final_distance:.1f} cm from the goal at the end. {views}")  # fmt: skip


def lead_episode(eval_dir: Path, records: Sequence[Mapping[str, Any]] | None) -> LeadEpisode | None:
    """The recorded episode to lead the report with, or None when eval recorded no GIF.

    A successful episode first: of the gradient planner before the others, then the earliest to
    succeed; without one, the episode that ended closest to the goal. GIFs are read from
    ``<eval_dir>/videos/<planner>_ep<i>.gif`` (episode ``i`` of that planner's ``per_episode``).
    """
    found: list[tuple[tuple[Any, ...], LeadEpisode]] = []
    for order, rec in enumerate(records or []):
        per_episode = rec.get("per_episode", [])
        for video in rec.get("videos", []):
            m = re.search(r"_ep(\d+)\.gif$", str(video))
            gif = eval_dir / "videos" / Path(str(video)).name
            if m is None or int(m.group(1)) >= len(per_episode) or not gif.is_file():
                continue
            ep = per_episode[int(m.group(1))]
            lead = LeadEpisode(gif, str(rec["planner"]), int(ep["seed"]), bool(ep["success"]),
                               ep.get("first_success_step"), int(ep["steps"]), float(ep["final_distance"]),
                               str(rec.get("task", "")))  # fmt: skip
            distance = lead.final_distance if lead.final_distance == lead.final_distance else float("inf")  # NaN last
            success_key = (False, lead.planner != "grad", order, lead.first_success_step or 0)
            key = success_key if lead.success else (True, distance)
            found.append((key, lead))
    return min(found, key=lambda kv: kv[0])[1] if found else None


def _lead_section(
    out: Path, fig_dir: Path, records: Sequence[Mapping[str, Any]] | None, summary: dict[str, Any]
) -> ReportSection:
    """The page's first section: the chosen episode's GIF, large, with a caption that says what it shows."""
    sec = ReportSection("A held-out episode: what the robot saw, and what the model imagined", lead=True)
    lead = lead_episode(out / "eval", records)
    if lead is None:
        sec.notes.append("missing: no evaluation GIF (eval ran with videos=0, or did not run)")
        return sec
    target = fig_dir / f"lead_{lead.gif.name}"
    target.write_bytes(lead.gif.read_bytes())
    rel = str(target.relative_to(fig_dir.parent))
    episodes = [ep for r in records or [] for ep in r.get("per_episode", [])]
    sec.figures.append(rel)
    sec.captions[rel] = lead.caption(sum(bool(ep["success"]) for ep in episodes), len(episodes))
    summary["lead_episode"] = {"gif": rel, "planner": lead.planner, "seed": lead.seed, "success": lead.success,
                               "caption": sec.captions[rel]}  # fmt: skip
    return sec


def collect_sections(out: Path, fig_dir: Path) -> tuple[list[ReportSection], dict[str, Any]]:
    """Build every report section from ``out``; returns the sections and the JSON summary.

    In page order: the lead GIF, the results table, success against planner iterations, then details.
    """
    summary: dict[str, Any] = {}
    eval_records = read_json(out / "eval" / "eval.json")
    bundle_records = read_json(out / "eval_bundle" / "eval.json")
    sections = [_lead_section(out, fig_dir, eval_records, summary)]

    rows = _eval_rows(eval_records, "pytorch") + _eval_rows(bundle_records, "onnx bundle")
    summary["eval"] = eval_records
    summary["eval_bundle"] = bundle_records
    sec = ReportSection("Closed-loop results (same seeded episodes for every planner)", table=rows)
    if not rows:
        sec.notes.append("missing: no eval.json (the eval stages did not run)")
    sections.append(sec)

    sweep = copy_figures(out / "eval", fig_dir, ["sweep.png"])
    if sweep:
        sec = ReportSection("Success against planner iterations per tick (same seeded episodes)")
        rel = str(sweep[0].relative_to(fig_dir.parent))
        sec.figures.append(rel)
        sec.captions[rel] = "Left: success (%) against planner iterations per tick; right: planning ms per tick (p50)."
        sections.append(sec)
    sections += _detail_sections(out, fig_dir, summary)
    return sections, summary


def _detail_sections(out: Path, fig_dir: Path, summary: dict[str, Any]) -> list[ReportSection]:
    """Demonstrations, training, imagination, export and the twin run; fills ``summary`` with their figures."""
    sections: list[ReportSection] = []

    single = read_json(out / "data" / "collect.json")  # a multi-task demo has data/<task>/collect.json
    collects = [single] if single else [c for p in sorted((out / "data").glob("*/collect.json")) if (c := read_json(p))]
    summary["collect"] = single or collects or None
    collect_keys = ("task", "policy", "episodes", "frames", "pc_success", "avg_sum_reward", "frames_per_s", "wall_s")
    runs = [r for c in collects for r in c.get("runs") or [c]]  # one row per collect run (expert, explore, ...)
    sec = ReportSection("Training data (one row per collection run)", table=[_pick(r, collect_keys) for r in runs])
    if not collects:
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
    gifs = copy_figures(out / "eval", fig_dir, ["*_ep0.gif"])  # each planner's first episode
    pngs = copy_figures(out / "inspect", fig_dir, ["*.png"])
    sec.figures += [str(p.relative_to(fig_dir.parent)) for p in [*pngs, *gifs]]
    if not sec.figures:
        sec.notes.append("missing: no inspect/ images or eval GIFs")
    sections.append(sec)

    export = read_json(out / "bundle" / "export_report.json")
    summary["export"] = export
    export_keys = ("graph", "precision", "file", "bytes", "max_abs_err", "tol", "ok")
    files = export.get("files", []) if export else []
    sec = ReportSection(
        "Export (ONNX bundle): size and error against PyTorch", table=[_pick(f, export_keys) for f in files]
    )
    if not export:
        sec.notes.append("missing: no bundle/export_report.json")
    sections.append(sec)

    run = read_json(out / "twin" / "run_report.json")
    summary["twin_run"] = run
    sec = ReportSection("MuJoCo twin through the control loop and safety layer", table=[_twin_row(run)] if run else [])
    if not run:
        sec.notes.append("missing: no twin/run_report.json")
    sections.append(sec)
    return sections


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
    task = cfg.get("task")
    tasks = ", ".join(map(str, task)) if isinstance(task, list | tuple) else task
    subtitle = f"task {tasks} · seed {cfg.get('seed')} · generated {stamp}"
    page = report_dir / "index.html"
    page.write_text(render_html("latent-vla demo report", subtitle, sections))
    summary.update({"config": dict(cfg), "timings_s": dict(timings), "generated": stamp, "report": str(page)})
    (out / "demo.json").write_text(json.dumps(summary, indent=2, default=str))
    print_summary(next(sec.table for sec in sections if sec.title.startswith("Closed-loop results")))
    return page
