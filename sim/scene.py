"""The MuJoCo SO-101 tabletop scene: physics, joint I/O in robot units, cameras, forward kinematics.

:class:`SO101Scene` is the low-level object under the Gymnasium envs and the one the hardware
engineer's MuJoCo twin reuses. It knows nothing about tasks: it loads ``assets/so101_scene.xml``,
resolves every name once, converts robot units (degrees / gripper percent, see
``latent_vla.base.robot_spec``) to MuJoCo radians, advances one control tick at ``spec.fps`` and renders
cameras with one reused :class:`mujoco.Renderer` per image size.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import mujoco
import numpy as np

from latent_vla.base.robot_spec import SO101, RobotSpec

SCENE_XML = Path(str(files("sim") / "assets" / "so101_scene.xml"))

OBJECT_NAMES: tuple[str, ...] = ("cube_a", "cube_b", "cube_c", "cylinder_a")
"""Free objects of the scene (body, free joint and geom share the name)."""

ZONE_NAMES: tuple[str, ...] = ("zone_a", "zone_b")
"""Goal zones: mocap bodies with one flat visual disc each."""

TABLE_HEIGHT = 0.0
"""Height of the table top, metres (the robot base frame is on it)."""

FLOOR_HEIGHT = -0.76
"""Height of the floor under the table, metres."""

VIDEO_ONLY_GROUP = 3
"""Geom group drawn by :meth:`SO101Scene.render_pretty` only (the floor)."""

PHYSICS_SUBSTEPS = 15
"""MuJoCo steps per control tick; the timestep is set to ``1 / (fps * PHYSICS_SUBSTEPS)``."""


def _load_model(xml_path: Path, pretty: bool) -> mujoco.MjModel:
    model = mujoco.MjModel.from_xml_path(str(xml_path))
    if pretty:
        # Videos only: shadows and 4x multisampling (slow, ~20 ms a frame on the CPU).
        model.vis.quality.shadowsize = 2048
        model.vis.quality.offsamples = 4
        model.vis.quality.numslices = 28
        model.vis.quality.numstacks = 16
    return model


class SO101Scene:
    """MuJoCo SO-101 arm on a table with four free objects, two goal zones and two cameras.

    All joint values cross this API in robot units (``spec``'s degrees / gripper percent) as
    ``(J,)`` float64 vectors in ``spec.joint_names`` order; positions are metres in the base frame
    (table top at z = 0, +x forward).

    Typical use (the MuJoCo twin of a real arm)::

        scene = SO101Scene()
        scene.reset()                      # arm at spec.home, objects where the XML puts them
        scene.set_targets(spec.home)       # absolute joint targets, robot units
        scene.tick()                       # one control period, 1 / spec.fps seconds
        q = scene.joint_positions()        # measured joints, robot units, (J,)
        img = scene.render("front")        # uint8 (H, W, 3)
        p = scene.tip_position()           # gripper tip, metres, (3,)
        p2 = scene.forward_kinematics(q)   # tip for any joint vector, no side effect on the sim

    Args:
        spec: the robot spec (joint order, units, control rate, cameras).
        image_height: default camera image height, pixels.
        image_width: default camera image width, pixels.
        xml_path: MJCF to load; defaults to the shipped scene.
    """

    def __init__(
        self,
        spec: RobotSpec = SO101,
        image_height: int = 64,
        image_width: int = 64,
        xml_path: str | Path | None = None,
    ) -> None:
        if image_height <= 0 or image_width <= 0:
            raise ValueError(f"image size must be positive, got {image_height}x{image_width}")
        self.spec = spec
        self.xml_path = Path(xml_path) if xml_path is not None else SCENE_XML
        self.model = _load_model(self.xml_path, pretty=False)
        self.model.opt.timestep = 1.0 / (spec.fps * PHYSICS_SUBSTEPS)
        self.model.vis.global_.offwidth = max(int(self.model.vis.global_.offwidth), image_width)
        self.model.vis.global_.offheight = max(int(self.model.vis.global_.offheight), image_height)
        self.data = mujoco.MjData(self.model)
        self._scratch = mujoco.MjData(self.model)  # for FK / Jacobians without touching the sim
        self.image_height = int(image_height)
        self.image_width = int(image_width)
        self.n_substeps = PHYSICS_SUBSTEPS
        self.control_dt = 1.0 / spec.fps

        # Names resolved once.
        m = self.model
        missing = [n for n in spec.joint_names if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n) < 0]
        if missing:
            raise ValueError(f"scene {self.xml_path.name} lacks joints {missing} of spec {spec.name!r}")
        self.joint_ids = np.array([m.joint(n).id for n in spec.joint_names])
        self.qpos_ids = np.array([m.jnt_qposadr[j] for j in self.joint_ids])
        self.qvel_ids = np.array([m.jnt_dofadr[j] for j in self.joint_ids])
        self.dof_ids = self.qvel_ids
        self.actuator_ids = np.array([m.actuator(n).id for n in spec.joint_names])
        self.tip_site = m.site("tip").id
        self.grasp_site = m.site("grasp").id
        self.gripper_body = m.body("gripper").id
        self.object_body = {n: m.body(n).id for n in OBJECT_NAMES}
        self.object_geom = {n: m.geom(n).id for n in OBJECT_NAMES}
        self.object_qpos = {n: int(m.jnt_qposadr[m.joint(n).id]) for n in OBJECT_NAMES}
        self.object_qvel = {n: int(m.jnt_dofadr[m.joint(n).id]) for n in OBJECT_NAMES}
        self.zone_mocap = {n: int(m.body_mocapid[m.body(n).id]) for n in ZONE_NAMES}
        self.zone_geom = {n: m.geom(n).id for n in ZONE_NAMES}
        self.camera_ids = {m.camera(i).name: i for i in range(m.ncam)}
        self.table_geom = m.geom("table").id
        # Defaults captured once so randomization can jitter around them.
        self.default_cam_pos = m.cam_pos.copy()
        self.default_cam_quat = m.cam_quat.copy()
        self.default_light_pos = m.light_pos.copy()
        self.default_light_diffuse = m.light_diffuse.copy()
        self.default_geom_rgba = m.geom_rgba.copy()
        self.default_mat_rgba = m.mat_rgba.copy()

        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._data_option = mujoco.MjvOption()
        self._data_option.geomgroup[VIDEO_ONLY_GROUP] = 0
        self._pretty_option = mujoco.MjvOption()
        self._pretty_option.geomgroup[VIDEO_ONLY_GROUP] = 1
        self._pretty_model: mujoco.MjModel | None = None
        self._pretty_renderer: mujoco.Renderer | None = None
        self.reset()

    # -- state ---------------------------------------------------------------------------------
    def reset(self, joints: np.ndarray | None = None) -> None:
        """Reset the physics to the XML's object poses with the arm at ``joints`` (robot units).

        ``joints`` defaults to ``spec.home``; the actuators' targets are set to the same pose.
        """
        mujoco.mj_resetData(self.model, self.data)
        q = self.spec.home_vector if joints is None else self._check_joints(joints)
        self.data.qpos[self.qpos_ids] = self.spec.to_sim(q)
        self.data.ctrl[self.actuator_ids] = self.spec.to_sim(q)
        mujoco.mj_forward(self.model, self.data)

    def _check_joints(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.shape[0] != self.spec.num_joints:
            raise ValueError(f"expected {self.spec.num_joints} joint values, got shape {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"joint values must be finite, got {values}")
        return values

    def set_targets(self, joints: np.ndarray) -> np.ndarray:
        """Set absolute position targets, robot units ``(J,)``; returns them clipped to the limits."""
        q = np.clip(self._check_joints(joints), self.spec.lower, self.spec.upper)
        self.data.ctrl[self.actuator_ids] = self.spec.to_sim(q)
        return q

    def targets(self) -> np.ndarray:
        """Current actuator targets in robot units, ``(J,)``."""
        return self.spec.from_sim(self.data.ctrl[self.actuator_ids])

    def tick(self) -> None:
        """Advance the physics by one control period, ``1 / spec.fps`` seconds.

        Positions, contacts and camera poses are recomputed for the new state afterwards, so
        reads and renders see the same instant.
        """
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)
        mujoco.mj_forward(self.model, self.data)

    def joint_positions(self) -> np.ndarray:
        """Measured joint positions in robot units, ``(J,)`` float64."""
        return self.spec.from_sim(self.data.qpos[self.qpos_ids])

    def joint_velocities(self) -> np.ndarray:
        """Measured joint velocities in robot units per second, ``(J,)`` float64."""
        scale = (self.spec.upper - self.spec.lower) / np.array(
            [j.sim_upper - j.sim_lower for j in self.spec.joints]
        )
        return self.data.qvel[self.qvel_ids] * scale

    @property
    def time(self) -> float:
        """Simulated time since reset, seconds."""
        return float(self.data.time)

    # -- geometry ------------------------------------------------------------------------------
    def tip_position(self) -> np.ndarray:
        """Gripper tip (between the jaw tips) in the base frame, metres, ``(3,)``."""
        return self.data.site_xpos[self.tip_site].copy()

    def grasp_position(self) -> np.ndarray:
        """Grasp point (inside the closed hand, against the fixed jaw), metres, ``(3,)``."""
        return self.data.site_xpos[self.grasp_site].copy()

    def gripper_rotation(self) -> np.ndarray:
        """Gripper frame orientation ``(3, 3)``; column 0 points along the jaws."""
        return self.data.xmat[self.gripper_body].reshape(3, 3).copy()

    def forward_kinematics(self, joints: np.ndarray, site: str = "tip") -> np.ndarray:
        """Position of ``site`` (``"tip"`` or ``"grasp"``) for a joint vector in robot units, metres.

        Uses a scratch ``MjData``; the simulation state is untouched. Accepts ``(J,)`` or
        ``(N, J)`` and returns ``(3,)`` or ``(N, 3)``.
        """
        joints = np.asarray(joints, dtype=np.float64)
        batch = joints.reshape(-1, self.spec.num_joints)
        site_id = self.model.site(site).id
        out = np.empty((batch.shape[0], 3))
        for i, q in enumerate(batch):
            self._scratch.qpos[self.qpos_ids] = self.spec.to_sim(q)
            mujoco.mj_kinematics(self.model, self._scratch)
            out[i] = self._scratch.site_xpos[site_id]
        return out[0] if joints.ndim == 1 else out

    def object_position(self, name: str) -> np.ndarray:
        """Centre of a free object, metres, ``(3,)``."""
        return self.data.xpos[self.object_body[name]].copy()

    def object_half_height(self, name: str) -> float:
        """Half height of an upright object, metres."""
        g = self.object_geom[name]
        size = self.model.geom_size[g]
        return float(size[2] if self.model.geom_type[g] == mujoco.mjtGeom.mjGEOM_BOX else size[1])

    def set_object_pose(self, name: str, xy: np.ndarray, yaw: float = 0.0) -> None:
        """Place an object upright on the table at ``xy`` (metres) with yaw (radians), at rest."""
        adr = self.object_qpos[name]
        self.data.qpos[adr : adr + 3] = (xy[0], xy[1], TABLE_HEIGHT + self.object_half_height(name))
        self.data.qpos[adr + 3 : adr + 7] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        dadr = self.object_qvel[name]
        self.data.qvel[dadr : dadr + 6] = 0.0

    def park_object(self, name: str, slot: int = 0) -> None:
        """Put an unused object at rest on the floor behind the robot, out of the cameras' view.

        ``slot`` (0..3) spaces parked objects 10 cm apart.
        """
        adr = self.object_qpos[name]
        self.data.qpos[adr : adr + 3] = (-0.7, -0.15 + 0.1 * slot, FLOOR_HEIGHT + self.object_half_height(name))
        self.data.qpos[adr + 3 : adr + 7] = (1.0, 0.0, 0.0, 0.0)
        dadr = self.object_qvel[name]
        self.data.qvel[dadr : dadr + 6] = 0.0

    def on_table(self, name: str) -> bool:
        """Whether an object is on (or above) the table rather than parked or fallen."""
        return bool(self.object_position(name)[2] > TABLE_HEIGHT - 0.005)

    def zone_position(self, name: str) -> np.ndarray:
        """Centre of a goal zone on the table, metres, ``(3,)``."""
        return self.data.mocap_pos[self.zone_mocap[name]].copy()

    def zone_radius(self, name: str) -> float:
        """Radius of a goal zone disc, metres."""
        return float(self.model.geom_size[self.zone_geom[name]][0])

    def set_zone_position(self, name: str, xy: np.ndarray) -> None:
        """Move a goal zone to ``xy`` on the table, metres."""
        self.data.mocap_pos[self.zone_mocap[name]] = (xy[0], xy[1], TABLE_HEIGHT + 0.0006)

    def forward(self) -> None:
        """Recompute derived quantities (positions, contacts) after editing the state."""
        mujoco.mj_forward(self.model, self.data)

    def _jaw_contacts(self, name: str, jaws: tuple[str, ...]) -> int:
        """Active contacts between object ``name`` and the gripper geoms ``jaws``."""
        target = self.object_geom[name]
        ids = {self.model.geom(j).id for j in jaws}
        count = 0
        for c in self.data.contact[: self.data.ncon]:
            if (c.geom1 == target and c.geom2 in ids) or (c.geom2 == target and c.geom1 in ids):
                count += 1
        return count

    def gripper_contacts(self, name: str) -> int:
        """Number of active contacts between the gripper jaws and object ``name``."""
        return self._jaw_contacts(name, ("fixed_pad", "moving_pad", "fixed_jaw", "moving_jaw"))

    def grasping(self, name: str) -> bool:
        """Whether both jaws (the fixed and the moving one, pads included) touch object ``name``."""
        fixed = self._jaw_contacts(name, ("fixed_pad", "fixed_jaw"))
        moving = self._jaw_contacts(name, ("moving_pad", "moving_jaw"))
        return fixed > 0 and moving > 0

    # -- rendering -----------------------------------------------------------------------------
    def _renderer(self, height: int, width: int) -> mujoco.Renderer:
        key = (height, width)
        if key not in self._renderers:
            if width > self.model.vis.global_.offwidth or height > self.model.vis.global_.offheight:
                raise ValueError(
                    f"image {height}x{width} exceeds the offscreen buffer "
                    f"{self.model.vis.global_.offheight}x{self.model.vis.global_.offwidth}; "
                    "pass image_height/image_width to SO101Scene"
                )
            self._renderers[key] = mujoco.Renderer(self.model, height=height, width=width)
        return self._renderers[key]

    def render(self, camera: str, height: int | None = None, width: int | None = None) -> np.ndarray:
        """Render a named camera (``front``, ``wrist``, ``overview``) fast: uint8 ``(H, W, 3)``.

        Shadow- and multisample-free, low-poly, video-only geoms hidden; one renderer per image
        size is created once and reused.
        """
        if camera not in self.camera_ids:
            raise ValueError(f"unknown camera {camera!r}; valid: {sorted(self.camera_ids)}")
        h = self.image_height if height is None else int(height)
        w = self.image_width if width is None else int(width)
        renderer = self._renderer(h, w)
        renderer.update_scene(self.data, camera=self.camera_ids[camera], scene_option=self._data_option)
        return renderer.render()

    def render_pretty(self, camera: str = "overview", height: int = 480, width: int = 640) -> np.ndarray:
        """A nicer frame for videos (shadows, multisampling), uint8 ``(H, W, 3)``; slow, not for data.

        Uses a second copy of the model with richer visual settings and the same ``MjData``;
        the per-episode randomized colours, lights and camera poses are copied across.
        """
        if camera not in self.camera_ids:
            raise ValueError(f"unknown camera {camera!r}; valid: {sorted(self.camera_ids)}")
        if self._pretty_model is None or self._pretty_renderer is None or (
            self._pretty_renderer.height,
            self._pretty_renderer.width,
        ) != (height, width):
            self._pretty_model = _load_model(self.xml_path, pretty=True)
            self._pretty_model.vis.global_.offwidth = max(width, 640)
            self._pretty_model.vis.global_.offheight = max(height, 480)
            self._pretty_renderer = mujoco.Renderer(self._pretty_model, height=height, width=width)
        pm = self._pretty_model
        pm.geom_rgba[:] = self.model.geom_rgba
        pm.mat_rgba[:] = self.model.mat_rgba
        pm.cam_pos[:] = self.model.cam_pos
        pm.cam_quat[:] = self.model.cam_quat
        pm.light_pos[:] = self.model.light_pos
        pm.light_diffuse[:] = self.model.light_diffuse
        self._pretty_renderer.update_scene(
            self.data, camera=self.camera_ids[camera], scene_option=self._pretty_option
        )
        return self._pretty_renderer.render()

    def close(self) -> None:
        """Release the OpenGL contexts of the renderers."""
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()
        if self._pretty_renderer is not None:
            self._pretty_renderer.close()
            self._pretty_renderer = None
