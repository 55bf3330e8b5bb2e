"""The safety layer: the only path from a brain's action to a robot's motors.

It sits between every brain and every robot (DESIGN.md, contract 5). Given the brain's proposed
``{"<joint>.pos": value}`` targets, the measured joint positions and what the control loop knows
about timing, it returns the target that may actually be sent, or holds the last safe target:

1. emergency stop -> nothing may be sent (:class:`EmergencyStopped`);
2. stale / missing observation, late or failed brain, or an output that is not a mapping (a float,
   bytes, ``None``...) -> hold the last safe target (``brain_error``);
3. missing key, or a joint value that is not a finite real number (NaN, inf, a str, a bool, a huge
   int...) -> hold that joint at its last safe target;
4. clamp to the joint limits of the :class:`~latent_vla.base.robot_spec.RobotSpec`, and to within
   ``max_tracking_error`` of the measured position (a blocked arm must not wind up a far target);
5. bound the change per tick: ``min(max_step, velocity_scale * max_velocity * dt)`` per joint. An
   arm that starts outside its limits walks back into them at this bound, from where it is;
6. keep the gripper tip inside ``spec.workspace`` (forward kinematics): the move is shortened along
   the straight line from the last safe target until the tip stays inside (or, when the last target
   is already outside, until it gets no further out).

Every setting is checked when :class:`SafetyConfig` (and :class:`SafetyLayer`) is built: a value
that is not a finite number in its range raises :class:`SettingError` (a
:class:`~latent_vla.base.errors.UserError`) naming the setting, the value and the allowed range.

Every intervention is a structured :class:`Intervention` record (reason, joint, before, after) kept
in memory, counted, and logged. The core, :meth:`SafetyLayer.filter`, is pure numpy apart from
that bookkeeping and never raises for anything a brain returns. Units are robot units throughout
(degrees and percent for the SO arms).
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from latent_vla.base.errors import UserError
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

# Reasons that mean the brain's output itself was malformed (the control loop counts them as faults).
MALFORMED_OUTPUT_REASONS = frozenset({"brain_error", "missing_key", "non_finite"})

# How long trigger_estop waits for a command being sent to finish before it sets the stop anyway, s.
_ESTOP_LOCK_TIMEOUT_S = 1.0


class EmergencyStopped(RuntimeError):
    """Raised by :meth:`SafetyLayer.filter` once the emergency stop has been triggered."""


class SettingError(UserError, ValueError):
    """A safety or control-loop setting that is not a finite number in its allowed range.

    A :class:`~latent_vla.base.errors.UserError` (the command prints it as one line and exits 2),
    and a ``ValueError`` for callers that catch that. The message names the setting, the bad value
    and what is allowed.
    """


def show_value(value: Any, width: int = 40) -> str:
    """A one-line, at most ``width``-character ``repr`` of ``value`` for messages; never raises."""
    try:
        text = repr(value)
    except Exception:  # e.g. an int too long to print, a broken __repr__
        text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def real_number(value: Any) -> float | None:
    """``value`` as a Python float when it is a real number, else ``None``; never raises.

    Real numbers are ``int``, ``float`` and numpy integer / floating scalars (anything registered as
    :class:`numbers.Real`). ``bool`` and ``numpy.bool_``, ``str`` (even ``" 25 "``), ``bytes``,
    arrays, ``None`` and every other object are not. The result may be NaN or inf; an int too large
    for a float, or a ``__float__`` that raises, gives ``None``.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return None
    try:
        result = float(value)
    except Exception:  # OverflowError (a huge int), a __float__ that raises or returns a non-float
        return None
    return result if type(result) is float else None


def check_real(
    name: str,
    value: Any,
    *,
    low: float,
    high: float = math.inf,
    low_inclusive: bool = False,
    high_inclusive: bool = True,
    unit: str = "",
) -> float:
    """``value`` as a float when it is a finite real number in the range, else :class:`SettingError`.

    Args:
        name: the setting as the user spells it (e.g. ``"safety.limit_margin"``), for the message.
        value: what was given.
        low, high: the range's ends (``high=inf``: no upper end; the value must still be finite).
        low_inclusive, high_inclusive: whether the ends are allowed.
        unit: the unit, for the message.
    """
    x = real_number(value)
    above = x is not None and (x >= low if low_inclusive else x > low)
    below = x is not None and (x <= high if high_inclusive else x < high)
    if x is not None and math.isfinite(x) and above and below:
        return x
    if math.isinf(high):
        allowed = f"a finite number {'>=' if low_inclusive else '>'} {low:g}"
    else:
        allowed = f"a number in {'[' if low_inclusive else '('}{low:g}, {high:g}{']' if high_inclusive else ')'}"
    raise SettingError(f"{name} must be {allowed}{' ' + unit if unit else ''}, got {show_value(value)}")


