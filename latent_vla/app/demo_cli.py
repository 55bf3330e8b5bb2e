"""``latent-vla demo``: the main job, end to end, each stage through its own subcommand.

Stages (each writes one directory under ``out``; :data:`OUTPUTS` names the file that ends it):

1. ``collect``      expert demonstrations in the simulated SO-101 scene, then ``explore_episodes`` exploration
                    episodes appended -> ``<out>/data`` (LeRobotDataset)
2. ``train``        the latent world model -> ``<out>/run``
3. ``inspect``      decoded imagined rollouts and the latent PCA -> ``<out>/inspect``
4. ``eval``         gradient planning against CEM, MPPI and the policy on the same seeds -> ``<out>/eval``
5. ``export``       the ONNX bundle -> ``<out>/bundle``
6. ``eval_bundle``  the bundle through the PyTorch-free runtime -> ``<out>/eval_bundle``
7. ``run``          the MuJoCo twin through the control loop and safety layer -> ``<out>/twin``
8. ``report``       ``<out>/report/index.html`` + PNG figures + ``<out>/demo.json``

A failing stage stops the demo with a message naming the stage and why.

Re-running on the same ``out`` resumes: ``<out>/demo_state.json`` records each stage's command and
whether it finished, and a stage is skipped when it finished with the same command, its final file is
there and none of the stages it reads from has run since. ``stages=[eval,report]`` runs exactly those
stages again (their old outputs are removed first). Outputs this demo did not record (another tool's,
or an older demo's) are refused unless ``stages=`` names the stages to run over them.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from latent_vla.app.eval_cli import task_names
from latent_vla.app.settings import bool_setting, choice_list, int_setting, positive_number
from latent_vla.app.stage_state import StageState
from latent_vla.base.errors import UserError

# collection seeds start this far above the evaluation seeds, so every evaluated layout is unseen in training
HELD_OUT_SEED_OFFSET = 100_000

STAGES: tuple[str, ...] = ("collect", "train", "inspect", "eval", "export", "eval_bundle", "run", "report")

OUTPUTS: dict[str, tuple[str, str]] = {
    "collect": ("data", "collect.json"),
    "train": ("run", "train_summary.json"),
    "inspect": ("inspect", "inspect.json"),
    "eval": ("eval", "eval.json"),
    "export": ("bundle", "export_report.json"),
    "eval_bundle": ("eval_bundle", "eval.json"),
    "run": ("twin", "run_report.json"),
    "report": ("report", "index.html"),
}
"""Each stage's directory under ``out`` and the file it writes last (with the state's record: complete)."""

READS: dict[str, tuple[str, ...]] = {
    "collect": (),
    "train": ("collect",),
    "inspect": ("collect", "train"),
    "eval": ("train",),
    "export": ("train",),
    "eval_bundle": ("export",),
    "run": ("export",),
    "report": STAGES[:-1],
}
"""The stages whose outputs each stage reads: when one of them runs again, so must it."""

STATE_FILE = "demo_state.json"


class DemoStageError(RuntimeError):
    """A demo stage failed; the message names the stage and the cause."""


@dataclass(frozen=True)
class StagePlan:
    """One stage: its name, the ``latent-vla`` argv it runs (or None for an in-process step) and, for a
    stage that runs once per task of a multi-task demo, the further argvs (``more``), run in order."""

    name: str
    argv: list[str] | None
    more: tuple[list[str], ...] = ()

    @property
    def commands(self) -> list[list[str]]:
        """Every argv the stage runs, in order (none for an in-process step)."""
        return [] if self.argv is None else [self.argv, *self.more]

    @property
    def recorded(self) -> list[str] | list[list[str]] | None:
        """What the stage state records of the commands: the argv, or the list of argvs when several."""
        return self.commands if self.more else self.argv


def _flat_args(recorded: object) -> list[str]:
    """The arguments of a recorded argv or list of argvs, flattened."""
    if not isinstance(recorded, list):
        return []
    return [a for item in recorded for a in (item if isinstance(item, list) else [item])]


def _list(values: object) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"  # type: ignore[union-attr]


def selected_stages(cfg: DictConfig) -> tuple[list[str], bool]:
    """``(stage names, explicit)``: ``stages=auto`` is every stage, resuming; a list (or ``a,b``) is explicit."""
    if isinstance(cfg.stages, str):
        if cfg.stages.strip() == "auto":
            return list(STAGES), False
        return [s.strip() for s in cfg.stages.split(",")], True
    return [str(s) for s in cfg.stages], True


def plan_stages(cfg: DictConfig) -> list[StagePlan]:
    """The argv of every selected stage, in order; raises UserError on an unknown stage name."""
    out = Path(cfg.out)
    selected, _ = selected_stages(cfg)
    unknown = [s for s in selected if s not in STAGES]
    if unknown:
        raise UserError(f"stages: unknown demo stage(s) {unknown}; valid: {', '.join(STAGES)}")
    tasks = task_names(cfg)  # the check eval makes: known tasks, none twice
    trained = [*tasks, *support_tasks(cfg, tasks)]  # collected and trained on; only `tasks` are evaluated
    data, run, bundle = out / "data", out / "run", out / "bundle"
    datas = [data] if len(trained) == 1 else [data / t for t in trained]  # one LeRobotDataset per task
    task_arg = f"task={tasks[0] if len(tasks) == 1 else _list(tasks)}"
    # extra collect overrides of one task, as command-line strings
    per_task = {t: [str(o) for o in extra] for t, extra in (cfg.get("collect_per_task") or {}).items()}
    if unknown := [t for t, extra in per_task.items() if extra and t not in trained]:
        raise UserError(f"collect_per_task names task(s) {unknown} that neither task= nor support_tasks= lists "
                        f"({trained})")  # fmt: skip
    common = [task_arg, f"seed={cfg.seed}", f"stop_on_success={str(bool_setting(cfg, 'stop_on_success')).lower()}"]
    argv: dict[str, list[list[str]]] = {
        # demonstrations come from other layouts than the evaluation episodes (seed .. seed+episodes-1)
        "collect": [["collect", f"task={t}", f"seed={cfg.seed + HELD_OUT_SEED_OFFSET}", f"episodes={cfg.episodes}",
                     f"out={d}", "mode=overwrite", *per_task.get(t, [])]
                    for t, d in zip(trained, datas, strict=True)],
        "train": [["train", f"data={datas[0] if len(datas) == 1 else _list(datas)}", f"out={run}",
                   f"train.minutes={cfg.train_minutes}", f"train.seed={cfg.seed}", "resume=false"]],
        "inspect": [["inspect", f"ckpt={run}", f"data={datas[0]}", f"out={out / 'inspect'}"]],
        "eval": [["eval", f"ckpt={run}", *common, f"planners={_list(cfg.planners)}",
                  f"episodes={cfg.eval_episodes}", f"videos={cfg.videos}", f"out={out / 'eval'}",
                  *([f"sweep={_list(cfg.sweep)}", f"sweep_episodes={cfg.sweep_episodes}",
                     f"sweep_planners={_list(cfg.sweep_planners)}"] if cfg.sweep else [])]],
        "export": [["export", f"ckpt={run}", f"out={bundle}"]],
        "eval_bundle": [["eval", f"bundle={bundle}", *common, f"planners={_list(cfg.bundle_planners)}",
                         f"episodes={cfg.eval_episodes}", f"out={out / 'eval_bundle'}"]],
        "run": [["run", "robot=twin", f"robot.task={tasks[0]}", f"robot.seed={cfg.seed}", f"brain={bundle}",
                 "task=null", f"steps={cfg.run_steps}", f"out={out / 'twin'}", "yes=true"]],
        "report": [],
    }  # fmt: skip
    own, extra = cfg.get("stage_settings") or {}, cfg.get("overrides") or {}
    for key, group in (("stage_settings", own), ("overrides", extra)):
        if unknown := [k for k in group if k not in STAGES or k == "report"]:
            raise UserError(f"{key} for unknown stage(s) {unknown}; valid: {', '.join(STAGES[:-1])}")
    plans = []
    for name in (n for n in STAGES if n in selected):
        added = [str(o) for o in [*own.get(name, []), *extra.get(name, [])]]  # the later of two values wins
        commands = [[*a, *added] for a in argv[name]]
        if name == "collect":
            commands += _explore_commands(cfg, trained, datas, per_task, added)
        plans.append(StagePlan(name, commands[0], tuple(commands[1:])) if commands else StagePlan(name, None))
    return plans


def support_tasks(cfg: DictConfig, tasks: list[str]) -> list[str]:
    """``support_tasks=``: tasks whose demonstrations are collected and trained on beside ``task=``'s but
    never evaluated (``[]`` by default; ``recipe=pick`` adds reach's layouts, which teach the approach to
    the named object).

    Raises:
        UserError: an unknown task, one listed twice or one that ``task=`` lists too (one line).
    """
    from sim import ENV_IDS  # registers the Gymnasium ids only, as task_names does

    if not cfg.get("support_tasks"):
        return []
    support = choice_list(cfg, "support_tasks", ENV_IDS)
    if twice := sorted({t for t in support if support.count(t) > 1 or t in tasks}):
        raise UserError(f"support_tasks lists {twice} twice or beside task= ({tasks}); name each task once")
    return support


def _explore_commands(
    cfg: DictConfig, tasks: list[str], datas: list[Path], per_task: Mapping[str, list[str]], added: list[str]
) -> list[list[str]]:
    """A collect per task with exploration episodes to add (``explore_per_task.<task>``, else
    ``explore_episodes``; none for 0) that appends them (the expert's actions until a random branch point,
    then correlated random ones, labelled by the expert) to the task's demonstrations, in the same scene
    settings (``collect_per_task``, then the stage's), on seeds of their own (``seed + 2 *
    HELD_OUT_SEED_OFFSET ..``). Those settings come first, so ``policy=explore`` wins over a recipe's
    ``policy=dart``.

    Raises:
        UserError: a negative or fractional count, or ``explore_per_task`` naming a task not trained on.
    """
    counts = explore_counts(cfg, tasks)
    seed = cfg.seed + 2 * HELD_OUT_SEED_OFFSET
    return [["collect", f"task={t}", f"out={d}", *per_task.get(t, []), *added, "policy=explore",
             f"seed={seed}", f"episodes={counts[t]}", "mode=append"]
            for t, d in zip(tasks, datas, strict=True) if counts[t]]  # fmt: skip


def explore_counts(cfg: DictConfig, tasks: list[str]) -> dict[str, int]:
    """Exploration episodes per trained task: ``explore_per_task.<task>`` where set (not null), else
    ``explore_episodes`` (e.g. ``recipe=multitask``: 300 for reach alone, as the reach recipe)."""
    default = int_setting(cfg, "explore_episodes", minimum=0)
    own = {str(t): n for t, n in (cfg.get("explore_per_task") or {}).items() if n is not None}
    if unknown := sorted(set(own) - set(tasks)):
        raise UserError(f"explore_per_task names task(s) {unknown} that neither task= nor support_tasks= lists "
                        f"({tasks})")  # fmt: skip
    return {t: int_setting(cfg, f"explore_per_task.{t}", minimum=0) if t in own else default for t in tasks}


def budget_line(elapsed_s: float, budget_minutes: float) -> str:
    """``"6.1 min in, 8.9 min left of the 15-min budget"`` (or ``"... 1.2 min over ..."``); seconds in, minutes out."""
    used = elapsed_s / 60.0
    left = budget_minutes - used
    where = f"{left:.1f} min left of" if left >= 0 else f"{-left:.1f} min over"
    return f"{used:.1f} min in, {where} the {budget_minutes:g}-min budget"


def _stage_header(number: int, stages: int, t_start: float, budget_minutes: float) -> str:
    """``" (2/8; 1.9 min in, 13.1 min left of the 15-min budget)"``, now; ``t_start`` from ``time.perf_counter``."""
    return f" ({number}/{stages}; {budget_line(time.perf_counter() - t_start, budget_minutes)})"


def run_stage(
    plan: StagePlan,
    runner: Callable[[list[str]], int],
    header: str | Callable[[], str] = "",
    label: str = "demo stage",
) -> float:
    """Run one stage through ``runner`` (``latent_vla.app.cli.main``); returns its wall time in seconds.

    ``header`` (e.g. the stage's number and the demo's budget left; a callable is asked again before each
    command of a stage with several) is printed before the command;
    ``label`` names what a stage is in the messages (``latent-vla improve`` runs its steps through this too).

    Raises:
        DemoStageError: the stage failed. KeyboardInterrupt: it was interrupted (Ctrl-C stops the demo).
    """
    from latent_vla.app.cli import EXIT_INTERRUPTED

    assert plan.argv is not None
    t0 = time.perf_counter()
    for i, argv in enumerate(plan.commands):
        part = f" [{i + 1}/{len(plan.commands)}]" if plan.more else ""
        text = header() if callable(header) else header
        print(f"\n=== {label} {plan.name}{part}{text}: latent-vla {' '.join(argv)}", flush=True)
        try:
            code = runner(argv)
        except Exception as exc:  # noqa: BLE001 - re-raised with the stage named
            raise DemoStageError(f"{label} '{plan.name}' failed: {type(exc).__name__}: {exc}") from exc
        if code == EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        if code:
            demo = label == "demo stage"
            rerun = f"alone with `latent-vla demo stages=[{plan.name}] out=...`" if demo else "with the same command"
            raise DemoStageError(
                f"{label} '{plan.name}' failed with exit code {code}; the lines above say why. Re-run it {rerun}."
            )
    return time.perf_counter() - t0


def final_files(plan: StagePlan, out: Path) -> list[Path]:
    """The file each command of ``plan`` writes last (:data:`OUTPUTS`), under that command's ``out=``."""
    folder, last = OUTPUTS[plan.name]
    outs = [next((a[4:] for a in argv if a.startswith("out=")), None) for argv in plan.commands]
    return [Path(o) / last if o else out / folder / last for o in outs] or [out / folder / last]


