"""The safety layer: the only path from a brain's action to a robot's motors.

It sits between every brain and every robot (DESIGN.md, contract 5). Given the brain's proposed
``{"<joint>.pos": value}`` targets, the measured joint positions and what the control loop knows
about timing, it returns the target that may actually be sent, or holds the last safe target:

1. emergency stop -> nothing may be sent (:class:`EmergencyStopped`);
2. stale / missing observation, late or failed brain -> hold the last safe target;
3. missing key, NaN or inf in a joint -> hold that joint at its last safe target;
4. clamp to the joint limits of the :class:`~latent_vla.base.robot_spec.RobotSpec`, and to within
   ``max_tracking_error`` of the measured position (a blocked arm must not wind up a far target);
5. bound the change per tick: ``min(max_step, velocity_scale * max_velocity * dt)`` per joint;
6. keep the gripper tip inside ``spec.workspace`` (forward kinematics): the move is shortened along
   the straight line from the last safe target until the tip stays inside (or, when the last target
   is already outside, until it gets no further out).

Every intervention is a structured :class:`Intervention` record (reason, joint, before, after) kept
in memory, counted, and logged. The core, :meth:`SafetyLayer.filter`, is pure numpy apart from
that bookkeeping. Units are robot units throughout (degrees and percent for the SO arms).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from latent_vla.base.robot_spec import RobotSpec

logger = logging.getLogger(__name__)

# Forward kinematics: joint targets (J,) in robot units -> gripper tip (3,) in metres, base frame.
ForwardKinematics = Callable[[np.ndarray], np.ndarray]

# Intervention reasons, as they appear in records and counts.
REASONS = (
    "stale_observation",
    "brain_late",
    "brain_error",
    "missing_key",
    "non_finite",
    "joint_limit",
    "tracking_error",
    "max_step",
    "velocity",
    "workspace",
    "emergency_stop",
)


class EmergencyStopped(RuntimeError):
    """Raised by :meth:`SafetyLayer.filter` once the emergency stop has been triggered."""


@dataclass(frozen=True)
class SafetyConfig:
    """Safety settings. Every limit is in robot units (degrees / percent for the SO arms).

    Attributes:
        max_step: largest change of a joint target between two consecutive ticks, robot units.
            A scalar for every joint; ``None`` disables this bound (the velocity bound remains).
        velocity_scale: fraction of the spec's ``max_velocity`` allowed; the bound per tick is
            ``velocity_scale * max_velocity * dt``. 1.0 = the motors' rated speed.
        limit_margin: shrink every joint range by this much on both sides, robot units.
        max_tracking_error: largest allowed distance between a target and the measured position,
            robot units; ``None`` disables it. Guards against a blocked or lagging arm.
        workspace: check the gripper tip against ``spec.workspace_min/max`` (needs FK).
        workspace_margin: shrink the workspace box by this much on every side, metres.
        max_observation_age_s: an observation older than this is stale -> hold, seconds.
        hold_on_missing_key: a missing joint key holds that joint (True) or the whole arm (False).
    """

    max_step: float | None = 10.0
    velocity_scale: float = 0.5
    limit_margin: float = 0.0
    max_tracking_error: float | None = 45.0
    workspace: bool = True
    workspace_margin: float = 0.0
    max_observation_age_s: float = 0.2
    hold_on_missing_key: bool = True

    def __post_init__(self) -> None:
        if self.max_step is not None and not self.max_step > 0:
            raise ValueError(f"max_step must be > 0 robot units or None, got {self.max_step}")
        if not 0 < self.velocity_scale <= 1:
            raise ValueError(f"velocity_scale must be in (0, 1], got {self.velocity_scale}")
        if self.max_tracking_error is not None and not self.max_tracking_error > 0:
            raise ValueError(f"max_tracking_error must be > 0 robot units or None, got {self.max_tracking_error}")
        if self.limit_margin < 0 or self.workspace_margin < 0:
            raise ValueError("limit_margin and workspace_margin must be >= 0")
        if not self.max_observation_age_s > 0:
            raise ValueError(f"max_observation_age_s must be > 0 s, got {self.max_observation_age_s}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> SafetyConfig:
        """Build from a plain mapping (e.g. a Hydra node); unknown keys raise ``TypeError``."""
        return cls(**dict(data or {}))


@dataclass
class Intervention:
    """One thing the safety layer changed or refused.

    Attributes:
        tick: control tick index.
        reason: one of :data:`REASONS`.
        joint: joint name, or ``None`` when the whole arm is affected.
        before: the value proposed (robot units), ``None`` when there was none.
        after: the value actually commanded (robot units), ``None`` when nothing was sent.
        detail: a human-readable explanation.
    """

    tick: int
    reason: str
    joint: str | None = None
    before: float | None = None
    after: float | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite floats become strings)."""
        d = asdict(self)
        for key in ("before", "after"):
            v = d[key]
            if v is not None and not math.isfinite(v):
                d[key] = str(v)
        return d


