"""The engine runners ``perpdex run`` chooses from (``[engine] runner``): ``open_runner``.

Every kind has the surface the API's ``EnginePort`` drives (``core_type``, ``subscribe``,
``snapshot``, ``submit``, ``submit_many``) plus ``recovery`` (the report of the recovery it
started from) and ``close`` (finish what is queued, close the journal), so the node starts,
reads and stops any of them the same way. Whichever it is, an order is acknowledged only
once its events are committed (fsync'ed), and ``snapshot`` resolves only once the state it
holds is durable:

- ``process`` (the default): ``EngineProcess``, the engine in a child process; what
  docs/PERFORMANCE.md's targets are measured on, and the fastest for batches;
- ``inline``: ``InlineEngine``, the engine executing on the node's event loop, its journal
  commits on a writer thread (``exchange.engine.journal_writer``); no process hop per order,
  but execute and the journal encode share the API's interpreter lock (batches ~40k acks/s,
  below the 50k target, and single-order p99 not shown better than the process's on
  the 2-core VM: see docs/PERFORMANCE.md's inline section). Binding it to the loop lowers the process's GIL
  switch interval until ``close``;
- ``thread``: ``EngineThread``, the engine on a sequencer thread of the caller's process
  (``EngineRunner``; one process to debug).
"""

from __future__ import annotations

from exchange.core.errors import ConfigError
from exchange.engine.config import ENGINE_RUNNERS, EngineConfig
from exchange.engine.inline import InlineEngine
from exchange.engine.process import EngineProcess
from exchange.engine.sequencer import Engine, EngineRunner, RecoveryReport


class EngineThread(EngineRunner):
    """An ``EngineRunner`` that owns its ``Engine``: opened from a config, ``close`` drains
    the queue, then closes the journal."""

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(Engine(config))
        self.config = config
        self.recovery: RecoveryReport = self.engine.recovery

    def close(self) -> None:
        """Finish everything already queued, stop the thread, close the journal."""
        super().close()
        self.engine.close()


def open_runner(config: EngineConfig) -> EngineProcess | InlineEngine | EngineThread:
    """The engine over ``config`` (recovered from its journal) on ``config.runner``."""
    if config.runner == "process":
        return EngineProcess(config)
    if config.runner == "inline":
        return InlineEngine(Engine(config))
    if config.runner == "thread":
        return EngineThread(config)
    raise ConfigError(f"runner: expected one of {list(ENGINE_RUNNERS)}, got {config.runner!r}")
