"""``latent-vla improve``: online world modeling, rounds of planning in the sim and fine-tuning on it.

A model trained on demonstrations only knows the states and actions the expert visited; a planner
searches everywhere else. Each round lets the current model act (``brain_mode``: its planner or its
policy head) in ``episodes`` new sim episodes, with the expert's action recorded beside every frame
(``latent-vla collect policy=brain``), adds them to the data and fine-tunes the model on all of it
(the previous round's weights, optimizer state and step count, for ``train_minutes``). Every round,
and the starting model as round 0, is evaluated on the same held-out seeds. Folders under ``out``::

    round_0/eval                 the starting model
    round_<r>/data               the episodes round r's brain acted (a LeRobotDataset)
    round_<r>/run                the fine-tuned model
    round_<r>/eval               its evaluation
    improve.json, improve.png    success per round and planner (table and plot)
    improve_state.json           each step's command and status: a re-run resumes

A re-run on the same ``out`` skips every step that finished with the same command (and whose output
is there) up to the first that did not; that step and every later one run again (each round reads
the one before). More ``rounds=`` extends a finished run. A non-empty ``out`` that holds no
``improve_state.json`` is refused.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from latent_vla.app.demo_cli import HELD_OUT_SEED_OFFSET, DemoStageError, StagePlan, run_stage
from latent_vla.app.settings import choice_list, choice_setting, int_setting, positive_number
from latent_vla.app.stage_state import StageState
from latent_vla.base.errors import UserError
from latent_vla.checkpoint import MANIFEST
from latent_vla.data import dataset_paths

STATE_FILE = "improve_state.json"
ROUND_SEED_STRIDE = 10_000
"""Round ``r`` collects on seeds ``seed + 100000 + r * 10000 ...``: never an evaluation seed, never another round's."""

CARRIED_GROUPS = ("model", "tokenizer", "train")
"""Groups of the starting run's ``config.yaml`` every fine-tuning passes on (a resumed run must match)."""

NOT_CARRIED = {"train.minutes", "train.steps", "train.progress"}
"""Settings each fine-tuning sets itself: its own minutes, no step total (``train.steps`` counts from 0)."""


@dataclass(frozen=True)
class Step:
    """One step: ``name`` (``round_1/train``), its ``latent-vla`` argv, the folder it writes, the file it
    writes last, and for a fine-tuning the run directory copied into ``folder`` first."""

    name: str
    argv: list[str]
    folder: Path
    last: str
    copy_from: Path | None = None


def _hydra_value(value: Any) -> str:
    """A config value as a Hydra override right-hand side (JSON: numbers, booleans, null, quoted strings)."""
    return json.dumps(value, separators=(",", ":"))


def _flatten(prefix: str, group: Mapping[str, Any]) -> list[str]:
    """``key=value`` overrides for every leaf of a nested config group (``train.loss.cost=1.0``)."""
    out: list[str] = []
    for key, value in group.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            out += _flatten(name, value)
        elif name not in NOT_CARRIED:
            out.append(f"{name}={_hydra_value(value)}")
    return out


def carried_settings(ckpt: Path) -> list[str]:
    """The starting run's model, tokenizer and training settings (from its ``config.yaml``) as overrides,
    so every fine-tuning resumes the same model with the same hyper-parameters; ``robot`` when not the default."""
    path = ckpt / "config.yaml"
    if not path.is_file():
        raise UserError(f"ckpt={ckpt} has no config.yaml (not a run written by `latent-vla train`)")
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert isinstance(cfg, dict)
    carried = [o for g in CARRIED_GROUPS for o in _flatten(g, cfg.get(g) or {})]
    robot = str(cfg.get("robot") or "so101")
    return carried if robot == "so101" else [*carried, f"robot={robot}"]  # as a user types it (a config group too)


def _list(values: list[Any]) -> str:
    return "[" + ",".join(_hydra_value(str(v)) for v in values) + "]"


