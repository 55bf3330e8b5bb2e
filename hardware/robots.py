"""Build LeRobot robots (SO-100, SO-101, Koch followers, the MuJoCo twin) from Hydra configs.

The robot classes are LeRobot's own (``make_robot_from_config``), with LeRobot's calibration
files (``~/.cache/huggingface/lerobot/calibration/robots/<type>/<id>.json`` unless
``calibration_dir`` is set). A config node looks like ``configs/robot/so101.yaml``::

    type: so101_follower        # LeRobot's robot type (so100_follower, koch_follower, latent_vla_twin)
    spec: so101                 # latent_vla.base.robot_spec name: joint order, limits, units
    port: /dev/ttyACM0
    id: my_follower
    use_degrees: true           # explicit: our spec's units depend on it
    cameras:
      front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30}

Every other key is passed to the LeRobot config class, whose dataclass refuses unknown keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from latent_vla.base.robot_spec import RobotSpec, get_robot_spec

# Keys of our robot config nodes that are not LeRobot config fields.
OWN_KEYS = ("type", "spec")

# The ``use_degrees`` value each spec's units assume (docs/architecture.md, section 1).
SPEC_USE_DEGREES = {"so100": True, "so101": True, "koch": False}


def _plain(node: Any) -> Any:
    """An OmegaConf node (or anything) as plain Python containers."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(node, DictConfig | ListConfig):
            return OmegaConf.to_container(node, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return node


def make_camera_configs(cameras: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """``{name: {type: opencv, ...}}`` -> ``{name: lerobot CameraConfig}`` (default type: opencv).

    Raises:
        ValueError: an unknown camera type or a bad field, naming the camera.
    """
    import lerobot.cameras.opencv  # noqa: F401  (registers "opencv")
    from lerobot.cameras import CameraConfig

    out: dict[str, Any] = {}
    for name, node in (cameras or {}).items():
        fields = dict(node)
        kind = fields.pop("type", "opencv")
        try:
            cls = CameraConfig.get_choice_class(kind)
        except KeyError:
            raise ValueError(
                f"camera {name!r}: unknown type {kind!r}; known: {sorted(CameraConfig.get_known_choices())}"
            ) from None
        try:
            out[name] = cls(**fields)
        except TypeError as exc:
            raise ValueError(f"camera {name!r}: {exc}") from exc
    return out


def make_robot_config(node: Mapping[str, Any]) -> Any:
    """A LeRobot ``RobotConfig`` from one of our ``configs/robot/*.yaml`` nodes.

    Raises:
        ValueError: unknown robot type, unknown field, or a ``use_degrees`` that contradicts the spec.
    """
    import lerobot.robots.koch_follower  # noqa: F401  (registers the followers)
    import lerobot.robots.so_follower  # noqa: F401
    from lerobot.robots import RobotConfig

    import hardware.config_twin  # noqa: F401  (registers "latent_vla_twin")

    fields = dict(_plain(node))
    kind = fields.pop("type", None)
    spec_name = fields.pop("spec", None)
    if kind is None:
        raise ValueError("robot config needs a `type` (so101_follower, so100_follower, koch_follower, latent_vla_twin)")
    try:
        cls = RobotConfig.get_choice_class(kind)
    except KeyError:
        raise ValueError(f"unknown robot type {kind!r}; known: {sorted(RobotConfig.get_known_choices())}") from None
    if fields.get("cameras", ...) is None:
        del fields["cameras"]  # null in YAML: no cameras (the twin: the spec's cameras)
    if "cameras" in fields and kind != "latent_vla_twin":
        fields["cameras"] = make_camera_configs(fields["cameras"])
    if fields.get("calibration_dir"):
        fields["calibration_dir"] = Path(fields["calibration_dir"]).expanduser()
    if spec_name in SPEC_USE_DEGREES and "use_degrees" in fields:
        want = SPEC_USE_DEGREES[spec_name]
        if bool(fields["use_degrees"]) != want:
            raise ValueError(
                f"robot spec {spec_name!r} assumes use_degrees={want}; the config sets {fields['use_degrees']}"
            )
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ValueError(f"robot type {kind!r}: {exc}") from exc


def spec_for(node: Mapping[str, Any]) -> RobotSpec:
    """The robot spec a config node names (``spec:``), defaulting from its LeRobot type."""
    name = _plain(node).get("spec")
    if name is None:
        kind = str(_plain(node).get("type", ""))
        name = "koch" if kind.startswith("koch") else "so100" if kind.startswith("so100") else "so101"
    return get_robot_spec(name)


def make_robot(node: Mapping[str, Any]) -> Any:
    """A (not yet connected) LeRobot robot from a config node, via ``make_robot_from_config``."""
    from lerobot.robots import make_robot_from_config

    return make_robot_from_config(make_robot_config(node))


def check_robot_matches_spec(robot: Any, spec: RobotSpec) -> None:
    """Refuse a robot whose action keys differ from the spec's (wrong arm, wrong spec).

    Raises:
        ValueError: listing the keys on each side.
    """
    keys = list(robot.action_features)
    if keys != spec.action_keys:
        raise ValueError(f"robot {robot} has action keys {keys}, but spec {spec.name!r} expects {spec.action_keys}")