def check_count(name: str, value: Any, *, low: int) -> int:
    """``value`` as an int when it is a whole number ``>= low`` (``30`` or ``30.0``), else :class:`SettingError`."""
    x = real_number(value)
    if x is not None and math.isfinite(x) and x == int(x) and x >= low:
        return int(x)
    raise SettingError(f"{name} must be a whole number >= {low}, got {show_value(value)}")


def check_flag(name: str, value: Any) -> bool:
    """``value`` when it is a bool (``True``/``False``), else :class:`SettingError` (``"false"`` is truthy)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise SettingError(f"{name} must be true or false, got {show_value(value)}")


def action_problem(action: Any) -> str | None:
    """``None`` when ``action`` is a mapping (the shape of a brain's output), else what it is instead."""
    if isinstance(action, Mapping):
        return None
    return f"brain returned {type(action).__name__} {show_value(action, 30)}, not a dict of joint targets"


def joint_vector(spec: RobotSpec, values: Mapping[str, Any]) -> np.ndarray:
    """``{"<joint>.pos": value}`` as a ``(J,)`` float64 vector in robot units; never raises.

    A joint that is missing, unreadable or not a real number (see :func:`real_number`) is NaN.
    """
    out = np.full(spec.num_joints, math.nan)
    for i, key in enumerate(spec.action_keys):
        try:
            x = real_number(values[key]) if key in values else None
        except Exception:  # a mapping whose lookup raises
            x = None
        if x is not None:
            out[i] = x
    return out


@dataclass(frozen=True)
class SafetyConfig:
    """Safety settings. Every limit is in robot units (degrees / percent for the SO arms).

    Every number must be finite and in its range (below); anything else raises :class:`SettingError`
    at construction, naming ``safety.<setting>``. Ints are stored as floats.

    Attributes:
        max_step: largest change of a joint target between two consecutive ticks, robot units, > 0.
            A scalar for every joint; ``None`` disables this bound (the velocity bound remains).
        velocity_scale: fraction of the spec's ``max_velocity`` allowed, in (0, 1]; the bound per
            tick is ``velocity_scale * max_velocity * dt``. 1.0 = the motors' rated speed.
        limit_margin: shrink every joint range by this much on both sides, robot units, >= 0 (and
            less than half the narrowest range, checked by :class:`SafetyLayer`).
        max_tracking_error: largest allowed distance between a target and the measured position,
            robot units, > 0; ``None`` disables it. Guards against a blocked or lagging arm.
        workspace: check the gripper tip against ``spec.workspace_min/max`` (needs FK).
        workspace_margin: shrink the workspace box by this much on every side, metres, >= 0 (and
            less than half its smallest side, checked by :class:`SafetyLayer`).
        max_observation_age_s: an observation older than this is stale -> hold, seconds, > 0.
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
        ranges: dict[str, dict[str, Any]] = {
            "max_step": {"low": 0.0, "unit": "robot units per tick (or null)"},
            "velocity_scale": {"low": 0.0, "high": 1.0, "unit": "(fraction of rated speed)"},
            "limit_margin": {"low": 0.0, "low_inclusive": True, "unit": "robot units"},
            "max_tracking_error": {"low": 0.0, "unit": "robot units (or null)"},
            "workspace_margin": {"low": 0.0, "low_inclusive": True, "unit": "m"},
            "max_observation_age_s": {"low": 0.0, "unit": "s"},
        }
        for name, bounds in ranges.items():
            value = getattr(self, name)
            if value is None and name in ("max_step", "max_tracking_error"):
                continue
            object.__setattr__(self, name, check_real(f"safety.{name}", value, **bounds))
        for name in ("workspace", "hold_on_missing_key"):
            object.__setattr__(self, name, check_flag(f"safety.{name}", getattr(self, name)))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> SafetyConfig:
        """Build from a plain mapping (e.g. a Hydra node); an unknown key raises :class:`SettingError`."""
        data = dict(data or {})
        valid = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in data if k not in valid)
        if unknown:
            raise SettingError(f"unknown safety setting(s) {unknown}; valid: {valid}")
        return cls(**data)


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
        max_records: keep at most this many intervention records (counts stay exact), >= 0.

    Raises:
        SettingError: ``limit_margin`` leaves an empty joint range, ``workspace_margin`` an empty
            workspace box, or ``max_records`` is not a whole number >= 0.
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
        m = self.config.limit_margin
        self.lower = spec.lower + m  # (J,)
        self.upper = spec.upper - m  # (J,)
        if np.any(self.lower >= self.upper):
            half = 0.5 * (spec.upper - spec.lower)
            i = int(np.argmin(half))
            raise SettingError(
                f"safety.limit_margin must be < {half[i]:g} robot units for {spec.name} (half the range of "
                f"{spec.joint_names[i]}), got {show_value(m)}"
            )
        m = self.config.workspace_margin
        self.ws_lo = np.asarray(spec.workspace_min, dtype=np.float64) + m  # (3,) metres
        self.ws_hi = np.asarray(spec.workspace_max, dtype=np.float64) - m  # (3,) metres
        if self.config.workspace and np.any(self.ws_lo >= self.ws_hi):
            half = 0.5 * float(np.min(np.asarray(spec.workspace_max) - np.asarray(spec.workspace_min)))
            raise SettingError(
                f"safety.workspace_margin must be < {half:g} m for {spec.name} (half the smallest side of "
                f"its workspace box), got {show_value(m)}"
            )
        self.max_records = check_count("max_records", max_records, low=0)
        self.records: list[Intervention] = []
        self.last_tick: list[Intervention] = []  # the records of the latest filter() call
        self.counts: Counter[str] = Counter()
        self.last_safe: np.ndarray | None = None  # (J,) last target that was commanded
        self._estop = threading.Event()
        self._estop_reason = ""
        # Held by trigger_estop and, in the control loop, around filter-then-send (see estop_lock).
        self._estop_lock = threading.RLock()

    # -- state ---------------------------------------------------------------------------------
    def reset(self, measured: np.ndarray | Mapping[str, Any], *, tick: int = 0) -> np.ndarray:
        """Start from the measured joint positions ``(J,)`` (robot units); returns that target.

        A joint measured outside its limits is not snapped to them (that would be an unbounded
        first move): the start stays where the arm is, a ``joint_limit`` intervention is recorded,
        and :meth:`filter` walks it back into the limits at the per-tick bound.

        Raises:
            ValueError: when the measured positions are not finite real numbers (a broken sensor read).
        """
        q = self._as_vector(measured)
        if not np.all(np.isfinite(q)):
            raise ValueError(f"cannot start the safety layer from non-finite joint positions {q}")
        ctx = _TickContext(tick)
        for i in np.flatnonzero((q < self.lower) | (q > self.upper)):
            detail = (
                f"start outside the limits [{self.lower[i]:g}, {self.upper[i]:g}]: walking back at the per-tick bound"
            )
            self._record(ctx, Intervention(tick, "joint_limit", self.spec.joint_names[i], q[i], None, detail))
        self._flush(ctx)
        self.last_safe = q.copy()
        return q.copy()

    @property
    def estop_lock(self) -> threading.RLock:
        """The lock :meth:`trigger_estop` takes; hold it around filter-then-send.

        While a thread holds it, an e-stop from another thread waits, so a command that passed the
        e-stop check is sent before the stop takes effect and none is sent after it.
        """
        return self._estop_lock

    def trigger_estop(self, reason: str = "emergency stop") -> None:
        """Trigger the emergency stop (thread- and signal-safe); every later :meth:`filter` raises.

        From another thread it first waits (at most 1 s) for a command being filtered and sent
        under :attr:`estop_lock` to go out, so that no command follows the stop. From a signal
        handler on the thread that holds the lock it takes effect at once (the lock is re-entrant).
        """
        locked = self._estop_lock.acquire(timeout=_ESTOP_LOCK_TIMEOUT_S)
        try:
            self._estop_reason = reason
            self._estop.set()
        finally:
            if locked:
                self._estop_lock.release()

    @property
    def estopped(self) -> bool:
        """Whether the emergency stop has been triggered."""
        return self._estop.is_set()

    @property
    def estop_reason(self) -> str:
        """Why the emergency stop was triggered ("" if it was not)."""
        return self._estop_reason

    def check_estop(self, tick: int = 0) -> None:
        """Record and raise :class:`EmergencyStopped` when the emergency stop has been triggered."""
        if self.estopped:
            ctx = _TickContext(tick)
            self._record(ctx, Intervention(tick, "emergency_stop", detail=self._estop_reason))
            self._flush(ctx)
            raise EmergencyStopped(self._estop_reason or "emergency stop")

    # -- the filter ----------------------------------------------------------------------------
    def filter(
        self,
        action: Any,
        dt: float,
        *,
        tick: int = 0,
        measured: np.ndarray | Mapping[str, Any] | None = None,
        observation_age_s: float | None = 0.0,
        brain_late: bool = False,
        brain_error: str | None = None,
    ) -> dict[str, float]:
        """Turn a proposed action into the command to send; never raises for anything a brain returns.

        Args:
            action: the brain's ``{"<joint>.pos": value}`` targets (robot units). Anything else
                (``None``, a float, bytes, a list...) holds the arm as a ``brain_error``; a value
                that is not a finite real number holds its joint (``non_finite``).
            dt: seconds since the previous command (the control period), > 0.
            tick: control tick index, for the records.
            measured: measured joint positions ``(J,)`` or dict (robot units): the start on the
                first call, and the centre of the ``max_tracking_error`` bound.
            observation_age_s: age of the observation the action was computed from, seconds;
                ``None`` (no usable observation), NaN or a negative age count as stale.
            brain_late: the brain missed its deadline -> hold.
            brain_error: the brain raised (its message) -> hold.

        Returns:
            ``{"<joint>.pos": value}`` for every joint, finite, inside every limit (or, for a joint
            that started outside its limits, on the way back in at the per-tick bound).

        Raises:
            EmergencyStopped: after :meth:`trigger_estop`; nothing may be sent.
            RuntimeError: when neither :meth:`reset` nor ``measured`` gave a starting point.
            ValueError: ``dt`` is not a positive finite number of seconds.
        """
        self.check_estop(tick)
        measured_q = None if measured is None else self._as_vector(measured)
        if measured_q is not None and not np.all(np.isfinite(measured_q)):
            measured_q = None
        if self.last_safe is None:
            if measured_q is None:
                raise RuntimeError("SafetyLayer.filter called before reset() and without finite `measured`")
            self.reset(measured_q, tick=tick)
        assert self.last_safe is not None
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"dt must be a positive finite number of seconds, got {dt}")
        ctx = _TickContext(tick)
        hold = self.last_safe.copy()
        hold_reason = self._hold_reason(action, observation_age_s, brain_late, brain_error)
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

    def _hold_reason(
        self, action: Any, observation_age_s: Any, brain_late: bool, brain_error: str | None
    ) -> tuple[str, str] | None:
        """Why the whole arm must hold this tick, as ``(reason, detail)``, or None."""
        age = None if observation_age_s is None else real_number(observation_age_s)
        if age is None or not 0.0 <= age <= self.config.max_observation_age_s:  # NaN fails too
            if observation_age_s is None:
                return "stale_observation", "observation missing"
            if age is not None and math.isfinite(age) and age > 0:
                return "stale_observation", f"observation {age * 1e3:.0f} ms old"
            return "stale_observation", f"observation age {show_value(observation_age_s)} is not a valid age"
        if brain_error is not None:
            return "brain_error", str(brain_error)
        if brain_late:
            return "brain_late", "brain missed its deadline"
        problem = action_problem(action)
        if problem is not None:
            return "brain_error", problem
        return None

    # -- stages --------------------------------------------------------------------------------
    def _parse(self, action: Mapping[str, Any], hold: np.ndarray, ctx: _TickContext) -> np.ndarray:
        """The proposed targets ``(J,)``; a joint that is missing or not a finite real number holds."""
        target = hold.copy()
        missing = []
        for i, (key, name) in enumerate(zip(self.spec.action_keys, self.spec.joint_names, strict=True)):
            try:
                present = key in action
                raw = action[key] if present else None
            except Exception as exc:  # a mapping whose lookup raises
                detail = f"hold joint: reading it raised {type(exc).__name__}"
                self._record(ctx, Intervention(ctx.tick, "non_finite", name, None, hold[i], detail))
                continue
            if not present:
                missing.append(name)
                continue
            value = real_number(raw)
            if value is None or not math.isfinite(value):
                detail = "hold joint" if value is not None else f"hold joint: {show_value(raw)} is not a real number"
                self._record(ctx, Intervention(ctx.tick, "non_finite", name, value, hold[i], detail))
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
        # `target` is inside the limits and `limited` lies between it and `hold`, so `limited` is inside
        # them too, unless `hold` is outside (an arm that started there walks back). Clip guards rounding.
        limited = np.clip(limited, np.minimum(self.lower, hold), np.maximum(self.upper, hold))
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
        """Joint values as ``(J,)`` float64; NaN where one is missing or not a real number."""
        if isinstance(values, Mapping):
            return joint_vector(self.spec, values)
        items = np.asarray(values, dtype=object).reshape(-1)
        if items.shape[0] != self.spec.num_joints:
            raise ValueError(f"expected {self.spec.num_joints} joint values, got shape {items.shape}")
        reals = [real_number(v) for v in items]
        return np.array([math.nan if x is None else x for x in reals], dtype=np.float64)

    def _record(self, ctx: _TickContext, rec: Intervention) -> None:
        ctx.records.append(rec)

    def _flush(self, ctx: _TickContext) -> None:
        self.last_tick = ctx.records
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