def _eval_step(cfg: DictConfig, name: str, run: Path, folder: Path) -> Step:
    argv = ["eval", f"ckpt={run}", f"task={cfg.task}", f"seed={cfg.seed}", f"planners={_list(list(cfg.eval_planners))}",
            f"episodes={cfg.eval_episodes}", "videos=0", f"out={folder}",
            *[str(o) for o in cfg.overrides.eval]]  # fmt: skip
    return Step(name, argv, folder, "eval.json")


def plan_steps(cfg: DictConfig) -> list[Step]:
    """Every step of ``rounds`` rounds, in order (round 0: the evaluation of ``ckpt``)."""
    out, ckpt = Path(cfg.out), Path(cfg.ckpt)
    data = [
        Path(p) for p in dataset_paths(OmegaConf.to_container(cfg.data) if OmegaConf.is_list(cfg.data) else cfg.data)
    ]
    carried = carried_settings(ckpt)
    steps = [_eval_step(cfg, "round_0/eval", ckpt, out / "round_0" / "eval")]
    previous = ckpt
    for r in range(1, int(cfg.rounds) + 1):
        folder = out / f"round_{r}"
        seed = int(cfg.seed) + HELD_OUT_SEED_OFFSET + r * ROUND_SEED_STRIDE
        collect = ["collect", f"task={cfg.task}", "policy=brain", f"brain={previous}", f"brain_mode={cfg.brain_mode}",
                   f"episodes={cfg.episodes}", f"seed={seed}", f"out={folder / 'data'}", "mode=overwrite",
                   *[str(o) for o in cfg.overrides.collect]]  # fmt: skip
        steps.append(Step(f"round_{r}/collect", collect, folder / "data", "collect.json"))
        data.append(folder / "data")
        train = ["train", f"data={_list(data)}", f"out={folder / 'run'}", "resume=true",
                 f"train.minutes={cfg.train_minutes}", *carried, *[str(o) for o in cfg.overrides.train]]  # fmt: skip
        steps.append(Step(f"round_{r}/train", train, folder / "run", "train_summary.json", copy_from=previous))
        steps.append(_eval_step(cfg, f"round_{r}/eval", folder / "run", folder / "eval"))
        previous = folder / "run"
    return steps


def check_settings(cfg: DictConfig) -> None:
    """Refuse (UserError, one line) bad numbers, a ``ckpt`` that is no run and a missing dataset."""
    int_setting(cfg, "rounds", 1)
    int_setting(cfg, "episodes", 1)
    int_setting(cfg, "eval_episodes", 1)
    int_setting(cfg, "seed", 0)
    positive_number(cfg, "train_minutes", unit="min")
    choice_setting(cfg, "brain_mode", ("policy", "grad", "cem", "mppi"))
    choice_list(cfg, "eval_planners", ("grad", "cem", "mppi", "policy"))
    if not (Path(cfg.ckpt) / MANIFEST).is_file():
        raise UserError(
            f"ckpt={cfg.ckpt} is not a training run (no {MANIFEST}); give the run directory of `latent-vla train`"
        )
    unknown = [k for k in (cfg.get("overrides") or {}) if k not in ("collect", "train", "eval")]
    if unknown:
        raise UserError(f"overrides for unknown step(s) {unknown}; valid: collect, train, eval")


def _check_foreign(out: Path, state: StageState) -> None:
    if not state.stages and out.is_dir() and any(p.name != STATE_FILE for p in out.iterdir()):
        raise UserError(
            f"out={out} is not empty and holds no {STATE_FILE}: not an improve run of ours; give a new out="
        )


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def round_records(out: Path, rounds: int) -> list[dict[str, Any]]:
    """One record per evaluated round: ``round``, ``success`` / ``plan_ms_p50`` by planner, and for
    rounds >= 1 the episodes its brain acted (``episodes_added``, ``brain_pc_success``: how often the
    acting brain succeeded while collecting), the training frames added and the optimizer step reached."""
    rows: list[dict[str, Any]] = []
    for r in range(rounds + 1):
        evals = _read(out / f"round_{r}" / "eval" / "eval.json")
        if evals is None:
            break
        row: dict[str, Any] = {"round": r, "success": {e["planner"]: e["success_rate"] for e in evals},
                               "plan_ms_p50": {e["planner"]: e["plan_ms_p50"] for e in evals},
                               "episodes": evals[0]["episodes"]}  # fmt: skip
        collected = _read(out / f"round_{r}" / "data" / "collect.json")
        trained = _read(out / f"round_{r}" / "run" / "train_summary.json")
        if collected is not None:
            row.update(episodes_added=collected["episodes"], frames_added=collected["frames"],
                       brain_pc_success=collected["pc_success"])  # fmt: skip
        if trained is not None:
            row.update(train_step=trained["step"], train_seconds=trained["seconds"])
        rows.append(row)
    return rows


