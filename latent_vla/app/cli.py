"""The ``latent-vla`` command: one entry point, subcommands with Hydra overrides, one error path.

Usage::

    latent-vla collect task=push episodes=50 out=data/push
    latent-vla train data=data/push out=runs/push train.minutes=5
    latent-vla --help
    latent-vla collect --cfg          # print the resolved config and exit
    latent-vla eval ... --debug       # a traceback for a user error too (or LATENT_VLA_DEBUG=1)

Each subcommand composes ``configs/<subcommand>.yaml`` with the overrides (unknown keys fail),
checks that ``out=`` is a writable directory, then runs. Errors take one path: a user's mistake
(:class:`~latent_vla.base.errors.UserError`: a bad setting, path or file) prints
``latent-vla <subcommand>: <message>`` as one line on stderr and exits 2; Ctrl-C prints one line
and exits 130; anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib.resources import files
from typing import NamedTuple

from omegaconf import DictConfig, OmegaConf

from latent_vla.base.cpus import passive_openmp_waits
from latent_vla.base.errors import UserError
from latent_vla.base.paths import check_output_dir

DEBUG_ENV = "LATENT_VLA_DEBUG"
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

# Every subcommand module is imported inside its function, on use: each pulls in heavy optional
# dependencies (torch, MuJoCo, LeRobot, onnxruntime: seconds of imports), and `latent-vla --help`,
# `--cfg` and a refused override must answer at once.


def _collect(cfg: DictConfig) -> int | None:
    from latent_vla.app import collect_cli  # MuJoCo + LeRobot

    return collect_cli.main(cfg)


def _train(cfg: DictConfig) -> int | None:
    from latent_vla.app import train_cli  # torch + LeRobot

    return train_cli.main(cfg)


def _eval(cfg: DictConfig) -> int | None:
    from latent_vla.app import eval_cli  # torch + MuJoCo (+ onnxruntime for bundle=)

    return eval_cli.main(cfg)


def _inspect(cfg: DictConfig) -> int | None:
    from latent_vla.app import inspect_cli  # torch + LeRobot + matplotlib

    return inspect_cli.main(cfg)


def _export(cfg: DictConfig) -> int | None:
    from latent_vla.app import export_cli  # torch + onnx + onnxruntime

    return export_cli.main(cfg)


def _run(cfg: DictConfig) -> int | None:
    from latent_vla.app import run_cli  # LeRobot robots + MuJoCo twin (+ torch or onnxruntime brains)

    return run_cli.main(cfg)


def _demo(cfg: DictConfig) -> int | None:
    from latent_vla.app import demo_cli  # every stage above, through this very module

    return demo_cli.main(cfg)


def _improve(cfg: DictConfig) -> int | None:
    from latent_vla.app import improve_cli  # collect, train and eval, through this very module

    return improve_cli.main(cfg)


class Subcommand(NamedTuple):
    """One ``latent-vla`` subcommand: the function it runs (``main(cfg) -> exit code``) and its help line."""

    run: Callable[[DictConfig], int | None]
    help: str


SUBCOMMANDS: dict[str, Subcommand] = {
    "collect": Subcommand(_collect, "run scripted experts in MuJoCo and write a LeRobotDataset"),
    "train": Subcommand(_train, "train the latent world model on a LeRobotDataset"),
    "eval": Subcommand(_eval, "closed-loop evaluation of planners / policy on seeded episodes"),
    "inspect": Subcommand(_inspect, "images of what a trained model imagines"),
    "export": Subcommand(_export, "write an ONNX bundle with manifest.json"),
    "run": Subcommand(_run, "drive the MuJoCo twin or a real arm through the safety layer"),
    "demo": Subcommand(_demo, "the end-to-end job: collect, train, plan, export, drive, report"),
    "improve": Subcommand(_improve, "online world modeling: rounds of planning in the sim, then fine-tuning on it"),
}


def config_dir() -> str:
    """Absolute path of the shipped ``configs/`` directory."""
    return str(files("configs"))


def compose(subcommand: str, overrides: list[str]) -> DictConfig:
    """Compose ``configs/<subcommand>.yaml`` with Hydra ``key=value`` overrides (read-only result).

    Raises:
        hydra.errors.HydraException: on an unknown key or a bad override (:func:`main` makes it one line).
    """
    from hydra import compose as hydra_compose  # Hydra is imported only when a config is composed
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3", job_name=subcommand):
        cfg = hydra_compose(config_name=subcommand, overrides=overrides)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def one_line(text: str) -> str:
    """``text`` on one line: its non-empty lines, stripped, joined by spaces."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _hydra_message(exc: Exception) -> str:
    """A Hydra composition error as one line: the problem and the allowed values, no links or search paths."""
    cause = str(exc.__cause__ or "")
    if "is not in struct" in cause and "Could not override" in str(exc):
        key = str(exc).split("'")[1]
        return f"unknown setting {key!r} (`--cfg` prints every setting; +{key}=... adds a new key)"
    lines: list[str] = []
    for line in str(exc).splitlines():
        line = line.strip()
        if line.startswith(("See https://", "Config search path")):
            break
        if line:
            lines.append(line)
    if any(line.startswith("Available options in") for line in lines):  # one option a line -> a list
        head = next(i for i, line in enumerate(lines) if line.startswith("Available options in"))
        lines = [*lines[: head + 1], ", ".join(lines[head + 1 :])]
    return "bad override: " + " ".join(lines)