class DemoState(StageState):
    """``<out>/demo_state.json`` (:class:`~latent_vla.app.stage_state.StageState`) with the demo's rules."""

    def __init__(self, out: Path) -> None:
        super().__init__(out / STATE_FILE)

    def mark(self, plan: StagePlan, status: str, seconds: float | None = None) -> None:
        """Record ``plan``'s status (and its wall time when done), then save."""
        self.record(plan.name, plan.recorded, status, seconds)

    def timings(self) -> dict[str, float]:
        """Wall seconds of every finished stage (from this run or an earlier one), in stage order."""
        return {n: float(self.stages[n]["seconds"]) for n in STAGES if self.stages.get(n, {}).get("status") == "done"}

    def why_not_complete(self, plan: StagePlan, out: Path) -> str | None:
        """None when ``plan``'s stage finished with the same command, its final file exists and none of
        the stages it reads from finished after it; else the reason, in words."""
        rec = self.stages.get(plan.name)
        if rec is None:
            return "not run yet"
        if rec.get("status") != "done":
            return f"its last run {'failed' if rec.get('status') == 'failed' else 'did not finish'}"
        if rec.get("argv") != plan.recorded:
            new = [a for a in _flat_args(plan.recorded) if a not in _flat_args(rec.get("argv"))]
            return f"settings changed ({' '.join(new) or 'fewer overrides'})"
        missing = [f for f in final_files(plan, out) if not f.is_file()]
        if missing:
            return f"{missing[0].relative_to(out)} is missing"
        newer = [d for d in READS[plan.name] if self.stages.get(d, {}).get("finished", 0) > rec["finished"]]
        return f"{newer[0]} ran again since" if newer else None


