"""``latent-vla run``: drive the MuJoCo twin or a real arm with a brain, through the safety layer.

Thin wiring over :mod:`hardware.robots`, :mod:`hardware.brain`, :mod:`hardware.safety` and
:class:`~hardware.control_loop.ControlLoop`. Before a real arm moves it prints the plan and asks
for confirmation (``yes=true`` skips that; without a TTY it refuses unless ``yes=true``). While
it runs, Enter (on a TTY) or ``SIGUSR1`` triggers the emergency stop, ``Ctrl-C`` / ``SIGTERM``
stop cleanly; either way torque is disabled through LeRobot. At the end it prints loop timing and
safety interventions and writes them to ``<out>/run_report.json``.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hardware.brain import load_brain
from hardware.control_loop import ControlLoop, LoopReport, safe_disconnect
from hardware.kinematics import ArmKinematics
from hardware.robots import check_robot_matches_spec, make_robot, spec_for
from hardware.safety import SafetyConfig, SafetyLayer
from latent_vla.app.settings import int_setting, model_device_settings, positive_number
from latent_vla.base.errors import UserError
from latent_vla.base.robot_spec import RobotSpec
from latent_vla.base.text import Tokenizer

logger = logging.getLogger(__name__)

TWIN_TYPE = "latent_vla_twin"


def describe(cfg: DictConfig, robot_node: dict[str, Any], safety: SafetyConfig, fps: float) -> str:
    """The human-readable plan printed before moving an arm."""
    where = (
        "the MuJoCo twin" if robot_node["type"] == TWIN_TYPE else f"{robot_node['type']} on {robot_node.get('port')}"
    )
    budget = f"{cfg.steps} ticks" if cfg.steps is not None else f"{cfg.duration_s} s"
    lines = [
        f"About to drive {where} (calibration id {robot_node.get('id')!r}) at {fps:g} Hz for {budget}.",
        f"  brain: {cfg.brain} (mode {cfg.brain_mode})",
        f"  task: {cfg.task!r}",
        f"  safety: max step {safety.max_step} units/tick, {safety.velocity_scale:.0%} of rated speed, "
        f"limit margin {safety.limit_margin}, tracking error <= {safety.max_tracking_error}, "
        f"workspace check {'on' if safety.workspace else 'OFF'}, "
        f"stale observation after {safety.max_observation_age_s * 1e3:.0f} ms",
        "  Enter = emergency stop (torque off), Ctrl-C = stop. Keep a hand near the power switch.",
    ]
    return "\n".join(lines)


def confirm(question: str, assume_yes: bool) -> bool:
    """Ask on the terminal; refuse without a TTY unless ``assume_yes``."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        print(
            "latent-vla run: refusing to move a real arm without a terminal to confirm; pass yes=true.", file=sys.stderr
        )
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _estop_key_listener(safety: SafetyLayer, loop: ControlLoop) -> threading.Thread | None:
    """On a TTY, a daemon thread that triggers the emergency stop when Enter is pressed."""
    if not sys.stdin.isatty():
        return None

    def listen() -> None:
        line = sys.stdin.readline()
        if line == "":  # stdin closed: no operator left to press the key
            return
        safety.trigger_estop("emergency stop key (Enter)")
        loop.request_stop("emergency_stop")

    t = threading.Thread(target=listen, name="estop-key", daemon=True)
    t.start()
    return t


