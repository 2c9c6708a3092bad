"""The engine runners ``perpdex run`` chooses from (``[engine] runner``): ``open_runner``.

Every kind has the surface the API's ``EnginePort`` drives (``core_type``, ``subscribe``,
``snapshot``, ``submit``, ``submit_many``) plus ``recovery`` (the report of the recovery it
started from) and ``close`` (finish what is queued, close the journal), so the node starts,
reads and stops any of them the same way:

- ``process`` (the default): ``EngineProcess``, the engine in a child process (what
  docs/PERFORMANCE.md measures);
- ``thread``: ``EngineThread``, the engine on a sequencer thread of the caller's process
  (``EngineRunner``; one process to debug).
"""

from __future__ import annotations

from exchange.core.errors import ConfigError
from exchange.engine.config import ENGINE_RUNNERS, EngineConfig
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


def open_runner(config: EngineConfig) -> EngineProcess | EngineThread:
    """The engine over ``config`` (recovered from its journal) on ``config.runner``."""
    if config.runner == "process":
        return EngineProcess(config)
    if config.runner == "thread":
        return EngineThread(config)
    raise ConfigError(f"runner: expected one of {list(ENGINE_RUNNERS)}, got {config.runner!r}")
