"""A fixed-rate control loop: robot -> brain -> safety -> robot, with a watchdog and clean shutdown.

Every tick (period ``1 / fps`` seconds):

1. read the robot's observation (a failure or a missing key makes this tick's observation stale);
2. if the brain is idle, hand it the observation in a worker thread and wait at most
   ``brain_deadline_s`` (and never past the end of the tick) for its answer. A brain that is still
   thinking, that raised or that returned something malformed (not a dict, or joints that are not
   finite real numbers) makes the safety layer hold (the arm, or those joints); an answer that
   arrives after its tick may serve a later tick if no fresher one does and the safety layer finds
   the observation it was computed from fresh enough (``max_observation_age_s``);
3. filter the action through the :class:`~hardware.safety.SafetyLayer` and send what it allows,
   both under the safety layer's e-stop lock (no command goes out after an e-stop);
4. optionally record the tick to a LeRobotDataset; sleep until the next tick.

Its settings (``fps``, ``brain_deadline_s``, ``max_consecutive_faults``, ``steps``,
``duration_s``...) are checked up front: anything that is not a finite number in range raises
:class:`~hardware.safety.SettingError`.

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
from hardware.safety import (
    MALFORMED_OUTPUT_REASONS,
    EmergencyStopped,
    SafetyLayer,
    action_problem,
    check_count,
    check_real,
    joint_vector,
)

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
        brain_errors: brain calls that raised or returned something that is not a mapping (held).
        brain_bad_outputs: ticks whose action was a mapping with a missing joint or a joint that is
            not a finite real number (those joints held).
        observation_errors / send_errors: fault counts.
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
    brain_bad_outputs: int = 0
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

# The control rates the loop accepts, Hz.
MIN_FPS = 1.0
MAX_FPS = 1000.0


@dataclass
class _BrainResult:
    action: Any  # a mapping when error is None
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
        """The finished call's result (waiting up to ``timeout`` s), or None if it is still running.

        A call that raised, or returned something that is not a mapping, comes back with ``error`` set.
        """
        if self.pending is None:
            return None
        try:
            action = self.pending.result(timeout=timeout)
            problem = action_problem(action)  # None, a float, bytes...: an error, like raising
            result = _BrainResult(action if problem is None else None, problem, self.pending_obs_time)
        except TimeoutError:
            return None
        except Exception as exc:
            result = _BrainResult(None, f"{type(exc).__name__}: {exc}", self.pending_obs_time)
        self.pending = None
        return result

    def shutdown(self) -> None:
        # Never wait for a hung brain: the worker thread is abandoned.
        self._pool.shutdown(wait=False, cancel_futures=True)


def check_loop_settings(
    fps: Any, brain_deadline_s: Any = None, max_consecutive_faults: Any = 30, max_events: Any = 200
) -> tuple[float, float, int, int]:
    """The :class:`ControlLoop` settings, checked: ``(fps, brain_deadline_s, max_consecutive_faults, max_events)``.

    ``fps`` in [1, 1000] Hz; ``brain_deadline_s`` finite and > 0 s (``None``: 80 % of a period);
    ``max_consecutive_faults`` a whole number >= 1; ``max_events`` a whole number >= 0. A command
    line can call this (and :func:`check_run_budget`) before it connects to a robot.

    Raises:
        SettingError: naming the first setting that is not a finite number in its range.
    """
    rate = check_real("fps", fps, low=MIN_FPS, low_inclusive=True, high=MAX_FPS, unit="Hz")
    deadline = 0.8 / rate if brain_deadline_s is None else brain_deadline_s
    return (
        rate,
        check_real("brain_deadline_s", deadline, low=0.0, unit="s"),
        check_count("max_consecutive_faults", max_consecutive_faults, low=1),
        check_count("max_events", max_events, low=0),
    )


def check_run_budget(steps: Any, duration_s: Any) -> tuple[int | None, float | None]:
    """``(steps, duration_s)`` of :meth:`ControlLoop.run` when valid, else :class:`SettingError`.

    ``steps``: ``None`` or a whole number >= 0 of ticks; ``duration_s``: ``None`` or a finite
    number of seconds > 0 (use ``None``, not infinity, to run until stopped).
    """
    n = None if steps is None else check_count("steps", steps, low=0)
    d = None if duration_s is None else check_real("duration_s", duration_s, low=0.0, unit="s")
    return n, d


@dataclass
class _Run:
    """The state of one :meth:`ControlLoop.run`: the brain worker, the clock, counters and timings (ms)."""

    runner: _BrainRunner
    steps: int | None = None
    duration_s: float | None = None
    progress: Any = None
    t_start: float = field(default_factory=time.perf_counter)
    next_t: float = 0.0  # perf_counter() when the next tick is due
    tick: int = 0
    faults: int = 0  # consecutive faulty ticks
    last_obs_time: float = 0.0  # perf_counter() when the last usable observation was read
    obs_ms: list[float] = field(default_factory=list)
    tick_ms: list[float] = field(default_factory=list)
    jitter_ms: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)


@dataclass
class _Thought:
    """What the brain gave for one tick: an action (any object) with the time of its observation."""

    action: Any = None
    obs_time: float = 0.0
    late: bool = False
    error: str | None = None


class ControlLoop:
    """Drive ``robot`` with ``brain`` through ``safety`` at a fixed rate.

    Args:
        robot: a connected ``lerobot.robots.robot.Robot`` (a real follower or the twin).
        brain: anything implementing :class:`~hardware.brain.Brain`.
        safety: the safety layer for this robot's spec.
        fps: control rate, Hz, in [1, 1000] (default: the spec's).
        brain_deadline_s: how long a tick waits for the brain once it has the observation, seconds,
            finite and > 0 (default: 80 % of a period; never past the end of the tick, less a few ms
            to send). A call that takes longer is late: the arm holds, and its answer, once it
            arrives, may serve the next tick if the safety layer finds its observation fresh enough.
        max_consecutive_faults: stop after this many ticks in a row (a whole number >= 1) without a
            usable observation, with a brain that raised or gave a malformed output, or without a
            successful send.
        recorder: optional :class:`~hardware.recorder.EpisodeRecorder`; closed at shutdown.
        task: the instruction, recorded as each frame's task.
        on_tick: optional callback ``(tick, observation_or_None, command_or_None)`` for UIs/tests.
        disconnect_on_exit: disconnect the robot (torque off) when the loop ends.
        max_events: keep at most this many fault events in the report (a whole number >= 0).

    Raises:
        SettingError: a setting that is not a finite number in its range (named in the message).
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
        self.fps, self.brain_deadline_s, self.max_consecutive_faults, self.max_events = check_loop_settings(
            self.spec.fps if fps is None else fps, brain_deadline_s, max_consecutive_faults, max_events
        )
        self.period = 1.0 / self.fps
        self.recorder = recorder
        self.task = task
        self.on_tick = on_tick
        self.disconnect_on_exit = disconnect_on_exit
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
        """None when ``obs`` has every joint and camera key and real, finite joints, else what is wrong."""
        if not isinstance(obs, dict):
            return f"observation is a {type(obs).__name__}, not a dict"
        needed = list(getattr(self.robot, "observation_features", {}) or self.spec.action_keys)
        missing = [k for k in needed if k not in obs or obs[k] is None]
        if missing:
            return f"observation lacks {missing}"
        if not np.all(np.isfinite(joint_vector(self.spec, obs))):
            return "observation has joint positions that are not finite real numbers"
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
        ends it with ``stop_reason="interrupted"``; any other error (including a
        :class:`SettingError` for a bad ``steps`` / ``duration_s``) is re-raised after shutdown.
        """
        rep = self.report
        state = _Run(_BrainRunner(self.brain))
        try:
            state.steps, state.duration_s = check_run_budget(steps, duration_s)
            if show_progress:
                from tqdm import tqdm

                state.progress = tqdm(total=state.steps, desc="control loop", unit="tick", leave=False)
            rep.stop_reason = self._drive(state) if self._start(state) else "no_observation"
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
            self._finish(state)
        return rep

    def _start(self, state: _Run) -> bool:
        """Read a first observation (untimed: renderers start up) and reset the safety layer there."""
        first = None
        for _ in range(self.max_consecutive_faults):
            first = self._read(-1, [])
            if first is not None:
                break
        if first is None:
            return False
        self.safety.reset(first)
        state.last_obs_time = time.perf_counter()
        state.t_start = state.next_t = time.perf_counter()
        return True

    def _drive(self, state: _Run) -> str:
        """Tick until a budget is spent, a stop is requested or faults pile up; returns why it stopped.

        Raises:
            EmergencyStopped: when the emergency stop has been triggered.
        """
        while True:
            if state.steps is not None and state.tick >= state.steps:
                return "steps"
            if state.duration_s is not None and time.perf_counter() - state.t_start >= state.duration_s:
                return "duration"
            self.safety.check_estop(state.tick)
            if self._stop.is_set():
                return self._stop_reason or "stop requested"
            self._tick(state)
            if state.faults >= self.max_consecutive_faults:
                detail = f"{state.faults} consecutive faulty ticks (observation, brain or send)"
                self._event(state.tick, "stop", detail)
                return "faults"

    def _tick(self, state: _Run) -> None:
        """One tick: wait for its slot, observe, think, filter and send, then the bookkeeping."""
        now = time.perf_counter()
        if now < state.next_t:
            time.sleep(state.next_t - now)
        t0 = time.perf_counter()
        state.jitter_ms.append((t0 - state.next_t) * 1e3)
        state.starts.append(t0)
        obs = self._read(state.tick, state.obs_ms)
        if obs is not None:
            state.last_obs_time = time.perf_counter()
        thought = self._think(state, obs, t0)
        command, sent = self._filter_and_send(state, obs, thought)
        self._bookkeep(state, obs, thought, command, sent, t0)

    def _brain_error(self, tick: int, error: str) -> None:
        self.report.brain_errors += 1
        self._event(tick, "brain_error", error)

    def _think(self, state: _Run, obs: dict[str, Any] | None, t0: float) -> _Thought:
        """The brain's answer for this tick, with a watchdog.

        A call that missed an earlier deadline and has finished since is a fallback; a fresh call
        on this tick's observation wins if it answers in time. The safety layer judges the age of
        whichever is used. A call that raised, or returned something that is not a mapping, is an
        error (the arm holds).
        """
        rep, runner, tick = self.report, state.runner, state.tick
        thought = _Thought()
        fallback = runner.take()
        if fallback is not None and fallback.error is not None:
            self._brain_error(tick, fallback.error)
            thought.error, fallback = fallback.error, None
        submitted = obs is not None and not runner.busy
        wait = 0.0
        if submitted:
            runner.submit(obs, state.last_obs_time)
            remaining = t0 + self.period - _SEND_MARGIN_S - time.perf_counter()
            wait = max(_MIN_BRAIN_WAIT_S, min(self.brain_deadline_s, remaining))
            fresh = runner.take(timeout=wait)
            if fresh is not None and fresh.error is not None:
                self._brain_error(tick, fresh.error)
                thought.error = fresh.error
            elif fresh is not None:
                thought = _Thought(fresh.action, fresh.obs_time)
        if thought.action is None and fallback is not None and obs is not None:
            thought = _Thought(fallback.action, fallback.obs_time)
            rep.brain_late_results_used += 1
        if thought.action is None and thought.error is None and obs is not None:
            thought.late = True
            rep.brain_late += 1
            if submitted:  # log the tick it started thinking, not every tick it keeps thinking
                self._event(tick, "brain_late", f"no answer within {wait * 1e3:.0f} ms")
        return thought

    def _filter_and_send(
        self, state: _Run, obs: dict[str, Any] | None, thought: _Thought
    ) -> tuple[dict[str, float], dict[str, Any] | None]:
        """Filter the action through the safety layer and send it; returns ``(command, sent or None)``.

        The e-stop check, the filter and the send happen under the safety layer's e-stop lock, so an
        e-stop from another thread cannot fall between them: no command goes out after it.

        Raises:
            EmergencyStopped: the e-stop has been triggered; nothing was sent.
        """
        age = None if obs is None else time.perf_counter() - (thought.obs_time or state.last_obs_time)
        measured = None if obs is None else joint_vector(self.spec, obs)
        with self.safety.estop_lock:
            command = self.safety.filter(
                thought.action,
                self.period,
                tick=state.tick,
                measured=measured,
                observation_age_s=age,
                brain_late=thought.late,
                brain_error=thought.error,
            )
            self.safety.check_estop(state.tick)  # a signal handler on this thread may have set it meanwhile
            try:
                sent = self.robot.send_action(command)
            except Exception as exc:
                self.report.send_errors += 1
                self._event(state.tick, "send_error", f"{type(exc).__name__}: {exc}")
                return command, None
        self.report.commands_sent += 1
        return command, sent

    def _bookkeep(
        self,
        state: _Run,
        obs: dict[str, Any] | None,
        thought: _Thought,
        command: dict[str, float],
        sent: dict[str, Any] | None,
        t0: float,
    ) -> None:
        """Count faults, record the tick, call ``on_tick``, time it and schedule the next one."""
        rep = self.report
        bad = [r for r in self.safety.last_tick if r.reason in MALFORMED_OUTPUT_REASONS]
        if bad and thought.error is None:  # the output was a mapping, but some joints were unusable
            rep.brain_bad_outputs += 1
            self._event(state.tick, "brain_output", "; ".join(f"{r.reason} {r.joint or 'arm'}" for r in bad))
        healthy = obs is not None and sent is not None and thought.error is None and not bad
        state.faults = 0 if healthy else state.faults + 1
        if self.recorder is not None and obs is not None and sent is not None:
            self.recorder.add(obs, command | dict(sent), self.task)  # what reached the motors
        if self.on_tick is not None:
            self.on_tick(state.tick, obs, command if sent is not None else None)
        t_end = time.perf_counter()
        state.tick_ms.append((t_end - t0) * 1e3)
        state.tick += 1
        rep.ticks = state.tick
        if state.progress is not None:
            state.progress.update(1)
        state.next_t += self.period
        if t_end > state.next_t:
            rep.deadline_misses += 1
            if t_end > state.next_t + self.period:  # a whole period behind: re-sync, do not burst
                skipped = int((t_end - state.next_t) // self.period)
                rep.skipped_ticks += skipped
                state.next_t += skipped * self.period

    def _finish(self, state: _Run) -> None:
        """Fill in the report's statistics and shut down (brain, recorder, robot). Never raises."""
        rep = self.report
        rep.duration_s = time.perf_counter() - state.t_start
        rep.fps_achieved = rep.ticks / rep.duration_s if rep.duration_s > 0 else 0.0
        rep.jitter_ms = _percentiles(state.jitter_ms)
        rep.period_ms = _percentiles(list(np.diff(state.starts) * 1e3) if len(state.starts) > 1 else [])
        rep.tick_ms = _percentiles(state.tick_ms)
        rep.brain_ms = _percentiles(state.runner.durations_ms)
        rep.observation_ms = _percentiles(state.obs_ms)
        if state.progress is not None:
            state.progress.close()
        self._shutdown(state.runner)
        rep.safety = self.safety.summary()

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
