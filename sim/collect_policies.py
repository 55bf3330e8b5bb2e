"""Collection policies of the data engine: who acts in a collected episode, and which label is kept.

``latent-vla collect policy=<name>`` picks one. Every policy returns a :class:`Decision` per control
tick: the *executed* joint targets (recorded as ``action``, so dynamics learn the transitions that
really happened), the scripted expert's action at the same state when it can give one (recorded as
``expert.action``, the behaviour-cloning label) and the ``source`` code of the frame
(``sim.dataset_features.SOURCES``).

========  ==========================================================  ==============================
policy    executed action                                             label (``expert.action``)
========  ==========================================================  ==============================
expert    the expert's (plus i.i.d. Gaussian ``noise`` if set)         the clean expert action
dart      the expert's plus correlated noise (DART, Laskey et al.      the clean expert action: the
          2017): an Ornstein-Uhlenbeck process of std ``noise`` x      correction back toward its
          each joint's range, correlation time ``noise_tau``           plan at the visited state
explore   the expert's until a random branch point, then a correlated  the expert's action at the
          random walk of joint targets for 0.5-1.5 s, then back to     visited state (its commanded
          the expert (or another walk)                                 point re-synced to the arm)
brain     a trained brain (run directory or bundle, any planner)       the same (DAgger)
random    uniform random joint targets held half a second             none
========  ==========================================================  ==============================

Experts integrate their own commanded point, so while something else moves the arm their plan can
drift away from it; :data:`LOST_GAP` bounds that drift (see ``Expert.resync``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from latent_vla.base.robot_spec import RobotSpec
from sim.observation import robot_observation

POLICIES = ("expert", "dart", "explore", "brain", "random")
DEFAULT_NOISE: dict[str, float] = {"expert": 0.0, "dart": 0.01, "explore": 0.3, "brain": 0.0, "random": 0.0}
"""``noise`` when the config leaves it unset: a fraction of each joint's range (for ``explore`` the
std of the random walk's velocity, per second). DART's 0.01 keeps the executed episodes mostly
successful: measured on 12 episodes each (seeds 100000+), push 67 % at 0.01, 0 % at 0.02 and 0.03 (0 of
74); pick 100 % at 0.01, 8 % at 0.03; the clean expert 99-100 %."""

LOST_GAP = 0.03
"""Metres between the expert's commanded point and the measured site beyond which the expert
re-plans from the arm (a clean expert's command leads the arm by at most ~2 cm here)."""


@dataclass(frozen=True)
class Decision:
    """One control tick of a collection policy.

    Attributes:
        executed: ``(J,)`` float32 joint targets sent to the arm, robot units, inside the limits.
        label: ``(J,)`` the expert's action at this state (robot units), or None without one.
        source: a ``sim.dataset_features.SOURCES`` name.
    """

    executed: np.ndarray
    label: np.ndarray | None
    source: str


class OUNoise:
    """Discretized Ornstein-Uhlenbeck noise: an AR(1) process with stationary std ``std`` per entry.

    Args:
        std: ``(J,)`` stationary standard deviation (any unit; the caller's).
        tau: correlation time, seconds; 0 gives i.i.d. Gaussian noise.
        dt: sampling period, seconds.
        rng: the generator (the episode's).
    """

    def __init__(self, std: np.ndarray, tau: float, dt: float, rng: np.random.Generator) -> None:
        self.std = np.asarray(std, dtype=np.float64)
        self.decay = float(np.exp(-dt / tau)) if tau > 0 else 0.0
        self.rng = rng
        self.x = self.rng.normal(0.0, 1.0, self.std.shape) * self.std

    def sample(self) -> np.ndarray:
        """The next value, ``(J,)``."""
        fresh = self.rng.normal(0.0, 1.0, self.std.shape) * self.std
        self.x = self.decay * self.x + np.sqrt(1.0 - self.decay**2) * fresh
        return self.x.copy()


class CollectionPolicy(ABC):
    """Acts in one env for whole episodes: :meth:`reset` after ``env.reset``, then :meth:`act` per tick.

    Args:
        spec: the arm (limits, fps).
        expert: the task's scripted expert (``sim.experts``), or None (``random``).
        noise: fraction of each joint's range (see :data:`DEFAULT_NOISE`).
        noise_tau: correlation time of the noise, seconds.
    """

    def __init__(self, spec: RobotSpec, expert: Any | None, noise: float, noise_tau: float) -> None:
        self.spec = spec
        self.expert = expert
        self.noise = float(noise)
        self.noise_tau = float(noise_tau)
        self.span = spec.upper - spec.lower  # (J,) robot units
        self.dt = 1.0 / float(spec.fps)
        self.rng = np.random.default_rng()
        self.t = 0

    def reset(self, seed: int, instruction: str) -> None:
        """New episode with seed ``seed`` (the env's) and its instruction."""
        self.rng = np.random.default_rng(seed)
        self.t = 0
        if self.expert is not None:
            self.expert.reset(seed)

    @abstractmethod
    def act(self, obs: dict[str, Any]) -> Decision:
        """The decision for the env observation ``obs`` (``images``, ``state``, ``instruction``)."""

    def clip(self, action: np.ndarray) -> np.ndarray:
        """``action`` inside the joint limits, float32 ``(J,)``."""
        return np.clip(action, self.spec.lower, self.spec.upper).astype(np.float32)

    def label(self, obs: dict[str, Any]) -> np.ndarray:
        """The expert's action at the visited state, re-planned from the arm when it drifted off."""
        self.expert.resync(LOST_GAP)
        return self.clip(self.expert.act(obs))


class ExpertPolicy(CollectionPolicy):
    """The scripted expert; with ``noise > 0`` its executed actions carry i.i.d. Gaussian noise."""

    def act(self, obs: dict[str, Any]) -> Decision:
        label = self.clip(self.expert.act(obs))
        action = label.astype(np.float64)
        if self.noise > 0:
            action = action + self.rng.normal(0.0, self.noise, size=action.shape) * self.span
        return Decision(self.clip(action), label, "expert")


class DartPolicy(CollectionPolicy):
    """DART: execute the expert's action plus correlated noise; the clean expert action is the label."""

    def reset(self, seed: int, instruction: str) -> None:
        super().reset(seed, instruction)
        self.ou = OUNoise(self.noise * self.span, self.noise_tau, self.dt, self.rng)

    def act(self, obs: dict[str, Any]) -> Decision:
        label = self.label(obs)
        return Decision(self.clip(label + self.ou.sample()), label, "dart")


class ExplorePolicy(CollectionPolicy):
    """Expert until a random branch point, then a correlated random walk of joint targets, and again.

    The walk moves the last executed targets with an Ornstein-Uhlenbeck velocity of std ``noise`` x
    range per second (reflected at the joint limits). A walk lasts ``segment_s`` seconds; it is then
    followed by the expert with probability ``return_prob`` (for about ``expert_s`` seconds until the
    next branch), else by another walk. The first branch point is uniform in the first ``first_branch``
    fraction of the episode.
    """

    segment_s = (0.5, 1.5)
    expert_s = (0.5, 2.0)
    return_prob = 0.6
    first_branch = 0.6

    def __init__(self, spec: RobotSpec, expert: Any, noise: float, noise_tau: float, episode_length: int) -> None:
        super().__init__(spec, expert, noise, noise_tau)
        self.episode_length = int(episode_length)

    def reset(self, seed: int, instruction: str) -> None:
        super().reset(seed, instruction)
        self.exploring = False
        self.switch_at = int(self.rng.integers(0, max(1, int(self.first_branch * self.episode_length)) + 1))
        self.velocity = OUNoise(self.noise * self.span, self.noise_tau, self.dt, self.rng)
        self.last: np.ndarray | None = None

    def _steps(self, seconds: tuple[float, float]) -> int:
        return max(1, int(round(self.rng.uniform(*seconds) / self.dt)))

    def _switch(self) -> None:
        if self.exploring and self.rng.random() < self.return_prob:
            self.exploring = False
            self.expert.resync()  # the expert restarts from where the walk left the arm
            self.switch_at = self.t + self._steps(self.expert_s)
        else:
            self.exploring = True
            self.switch_at = self.t + self._steps(self.segment_s)

    def act(self, obs: dict[str, Any]) -> Decision:
        if self.t >= self.switch_at:
            self._switch()
        self.t += 1
        label = self.label(obs)
        if not self.exploring or self.last is None:
            self.last = label
            return Decision(label, label, "expert")
        target = self.last + self.velocity.sample() * self.dt
        hit = (target < self.spec.lower) | (target > self.spec.upper)
        self.velocity.x[hit] *= -1.0  # bounce off the joint limits
        self.last = self.clip(target)
        return Decision(self.last, label, "explore")


class BrainPolicy(CollectionPolicy):
    """A brain acts (``hardware.brain.Brain``: robot observation dict in, ``{"<joint>.pos": value}`` out);
    the expert's action at each visited state is the label (DAgger)."""

    def __init__(self, spec: RobotSpec, expert: Any, brain: Any, name: str) -> None:
        super().__init__(spec, expert, 0.0, 0.0)
        self.brain = brain
        self.name = name

    def reset(self, seed: int, instruction: str) -> None:
        super().reset(seed, instruction)
        self.brain.reset(instruction)

    def act(self, obs: dict[str, Any]) -> Decision:
        out = self.brain.act(robot_observation(obs, self.spec))
        check_brain_action(out, self.spec, self.name)
        return Decision(self.clip(self.spec.action_to_vector(out)), self.label(obs), "brain")


class RandomPolicy(CollectionPolicy):
    """Uniform random joint targets, each held half a second; no expert, no label."""

    def reset(self, seed: int, instruction: str) -> None:
        super().reset(seed, instruction)
        self.hold = max(1, int(round(self.spec.fps / 2)))
        self.target: np.ndarray | None = None

    def act(self, obs: dict[str, Any]) -> Decision:
        if self.target is None or self.t % self.hold == 0:
            self.target = self.rng.uniform(self.spec.lower, self.spec.upper)
        self.t += 1
        action = self.target
        if self.noise > 0:
            action = action + self.rng.normal(0.0, self.noise, size=action.shape) * self.span
        return Decision(self.clip(action), None, "random")


def check_brain_action(action: Any, spec: RobotSpec, name: str) -> None:
    """Refuse a brain output that is not ``{"<joint>.pos": finite number}`` for exactly ``spec``'s joints.

    Raises:
        ValueError: one line naming the brain, what it returned and what the robot needs.
    """
    keys = sorted(action) if isinstance(action, dict) else None
    if keys != sorted(spec.action_keys):
        raise ValueError(
            f"brain {name!r} returned actions {keys if keys is not None else type(action).__name__}; "
            f"robot {spec.name} needs {spec.action_keys}"
        )
    if not all(np.isfinite(float(action[k])) for k in keys):
        raise ValueError(f"brain {name!r} returned a non-finite action: {action}")


BrainFactory = Callable[[Any, RobotSpec], Any]
"""``factory(collect_config, spec) -> brain``: builds the brain of ``policy=brain`` in each worker.

``sim`` stands below ``hardware`` (docs/architecture.md, section 0), so the application layer
passes this in (``latent_vla.app.collect_cli.load_collect_brain``)."""


def make_policy(
    name: str,
    env: Any,
    spec: RobotSpec,
    noise: float,
    noise_tau: float,
    brain: Any | None = None,
    brain_name: str = "",
) -> CollectionPolicy:
    """The collection policy ``name`` for ``env`` (see the module table).

    Args:
        name: one of :data:`POLICIES`.
        env: the ``SO101Env`` (the expert reads its true state).
        spec: the arm.
        noise: fraction of each joint's range (already defaulted, see :data:`DEFAULT_NOISE`).
        noise_tau: correlation time of ``dart`` / ``explore`` noise, seconds.
        brain: the brain of ``policy=brain`` (a ``hardware.brain.Brain``).
        brain_name: what to call it in errors.

    Raises:
        ValueError: an unknown name, or ``brain`` without a brain.
    """
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; valid: {', '.join(POLICIES)}")
    if name == "random":
        return RandomPolicy(spec, None, noise, noise_tau)
    from sim.experts import make_expert

    expert = make_expert(env)
    if name == "expert":
        return ExpertPolicy(spec, expert, noise, noise_tau)
    if name == "dart":
        return DartPolicy(spec, expert, noise, noise_tau)
    if name == "explore":
        return ExplorePolicy(spec, expert, noise, noise_tau, env.unwrapped.episode_length)
    if brain is None:
        raise ValueError("policy=brain needs a brain: brain=<training run dir | ONNX bundle dir | scripted>")
    return BrainPolicy(spec, expert, brain, brain_name)
