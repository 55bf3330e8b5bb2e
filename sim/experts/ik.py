"""Damped-least-squares inverse kinematics on MuJoCo Jacobians for the SO-101 scene.

The solver works on a scratch ``MjData`` of the scene, so it never disturbs the simulation.
Targets are a site position (metres, base frame) and, optionally, a gripper orientation given as
"jaws pointing straight down, jaw-opening direction at yaw ``psi``" (radians).
"""

from __future__ import annotations

import mujoco
import numpy as np

from sim.scene import SO101Scene


def down_rotation(yaw: float) -> np.ndarray:
    """Gripper rotation ``(3, 3)`` with the jaws pointing down and the opening axis at ``yaw``.

    Column 0 (along the jaws) is ``-z``; column 1 (fixed jaw -> moving jaw) is
    ``(cos yaw, sin yaw, 0)``.
    """
    x = np.array([0.0, 0.0, -1.0])
    y = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    return np.stack([x, y, np.cross(x, y)], axis=1)


def orientation_error(current: np.ndarray, desired: np.ndarray) -> np.ndarray:
    """Small-angle rotation vector ``(3,)`` (radians) taking ``current`` toward ``desired``."""
    c, d = current, desired
    # sum_i c_i x d_i over the three columns, written out (np.cross is slow on tiny arrays)
    return 0.5 * np.array(
        [
            (c[1] * d[2] - c[2] * d[1]).sum(),
            (c[2] * d[0] - c[0] * d[2]).sum(),
            (c[0] * d[1] - c[1] * d[0]).sum(),
        ]
    )


class DLSIK:
    """Damped least squares IK over the five arm joints (the gripper is left alone).

    Args:
        scene: the scene whose model is solved (its scratch data is used).
        site: site to place, ``"tip"`` or ``"grasp"``.
        damping: DLS damping ``lambda`` (metres / radians).
        rot_weight: weight of the orientation error relative to position (metres per radian).
        iterations: maximum Gauss-Newton iterations per :meth:`solve` call.
        tolerance: stop when the weighted error norm is below this (metres).
    """

    def __init__(
        self,
        scene: SO101Scene,
        site: str = "tip",
        damping: float = 0.02,
        rot_weight: float = 0.12,
        iterations: int = 12,
        tolerance: float = 2e-4,
    ) -> None:
        self.scene = scene
        self.model = scene.model
        self.data = mujoco.MjData(scene.model)
        self.site_id = scene.model.site(site).id
        self.damping = damping
        self.rot_weight = rot_weight
        self.iterations = iterations
        self.tolerance = tolerance
        self.arm_dofs = scene.dof_ids[:5]
        self.arm_qpos = scene.qpos_ids[:5]
        self.lo = scene.model.jnt_range[scene.joint_ids[:5], 0]
        self.hi = scene.model.jnt_range[scene.joint_ids[:5], 1]
        self._jacp = np.zeros((3, scene.model.nv))
        self._jacr = np.zeros((3, scene.model.nv))

    def solve(
        self,
        q_start: np.ndarray,
        target_pos: np.ndarray,
        target_rot: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float]:
        """Joint angles reaching the target, starting from ``q_start``.

        Args:
            q_start: arm joint angles to start from, radians ``(5,)``.
            target_pos: site position, metres ``(3,)``.
            target_rot: desired gripper rotation ``(3, 3)`` or None for position only.

        Returns:
            ``(q, position_error)``: arm joint angles in radians ``(5,)`` within the joint ranges,
            and the remaining site position error in metres.
        """
        d = self.data
        q = np.clip(np.asarray(q_start, dtype=np.float64), self.lo, self.hi)
        err_norm = np.inf
        for _ in range(self.iterations):
            d.qpos[self.arm_qpos] = q
            mujoco.mj_kinematics(self.model, d)
            mujoco.mj_comPos(self.model, d)
            pos_err = target_pos - d.site_xpos[self.site_id]
            err_norm = float(np.linalg.norm(pos_err))
            mujoco.mj_jacSite(self.model, d, self._jacp, self._jacr, self.site_id)
            if target_rot is not None:
                rot = d.site_xmat[self.site_id].reshape(3, 3)
                rot_err = orientation_error(rot, target_rot)
                err = np.concatenate([pos_err, self.rot_weight * rot_err])
                jac = np.vstack([self._jacp[:, self.arm_dofs], self.rot_weight * self._jacr[:, self.arm_dofs]])
            else:
                err = pos_err
                jac = self._jacp[:, self.arm_dofs]
            if np.linalg.norm(err) < self.tolerance:
                break
            jjt = jac @ jac.T + (self.damping**2) * np.eye(jac.shape[0])
            dq = jac.T @ np.linalg.solve(jjt, err)
            q = np.clip(q + dq, self.lo, self.hi)
        d.qpos[self.arm_qpos] = q
        mujoco.mj_kinematics(self.model, d)
        err_norm = float(np.linalg.norm(target_pos - d.site_xpos[self.site_id]))
        return q, err_norm
