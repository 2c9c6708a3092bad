"""The PM QoS CPU-latency request on the real ``/dev/cpu_dma_latency``: reading the device
gives the kernel's aggregate target (the smallest request held, 2_000_000_000 us when none
is), so it reads 0 while a request of 0 is held and is back to what it was once it is
released. Every runner holds it for its life (``EngineProcess`` in its child) and releases
it on ``close``.

Other processes on the machine (another engine, ``tuned``) may hold requests of their own:
the value after release is checked against ``PM_QOS_DEFAULT_US`` when no process holds the
device open (found through ``/proc/*/fd``), against the value before when the same others
still do."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from exchange.engine.config import EngineConfig
from exchange.engine.cpu_latency import (
    NOT_REQUESTED,
    PM_QOS_CPU_LATENCY_DEVICE,
    CpuLatencyRequest,
)
from exchange.engine.process import EngineProcess
from exchange.engine.runners import open_runner

pytestmark = pytest.mark.integration

DEVICE = PM_QOS_CPU_LATENCY_DEVICE
PM_QOS_DEFAULT_US = 2_000_000_000  # the kernel's target when no request is held
HOURLY_NS = 3_600_000_000_000  # no idle ticks during a test


def _aggregate_us() -> int:
    with DEVICE.open("rb") as device:
        (value,) = struct.unpack("=i", device.read(4))
    return int(value)


def _holders() -> set[int]:
    """The pids of every process with the device open (each open for writing is a
    request)."""
    target = str(DEVICE)
    pids: set[int] = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in fds):
                pids.add(int(pid))
        except OSError:  # gone meanwhile, or not ours to look at
            continue
    return pids


def _assert_back_to(before_us: int, holders_before: set[int]) -> None:
    """Released: the default target when nobody holds a request, what it was before when
    the same other processes hold theirs (another process starting or stopping meanwhile
    leaves nothing exact to check)."""
    after_us, holders_after = _aggregate_us(), _holders()
    if not holders_after:
        assert after_us == PM_QOS_DEFAULT_US
    elif holders_after == holders_before:
        assert after_us == before_us


@pytest.fixture(autouse=True)
def _device() -> None:
    try:
        _aggregate_us()
    except OSError as exc:
        pytest.skip(f"{DEVICE} cannot be read here: {exc}")
    with CpuLatencyRequest(PM_QOS_DEFAULT_US) as probe:  # the default: changes nothing
        if not probe.held:
            pytest.skip(f"cannot hold a CPU-latency request here: {probe.status.detail}")


def test_a_held_request_sets_the_aggregate_and_close_restores_it() -> None:
    # Arrange
    before_us, holders_before = _aggregate_us(), _holders()
    # Act
    request = CpuLatencyRequest(0)
    held_us, held_by = _aggregate_us(), _holders()
    request.close()
    # Assert
    assert request.status.detail.startswith("released (was held at 0 us via")
    assert held_us == 0 and os.getpid() in held_by
    assert os.getpid() not in _holders()
    _assert_back_to(before_us, holders_before)


def test_the_engine_process_holds_it_in_its_child_while_it_runs(tmp_path: Path) -> None:
    # Arrange
    before_us, holders_before = _aggregate_us(), _holders()
    # Act
    proc = EngineProcess(EngineConfig(data_dir=tmp_path, tick_interval_ns=HOURLY_NS))
    try:
        status, held_us, held_by = proc.cpu_latency, _aggregate_us(), _holders()
    finally:
        proc.close()
    # Assert
    assert status.held and status.requested_us == 0
    assert status.detail == f"held at 0 us via {DEVICE}"
    assert held_us == 0 and proc.pid in held_by and os.getpid() not in held_by
    assert not proc.cpu_latency.held and proc.pid not in _holders()
    _assert_back_to(before_us, holders_before)


@pytest.mark.parametrize("kind", ["inline", "thread"])
def test_in_process_runners_hold_it_until_close(tmp_path: Path, kind: str) -> None:
    # Arrange
    before_us, holders_before = _aggregate_us(), _holders()
    config = EngineConfig(data_dir=tmp_path, runner=kind, tick_interval_ns=HOURLY_NS)
    # Act
    runner = open_runner(config)
    try:
        status, held_us, held_by = runner.cpu_latency, _aggregate_us(), _holders()
    finally:
        runner.close()
    # Assert
    assert status.held and held_us == 0 and os.getpid() in held_by
    assert not runner.cpu_latency.held and os.getpid() not in _holders()
    _assert_back_to(before_us, holders_before)


@pytest.mark.parametrize("kind", ["process", "inline", "thread"])
def test_a_runner_configured_not_to_hold_it_does_not(tmp_path: Path, kind: str) -> None:
    config = EngineConfig(
        data_dir=tmp_path, runner=kind, tick_interval_ns=HOURLY_NS, hold_cpu_latency=False
    )
    runner = open_runner(config)
    try:
        status, held_by = runner.cpu_latency, _holders()
    finally:
        runner.close()
    assert status == NOT_REQUESTED
    assert os.getpid() not in held_by
    assert not isinstance(runner, EngineProcess) or runner.pid not in held_by
