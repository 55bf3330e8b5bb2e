"""How many CPU threads a process should compute with: the cores it actually gets, or what it was told.

``os.cpu_count()`` counts the machine's cores, not this process's: a process pinned to some cores
(``taskset``, a container's cpuset) or throttled by a cgroup CPU quota gets fewer, and more compute
threads than cores oversubscribe them (OpenMP threads then wait on each other every parallel region).
Standard library only; the caller applies the number: ``torch.set_num_threads(resolve_threads(cfg.threads))``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from latent_vla.base.errors import UserError

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota us> <period us>" or "max <period us>"


def _cgroup_cpu_limit(path: Path = CGROUP_CPU_MAX) -> int | None:
    """Cores a cgroup v2 CPU quota allows (rounded up), or None without a quota."""
    try:
        quota, period = path.read_text().split()[:2]
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):  # no cgroup v2 file, "max" (no quota), or an unexpected format
        return None


def available_cores() -> int:
    """CPU cores this process may run on: its affinity mask, capped by a cgroup CPU quota; at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    return max(1, min(cores, limit) if limit is not None else cores)


def resolve_threads(requested: int | str | None, key: str = "threads") -> int:
    """The number of compute threads to use.

    Args:
        requested: a positive int (or its text) is used as given; ``0``, ``None`` or ``"auto"`` mean
            "fit the machine": ``OMP_NUM_THREADS`` when the environment sets it, else
            :func:`available_cores`.
        key: the setting's name, for messages. An explicit number above :func:`available_cores` is
            used, with a one-line note that it oversubscribes them.

    Raises:
        UserError: ``requested`` is negative or not a whole number / ``auto``.
    """
    if requested is None or str(requested).strip().lower() in ("auto", "0"):
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        if env.isdigit() and int(env) > 0:
            return int(env)
        return available_cores()
    text = str(requested).strip()
    if not text.isdigit():
        raise UserError(f"{key}={requested!r} is not allowed: give a whole number of threads >= 1, or auto")
    cores = available_cores()
    if int(text) > cores:
        print(f"note: {key}={text} threads on {cores} available core(s) oversubscribes them; {key}=auto fits them")
    return int(text)


def passive_openmp_waits() -> None:
    """Let idle OpenMP threads sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE``) unless the
    environment already chose; call before PyTorch loads its OpenMP runtime.

    Spinning threads are what collapses a job sharing its cores: beside one busy process on this 2-core
    machine a 2-thread training run made 1.0-1.2 steps/s spinning and 1.55-1.9 passive, against 2.5
    for both alone (``docs/training.md``, "Sharing the CPU").
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


PROC_STAT = Path("/proc/stat")


def cpu_ticks(path: Path = PROC_STAT) -> tuple[int, int] | None:
    """``(steal, total)`` jiffies of all CPUs since boot from ``/proc/stat``, or None (not Linux).

    *Steal* is time the hypervisor gave this virtual machine's CPUs to other guests: on a shared
    cloud VM it slows every timing here without any process of ours running. Two readings around a
    measurement give its steal fraction (:func:`steal_fraction`)."""
    try:
        fields = path.read_text().splitlines()[0].split()
        ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
        return ticks[7], sum(ticks)
    except (OSError, ValueError, IndexError):
        return None


def steal_fraction(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Fraction of CPU time stolen by the hypervisor between two :func:`cpu_ticks` readings."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])