def _stages_to_run(plans: list[StagePlan], state: DemoState, out: Path) -> list[StagePlan]:
    """Resume: the stages that are not complete, or read from one that runs; prints what is skipped and why."""
    to_run: list[StagePlan] = []
    for plan in plans:
        why = state.why_not_complete(plan, out)
        upstream = next((p.name for p in to_run if p.name in READS[plan.name]), None)
        if why is None and upstream is None:
            print(f"demo: stage {plan.name} is complete in {out / OUTPUTS[plan.name][0]}; skipped "
                  f"(stages=[{plan.name}] runs it again)")  # fmt: skip
            continue
        print(f"demo: stage {plan.name} will run: {why or f'it reads from {upstream}, which runs'}")
        to_run.append(plan)
    return to_run


def _check_foreign(plans: list[StagePlan], state: DemoState, out: Path) -> None:
    """Refuse (UserError) to resume over stage outputs this demo did not record."""
    folders = [OUTPUTS[p.name][0] for p in plans if p.name not in state.stages]
    foreign = [f"{f}/" for f in folders if (out / f).is_dir() and any((out / f).iterdir())]
    if foreign:
        raise UserError(
            f"out={out} already holds {', '.join(foreign)} that no demo run recorded in {STATE_FILE}; "
            f"give a new out=, or name the stages to run over them, e.g. stages=[eval,report]"
        )


