"""``latent-vla demo``: the main job, end to end, each stage through its own subcommand.

Stages (``stages=collect,train,...`` runs a subset; every stage re-runs on its own output):

1. ``collect``      expert demonstrations in the simulated SO-101 scene -> ``<out>/data`` (LeRobotDataset)
2. ``train``        the latent world model -> ``<out>/run``
3. ``inspect``      decoded imagined rollouts and the latent PCA -> ``<out>/inspect``
4. ``eval``         gradient planning against CEM, MPPI and the policy on the same seeds -> ``<out>/eval``
5. ``export``       the ONNX bundle -> ``<out>/bundle``
6. ``eval_bundle``  the bundle through the PyTorch-free runtime -> ``<out>/eval_bundle``
7. ``run``          the MuJoCo twin through the control loop and safety layer -> ``<out>/twin``
8. ``report``       ``<out>/report/index.html`` + PNG figures + ``<out>/demo.json``

A failing stage stops the demo with a message naming the stage and why.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from latent_vla.base.errors import UserError

# collection seeds start this far above the evaluation seeds, so every evaluated layout is unseen in training
HELD_OUT_SEED_OFFSET = 100_000

STAGES: tuple[str, ...] = ("collect", "train", "inspect", "eval", "export", "eval_bundle", "run", "report")


class DemoStageError(RuntimeError):
    """A demo stage failed; the message names the stage and the cause."""


@dataclass(frozen=True)
class StagePlan:
    """One stage: its name, the ``latent-vla`` argv it runs (or None for an in-process step)."""

    name: str
    argv: list[str] | None


def _list(values: object) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"  # type: ignore[union-attr]


def plan_stages(cfg: DictConfig) -> list[StagePlan]:
    """The argv of every selected stage, in order; raises UserError on an unknown stage name."""
    out = Path(cfg.out)
    selected = [s.strip() for s in str(cfg.stages).split(",")] if isinstance(cfg.stages, str) else list(cfg.stages)
    unknown = [s for s in selected if s not in STAGES]
    if unknown:
        raise UserError(f"stages: unknown demo stage(s) {unknown}; valid: {', '.join(STAGES)}")
    data, run, bundle = out / "data", out / "run", out / "bundle"
    common = [f"task={cfg.task}", f"seed={cfg.seed}"]
    argv: dict[str, list[str] | None] = {
        # demonstrations come from other layouts than the evaluation episodes (seed .. seed+episodes-1)
        "collect": ["collect", f"task={cfg.task}", f"seed={cfg.seed + HELD_OUT_SEED_OFFSET}",
                    f"episodes={cfg.episodes}", f"out={data}", "mode=overwrite"],
        "train": ["train", f"data={data}", f"out={run}", f"train.minutes={cfg.train_minutes}",
                  f"train.seed={cfg.seed}", "resume=false"],
        "inspect": ["inspect", f"ckpt={run}", f"data={data}", f"out={out / 'inspect'}"],
        "eval": ["eval", f"ckpt={run}", *common, f"planners={_list(cfg.planners)}",
                 f"episodes={cfg.eval_episodes}", f"out={out / 'eval'}",
                 *([f"sweep={_list(cfg.sweep)}", f"sweep_episodes={cfg.sweep_episodes}"] if cfg.sweep else [])],
        "export": ["export", f"ckpt={run}", f"out={bundle}"],
        "eval_bundle": ["eval", f"bundle={bundle}", *common, f"planners={_list(cfg.bundle_planners)}",
                        f"episodes={cfg.eval_episodes}", f"out={out / 'eval_bundle'}"],
        "run": ["run", "robot=twin", f"robot.task={cfg.task}", f"robot.seed={cfg.seed}", f"brain={bundle}",
                "task=null", f"steps={cfg.run_steps}",
                f"out={out / 'twin'}", "yes=true"],
        "report": None,
    }
    extra = cfg.get("overrides") or {}
    unknown = [k for k in extra if k not in STAGES or k == "report"]
    if unknown:
        raise UserError(f"overrides for unknown stage(s) {unknown}; valid: {', '.join(STAGES[:-1])}")
    return [
        StagePlan(name, None if argv[name] is None else [*argv[name], *[str(o) for o in extra.get(name, [])]])
        for name in STAGES
        if name in selected
    ]


def run_stage(plan: StagePlan, runner: Callable[[list[str]], int]) -> float:
    """Run one stage through ``runner`` (``latent_vla.app.cli.main``); returns its wall time in seconds.

    Raises:
        DemoStageError: the stage failed. KeyboardInterrupt: it was interrupted (Ctrl-C stops the demo).
    """
    from latent_vla.app.cli import EXIT_INTERRUPTED

    assert plan.argv is not None
    print(f"\n=== demo stage {plan.name}: latent-vla {' '.join(plan.argv)}", flush=True)
    t0 = time.perf_counter()
    try:
        code = runner(plan.argv)
    except Exception as exc:  # noqa: BLE001 - re-raised with the stage named
        raise DemoStageError(f"demo stage '{plan.name}' failed: {type(exc).__name__}: {exc}") from exc
    if code == EXIT_INTERRUPTED:
        raise KeyboardInterrupt
    if code:
        raise DemoStageError(
            f"demo stage '{plan.name}' failed with exit code {code}; the lines above say why. "
            f"Re-run it alone with `latent-vla demo stages={plan.name} out=...`."
        )
    return time.perf_counter() - t0


def main(cfg: DictConfig) -> int:
    """Run the selected demo stages, then write the report; returns the exit code."""
    from latent_vla.app.cli import main as cli_main
    from latent_vla.app.demo_report import write_report

    plans = plan_stages(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    timings_path = out / "demo_timings.json"
    timings: dict[str, float] = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    t_start = time.perf_counter()
    for plan in plans:
        if plan.argv is None:
            continue
        try:
            timings[plan.name] = run_stage(plan, cli_main)
        except DemoStageError as exc:
            print(f"\nlatent-vla demo: {exc}")
            timings_path.write_text(json.dumps(timings, indent=2))
            return 1
        timings_path.write_text(json.dumps(timings, indent=2))
    if any(p.name == "report" for p in plans):
        t0 = time.perf_counter()
        report = write_report(out, OmegaConf.to_container(cfg, resolve=True), timings)  # type: ignore[arg-type]
        timings["report"] = time.perf_counter() - t0
        timings_path.write_text(json.dumps(timings, indent=2))
        print(f"\nreport: {report.resolve()}")
        if cfg.screenshot:
            from latent_vla.app.screenshot import find_chromium, screenshot

            if find_chromium() is None:
                print("report screenshot skipped: headless Chromium is not installed (apt-get install chromium)")
            else:
                print(f"report screenshot: {screenshot(report, report.parent / 'report.png')}")
    print(f"demo finished in {time.perf_counter() - t_start:.0f} s (stages: {', '.join(p.name for p in plans)})")
    return 0
