"""The engine runners ``perpdex run`` chooses from (``[engine] runner``): ``open_runner``.

Every kind has the surface the API's ``EnginePort`` drives (``core_type``, ``subscribe``,
``snapshot``, ``submit``, ``submit_many``) plus ``recovery`` (the report of the recovery it
started from) and ``close`` (finish what is queued, close the journal), so the node starts,
reads and stops any of them the same way. Whichever it is, an order is acknowledged only
once its events are committed (fsync'ed), and ``snapshot`` resolves only once the state it
holds is durable:

- ``process`` (the default): ``EngineProcess``, the engine in a child process; what
  docs/PERFORMANCE.md's targets are measured on, and the fastest for batches;
- ``inline``: ``InlineRunner`` (an ``InlineEngine``), the engine executing on the node's event loop, its journal
  commits on a writer thread (``exchange.engine.journal_writer``); no process hop per order,
  but execute and the journal encode share the API's interpreter lock (batches ~40k acks/s,
  below the 50k target, and single-order p99 not shown better than the process's on
  the 2-core VM: see docs/PERFORMANCE.md's inline section). Binding it to the loop lowers the process's GIL
  switch interval until ``close``;
- ``thread``: ``EngineThread``, the engine on a sequencer thread of the caller's process
  (``EngineRunner``; one process to debug).

Each also holds a PM QoS CPU-latency request (``exchange.engine.cpu_latency``, ``[engine]
hold_cpu_latency`` / ``cpu_latency_us``) for its whole life, in the process the engine runs
in, and says whether it got it in ``cpu_latency``; ``close`` releases it.
"""

from __future__ import annotations

from exchange.core.errors import ConfigError
from exchange.engine.config import ENGINE_RUNNERS, EngineConfig
from exchange.engine.cpu_latency import CpuLatencyRequest, CpuLatencyStatus, status_of
from exchange.engine.inline import InlineEngine
from exchange.engine.process import EngineProcess
from exchange.engine.sequencer import Engine, EngineRunner, RecoveryReport


class _HoldsCpuLatency:
    """The PM QoS CPU-latency request of a runner that serves in the caller's process."""

    _cpu_latency: CpuLatencyRequest | None

    def _hold_cpu_latency(self, config: EngineConfig) -> None:
        self._cpu_latency = CpuLatencyRequest.for_config(
            config.hold_cpu_latency, config.cpu_latency_us
        )

    @property
    def cpu_latency(self) -> CpuLatencyStatus:
        """This process's PM QoS CPU-latency request (``exchange.engine.cpu_latency``)."""
        return status_of(self._cpu_latency)

    def _release_cpu_latency(self) -> None:
        if self._cpu_latency is not None:
            self._cpu_latency.close()


class EngineThread(_HoldsCpuLatency, EngineRunner):
    """An ``EngineRunner`` that owns its ``Engine``: opened from a config, ``close`` drains
    the queue, then closes the journal."""

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(Engine(config))
        self.config = config
        self.recovery: RecoveryReport = self.engine.recovery
        self._hold_cpu_latency(config)

    def close(self) -> None:
        """Finish everything already queued, stop the thread, close the journal, release
        the CPU-latency request."""
        try:
            super().close()
            self.engine.close()
        finally:
            self._release_cpu_latency()


class InlineRunner(_HoldsCpuLatency, InlineEngine):
    """An ``InlineEngine`` that owns its ``Engine`` (opened from a config) and holds the
    CPU-latency request in the caller's process until ``close``."""

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(Engine(config))
        self._hold_cpu_latency(config)

    def close(self, timeout_s: float | None = 60.0) -> None:
        """``InlineEngine.close``, then release the CPU-latency request."""
        try:
            super().close(timeout_s)
        finally:
            self._release_cpu_latency()


def open_runner(config: EngineConfig) -> EngineProcess | InlineRunner | EngineThread:
    """The engine over ``config`` (recovered from its journal) on ``config.runner``."""
    if config.runner == "process":
        return EngineProcess(config)
    if config.runner == "inline":
        return InlineRunner(config)
    if config.runner == "thread":
        return EngineThread(config)
    raise ConfigError(f"runner: expected one of {list(ENGINE_RUNNERS)}, got {config.runner!r}")
