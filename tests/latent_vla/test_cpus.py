"""Compute threads fit the cores a process gets (affinity, cgroup quota), unless the user says otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from latent_vla.base import cpus
from latent_vla.base.errors import UserError

REAL_CGROUP_LIMIT = cpus._cgroup_cpu_limit


@pytest.fixture
def two_of_eight_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process pinned to 2 of a machine's 8 cores, without OMP_NUM_THREADS or a CPU quota."""
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: {3, 5})
    monkeypatch.setattr(cpus.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(cpus, "_cgroup_cpu_limit", lambda: None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.mark.usefixtures("two_of_eight_cores")
@pytest.mark.parametrize("auto", [0, "0", None, "auto", "AUTO"])
def test_auto_uses_the_cores_this_process_gets(auto: object) -> None:
    assert cpus.resolve_threads(auto) == 2  # not the machine's 8


@pytest.mark.usefixtures("two_of_eight_cores")
def test_a_cgroup_quota_caps_the_affinity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("50000 100000\n")  # half a core
    monkeypatch.setattr(cpus, "_cgroup_cpu_limit", lambda: REAL_CGROUP_LIMIT(cpu_max))
    assert cpus.available_cores() == 1


def test_cgroup_quota_parsing(tmp_path: Path) -> None:
    f = tmp_path / "cpu.max"
    f.write_text("150000 100000\n")
    assert cpus._cgroup_cpu_limit(f) == 2
    f.write_text("max 100000\n")
    assert cpus._cgroup_cpu_limit(f) is None
    assert cpus._cgroup_cpu_limit(tmp_path / "missing") is None


@pytest.mark.usefixtures("two_of_eight_cores")
def test_omp_num_threads_is_respected_in_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpus.resolve_threads("auto") == 1


@pytest.mark.usefixtures("two_of_eight_cores")
def test_an_explicit_number_is_used_and_oversubscription_noted(capsys: pytest.CaptureFixture[str]) -> None:
    assert cpus.resolve_threads(1) == 1
    assert capsys.readouterr().out == ""
    assert cpus.resolve_threads("4", key="train.num_threads") == 4
    assert "train.num_threads=4 threads on 2 available core(s)" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [-1, "two", 1.5])
def test_bad_values_are_refused(bad: object) -> None:
    with pytest.raises(UserError, match="whole number of threads"):
        cpus.resolve_threads(bad, key="threads")


@pytest.mark.usefixtures("two_of_eight_cores")
@pytest.mark.parametrize(("setting", "expected"), [(0, 2), (1, 1)])
def test_training_sets_torch_threads_to_fit(monkeypatch: pytest.MonkeyPatch, setting: int, expected: int) -> None:
    import torch

    from latent_vla.train import RunSettings, TrainSettings, _setup_process

    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    _setup_process(RunSettings(data="unused", device="cpu", train=TrainSettings(num_threads=setting)))
    assert calls == [expected]


@pytest.mark.usefixtures("two_of_eight_cores")
def test_planning_eval_sets_torch_threads_to_fit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import torch

    from latent_vla.app import eval_cli
    from latent_vla.app.cli import compose

    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr(eval_cli, "_brain_factory", lambda cfg: (_ for _ in ()).throw(RuntimeError("stop")))
    cfg = compose("eval", [f"ckpt={tmp_path}", "threads=auto", f"out={tmp_path / 'out'}"])
    with pytest.raises(RuntimeError, match="stop"):
        eval_cli.main(cfg)
    assert calls == [2]


def test_steal_fraction_reads_proc_stat(tmp_path) -> None:
    """The hypervisor's share between two readings of /proc/stat's first line; None without the file."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 0 0 0 50 0 0\ncpu0 1 2 3\n")
    before = cpus.cpu_ticks(stat)
    assert before == (50, 1000)
    stat.write_text("cpu  200 0 60 900 0 0 0 90 0 0\n")
    assert cpus.steal_fraction(before, cpus.cpu_ticks(stat)) == 40 / 250
    assert cpus.cpu_ticks(tmp_path / "missing") is None
    assert cpus.steal_fraction(None, before) is None and cpus.steal_fraction(before, before) is None
    real = cpus.cpu_ticks()  # this machine's, where it is Linux
    assert real is None or 0 <= real[0] <= real[1]
