"""``[engine] runner`` (``exchange.engine.runners.open_runner``): each kind runs the engine
on the data directory's journal, drains and closes it on ``close``, and the next one recovers
the same state (its ``recovery``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.core.commands import CreateMarket, Deposit
from exchange.core.errors import ConfigError
from exchange.core.events import CollateralDeposited
from exchange.engine.config import EngineConfig
from exchange.engine.process import EngineProcess
from exchange.engine.runners import EngineThread, open_runner
from perp.clearinghouse import Clearinghouse

pytestmark = pytest.mark.integration

KINDS = {"process": EngineProcess, "thread": EngineThread}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_runner_kind_runs_closes_and_recovers_the_same_state(
    tmp_path: Path, kind: str
) -> None:
    # Arrange
    # hourly ticks: only the first batch ticks (the clock starts at 0), none while idle
    config = EngineConfig(data_dir=tmp_path, runner=kind, tick_interval_ns=3_600_000_000_000)
    runner = open_runner(config)
    assert type(runner) is KINDS[kind] and runner.core_type is Clearinghouse
    assert runner.recovery.last_seq == 0
    # Act: a command, then a snapshot after it, then close (drain + journal closed)
    events = runner.submit_many([CreateMarket(0, "BTC-PERP", 1, 1), Deposit(3, 0, 5)]).result(30)
    blob, seq = runner.snapshot().result(30)
    runner.close()
    again = open_runner(config)
    again.close()
    # Assert
    assert any(type(e) is CollateralDeposited for e in events[1])
    assert again.recovery.last_seq == seq == events[1][-1].seq
    assert again.recovery.state_hash == Clearinghouse.from_snapshot(blob).state_hash()


def test_a_config_built_around_its_check_still_cannot_open_an_unknown_runner(
    tmp_path: Path,
) -> None:
    config = EngineConfig(data_dir=tmp_path)
    object.__setattr__(config, "runner", "carrier-pigeon")
    with pytest.raises(ConfigError, match="runner: expected one of"):
        open_runner(config)