@dataclass
class _TickContext:
    tick: int
    records: list[Intervention] = field(default_factory=list)


def _box_violation(point: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Euclidean distance of ``point`` (3,) outside the box ``[lo, hi]``; 0 inside, metres."""
    below = np.maximum(lo - point, 0.0)
    above = np.maximum(point - hi, 0.0)
    return float(np.linalg.norm(below + above))


class SafetyLayer:
    """Filters brain actions into safe robot commands; keeps the last safe target.

    Args:
        spec: the robot spec (joint order, limits, speed limits, workspace box).
        config: safety settings.
        fk: forward kinematics for the workspace check, ``(J,) robot units -> (3,) metres``;
            ``None`` disables the workspace check (and is reported once by :meth:`summary`).
        max_records: keep at most this many intervention records (counts stay exact).
    """

    def __init__(
        self,
        spec: RobotSpec,
        config: SafetyConfig | None = None,
        fk: ForwardKinematics | None = None,
        max_records: int = 10_000,
    ) -> None:
        self.spec = spec
        self.config = config or SafetyConfig()
        self.fk = fk if self.config.workspace else None
        self.lower = spec.lower + self.config.limit_margin  # (J,)
        self.upper = spec.upper - self.config.limit_margin  # (J,)
        if np.any(self.lower >= self.upper):
            raise ValueError(f"limit_margin {self.config.limit_margin} leaves an empty joint range")
        m = self.config.workspace_margin
        self.ws_lo = np.asarray(spec.workspace_min, dtype=np.float64) + m  # (3,) metres
        self.ws_hi = np.asarray(spec.workspace_max, dtype=np.float64) - m  # (3,) metres
        self.max_records = max_records
        self.records: list[Intervention] = []
        self.counts: Counter[str] = Counter()
        self.last_safe: np.ndarray | None = None  # (J,) last target that was commanded
        self._estop = threading.Event()
        self._estop_reason = ""

    # -- state ---------------------------------------------------------------------------------
    def reset(self, measured: np.ndarray | Mapping[str, Any]) -> np.ndarray:
        """Start from the measured joint positions (clamped into the limits); returns that target.

        Raises:
            ValueError: when the measured positions are not finite (a broken sensor read).
        """
        q = self._as_vector(measured)
        if not np.all(np.isfinite(q)):
            raise ValueError(f"cannot start the safety layer from non-finite joint positions {q}")
        self.last_safe = np.clip(q, self.lower, self.upper)
        return self.last_safe.copy()

    def trigger_estop(self, reason: str = "emergency stop") -> None:
        """Trigger the emergency stop (thread- and signal-safe); every later :meth:`filter` raises."""
        self._estop_reason = reason
        self._estop.set()

    @property
    def estopped(self) -> bool:
        """Whether the emergency stop has been triggered."""
        return self._estop.is_set()

    @property
    def estop_reason(self) -> str:
        """Why the emergency stop was triggered ("" if it was not)."""
        return self._estop_reason

    # -- the filter ----------------------------------------------------------------------------
    def filter(
        self,
        action: Mapping[str, Any] | None,
        dt: float,
        *,
        tick: int = 0,
        measured: np.ndarray | Mapping[str, Any] | None = None,
        observation_age_s: float | None = 0.0,
        brain_late: bool = False,
        brain_error: str | None = None,
    ) -> dict[str, float]:
        """Turn a proposed action into the command to send.

        Args:
            action: the brain's ``{"<joint>.pos": value}`` targets (robot units), or ``None``.
            dt: seconds since the previous command (the control period), > 0.
            tick: control tick index, for the records.
            measured: measured joint positions ``(J,)`` or dict (robot units): the start on the
                first call, and the centre of the ``max_tracking_error`` bound.
            observation_age_s: age of the observation the action was computed from, seconds;
                ``None`` means no usable observation.
            brain_late: the brain missed its deadline -> hold.
            brain_error: the brain raised (its message) -> hold.

        Returns:
            ``{"<joint>.pos": value}`` for every joint, inside every limit.

        Raises:
            EmergencyStopped: after :meth:`trigger_estop`; nothing may be sent.
            RuntimeError: when neither :meth:`reset` nor ``measured`` gave a starting point.
        """
        ctx = _TickContext(tick)
        if self.estopped:
            self._record(ctx, Intervention(tick, "emergency_stop", detail=self._estop_reason))
            self._flush(ctx)
            raise EmergencyStopped(self._estop_reason or "emergency stop")
        measured_q = None
        if measured is not None:
            measured_q = self._as_vector(measured)
            if not np.all(np.isfinite(measured_q)):
                measured_q = None
        if self.last_safe is None:
            if measured_q is None:
                raise RuntimeError("SafetyLayer.filter called before reset() and without finite `measured`")
            self.reset(measured_q)
        assert self.last_safe is not None
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"dt must be a positive finite number of seconds, got {dt}")
        hold = self.last_safe.copy()

        hold_reason = None
        if observation_age_s is None or observation_age_s > self.config.max_observation_age_s:
            age = "missing" if observation_age_s is None else f"{observation_age_s * 1e3:.0f} ms old"
            hold_reason = ("stale_observation", f"observation {age}")
        elif brain_error is not None:
            hold_reason = ("brain_error", brain_error)
        elif brain_late:
            hold_reason = ("brain_late", "brain missed its deadline")
        elif action is None:
            hold_reason = ("brain_late", "no action")
        if hold_reason is not None:
            self._record(ctx, Intervention(tick, hold_reason[0], detail=f"hold: {hold_reason[1]}"))
            self._flush(ctx)
            return self.spec.vector_to_action(hold)

        target = self._parse(action, hold, ctx)  # (J,) finite
        target = self._clamp_limits(target, ctx)
        target = self._limit_tracking(target, measured_q, ctx)
        target = self._limit_step(target, hold, dt, ctx)
        target = self._limit_workspace(target, hold, ctx)
        self.last_safe = target
        self._flush(ctx)
        return self.spec.vector_to_action(target)

    # -- stages --------------------------------------------------------------------------------
    def _parse(self, action: Mapping[str, Any], hold: np.ndarray, ctx: _TickContext) -> np.ndarray:
        target = hold.copy()
        missing = []
        for i, (key, name) in enumerate(zip(self.spec.action_keys, self.spec.joint_names, strict=True)):
            if key not in action:
                missing.append(name)
                continue
            try:
                value = float(action[key])
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                self._record(ctx, Intervention(ctx.tick, "non_finite", name, value, hold[i], "hold joint"))
                continue
            target[i] = value
        if missing:
            if self.config.hold_on_missing_key:
                for name in missing:
                    i = self.spec.joint_names.index(name)
                    self._record(ctx, Intervention(ctx.tick, "missing_key", name, None, hold[i], "hold joint"))
            else:
                self._record(ctx, Intervention(ctx.tick, "missing_key", None, detail=f"hold arm: {missing}"))
                return hold.copy()
        return target

    def _clamp_limits(self, target: np.ndarray, ctx: _TickContext) -> np.ndarray:
        clamped = np.clip(target, self.lower, self.upper)
        for i in np.flatnonzero(clamped != target):
            self._record(
                ctx,
                Intervention(ctx.tick, "joint_limit", self.spec.joint_names[i], target[i], clamped[i]),
            )
        return clamped

    def _limit_tracking(self, target: np.ndarray, measured: np.ndarray | None, ctx: _TickContext) -> np.ndarray:
        e = self.config.max_tracking_error
        if e is None or measured is None:
            return target
        # Inside the joint limits too: measured positions may overshoot them slightly.
        lo = np.clip(measured - e, self.lower, self.upper)
        hi = np.clip(measured + e, self.lower, self.upper)
        bounded = np.clip(target, lo, hi)
        for i in np.flatnonzero(bounded != target):
            name = self.spec.joint_names[i]
            detail = f"measured {measured[i]:.3g}, max error {e:.3g}"
            self._record(ctx, Intervention(ctx.tick, "tracking_error", name, target[i], bounded[i], detail))
        return bounded

    def step_bound(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-joint bound on the target change for a tick of ``dt`` seconds.

        Returns:
            ``(bound, from_velocity)``: the bound ``(J,)`` in robot units and a ``(J,)`` bool mask
            telling whether the velocity limit (rather than ``max_step``) set it.
        """
        vel = self.config.velocity_scale * self.spec.max_velocity * dt  # (J,)
        if self.config.max_step is None:
            return vel, np.ones_like(vel, dtype=bool)
        step = np.full_like(vel, self.config.max_step)
        return np.minimum(vel, step), vel < step

    def _limit_step(self, target: np.ndarray, hold: np.ndarray, dt: float, ctx: _TickContext) -> np.ndarray:
        bound, from_vel = self.step_bound(dt)
        limited = hold + np.clip(target - hold, -bound, bound)
        # `hold` and `target` are inside the limits, so `limited` is too; clip guards rounding.
        limited = np.clip(limited, self.lower, self.upper)
        for i in np.flatnonzero(np.abs(target - hold) > bound):
            reason = "velocity" if from_vel[i] else "max_step"
            self._record(
                ctx,
                Intervention(
                    ctx.tick, reason, self.spec.joint_names[i], target[i], limited[i], f"bound {bound[i]:.3g}"
                ),
            )
        return limited

    def tip_violation(self, joints: np.ndarray) -> float:
        """How far (metres) the gripper tip at ``joints`` (J,) lies outside the workspace; 0 inside."""
        if self.fk is None:
            return 0.0
        tip = np.asarray(self.fk(np.asarray(joints, dtype=np.float64)), dtype=np.float64).reshape(3)
        if not np.all(np.isfinite(tip)):
            return math.inf
        return _box_violation(tip, self.ws_lo, self.ws_hi)

    def _limit_workspace(self, target: np.ndarray, hold: np.ndarray, ctx: _TickContext) -> np.ndarray:
        if self.fk is None:
            return target
        allowed = self.tip_violation(hold)  # 0 when the last target was inside
        v_target = self.tip_violation(target)
        if v_target <= allowed + 1e-9:
            return target
        lo, hi = 0.0, 1.0  # largest fraction of the move that keeps the tip allowed
        for _ in range(12):
            mid = 0.5 * (lo + hi)
            if self.tip_violation(hold + mid * (target - hold)) <= allowed + 1e-9:
                lo = mid
            else:
                hi = mid
        result = hold + lo * (target - hold)
        self._record(
            ctx,
            Intervention(
                ctx.tick,
                "workspace",
                None,
                detail=f"tip {v_target * 100:.1f} cm outside the workspace; move shortened to {lo:.3f}",
            ),
        )
        return result

    # -- bookkeeping ---------------------------------------------------------------------------
    def _as_vector(self, values: np.ndarray | Mapping[str, Any]) -> np.ndarray:
        if isinstance(values, Mapping):
            return self.spec.action_to_vector(values)
        q = np.asarray(values, dtype=np.float64).reshape(-1)
        if q.shape[0] != self.spec.num_joints:
            raise ValueError(f"expected {self.spec.num_joints} joint values, got shape {q.shape}")
        return q

    def _record(self, ctx: _TickContext, rec: Intervention) -> None:
        ctx.records.append(rec)

    def _flush(self, ctx: _TickContext) -> None:
        for rec in ctx.records:
            self.counts[rec.reason] += 1
            if len(self.records) < self.max_records:
                self.records.append(rec)
            logger.debug(
                "safety tick %d: %s %s %s -> %s %s",
                rec.tick,
                rec.reason,
                rec.joint or "arm",
                rec.before,
                rec.after,
                rec.detail,
            )

    def summary(self) -> dict[str, Any]:
        """Counts per reason, the total, and whether the workspace was checked (JSON-ready)."""
        return {
            "interventions": int(sum(self.counts.values())),
            "by_reason": {r: int(self.counts[r]) for r in REASONS if self.counts[r]},
            "workspace_checked": self.fk is not None,
            "estopped": self.estopped,
            "estop_reason": self._estop_reason,
        }
