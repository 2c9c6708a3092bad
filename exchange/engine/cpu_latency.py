"""A Linux PM QoS CPU-latency request the engine holds while it serves.

Why: with an idle CPU halting at once (a VM's ``haltpoll`` cpuidle driver with no halt
polling, or deep C-states on bare metal), waking the process on the other CPU costs an IPI
and, in a VM, an exit: on the 2-vCPU VM docs/PERFORMANCE.md measures on, a pipe ping-pong
across vCPUs took 46-60 us round trip and the waker paid 8-12 us of CPU per write. While a
process holds ``/dev/cpu_dma_latency`` open with 0 written, idle CPUs poll instead of
halting: the same ping-pong took 6.4 us, the write 1.4 us, and the API's single-order p50 at
10k orders/s went from ~1.26 to ~0.91 ms. It is what ``tuned``'s latency profiles and
trading hosts do.

What it costs: idle CPUs spin instead of sleeping (power on bare metal, host CPU under a
VM), for as long as the request is held. Turn it off with ``[engine] hold_cpu_latency =
false``, or ask for a looser target with ``[engine] cpu_latency_us``.

The kernel ABI: write a native s32 (microseconds) to the device; the request lasts while
that file descriptor is open, and the kernel drops it when the fd closes (also when the
process dies). Opening the device needs root (or a udev rule granting it): without it the
request is simply not held, and the status says why; the engine still starts.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from exchange.core.errors import ConfigError

#: the Linux PM QoS CPU-latency device (``Documentation/power/pm_qos_interface.rst``)
PM_QOS_CPU_LATENCY_DEVICE = Path("/dev/cpu_dma_latency")
#: the largest target accepted (the kernel's value is an s32 of microseconds)
MAX_CPU_LATENCY_US = 2_000_000_000
#: the device's value: a native-endian s32 of microseconds, both written and read
_S32 = struct.Struct("=i")


@dataclass(frozen=True, slots=True)
class CpuLatencyStatus:
    """Whether a CPU-latency request is held, and a line that says so (or why not)."""

    requested_us: int | None  # None: not requested by the configuration
    held: bool
    detail: str


#: the status of a runner configured not to hold a request
NOT_REQUESTED = CpuLatencyStatus(
    requested_us=None, held=False, detail="not requested ([engine] hold_cpu_latency = false)"
)


def check_latency_us(latency_us: int) -> int:
    """``latency_us`` if it is an int in 0..``MAX_CPU_LATENCY_US``; ``ConfigError`` if not."""
    if type(latency_us) is not int or not 0 <= latency_us <= MAX_CPU_LATENCY_US:
        raise ConfigError(
            f"cpu_latency_us: expected an int in 0..{MAX_CPU_LATENCY_US}, got {latency_us!r}"
        )
    return latency_us


class CpuLatencyRequest:
    """A PM QoS CPU-latency request of ``latency_us``, held from construction to ``close``.

    An ``OSError`` opening or writing the device leaves it not held (``status`` says why):
    a run as a normal user, or on a kernel without the device, starts all the same."""

    __slots__ = ("_fd", "_status")

    def __init__(self, latency_us: int, device: Path = PM_QOS_CPU_LATENCY_DEVICE) -> None:
        check_latency_us(latency_us)
        self._fd: int | None = None
        try:
            fd = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            self._status = CpuLatencyStatus(latency_us, False, _reason(device, exc))
            return
        try:
            written = os.write(fd, _S32.pack(latency_us))
        except OSError as exc:
            os.close(fd)
            self._status = CpuLatencyStatus(latency_us, False, _reason(device, exc))
            return
        if written != _S32.size:  # the kernel takes all four bytes or refuses them
            os.close(fd)
            detail = f"{device}: expected {_S32.size} bytes written, got {written}"
            self._status = CpuLatencyStatus(latency_us, False, detail)
            return
        self._fd = fd
        self._status = CpuLatencyStatus(latency_us, True, f"held at {latency_us} us via {device}")

    @classmethod
    def for_config(
        cls, hold: bool, latency_us: int, device: Path = PM_QOS_CPU_LATENCY_DEVICE
    ) -> CpuLatencyRequest | None:
        """The request an engine configured with ``hold`` / ``latency_us`` holds (``None``
        when ``hold`` is false: its status is ``NOT_REQUESTED``)."""
        return cls(latency_us, device) if hold else None

    @property
    def status(self) -> CpuLatencyStatus:
        """Held or not, and why; after ``close`` no longer held."""
        return self._status

    @property
    def held(self) -> bool:
        """The request is in force (the device's fd is open)."""
        return self._fd is not None

    def close(self) -> None:
        """Release the request (close the fd); a second call does nothing."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        os.close(fd)
        self._status = released(self._status)

    def __enter__(self) -> CpuLatencyRequest:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def status_of(request: CpuLatencyRequest | None) -> CpuLatencyStatus:
    """``request``'s status, ``NOT_REQUESTED`` for none."""
    return NOT_REQUESTED if request is None else request.status


def released(status: CpuLatencyStatus) -> CpuLatencyStatus:
    """What ``status`` becomes once its request is released (unchanged if it was not held)."""
    if not status.held:
        return status
    return CpuLatencyStatus(status.requested_us, False, f"released (was {status.detail})")


def _reason(device: Path, exc: OSError) -> str:
    reason = f"{device}: {exc.strerror or exc}"
    if isinstance(exc, PermissionError):
        reason += " (needs root or a udev rule)"
    return reason
