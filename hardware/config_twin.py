"""LeRobot config of the MuJoCo twin, registered as robot type ``latent_vla_twin``.

Kept apart from :mod:`hardware.twin` (which imports MuJoCo) following LeRobot's plugin layout:
``make_robot_from_config`` finds the robot class ``LatentVLATwin`` in ``hardware.twin`` by
stripping ``Config`` from this class's name and ``config_`` from this module's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.robots.config import RobotConfig


@RobotConfig.register_subclass("latent_vla_twin")
@dataclass
class LatentVLATwinConfig(RobotConfig):
    """The simulated SO-101 behind LeRobot's robot interface, with fault injection.

    Attributes:
        spec: robot spec name (``so101`` / ``so100``; the scene models the SO arm).
        cameras: ``{name: [height, width]}`` of simulated cameras (scene cameras: ``front``,
            ``wrist``, ``overview``); empty means the spec's cameras at the spec's sizes.
        task: ``None`` for the bare scene, or a sim task name (``reach``, ...) whose layout is
            randomized at connect and whose success is reported by ``task_evaluation()``.
        seed: seed of the layout and of all injected noise and faults.
        realtime: physics follows the wall clock (a slow brain lets the world move on); ``False``
            advances exactly one control period per ``send_action`` (deterministic, for tests).
        fps: control rate the physics is stepped for, Hz; ``None`` = the spec's.
        latency_s: added delay of every bus read and write, seconds (USB/serial round trip).
        joint_noise_std: Gaussian noise on measured joint positions, robot units.
        image_noise_std: Gaussian noise on camera pixels (0..255 scale).
        drop_frame_prob: chance per camera read that the camera times out (``TimeoutError``, as
            LeRobot's ``read_latest`` raises on a stale frame).
        serial_timeout_prob: chance per bus read/write of a ``ConnectionError`` (as the Feetech bus
            raises on a failed sync read/write).
        max_relative_target: LeRobot's own per-step clamp, as on the SO follower (robot units).
        disable_torque_on_disconnect: leave the simulated motors limp when disconnecting.
    """

    spec: str = "so101"
    cameras: dict[str, list[int]] = field(default_factory=dict)
    task: str | None = None
    seed: int = 0
    realtime: bool = True
    fps: float | None = None
    latency_s: float = 0.0
    joint_noise_std: float = 0.0
    image_noise_std: float = 0.0
    drop_frame_prob: float = 0.0
    serial_timeout_prob: float = 0.0
    max_relative_target: float | None = None
    disable_torque_on_disconnect: bool = True

    def __post_init__(self) -> None:
        for name in ("drop_frame_prob", "serial_timeout_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        for name in ("latency_s", "joint_noise_std", "image_noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for cam, hw in self.cameras.items():
            if len(hw) != 2 or min(int(v) for v in hw) <= 0:
                raise ValueError(f"camera {cam!r}: size must be [height, width] > 0, got {hw}")
