"""Scripted experts, one per task: ``make_expert(env)`` then ``reset(seed)`` / ``act(obs)``."""

from __future__ import annotations

import gymnasium as gym

from sim.experts.base import Expert
from sim.experts.pick import PickExpert
from sim.experts.push import PushExpert
from sim.experts.reach import ReachExpert

EXPERTS: dict[str, type[Expert]] = {"reach": ReachExpert, "push": PushExpert, "pick": PickExpert}


def make_expert(env: gym.Env, **kwargs: object) -> Expert:
    """The scripted expert for ``env``'s task (``env`` may be wrapped); ``kwargs`` go to its class.

    Raises:
        ValueError: when the task has no expert.
    """
    task = getattr(env.unwrapped, "task_name", None)
    if task not in EXPERTS:
        raise ValueError(f"no scripted expert for task {task!r}; experts exist for {sorted(EXPERTS)}")
    return EXPERTS[task](env, **kwargs)  # type: ignore[arg-type]


__all__ = ["EXPERTS", "Expert", "PickExpert", "PushExpert", "ReachExpert", "make_expert"]
