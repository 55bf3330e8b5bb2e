"""The ``latent-vla`` command: one entry point, subcommands with Hydra overrides.

Usage::

    latent-vla collect task=push episodes=50 out=data/push
    latent-vla train data=data/push out=runs/push train.minutes=5
    latent-vla --help
    latent-vla collect --cfg          # print the resolved config and exit

Each subcommand composes ``configs/<subcommand>.yaml`` with the overrides (unknown keys fail),
then calls the ``main(cfg)`` function of the module that implements it.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module
from importlib.resources import files

from omegaconf import DictConfig, OmegaConf

# subcommand -> (module implementing `main(cfg) -> int | None`, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "collect": ("latent_vla.app.collect_cli", "run scripted experts in MuJoCo and write a LeRobotDataset"),
    "train": ("latent_vla.app.train_cli", "train the latent world model on a LeRobotDataset"),
    "eval": ("latent_vla.app.eval_cli", "closed-loop evaluation of planners / policy on seeded episodes"),
    "inspect": ("latent_vla.app.inspect_cli", "images of what a trained model imagines"),
    "export": ("latent_vla.app.export_cli", "write an ONNX bundle with manifest.json"),
    "run": ("latent_vla.app.run_cli", "drive the MuJoCo twin or a real arm through the safety layer"),
    "demo": ("latent_vla.app.demo_cli", "the end-to-end job: collect, train, plan, export, drive, report"),
}


class NotAvailableYet(RuntimeError):
    """Raised by a subcommand whose implementation has not landed yet."""


def config_dir() -> str:
    """Absolute path of the shipped ``configs/`` directory."""
    return str(files("configs"))


def compose(subcommand: str, overrides: list[str]) -> DictConfig:
    """Compose ``configs/<subcommand>.yaml`` with Hydra ``key=value`` overrides.

    Raises:
        hydra.errors.ConfigCompositionException: on an unknown key or a bad override.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3", job_name=subcommand):
        cfg = hydra_compose(config_name=subcommand, overrides=overrides)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _usage() -> str:
    lines = ["usage: latent-vla <subcommand> [key=value ...] [--cfg]", "", "subcommands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "Overrides use Hydra syntax, e.g. `latent-vla collect task=push episodes=50 out=data/push`."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``latent-vla`` console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"latent-vla: unknown subcommand {name!r}; valid: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    show_cfg = "--cfg" in rest
    rest = [a for a in rest if a != "--cfg"]
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hydra.errors import HydraException

    try:
        cfg = compose(name, rest)
    except HydraException as exc:
        print(f"latent-vla {name}: bad configuration: {exc}", file=sys.stderr)
        return 2
    if show_cfg:
        print(OmegaConf.to_yaml(cfg))
        return 0
    module_name = SUBCOMMANDS[name][0]
    try:
        module = import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            print(f"latent-vla {name}: not available yet in this version.", file=sys.stderr)
            return 2
        raise
    try:
        code = module.main(cfg)
    except NotAvailableYet as exc:
        print(f"latent-vla {name}: not available yet: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"latent-vla {name}: interrupted.", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
