"""The demo report: one HTML page (and its PNG figures) a person wants to read.

It reads the JSON every stage writes next to its outputs (``collect.json``, ``train`` logs,
``eval.json``, export latency, control-loop figures) and lays out, first what a user wants to see:
a looping GIF of an evaluation episode (the real camera beside the decoded imagined plan), the
results table and success against planning iterations; then the details: demonstrations, training
curves, imagined rollouts and the latent PCA picture, export sizes and errors, control-loop timing.
Missing stages are listed as missing, never filled with made-up numbers.
"""

from __future__ import annotations

import csv
import html
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ReportSection:
    """One block of the report: a title, an optional table, figures (paths relative to the page), notes.

    ``captions`` maps a figure to its caption (default: its file name in words); a ``lead`` section's
    figures are drawn large, above its table and notes (the page's first picture).
    """

    title: str
    table: list[Mapping[str, Any]] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    captions: dict[str, str] = field(default_factory=dict)
    lead: bool = False


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    return html.escape(str(value))


def table_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """An HTML table of records; columns are the union of keys in first-seen order."""
    if not rows:
        return ""
    cols: list[str] = []
    for row in rows:
        cols += [k for k in row if k not in cols and not isinstance(row[k], dict | list)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(row.get(c, ''))}</td>" for c in cols) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#1d232b;background:#fbfbfd;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #dde;padding-bottom:.3rem;margin-top:2.2rem}
.meta{color:#667}table{border-collapse:collapse;margin:.8rem 0;font-size:.92rem}
th,td{border:1px solid #d8dbe3;padding:.35rem .6rem;text-align:right}th{background:#eef1f7}
td:first-child,th:first-child{text-align:left}.figs{display:flex;flex-wrap:wrap;gap:1rem}
.figs img{max-width:520px;border:1px solid #dde;background:white;image-rendering:pixelated}
.missing{color:#a33}.lead img{width:960px;max-width:100%}.lead figcaption{font-size:1.05rem;max-width:960px}
"""


def render_html(title: str, subtitle: str, sections: Sequence[ReportSection]) -> str:
    """The whole page as a string."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p class='meta'>{html.escape(subtitle)}</p>",
    ]
    for sec in sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        body = [table_html(sec.table)]
        for note in sec.notes:
            cls = " class='missing'" if note.startswith("missing") else ""
            body.append(f"<p{cls}>{html.escape(note)}</p>")
        if sec.figures:
            imgs = "".join(
                f"<figure><img src='{html.escape(f)}' alt='{html.escape(Path(f).stem)}'>"
                f"<figcaption>{html.escape(sec.captions.get(f, Path(f).stem.replace('_', ' ')))}</figcaption></figure>"
                for f in sec.figures
            )
            figs = f"<div class='figs{' lead' if sec.lead else ''}'>{imgs}</div>"
            body = [figs, *body] if sec.lead else [*body, figs]
        parts += body
    parts.append("</body></html>")
    return "\n".join(parts)


def read_json(path: Path) -> Any | None:
    """JSON content of ``path``, or None when it does not exist."""
    return json.loads(path.read_text()) if path.is_file() else None


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV log, or an empty list when it does not exist."""
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


# training-log columns that are bookkeeping or diagnostics rather than loss terms
NOT_LOSSES = frozenset(
    {"step", "seconds", "lr", "grad_norm", "latent_std", "consistency_rel", "curvature", "grounding"}
)


def plot_training_curves(rows: Sequence[Mapping[str, str]], out_png: Path) -> bool:
    """Plot every loss column of a training CSV (``train_log.csv``) against ``step``; True when written."""
    if not rows or "step" not in rows[0]:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in rows[0] if k not in NOT_LOSSES]
    if not keys:
        return False
    steps = [float(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 3.8), dpi=110)
    for k in keys:
        ys = []
        for r in rows:
            try:
                ys.append(float(r[k]))
            except (TypeError, ValueError):
                ys.append(float("nan"))
        ax.plot(steps, ys, label=k, linewidth=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training losses")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return True


def copy_figures(src_dir: Path, dst_dir: Path, patterns: Sequence[str]) -> list[Path]:
    """Copy files matching ``patterns`` from ``src_dir`` (recursively) into ``dst_dir``; returns the copies."""
    out: list[Path] = []
    if not src_dir.is_dir():
        return out
    dst_dir.mkdir(parents=True, exist_ok=True)
    for pattern in patterns:
        for f in sorted(src_dir.rglob(pattern)):
            if f.is_file() and dst_dir not in f.parents:
                target = dst_dir / f"{src_dir.name}_{f.name}"
                shutil.copyfile(f, target)
                out.append(target)
    return out
