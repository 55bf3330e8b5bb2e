"""``latent-vla eval``: the same seeded episodes for every planner, a table, eval.json, videos, a sweep.

Thin wiring over :mod:`planners.evaluate` (see ``configs/eval.yaml`` for every key).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from latent_vla.app.settings import (
    bool_setting,
    choice_list,
    choice_setting,
    int_setting,
    model_device_settings,
    name_list,
    positive_number,
)
from latent_vla.base.cpus import resolve_threads
from latent_vla.base.errors import UserError
from latent_vla.instruction_snap import read_as

SEARCHERS = ("grad", "cem", "mppi", "random")


SnapReader = Callable[[list[str]], dict[str, str]]
"""instructions -> {instruction: the recorded instruction a snapping model reads it as}"""


def _planner_overrides(cfg: DictConfig, name: str) -> dict[str, Any]:
    """The eval-wide settings (``horizon``, ``iterations``, ``budget_ms``) as one searcher's overrides; ``iterations``
    without ``budget_ms`` lifts the budget, so the iterations alone bound the work (the same on every backend)."""
    over: dict[str, Any] = {}
    if name == "policy":
        return over
    if cfg.horizon is not None:
        over["horizon"] = int(cfg.horizon)
    if cfg.iterations is not None:
        over["iterations"] = int(cfg.iterations)
        over["budget_ms"] = None
    if cfg.budget_ms is not None:
        over["budget_ms"] = float(cfg.budget_ms)
    return over


def _brain_factory(cfg: DictConfig) -> tuple[Callable[[str, dict[str, Any]], Any], Any, SnapReader | None]:
    """``(make_brain(name, overrides), robot spec, snap reader)`` for ``ckpt=`` or ``bundle=``; the reader maps
    instructions to the recorded ones the model reads them as (None: the model does not snap)."""
    if cfg.brain_sha256 is not None and cfg.bundle is None:
        raise UserError("brain_sha256= pins an ONNX bundle=, not a ckpt=")
    if cfg.ckpt is not None:
        from latent_vla.checkpoint import load_checkpoint
        from latent_vla.devices import resolve_device
        from planners.brains import PlannerBrain

        checkpoint = load_checkpoint(Path(cfg.ckpt), map_location=resolve_device(str(cfg.device)))
        planner_cfgs = OmegaConf.to_container(cfg.planner_cfg, resolve=True)
        assert isinstance(planner_cfgs, dict)

        def make(name: str, over: dict[str, Any]) -> Any:
            ens = cfg.get("temporal_ensemble")  # null = the planner config's own setting
            pcfg = {**planner_cfgs[name], **over, **({} if ens is None else {"temporal_ensemble": float(ens)})}
            return PlannerBrain(checkpoint, pcfg, n_execute=int(cfg.n_execute))

        table = checkpoint.snap_table

        def embed(texts: list[str]) -> Any:
            return checkpoint.embed_instruction(texts).cpu()

        reader = None if table is None else partial(read_as, embed, table.texts)
        return make, checkpoint.spec, reader
    try:
        from export.runtime.brain import load_bundle_brain
        from latent_vla.base.robot_spec import SO101  # the arm of the simulator (sim.env.SO101Env)
    except ImportError as exc:
        raise UserError(f"bundle= needs export.runtime, which is not installed here: {exc}") from exc
    providers = name_list(cfg, "providers", optional=True)

    def make_bundle(name: str, over: dict[str, Any]) -> Any:
        return load_bundle_brain(Path(cfg.bundle), mode=name, precision=cfg.bundle_precision, robot=SO101,
                                 planner=over or None, expected_sha256=cfg.brain_sha256,
                                 providers=providers)  # fmt: skip

    probe = make_bundle("policy", {})
    table = probe.bundle.manifest.model.get("instruction_snap")
    reader = None if not table else partial(read_as, probe.bundle.embed_task, list(table["texts"]))
    return make_bundle, probe.bundle.spec, reader


def _refusing_bad_planner_settings(
    make_brain: Callable[[str, dict[str, Any]], Any],
) -> Callable[[str, dict[str, Any]], Any]:
    """``make_brain`` that turns a planner's refusal of its settings (``planner_cfg.<name>.*``, e.g. a
    negative ``lr`` or a ``min_gain`` of 2) into a one-line :class:`UserError` naming the planner."""

    def make(name: str, over: dict[str, Any]) -> Any:
        try:
            return make_brain(name, over)
        except (ValueError, TypeError) as exc:
            raise UserError(f"planner_cfg.{name}: {exc}") from exc

    return make


def _share(rate: float | None) -> str:
    """A rate in [0, 1] as a percentage; ``-`` when missing or NaN (no planning ticks)."""
    return "-" if rate is None or rate != rate else f"{100 * rate:.0f}%"


def print_table(records: list[dict[str, Any]], title: str) -> None:
    """A rich table of the ``eval.json`` records."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("planner", "success", "vs best other", "to distractor", "mean len", "plan ms p50", "plan ms p95",
                "act ms p95", "iters/plan", "kept policy"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in records:
        rate = r.get("distractor_rate")
        table.add_row(
            r["planner"], f"{r['pc_success']:.1f}%", f"{100 * r['success_vs_best_other']:+.1f} pp",
            "-" if rate is None else f"{100 * rate:.1f}%",
            f"{r['mean_episode_length']:.1f}", f"{r['plan_ms_p50']:.1f}", f"{r['plan_ms_p95']:.1f}",
            f"{r['act_ms_p95']:.1f}", f"{r['iterations_mean']:.1f}", _share(r.get("kept_policy_rate")),
        )  # fmt: skip
    Console(width=max(110, Console().width)).print(table)