def _install_signals(safety: SafetyLayer, loop: ControlLoop) -> dict[int, Any]:
    """SIGUSR1 -> emergency stop, SIGTERM -> clean stop; returns the previous handlers."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    handlers = {
        signal.SIGTERM: lambda *_: loop.request_stop("SIGTERM"),
    }
    if hasattr(signal, "SIGUSR1"):
        handlers[signal.SIGUSR1] = lambda *_: safety.trigger_estop("SIGUSR1")
    for sig, fn in handlers.items():
        previous[sig] = signal.signal(sig, fn)
    return previous


def print_summary(report: LoopReport, extra: dict[str, Any]) -> None:
    """Loop timing and safety interventions as a table."""
    from rich.console import Console
    from rich.table import Table

    def ms(d: dict[str, float], key: str) -> str:
        v = d.get(key)
        return "-" if v is None or v != v else f"{v:.2f}"

    table = Table(title="latent-vla run")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("stop reason", report.stop_reason),
        ("ticks / commands sent", f"{report.ticks} / {report.commands_sent}"),
        ("rate achieved / target (Hz)", f"{report.fps_achieved:.1f} / {report.fps_target:g}"),
        ("deadline misses", str(report.deadline_misses)),
        ("tick start jitter p50 / p99 (ms)", f"{ms(report.jitter_ms, 'p50')} / {ms(report.jitter_ms, 'p99')}"),
        ("brain p50 / p99 (ms)", f"{ms(report.brain_ms, 'p50')} / {ms(report.brain_ms, 'p99')}"),
        ("brain late (held) / late answers used / errors",
         f"{report.brain_late} / {report.brain_late_results_used} / {report.brain_errors}"),
        ("observation / send errors", f"{report.observation_errors} / {report.send_errors}"),
        ("safety interventions", str(report.safety.get("interventions", 0))),
    ]
    rows += [(f"  {reason}", str(n)) for reason, n in report.safety.get("by_reason", {}).items()]
    rows += [(k, str(v)) for k, v in extra.items()]
    for name, value in rows:
        table.add_row(name, value)
    Console(stderr=False).print(table)


def check_settings(cfg: DictConfig) -> None:
    """Refuse nonsense before anything is built or connected (``out=`` is checked by the CLI).

    Raises:
        UserError: ``steps``, ``duration_s``, ``fps`` or a brain timing that is not finite and positive,
            ``max_consecutive_faults < 1``, a ``brain_device`` or ``brain_providers`` this machine lacks,
            or an empty or blank ``task``.
    """
    int_setting(cfg, "steps", 1, optional=True)
    positive_number(cfg, "duration_s", optional=True, unit="s")
    positive_number(cfg, "fps", optional=True, unit="Hz")
    positive_number(cfg, "brain_budget_ms", optional=True, unit="ms")
    positive_number(cfg, "brain_deadline_ms", optional=True, unit="ms")
    int_setting(cfg, "max_consecutive_faults", 1)
    model_device_settings(cfg, "brain_device", "brain_providers")
    if cfg.task is not None and not str(cfg.task).strip():
        raise UserError(
            f"task={cfg.task!r} is empty: give the instruction in words, e.g. task='push the red cube into "
            "the green zone' (on the twin, task=null takes the instruction of its scene)"
        )


def _tokenizer_of(brain: Any) -> Tokenizer | None:
    """The instruction tokenizer of a bundle or training-run brain; None for a brain without one (scripted)."""
    for owner in (getattr(brain, "bundle", None), getattr(brain, "checkpoint", None)):
        tokenizer = getattr(owner, "tokenizer", None)
        if isinstance(tokenizer, Tokenizer):
            return tokenizer
    return None


def instruction_warning(tokenizer: Tokenizer | None, instruction: str) -> str | None:
    """A warning when the model reads only part of ``instruction`` (more tokens than ``tokenizer.max_len``)."""
    if tokenizer is None:
        return None
    n = len(tokenizer.token_ids(instruction))
    if n <= tokenizer.max_len:
        return None
    return (
        f"warning: the instruction has {n} tokens (words and word pairs); the model reads only the first "
        f"{tokenizer.max_len} (its tokenizer's max_len) and ignores the rest"
    )


def _build(cfg: DictConfig, robot_node: dict[str, Any], spec: RobotSpec, budget_ms: float) -> tuple[Any, Any]:
    """The brain and the (unconnected) robot; a missing path, a bad mode or another arm is a UserError."""
    try:
        device, providers = model_device_settings(cfg, "brain_device", "brain_providers")
        brain = load_brain(str(cfg.brain), cfg.task, robot_spec=spec, mode=cfg.brain_mode, budget_ms=budget_ms,
                           brain_sha256=cfg.brain_sha256, device=device, providers=providers)  # fmt: skip
        robot = make_robot(robot_node)
        check_robot_matches_spec(robot, spec)
    except UserError:  # bundle and checkpoint errors say what is wrong themselves
        raise
    except (FileNotFoundError, ValueError, RuntimeError) as exc:  # a missing path, a bad mode, another arm
        raise UserError(f"{type(exc).__name__}: {exc}") from exc
    return brain, robot


def _instruction(cfg: DictConfig, robot: Any, brain: Any) -> str:
    """The task in words: ``task=``, or the twin's scene's (the brain is reset with it); warns when the
    model reads only part of it. Disconnects and raises ``UserError`` when there is none."""
    instruction = cfg.task
    if instruction is None:  # the twin's sim task says what to do; a real arm needs task="..."
        instruction = getattr(robot, "instruction", None) or None
        if instruction is None:
            safe_disconnect(robot)
            raise UserError("task= (the instruction) is required for this robot: its scene names none")
        brain.reset(instruction)
        print(f"  instruction from the twin's scene: {instruction!r}")
    warning = instruction_warning(_tokenizer_of(brain), str(instruction))
    if warning:
        print(f"latent-vla run: {warning}", file=sys.stderr)
    return str(instruction)


def _drive(
    cfg: DictConfig, robot: Any, brain: Any, safety: SafetyLayer, fps: float, instruction: str, is_twin: bool
) -> tuple[LoopReport, Any, float]:
    """Run the control loop on the connected robot: ``(report, recorder or None, start time in unix s)``.
    Signals are restored afterwards; the robot is released here only if the loop never took it over."""
    spec = safety.spec
    deadline_s = (cfg.brain_deadline_ms if cfg.brain_deadline_ms is not None else 0.8e3 / fps) / 1e3
    recorder = None
    loop: ControlLoop | None = None
    previous: dict[int, Any] = {}
    try:
        if cfg.record:
            from hardware.recorder import EpisodeRecorder, robot_cameras  # LeRobot's dataset writer: heavy

            recorder = EpisodeRecorder(
                Path(cfg.out) / "dataset", spec, robot_cameras(robot.observation_features, spec), fps
            )
        loop = ControlLoop(robot, brain, safety, fps=fps, brain_deadline_s=deadline_s,
                           max_consecutive_faults=int(cfg.max_consecutive_faults), recorder=recorder,
                           task=instruction)  # fmt: skip
        previous = _install_signals(safety, loop)
        if not is_twin:
            _estop_key_listener(safety, loop)
        t0 = time.time()
        report = loop.run(steps=cfg.steps, duration_s=cfg.duration_s, show_progress=bool(cfg.progress))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if loop is None:  # failed before the loop took ownership of shutdown
            if recorder is not None:
                recorder.close()
            safe_disconnect(robot)
    return report, recorder, t0


def _write_report(
    cfg: DictConfig, robot_node: dict[str, Any], robot: Any, safety: SafetyLayer, instruction: str,
    report: LoopReport, recorder: Any, t0: float,
) -> None:  # fmt: skip
    """``<out>/run_report.json`` and the summary table."""
    out = Path(cfg.out)
    extra: dict[str, Any] = {}
    evaluation = getattr(robot, "last_task_evaluation", None)
    if evaluation:
        extra.update(evaluation)
    if recorder is not None:
        extra["recorded_frames"] = recorder.frames
        extra["dataset"] = str(out / "dataset")
    out.mkdir(parents=True, exist_ok=True)
    cameras = [k for k in robot.observation_features if k not in safety.spec.action_keys]
    result = {
        "started_at_unix": t0,
        "robot": robot_node | {"cameras": cameras},
        "brain": str(cfg.brain),
        "brain_mode": cfg.brain_mode,
        "task": instruction,
        "safety_config": OmegaConf.to_container(cfg.safety, resolve=True),
        "loop": report.to_dict(),
        "safety_records": [r.to_dict() for r in safety.records[:500]],
        **extra,
    }
    path = out / "run_report.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print_summary(report, extra)
    print(f"report: {path}")


def main(cfg: DictConfig) -> int:
    """Run the configured robot with the configured brain; returns the exit code."""
    check_settings(cfg)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    robot_node: dict[str, Any] = OmegaConf.to_container(cfg.robot, resolve=True)  # type: ignore[assignment]
    spec = spec_for(robot_node)
    fps = float(cfg.fps) if cfg.fps is not None else spec.fps
    is_twin = robot_node.get("type") == TWIN_TYPE
    if is_twin and robot_node.get("fps") is None:
        robot_node["fps"] = fps
    try:
        safety_cfg = SafetyConfig.from_mapping(OmegaConf.to_container(cfg.safety, resolve=True))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad safety setting: {exc}") from exc
    if cfg.record and (Path(cfg.out) / "dataset").exists():
        raise UserError(f"record=true: {Path(cfg.out) / 'dataset'} already exists; choose another out=")
    budget_ms = cfg.brain_budget_ms if cfg.brain_budget_ms is not None else 0.6e3 / fps
    brain, robot = _build(cfg, robot_node, spec, budget_ms)
    if cfg.task is None and not is_twin:  # only the twin's sim task can supply the instruction
        raise UserError("task= (the instruction) is required for a real arm, e.g. task='push the red cube'")
    print(describe(cfg, robot_node, safety_cfg, fps))
    if cfg.steps is None and cfg.duration_s is None:
        print("  (no steps or duration_s given: running until Ctrl-C)")
    if not is_twin and not confirm("Move the arm?", bool(cfg.yes)):
        print("latent-vla run: not confirmed; nothing moved.", file=sys.stderr)
        return 1
    fk = ArmKinematics.for_spec(spec) if safety_cfg.workspace else None
    if safety_cfg.workspace and fk is None:
        logger.warning("no forward kinematics for %s: the workspace check is off", spec.name)
    safety = SafetyLayer(spec, safety_cfg, fk=fk)
    try:
        robot.connect()
    except Exception as exc:  # port missing, permissions, motors not found, camera busy...
        where = f"{robot_node['type']} ({robot_node.get('port', 'simulated')})"
        print(f"latent-vla run: could not connect to {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        safe_disconnect(robot)
        return 1
    instruction = _instruction(cfg, robot, brain)
    report, recorder, t0 = _drive(cfg, robot, brain, safety, fps, instruction, is_twin)
    _write_report(cfg, robot_node, robot, safety, instruction, report, recorder, t0)
    if report.stop_reason in ("steps", "duration"):
        return 0
    return 130 if report.stop_reason == "interrupted" else 1