def _clear_previous(plan: StagePlan, state: DemoState, out: Path) -> None:
    """Remove the output directory an earlier demo run of this stage wrote (so no stale file survives)."""
    folder = out / OUTPUTS[plan.name][0]
    if plan.name in state.stages and folder.is_dir():
        print(f"demo: removing {folder} (written by an earlier run of stage {plan.name})")
        shutil.rmtree(folder)


def _write_report(cfg: DictConfig, out: Path, timings: dict[str, float]) -> None:
    from latent_vla.app.demo_report import write_report

    report = write_report(out, OmegaConf.to_container(cfg, resolve=True), timings)  # type: ignore[arg-type]
    print(f"\nreport: {report.resolve()}")
    if cfg.screenshot:
        from latent_vla.app.screenshot import find_chromium, screenshot

        if find_chromium() is None:
            print("report screenshot skipped: headless Chromium is not installed (apt-get install chromium)")
        else:
            print(f"report screenshot: {screenshot(report, report.parent / 'report.png')}")


def main(cfg: DictConfig) -> int:
    """Run (or resume) the selected demo stages, then write the report; returns the exit code."""
    from latent_vla.app.cli import main as cli_main

    budget = positive_number(cfg, "budget_minutes", unit="min")
    assert budget is not None
    int_setting(cfg, "videos", 0)
    plans = plan_stages(cfg)
    _, explicit = selected_stages(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state = DemoState(out)
    if not explicit:
        _check_foreign(plans, state, out)
        plans = _stages_to_run(plans, state, out)
        if not plans:
            print(f"demo: every stage in out={out} is complete; nothing to do (stages=[eval,report] runs "
                  f"those again; a new out= starts afresh)")  # fmt: skip
            return 0
    t_start = time.perf_counter()
    for i, plan in enumerate(plans, 1):
        header = partial(_stage_header, i, len(plans), t_start, budget)  # asked again before each command
        _clear_previous(plan, state, out)
        state.mark(plan, "started")
        try:
            if plan.argv is None:  # the report, in this process
                print(f"\n=== demo stage {plan.name}{header()}", flush=True)
                t0 = time.perf_counter()
                _write_report(cfg, out, {k: v for k, v in state.timings().items() if k != "report"})
                seconds = time.perf_counter() - t0
            else:
                seconds = run_stage(plan, cli_main, header)
        except DemoStageError as exc:
            state.mark(plan, "failed")
            print(f"\nlatent-vla demo: {exc}")
            return 1
        state.mark(plan, "done", seconds)
    print(f"demo finished: {budget_line(time.perf_counter() - t_start, budget)} "
          f"(stages run: {', '.join(p.name for p in plans)})")  # fmt: skip
    return 0
