"""``exchange.engine.cpu_latency``: the PM QoS CPU-latency request against stand-in device
files (the real device is in tests/integration/test_cpu_latency_device.py)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from exchange.core.errors import ConfigError
from exchange.engine.cpu_latency import (
    NOT_REQUESTED,
    CpuLatencyRequest,
    CpuLatencyStatus,
    released,
    status_of,
)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_request_writes_the_latency_as_a_native_s32_and_holds_the_fd(tmp_path: Path) -> None:
    # Arrange
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(b"")
    before = _open_fds()
    # Act
    request = CpuLatencyRequest(0, device)
    held_fds = _open_fds() - before
    written = device.read_bytes()
    # Assert
    assert written == struct.pack("=i", 0)
    assert len(held_fds) == 1 and request.held
    assert request.status == CpuLatencyStatus(0, True, f"held at 0 us via {device}")
    request.close()


def test_close_releases_the_fd_and_a_second_close_does_nothing(tmp_path: Path) -> None:
    # Arrange
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(b"")
    before = _open_fds()
    request = CpuLatencyRequest(125, device)
    # Act
    request.close()
    after_first = _open_fds()
    request.close()
    # Assert
    assert device.read_bytes() == struct.pack("=i", 125)
    assert after_first == before == _open_fds()
    assert not request.held and not request.status.held
    assert request.status.requested_us == 125
    assert request.status.detail == f"released (was held at 125 us via {device})"


def test_context_manager_releases_on_exit(tmp_path: Path) -> None:
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(b"")
    with CpuLatencyRequest(0, device) as request:
        assert request.held
    assert not request.held


def test_a_missing_device_is_not_held_and_says_why(tmp_path: Path) -> None:
    # Arrange
    device = tmp_path / "no-such-dir" / "cpu_dma_latency"
    before = _open_fds()
    # Act
    request = CpuLatencyRequest(0, device)
    # Assert
    assert request.status == CpuLatencyStatus(0, False, f"{device}: No such file or directory")
    assert not request.held and _open_fds() == before
    request.close()  # nothing to release: no error


def test_a_device_that_cannot_be_opened_for_writing_is_not_held(tmp_path: Path) -> None:
    # a directory refuses O_WRONLY even for root (EISDIR), unlike a read-only file
    request = CpuLatencyRequest(0, tmp_path)
    assert not request.held
    assert request.status.detail == f"{tmp_path}: Is a directory"


def test_a_device_that_refuses_the_write_is_not_held() -> None:
    # /dev/full opens for writing but every write fails with ENOSPC
    before = _open_fds()
    request = CpuLatencyRequest(0, Path("/dev/full"))
    assert not request.held
    assert request.status.detail == "/dev/full: No space left on device"
    assert _open_fds() == before


def test_permission_denied_names_the_remedy(tmp_path: Path) -> None:
    # Arrange: a read-only file refuses a normal user; root writes it regardless, but not a
    # sysfs attribute without a store method (EACCES even with CAP_DAC_OVERRIDE)
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(b"")
    device.chmod(0o400)
    if os.geteuid() == 0:
        device = Path("/sys/kernel/notes")
        if not device.exists():
            pytest.skip("running as root and no read-only sysfs attribute to provoke EACCES")
    # Act
    request = CpuLatencyRequest(0, device)
    # Assert
    assert not request.held
    assert request.status.detail.endswith("Permission denied (needs root or a udev rule)")


@pytest.mark.parametrize("latency_us", [-1, 2_000_000_001, True, 1.0, "0", None])
def test_bad_latency_values_are_refused_before_touching_the_device(
    tmp_path: Path, latency_us: object
) -> None:
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"cpu_latency_us: expected an int in 0\.\.2000000000"):
        CpuLatencyRequest(latency_us, device)  # type: ignore[arg-type]
    assert device.read_bytes() == b""


def test_for_config_holds_nothing_when_not_requested(tmp_path: Path) -> None:
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(b"")
    assert CpuLatencyRequest.for_config(False, 0, device) is None
    assert status_of(None) == NOT_REQUESTED
    assert NOT_REQUESTED.requested_us is None and not NOT_REQUESTED.held
    assert device.read_bytes() == b""
    request = CpuLatencyRequest.for_config(True, 2_000_000_000, device)
    assert request is not None and status_of(request).held
    request.close()


def test_released_keeps_a_status_that_was_not_held() -> None:
    refused = CpuLatencyStatus(0, False, "/dev/cpu_dma_latency: Permission denied")
    assert released(refused) is refused
    assert released(NOT_REQUESTED) is NOT_REQUESTED