def _composed(name: str, overrides: list[str]) -> DictConfig:
    """:func:`compose`, with every problem of the overrides raised as a :class:`UserError`."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = compose(name, overrides)
    except HydraException as exc:
        raise UserError(_hydra_message(exc)) from exc
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # ${...} that do not resolve
    except OmegaConfBaseException as exc:
        raise UserError(f"bad setting: {one_line(str(exc))}") from exc
    return cfg


def _caused_by_ctrl_c(exc: BaseException) -> bool:
    """Whether a ``KeyboardInterrupt`` is among the causes of ``exc`` (its ``__cause__`` chain)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__
    return False


def _usage() -> str:
    lines = ["usage: latent-vla <subcommand> [key=value ...] [--cfg] [--debug]", "", "subcommands:"]
    lines += [f"  {name:<9} {sub.help}" for name, sub in SUBCOMMANDS.items()]
    lines += [
        "",
        "Overrides use Hydra syntax, e.g. `latent-vla collect task=push episodes=50 out=data/push`.",
        "--cfg prints a subcommand's settings and exits; --debug (or LATENT_VLA_DEBUG=1) shows tracebacks.",
    ]
    return "\n".join(lines)


def _dispatch(name: str, args: list[str]) -> int:
    """Compose, check ``out=``, run one subcommand; returns its exit code (raises on errors)."""
    if any(a in ("-h", "--help") for a in args):
        print(f"usage: latent-vla {name} [key=value ...] [--cfg] [--debug]\n  {SUBCOMMANDS[name].help}")
        print(f"`latent-vla {name} --cfg` prints every setting (configs/{name}.yaml).")
        return 0
    show_cfg = "--cfg" in args
    cfg = _composed(name, [a for a in args if a != "--cfg"])
    if show_cfg:
        print(OmegaConf.to_yaml(cfg))
        return 0
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        needed = " ".join(f"{key}=..." for key in missing)
        raise UserError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: give {needed}")
    if "out" in cfg:  # before any work, and before `run` connects to an arm
        check_output_dir(str(cfg.out), "out")
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return int(SUBCOMMANDS[name].run(cfg) or 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``latent-vla`` console script; returns the process exit code.

    Exit codes: 0 done, 2 a user error (one line on stderr), 130 interrupted; others are the
    subcommand's own (1: it ran and failed). ``--debug`` or ``LATENT_VLA_DEBUG=1`` re-raises user
    errors and interrupts with their traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    passive_openmp_waits()  # before any subcommand imports PyTorch
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, args = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"latent-vla: unknown subcommand {name!r}; valid: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        return _dispatch(name, args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"latent-vla {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            raise
        if _caused_by_ctrl_c(exc):  # e.g. ImportError("initialization failed") of a C extension cut short
            print(f"latent-vla {name}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        if not isinstance(exc, UserError):
            raise
        print(f"latent-vla {name}: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