def write_summary(out: Path, rows: list[dict[str, Any]]) -> Path:
    """``improve.json`` (the rows) and ``improve.png`` (success per round, one line per planner); returns the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (out / "improve.json").write_text(json.dumps({"rounds": rows}, indent=2))
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    planners = sorted({p for r in rows for p in r["success"]})
    for p in planners:
        pts = [(r["round"], 100 * r["success"][p]) for r in rows if p in r["success"]]
        ax.plot(*zip(*pts, strict=True), marker="o", label=p)
    ax.set(xlabel="round (0 = the starting model)", ylabel="success, % of held-out episodes", ylim=(-2, 102),
           title=f"latent-vla improve: {rows[0]['episodes'] if rows else 0} episodes per point")  # fmt: skip
    ax.set_xticks([r["round"] for r in rows])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = out / "improve.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


def print_table(rows: list[dict[str, Any]]) -> None:
    """Success per round and planner, with what each round added."""
    from rich.console import Console
    from rich.table import Table

    planners = sorted({p for r in rows for p in r["success"]})
    table = Table(title="latent-vla improve: success on the held-out seeds per round")
    for col in ("round", *planners, "brain success while collecting", "episodes added", "train step"):
        table.add_column(col, justify="right")
    for r in rows:
        brain = r.get("brain_pc_success")
        success = [f"{100 * r['success'][p]:.0f} %" if p in r["success"] else "-" for p in planners]
        table.add_row(str(r["round"]), *success, "-" if brain is None else f"{brain:.0f} %",
                      str(r.get("episodes_added", "-")), str(r.get("train_step", "-")))  # fmt: skip
    Console().print(table)


def _prepare(step: Step) -> None:
    """Remove what an earlier attempt of ``step`` left, and copy the run a fine-tuning continues."""
    if step.folder.exists():
        shutil.rmtree(step.folder)
    if step.copy_from is not None:
        shutil.copytree(step.copy_from, step.folder, ignore=shutil.ignore_patterns("tb", ".ckpt-*"))


def main(cfg: DictConfig) -> int:
    """Run (or resume) every round; print the table and write ``improve.json`` / ``improve.png``."""
    from latent_vla.app.cli import main as cli_main

    check_settings(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state = StageState(out / STATE_FILE)
    _check_foreign(out, state)
    steps = plan_steps(cfg)
    t_start, rerun = time.perf_counter(), False
    for i, step in enumerate(steps, 1):
        if not rerun and state.done_with(step.name, step.argv) and (step.folder / step.last).is_file():
            print(f"improve: {step.name} is complete in {step.folder}; skipped")
            continue
        rerun = True
        _prepare(step)
        state.record(step.name, step.argv, "started")
        header = f" ({i}/{len(steps)}; {(time.perf_counter() - t_start) / 60:.1f} min in)"
        try:
            seconds = run_stage(StagePlan(step.name, step.argv), cli_main, header, label="improve step")
        except DemoStageError as exc:
            state.record(step.name, step.argv, "failed")
            print(f"\nlatent-vla improve: {exc}")
            return 1
        state.record(step.name, step.argv, "done", seconds)
        if step.last == "eval.json":
            write_summary(out, round_records(out, int(cfg.rounds)))
    rows = round_records(out, int(cfg.rounds))
    print_table(rows)
    print(f"improve: {out / 'improve.json'}, {write_summary(out, rows)}")
    return 0
