"""A fixed-rate control loop: robot -> brain -> safety -> robot, with a watchdog and clean shutdown.

Every tick (period ``1 / fps`` seconds):

1. read the robot's observation (a failure or a missing key makes this tick's observation stale);
2. if the brain is idle, hand it the observation in a worker thread and wait at most
   ``brain_deadline_s`` (and never past the end of the tick) for its answer. A brain that is still
   thinking, or that raised, makes the safety layer hold the last safe target; an answer that
   arrives after its tick may serve a later tick if no fresher one does and the safety layer finds
   the observation it was computed from fresh enough (``max_observation_age_s``);
3. filter the action through the :class:`~hardware.safety.SafetyLayer` and send what it allows;
4. optionally record the tick to a LeRobotDataset; sleep until the next tick.

It measures tick-start jitter, deadline misses, brain and tick timing, and stops cleanly on the
step/duration budget, an emergency stop, too many consecutive faults, ``Ctrl-C`` or any error:
the brain worker is abandoned, the dataset finalized, and the robot disconnected with torque off.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hardware.brain import Brain
from hardware.safety import EmergencyStopped, SafetyLayer

logger = logging.getLogger(__name__)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan, "mean": math.nan}
    a = np.asarray(values, dtype=np.float64)
    return {
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
        "mean": float(a.mean()),
    }


@dataclass
class LoopReport:
    """What a run of the control loop measured. Times in milliseconds unless named ``_s``.

    Attributes:
        ticks: control ticks executed.
        commands_sent: ticks whose command reached ``robot.send_action``.
        duration_s: wall-clock time of the loop, seconds.
        fps_target: requested rate, Hz; ``fps_achieved``: ticks / duration.
        deadline_misses: ticks whose command went out after the next tick was due.
        skipped_ticks: scheduled ticks dropped because the loop fell a whole period behind.
        jitter_ms: lateness of each tick start against its schedule (p50, p99, max, mean).
        period_ms: time between consecutive tick starts.
        tick_ms: work time per tick (observation + brain wait + safety + send).
        brain_ms: duration of each completed brain call (including late ones).
        observation_ms: duration of ``get_observation``.
        brain_late: ticks that held because the brain had no answer in time.
        brain_late_results_used: ticks that used an answer computed from an earlier observation
            (a call that missed its tick but finished before the next; the safety layer checks its age).
        brain_errors / observation_errors / send_errors: fault counts.
        stop_reason: why the loop ended (``"steps"``, ``"duration"``, ``"emergency_stop"``, ...).
        safety: :meth:`SafetyLayer.summary`.
        events: the first faults, as ``{"tick", "kind", "detail"}`` dicts.
    """

    ticks: int = 0
    commands_sent: int = 0
    duration_s: float = 0.0
    fps_target: float = 0.0
    fps_achieved: float = 0.0
    deadline_misses: int = 0
    skipped_ticks: int = 0
    jitter_ms: dict[str, float] = field(default_factory=dict)
    period_ms: dict[str, float] = field(default_factory=dict)
    tick_ms: dict[str, float] = field(default_factory=dict)
    brain_ms: dict[str, float] = field(default_factory=dict)
    observation_ms: dict[str, float] = field(default_factory=dict)
    brain_late: int = 0
    brain_late_results_used: int = 0
    brain_errors: int = 0
    observation_errors: int = 0
    send_errors: int = 0
    stop_reason: str = ""
    shutdown_errors: list[str] = field(default_factory=list)
    safety: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN statistics become ``None``)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        return clean(asdict(self))


# Time kept free at the end of a tick for safety + send_action, and the least a brain is given.
_SEND_MARGIN_S = 0.003
_MIN_BRAIN_WAIT_S = 0.002


@dataclass
class _BrainResult:
    action: dict[str, float] | None
    error: str | None
    obs_time: float  # perf_counter() when the observation it answers was read


class _BrainRunner:
    """Runs ``brain.act`` in one worker thread so a slow brain cannot stall the loop."""

    def __init__(self, brain: Brain) -> None:
        self.brain = brain
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="brain")
        self.pending: Future | None = None
        self.pending_obs_time = 0.0
        self.durations_ms: list[float] = []

    @property
    def busy(self) -> bool:
        return self.pending is not None and not self.pending.done()

    def _timed(self, observation: dict[str, Any]) -> dict[str, float]:
        t0 = time.perf_counter()
        try:
            return self.brain.act(observation)
        finally:
            self.durations_ms.append((time.perf_counter() - t0) * 1e3)

    def submit(self, observation: dict[str, Any], obs_time: float) -> None:
        self.pending = self._pool.submit(self._timed, observation)
        self.pending_obs_time = obs_time

    def take(self, timeout: float = 0.0) -> _BrainResult | None:
        """The finished call's result (waiting up to ``timeout`` s), or None if it is still running."""
        if self.pending is None:
            return None
        try:
            action = self.pending.result(timeout=timeout)
            result = _BrainResult(action, None, self.pending_obs_time)
        except TimeoutError:
            return None
        except Exception as exc:
            result = _BrainResult(None, f"{type(exc).__name__}: {exc}", self.pending_obs_time)
        self.pending = None
        return result

    def shutdown(self) -> None:
        # Never wait for a hung brain: the worker thread is abandoned.
        self._pool.shutdown(wait=False, cancel_futures=True)


