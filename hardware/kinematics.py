"""Forward kinematics of the arm in pure numpy, for the safety layer's workspace check.

The kinematic chain (each link's offset and rotation in its parent, each joint's axis, the tip
site) is read once from the simulator's MJCF, so the safety layer checks exactly the arm the
twin simulates; evaluating it afterwards needs numpy only (no MuJoCo call per tick).

Frames: the robot base frame of ``sim/assets/so101_scene.xml``, metres, +x forward, +z up, the
table top at z = 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from latent_vla.base.robot_spec import RobotSpec


def _quat_to_mat(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> rotation matrix (3, 3)."""
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotations about unit ``axis`` (3,) by ``angle`` (N,) radians -> (N, 3, 3) (Rodrigues)."""
    x, y, z = axis
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]], dtype=np.float64)
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


@dataclass(frozen=True)
class SerialChain:
    """A serial chain of revolute joints ending at a tip point.

    Attributes:
        joint_names: the joints of the chain, base first (a subset of the spec's joints).
        offsets: ``(N, 3)`` position of each joint's body in its parent body, metres.
        rotations: ``(N, 3, 3)`` fixed rotation of each body in its parent.
        axes: ``(N, 3)`` unit joint axes in the body frame.
        base_offset: ``(3,)`` position of the chain's first body's parent in the base frame.
        tip: ``(3,)`` tip point in the last body's frame, metres.
    """

    joint_names: tuple[str, ...]
    offsets: np.ndarray
    rotations: np.ndarray
    axes: np.ndarray
    base_offset: np.ndarray
    tip: np.ndarray

    def forward(self, angles: np.ndarray) -> np.ndarray:
        """Tip position(s) for joint angles in radians: ``(N,)`` or ``(B, N)`` -> ``(3,)`` or ``(B, 3)``."""
        q = np.asarray(angles, dtype=np.float64)
        single = q.ndim == 1
        q = np.atleast_2d(q)  # (B, N)
        if q.shape[1] != len(self.joint_names):
            raise ValueError(f"expected {len(self.joint_names)} joint angles, got shape {q.shape}")
        b = q.shape[0]
        pos = np.broadcast_to(self.base_offset, (b, 3)).copy()  # (B, 3)
        rot = np.broadcast_to(np.eye(3), (b, 3, 3)).copy()  # (B, 3, 3)
        for i in range(len(self.joint_names)):
            pos = pos + rot @ self.offsets[i]
            rot = rot @ self.rotations[i] @ _axis_angle(self.axes[i], q[:, i])
        tip = pos + rot @ self.tip  # (B, 3)
        return tip[0] if single else tip

    @classmethod
    def from_mjcf(cls, xml_path: str | Path, joint_names: Sequence[str], tip_site: str = "tip") -> SerialChain:
        """Read the chain from an MJCF file (compiled once with MuJoCo).

        Each named joint must be the only joint of its body, joints must form one chain in the
        given order, and each joint must sit at its body's origin.

        Raises:
            ValueError: naming the joint or site that breaks these assumptions.
        """
        import mujoco

        model = mujoco.MjModel.from_xml_path(str(xml_path))
        site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, tip_site)
        if site < 0:
            raise ValueError(f"{xml_path}: no site named {tip_site!r}")
        offsets, rotations, axes, bodies = [], [], [], []
        for name in joint_names:
            j = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
            if j < 0:
                raise ValueError(f"{xml_path}: no joint named {name!r}")
            if model.jnt_type[j] != mujoco.mjtJoint.mjJNT_HINGE or np.linalg.norm(model.jnt_pos[j]) > 1e-9:
                raise ValueError(f"{xml_path}: joint {name!r} must be a hinge at its body's origin")
            body = int(model.jnt_bodyid[j])
            if bodies and int(model.body_parentid[body]) != bodies[-1]:
                raise ValueError(f"{xml_path}: joint {name!r} does not follow {bodies[-1]} in one chain")
            bodies.append(body)
            offsets.append(model.body_pos[body].copy())
            rotations.append(_quat_to_mat(model.body_quat[body].copy()))
            axes.append(model.jnt_axis[j] / np.linalg.norm(model.jnt_axis[j]))
        # Walk from the tip site's body up to the last joint's body (fixed bodies in between).
        tip = model.site_pos[site].copy()  # a point: the site's orientation does not matter
        body = int(model.site_bodyid[site])
        while body != bodies[-1]:
            if body == 0:
                raise ValueError(f"{xml_path}: site {tip_site!r} is not below joint {joint_names[-1]!r}")
            if model.body_jntnum[body] > 0:
                raise ValueError(
                    f"{xml_path}: body {model.body(body).name!r} between site {tip_site!r} and joint "
                    f"{joint_names[-1]!r} has joints the chain does not list"
                )
            tip = model.body_pos[body] + _quat_to_mat(model.body_quat[body]) @ tip
            body = int(model.body_parentid[body])
        # And from the first joint's parent down from the world.
        base = np.zeros(3)
        parent = int(model.body_parentid[bodies[0]])
        chain_up = []
        while parent != 0:
            chain_up.append(parent)
            parent = int(model.body_parentid[parent])
        rot = np.eye(3)
        for bid in reversed(chain_up):
            base = base + rot @ model.body_pos[bid]
            rot = rot @ _quat_to_mat(model.body_quat[bid])
        if not np.allclose(rot, np.eye(3)):
            raise ValueError(f"{xml_path}: the chain's base is rotated; not supported")
        return cls(
            joint_names=tuple(joint_names),
            offsets=np.asarray(offsets),
            rotations=np.asarray(rotations),
            axes=np.asarray(axes),
            base_offset=base,
            tip=tip,
        )


def default_scene_path() -> Path:
    """The SO-101 scene the simulator uses (``sim/assets/so101_scene.xml``)."""
    return Path(str(files("sim") / "assets" / "so101_scene.xml"))


class ArmKinematics:
    """Forward kinematics in robot units: ``(J,)`` joint values -> gripper tip ``(3,)`` metres.

    Args:
        spec: the arm's spec (its ``to_sim`` maps robot units to radians).
        chain: the serial chain of the arm joints (the gripper opening does not move the tip).
    """

    def __init__(self, spec: RobotSpec, chain: SerialChain) -> None:
        missing = [n for n in chain.joint_names if n not in spec.joint_names]
        if missing:
            raise ValueError(f"chain joints {missing} are not joints of {spec.name}")
        self.spec = spec
        self.chain = chain
        self._index = np.array([spec.joint_names.index(n) for n in chain.joint_names])

    def __call__(self, joints: np.ndarray) -> np.ndarray:
        """Tip position for robot-unit joint values ``(J,)`` or ``(B, J)`` -> ``(3,)`` or ``(B, 3)``."""
        angles = self.spec.to_sim(np.asarray(joints, dtype=np.float64))[..., self._index]
        return self.chain.forward(angles)

    @classmethod
    def for_spec(cls, spec: RobotSpec, xml_path: str | Path | None = None) -> ArmKinematics | None:
        """FK for a spec whose arm the simulator models (SO-100/SO-101), else ``None``."""
        if spec.name not in ("so100", "so101"):
            return None
        arm = [n for n in spec.joint_names if n != "gripper"]
        return cls(spec, SerialChain.from_mjcf(xml_path or default_scene_path(), arm))