def _plot_sweep(sweep: list[dict[str, Any]], key: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name in dict.fromkeys(r["planner"] for r in sweep):
        rows = [r for r in sweep if r["planner"] == name]
        xs = [r["sweep_value"] for r in rows]
        ax1.plot(xs, [r["pc_success"] for r in rows], "o-", label=name)
        ax2.plot(xs, [r["plan_ms_p50"] for r in rows], "o-", label=name)
    for ax, ylabel in ((ax1, "success (%)"), (ax2, "planning ms per tick (p50)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel(key)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _check_device_settings(cfg: DictConfig) -> None:
    """``device`` places a ``ckpt=`` model, ``providers`` choose a ``bundle=``'s onnxruntime providers."""
    if cfg.bundle is not None and str(cfg.device).strip() != "cpu":
        raise UserError(f"device={cfg.device} places a ckpt= model; bundle= takes providers= (e.g. providers=[cuda])")
    if cfg.ckpt is not None and cfg.providers is not None:
        raise UserError("providers= choose a bundle='s onnxruntime execution providers; ckpt= takes device=")
    model_device_settings(cfg, "device", "providers")


def task_names(cfg: DictConfig) -> list[str]:
    """``task=``: one task or a list of them (a multi-task model, every planner on each), each a known task.

    Raises:
        UserError: an unknown task, a repeated one or an empty list.
    """
    from sim import ENV_IDS  # registers the Gymnasium ids only; MuJoCo comes with the first env

    tasks = choice_list(cfg, "task", ENV_IDS)
    if len(set(tasks)) != len(tasks):
        raise UserError(f"task lists a task twice: {tasks}")
    return tasks


def instruction_templates(cfg: DictConfig) -> list[str] | None:
    """``instruction_templates=[...]``, checked against the task's fields; None = the env's own templates.

    Raises:
        UserError: not a list of strings, or a template with a field a task of ``task=`` does not fill
            (e.g. ``{zone}`` for reach) or characters an instruction may not hold (one line).
    """
    given = cfg.get("instruction_templates")
    if given is None:
        return None
    if isinstance(given, str) or not OmegaConf.is_list(given):
        raise UserError(f'instruction_templates must be a list, e.g. instruction_templates=["go to the {{object}}"]; '
                        f"got {given!r}")  # fmt: skip
    from sim.tasks import TASKS  # imports MuJoCo; only when templates are given

    templates = list(given)
    try:
        for task in task_names(cfg):
            TASKS[task].check_templates(templates)
    except ValueError as exc:
        raise UserError(f"instruction_templates: {exc}") from None
    return templates


def check_settings(cfg: DictConfig) -> list[str]:
    """Refuse a bad request before any work; returns the planners to evaluate.

    Raises:
        UserError: not exactly one of ``ckpt=`` / ``bundle=``, an unknown task or planner, a count
            below 1 (``episodes``, ...), a budget that is not a positive number, a ``device`` or
            ``providers`` this machine lacks or that the other model source takes, ...
    """
    if (cfg.ckpt is None) == (cfg.bundle is None):
        given = "both" if cfg.ckpt is not None else "neither"
        raise UserError(f"give exactly one of ckpt=<run dir> or bundle=<bundle dir>; got {given}")
    task_names(cfg)
    names = choice_list(cfg, "planners", cfg.planner_cfg)
    _check_device_settings(cfg)
    if cfg.bundle is not None:
        if "random" in names:
            raise UserError("bundle= runs the planners grad, cem, mppi and policy; not random")
        choice_setting(cfg, "bundle_precision", ("fp32", "fp16", "int8"))
    for key in ("episodes", "n_execute", "sweep_episodes"):
        int_setting(cfg, key, 1)
    int_setting(cfg, "videos", 0)
    int_setting(cfg, "max_steps", 1, optional=True)
    bool_setting(cfg, "stop_on_success")
    int_setting(cfg, "horizon", 1, optional=True)
    int_setting(cfg, "iterations", 1, optional=True)
    positive_number(cfg, "budget_ms", optional=True, unit="ms")
    positive_number(cfg, "video_fps", unit="Hz")
    if cfg.sweep:
        choice_setting(cfg, "sweep_key", ("iterations", "budget_ms"))
        if cfg.sweep_planners:
            choice_list(cfg, "sweep_planners", names)
        for i in range(len(cfg.sweep)):
            positive_number(cfg, f"sweep.{i}")
    instruction_templates(cfg)
    return names


def _evaluate_tasks(
    cfg: DictConfig,
    names: list[str],
    tasks: list[str],
    make_brain: Callable[[str, dict[str, Any]], Any],
    spec: Any,
    env_kwargs: dict[str, Any],
    out: Path,
    fresh: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every planner of ``names`` on each task of ``tasks`` (same seeds); one record per (task, planner).

    Each (task, planner) gets a new brain: ``fresh`` holds unused ones already built (by name), which
    the first task takes instead of building its own. With several tasks the GIFs are named
    ``<planner>_<task>_ep<i>.gif`` and each record's ``success_vs_best_other`` compares the planners
    on its own task.
    """
    import sim
    from planners.evaluate import add_baseline_deltas, evaluate_brain

    records: list[dict[str, Any]] = []
    for task in tasks:
        task_records = []
        for name in names:
            brain = fresh.pop(name) if fresh and name in fresh else make_brain(name, _planner_overrides(cfg, name))
            stem = name if len(tasks) == 1 else f"{name}_{task}"
            task_records.append(
                evaluate_brain(name, brain, partial(sim.make_env, task, **env_kwargs), spec, task, int(cfg.episodes),
                               int(cfg.seed), video_episodes=int(cfg.videos), video_dir=out / "videos",
                               video_fps=float(cfg.video_fps), progress=bool(cfg.progress), video_stem=stem)
            )  # fmt: skip
        add_baseline_deltas(task_records)
        records += task_records
    return records


def _note_snapped(records: list[dict[str, Any]], reader: SnapReader) -> None:
    """Add ``instructions_read_as`` ({instruction: recorded instruction}) and ``episodes_read_as_recorded``
    to each record of a snapping model, and print one line per task (``train.snap``, docs/training.md)."""
    for r in records:
        said = [e["instruction"] for e in r["per_episode"]]
        r["instructions_read_as"] = reader(said)
        r["episodes_read_as_recorded"] = sum(s in r["instructions_read_as"] for s in said)
    for task in dict.fromkeys(r["task"] for r in records):
        r = next(x for x in records if x["task"] == task)
        if r["instructions_read_as"]:
            first = next(iter(r["instructions_read_as"].items()))
            print(
                f"{task}: {r['episodes_read_as_recorded']} of {len(r['per_episode'])} episodes' instructions read "
                f'as a recorded one, e.g. "{first[0]}" as "{first[1]}"'
            )


def main(cfg: DictConfig) -> int:
    """Run the evaluation described by ``cfg`` (``configs/eval.yaml``); returns the exit code."""
    names = check_settings(cfg)
    import torch

    import sim
    from planners.evaluate import evaluate_brain

    torch.set_num_threads(resolve_threads(cfg.threads))
    make_brain, spec, snap_reader = _brain_factory(cfg)  # a bad checkpoint or bundle is refused before `out` is made
    make_brain = _refusing_bad_planner_settings(make_brain)
    # so is a bad planner setting: each planner's brain is built now, before any episode (the first task uses them)
    fresh = {name: make_brain(name, _planner_overrides(cfg, name)) for name in names}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    # only the cameras the brain reads are rendered; `stop_on_success` ends an episode at its first success
    env_kwargs: dict[str, Any] = {
        "render_mode": None,
        "cameras": list(spec.camera_names),
        "terminate_on_success": bool(cfg.stop_on_success),  # checked by bool_setting
    }
    if cfg.max_steps is not None:
        env_kwargs["episode_length"] = int(cfg.max_steps)
    templates = instruction_templates(cfg)
    if templates is not None:
        env_kwargs["instruction_templates"] = templates

    tasks = task_names(cfg)
    records = _evaluate_tasks(cfg, names, tasks, make_brain, spec, env_kwargs, out, fresh)
    if snap_reader is not None:
        _note_snapped(records, snap_reader)
    (out / "eval.json").write_text(json.dumps(records, indent=2))
    phrasing = f" templates={len(templates)} of your own" if templates is not None else ""
    for task in tasks:
        print_table([r for r in records if r["task"] == task],
                    f"eval: task={task} episodes={cfg.episodes} seed={cfg.seed}{phrasing}")  # fmt: skip

    if cfg.sweep:  # on the first task
        make_env = partial(sim.make_env, tasks[0], **env_kwargs)
        key = str(cfg.sweep_key)
        sweep_names = list(cfg.sweep_planners) if cfg.sweep_planners else [n for n in names if n in SEARCHERS]
        sweep: list[dict[str, Any]] = []
        for name in sweep_names:
            for value in cfg.sweep:
                over = {**_planner_overrides(cfg, name), key: float(value) if key == "budget_ms" else int(value)}
                if key == "iterations":  # iterations alone bound the work
                    over["budget_ms"] = None
                elif name != "policy":  # the budget alone bounds the work (grad may still converge first)
                    over["iterations"] = 10**6
                rec = evaluate_brain(f"{name}@{value}", make_brain(name, over), make_env, spec, tasks[0],
                                     int(cfg.sweep_episodes), int(cfg.seed), progress=bool(cfg.progress))  # fmt: skip
                rec.update(planner=name, sweep_key=key, sweep_value=value)
                sweep.append(rec)
        (out / "sweep.json").write_text(json.dumps(sweep, indent=2))
        _plot_sweep(sweep, key, out / "sweep.png")
        print(f"sweep: {out / 'sweep.json'}, {out / 'sweep.png'}")
    print(f"wrote {out / 'eval.json'}")
    return 0