class ControlLoop:
    """Drive ``robot`` with ``brain`` through ``safety`` at a fixed rate.

    Args:
        robot: a connected ``lerobot.robots.robot.Robot`` (a real follower or the twin).
        brain: anything implementing :class:`~hardware.brain.Brain`.
        safety: the safety layer for this robot's spec.
        fps: control rate, Hz (default: the spec's).
        brain_deadline_s: how long a tick waits for the brain once it has the observation, seconds
            (default: 80 % of a period; never past the end of the tick, less a few ms to send).
            A call that takes longer is late: the arm holds, and its answer, once it arrives, may
            serve the next tick if the safety layer finds its observation fresh enough.
        max_consecutive_faults: stop after this many ticks in a row without a usable observation
            or without a successful send.
        recorder: optional :class:`~hardware.recorder.EpisodeRecorder`; closed at shutdown.
        task: the instruction, recorded as each frame's task.
        on_tick: optional callback ``(tick, observation_or_None, command_or_None)`` for UIs/tests.
        disconnect_on_exit: disconnect the robot (torque off) when the loop ends.
    """

    def __init__(
        self,
        robot: Any,
        brain: Brain,
        safety: SafetyLayer,
        fps: float | None = None,
        brain_deadline_s: float | None = None,
        max_consecutive_faults: int = 30,
        recorder: Any = None,
        task: str = "",
        on_tick: Callable[[int, dict | None, dict | None], None] | None = None,
        disconnect_on_exit: bool = True,
        max_events: int = 200,
    ) -> None:
        self.robot = robot
        self.brain = brain
        self.safety = safety
        self.spec = safety.spec
        self.fps = float(fps or self.spec.fps)
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0 Hz, got {fps}")
        self.period = 1.0 / self.fps
        self.brain_deadline_s = float(brain_deadline_s if brain_deadline_s is not None else 0.8 * self.period)
        if not self.brain_deadline_s > 0:
            raise ValueError(f"brain_deadline_s must be > 0 s, got {brain_deadline_s}")
        self.max_consecutive_faults = int(max_consecutive_faults)
        self.recorder = recorder
        self.task = task
        self.on_tick = on_tick
        self.disconnect_on_exit = disconnect_on_exit
        self.max_events = max_events
        self._stop = threading.Event()
        self._stop_reason = ""
        self.report = LoopReport(fps_target=self.fps)

    # -- control -------------------------------------------------------------------------------
    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask the loop to end after the current tick (thread- and signal-safe)."""
        self._stop_reason = reason
        self._stop.set()

    def _event(self, tick: int, kind: str, detail: str) -> None:
        logger.warning("tick %d: %s: %s", tick, kind, detail)
        if len(self.report.events) < self.max_events:
            self.report.events.append({"tick": tick, "kind": kind, "detail": detail})

    def _valid_observation(self, obs: Any) -> str | None:
        """None when ``obs`` has every joint and camera key, else what is missing."""
        if not isinstance(obs, dict):
            return f"observation is a {type(obs).__name__}, not a dict"
        needed = list(getattr(self.robot, "observation_features", {}) or self.spec.action_keys)
        missing = [k for k in needed if k not in obs or obs[k] is None]
        if missing:
            return f"observation lacks {missing}"
        joints = np.asarray([obs[k] for k in self.spec.action_keys], dtype=np.float64)
        if not np.all(np.isfinite(joints)):
            return "observation has non-finite joint positions"
        return None

    def _read(self, tick: int, timings: list[float]) -> dict[str, Any] | None:
        t0 = time.perf_counter()
        try:
            obs = self.robot.get_observation()
        except Exception as exc:  # serial timeout, camera failure, disconnected device...
            self.report.observation_errors += 1
            self._event(tick, "observation_error", f"{type(exc).__name__}: {exc}")
            return None
        finally:
            timings.append((time.perf_counter() - t0) * 1e3)
        problem = self._valid_observation(obs)
        if problem is not None:
            self.report.observation_errors += 1
            self._event(tick, "observation_invalid", problem)
            return None
        return obs

    # -- the loop ------------------------------------------------------------------------------
    def run(self, steps: int | None = None, duration_s: float | None = None, show_progress: bool = False) -> LoopReport:
        """Run until ``steps`` ticks or ``duration_s`` seconds (or a stop); returns the report.

        With neither, it runs until :meth:`request_stop`, an emergency stop, too many faults or Ctrl-C.

        The loop always shuts down cleanly: brain worker abandoned, recorder closed, robot
        disconnected with torque disabled (when ``disconnect_on_exit``). ``KeyboardInterrupt``
        ends it with ``stop_reason="interrupted"``; any other error is re-raised after shutdown.
        """
        rep = self.report
        runner = _BrainRunner(self.brain)
        obs_ms: list[float] = []
        tick_ms: list[float] = []
        jitter: list[float] = []
        starts: list[float] = []
        progress = None
        if show_progress:
            from tqdm import tqdm

            progress = tqdm(total=steps, desc="control loop", unit="tick", leave=False)
        t_start = time.perf_counter()
        try:
            first = None
            for _ in range(self.max_consecutive_faults):
                first = self._read(-1, [])  # start-up reads (renderer creation...) are not timed
                if first is not None:
                    break
            if first is None:
                rep.stop_reason = "no_observation"
                return rep
            self.safety.reset(first)
            last_obs_time = time.perf_counter()
            faults = 0
            tick = 0
            t_start = time.perf_counter()
            next_t = t_start
            while True:
                if steps is not None and tick >= steps:
                    rep.stop_reason = "steps"
                    break
                if duration_s is not None and time.perf_counter() - t_start >= duration_s:
                    rep.stop_reason = "duration"
                    break
                if self.safety.estopped:
                    raise EmergencyStopped(self.safety.estop_reason or "emergency stop")
                if self._stop.is_set():
                    rep.stop_reason = self._stop_reason or "stop requested"
                    break
                # -- wait for this tick's slot
                now = time.perf_counter()
                if now < next_t:
                    time.sleep(next_t - now)
                t0 = time.perf_counter()
                jitter.append((t0 - next_t) * 1e3)
                starts.append(t0)
                # -- observe
                obs = self._read(tick, obs_ms)
                if obs is not None:
                    last_obs_time = time.perf_counter()
                # -- think (with a watchdog). A call that missed an earlier deadline and has
                # finished since is a fallback; a fresh call on this tick's observation wins if it
                # answers in time. The safety layer judges the age of whichever is used.
                action, late, error = None, False, None
                action_obs_time = 0.0
                fallback = runner.take()
                if fallback is not None and fallback.error is not None:
                    rep.brain_errors += 1
                    self._event(tick, "brain_error", fallback.error)
                    error, fallback = fallback.error, None
                submitted = obs is not None and not runner.busy
                if submitted:
                    runner.submit(obs, last_obs_time)
                    remaining = t0 + self.period - _SEND_MARGIN_S - time.perf_counter()
                    wait = max(_MIN_BRAIN_WAIT_S, min(self.brain_deadline_s, remaining))
                    fresh = runner.take(timeout=wait)
                    if fresh is not None and fresh.error is not None:
                        rep.brain_errors += 1
                        self._event(tick, "brain_error", fresh.error)
                        error = fresh.error
                    elif fresh is not None:
                        action, action_obs_time, error = fresh.action, fresh.obs_time, None
                if action is None and fallback is not None and obs is not None:
                    action, action_obs_time, error = fallback.action, fallback.obs_time, None
                    rep.brain_late_results_used += 1
                if action is None and error is None and obs is not None:
                    late = True
                    rep.brain_late += 1
                    if submitted:  # log the tick it started thinking, not every tick it keeps thinking
                        self._event(tick, "brain_late", f"no answer within {wait * 1e3:.0f} ms")
                # -- make safe
                age = None if obs is None else time.perf_counter() - (action_obs_time or last_obs_time)
                command = self.safety.filter(
                    action,
                    self.period,
                    tick=tick,
                    measured=None if obs is None else self.spec.action_to_vector(obs),
                    observation_age_s=age,
                    brain_late=late,
                    brain_error=error,
                )
                # -- act
                sent = None
                try:
                    sent = self.robot.send_action(command)
                    rep.commands_sent += 1
                except Exception as exc:
                    rep.send_errors += 1
                    self._event(tick, "send_error", f"{type(exc).__name__}: {exc}")
                healthy = obs is not None and sent is not None and error is None
                faults = 0 if healthy else faults + 1
                if self.recorder is not None and obs is not None and sent is not None:
                    self.recorder.add(obs, command | dict(sent), self.task)  # what reached the motors
                if self.on_tick is not None:
                    self.on_tick(tick, obs, command if sent is not None else None)
                t_end = time.perf_counter()
                tick_ms.append((t_end - t0) * 1e3)
                tick += 1
                rep.ticks = tick
                if progress is not None:
                    progress.update(1)
                # -- schedule
                next_t += self.period
                if t_end > next_t:
                    rep.deadline_misses += 1
                    if t_end > next_t + self.period:  # a whole period behind: re-sync, do not burst
                        skipped = int((t_end - next_t) // self.period)
                        rep.skipped_ticks += skipped
                        next_t += skipped * self.period
                if faults >= self.max_consecutive_faults:
                    rep.stop_reason = "faults"
                    self._event(tick, "stop", f"{faults} consecutive faulty ticks (observation, brain or send)")
                    break
        except EmergencyStopped as exc:
            rep.stop_reason = "emergency_stop"
            self._event(rep.ticks, "emergency_stop", str(exc))
        except KeyboardInterrupt:
            rep.stop_reason = "interrupted"
            self._event(rep.ticks, "interrupted", "Ctrl-C")
        except BaseException as exc:
            rep.stop_reason = f"error: {type(exc).__name__}: {exc}"
            raise
        finally:
            rep.duration_s = time.perf_counter() - t_start
            rep.fps_achieved = rep.ticks / rep.duration_s if rep.duration_s > 0 else 0.0
            rep.jitter_ms = _percentiles(jitter)
            rep.period_ms = _percentiles(list(np.diff(starts) * 1e3)) if len(starts) > 1 else _percentiles([])
            rep.tick_ms = _percentiles(tick_ms)
            rep.brain_ms = _percentiles(runner.durations_ms)
            rep.observation_ms = _percentiles(obs_ms)
            if progress is not None:
                progress.close()
            self._shutdown(runner)
            rep.safety = self.safety.summary()
        return rep

    def _shutdown(self, runner: _BrainRunner) -> None:
        """Abandon the brain, finalize the recording, disconnect with torque off. Never raises."""
        runner.shutdown()
        if self.recorder is not None:
            try:
                self.recorder.close()
            except Exception as exc:
                self.report.shutdown_errors.append(f"recorder: {type(exc).__name__}: {exc}")
                logger.exception("closing the recording failed")
        if self.disconnect_on_exit:
            err = safe_disconnect(self.robot)
            if err:
                self.report.shutdown_errors.append(err)


def safe_disconnect(robot: Any) -> str | None:
    """Disable torque and disconnect a LeRobot robot; returns an error message or None.

    For the SO/Koch followers torque is disabled explicitly on the motor bus first (in case the
    config's ``disable_torque_on_disconnect`` is off), then ``robot.disconnect()`` releases the
    port and cameras. A robot that is already disconnected is left alone.
    """
    errors = []
    bus = getattr(robot, "bus", None)
    if bus is not None and getattr(bus, "is_connected", False):
        try:
            bus.disable_torque()
        except Exception as exc:
            errors.append(f"disable_torque: {type(exc).__name__}: {exc}")
    try:
        if getattr(robot, "is_connected", True):
            robot.disconnect()
        elif bus is not None and getattr(bus, "is_connected", False):
            bus.disconnect(disable_torque=True)  # e.g. a camera died: still release the motors
    except Exception as exc:
        errors.append(f"disconnect: {type(exc).__name__}: {exc}")
    if errors:
        logger.error("shutdown problems: %s", errors)
        return "; ".join(errors)
    return None
