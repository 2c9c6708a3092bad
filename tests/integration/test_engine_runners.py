"""``[engine] runner`` (``exchange.engine.runners.open_runner``): each kind runs the engine
on the data directory's journal, drains and closes it on ``close``, and the next one recovers
the same state (its ``recovery``). With the inline engine (execute on the loop, commits on a
writer thread) the node's stop (``Node.stop``: the engine's snapshot, ``close``, the journal's
tail folded on, saved) never takes a snapshot of state that is not durable yet."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from exchange.core.commands import CreateMarket, Deposit, PlaceOrder, UpdateOraclePrice
from exchange.core.errors import ConfigError, JournalError
from exchange.core.events import CollateralDeposited, Event
from exchange.engine.config import EngineConfig
from exchange.engine.inline import InlineEngine
from exchange.engine.journal import Journal
from exchange.engine.process import EngineProcess
from exchange.engine.runners import EngineThread, InlineRunner, open_runner
from exchange.engine.sequencer import Engine
from exchange.node import Node, NodeConfig
from perp.clearinghouse import Clearinghouse

pytestmark = pytest.mark.integration

KINDS = {"process": EngineProcess, "inline": InlineRunner, "thread": EngineThread}
HOURLY_NS = 3_600_000_000_000
WAIT_S = 30
TICK = 1_000_000
LOT = 1_000_000_000
SETUP: list[Any] = [
    CreateMarket(0, "BTC-PERP", TICK, LOT),
    UpdateOraclePrice(0, 100 * TICK, 0, 1, 1, True),
    *[Deposit(owner, 0, 10**12) for owner in range(4)],
]
ORDERS = [PlaceOrder(0, i % 4, 0, i % 2, (99 + i % 3) * TICK, (1 + i % 2) * LOT) for i in range(12)]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_runner_kind_runs_closes_and_recovers_the_same_state(
    tmp_path: Path, kind: str
) -> None:
    # Arrange
    # hourly ticks: only the first batch ticks (the clock starts at 0), none while idle
    config = EngineConfig(data_dir=tmp_path, runner=kind, tick_interval_ns=HOURLY_NS)
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


class HeldJournal(Journal):
    """A real journal whose appends wait until ``release`` is set (a slow disk), or fail
    once ``failing`` (a dying one)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.release = threading.Event()
        self.release.set()
        self.failing = False

    def append(self, events: Sequence[Event]) -> bytes:
        self.release.wait(WAIT_S)
        if self.failing:
            raise JournalError("I/O error (injected)")
        return super().append(events)


def _inline_over_held_journal(data_dir: Path) -> tuple[InlineEngine, HeldJournal]:
    """The inline engine over ``data_dir`` with the market set up and durable, its writer on
    a ``HeldJournal``, bound to the running loop (as the API port binds it)."""
    engine = Engine(EngineConfig(data_dir=data_dir, runner="inline", tick_interval_ns=HOURLY_NS))
    engine.process(SETUP)
    engine.journal.close()
    journal = HeldJournal(f"sqlite:///{(data_dir / 'journal.sqlite').resolve()}")
    engine.journal = journal
    inline = InlineEngine(engine, switch_interval_s=None)
    inline.bind_loop(asyncio.get_running_loop())
    return inline, journal


def _durable_seq(data_dir: Path) -> int:
    with Journal.for_data_dir(data_dir, read_only=True) as journal:
        return journal.last_seq


def _node_over(inline: InlineEngine, data_dir: Path) -> Node:
    """A node that got as far as its engine (``Node.stop`` is safe after a partial start)."""
    node = Node(NodeConfig(engine=inline.config, rpc_port=0, ws_port=0))
    node.runner = inline
    assert node.data_dir == data_dir
    return node


def test_node_stop_on_the_inline_engine_snapshots_only_durable_state(tmp_path: Path) -> None:
    async def run() -> None:
        # Arrange: orders executed on the loop, their commit held on the disk
        inline, journal = _inline_over_held_journal(tmp_path)
        durable_before = _durable_seq(tmp_path)
        journal.release.clear()
        pending = [inline.submit(cmd) for cmd in ORDERS]
        executed_seq = inline.engine.core.next_seq - 1
        executed_hash = inline.engine.core.state_hash()
        snapshot = inline.snapshot()
        node = _node_over(inline, tmp_path)
        # Act: the node stops while the commit is held
        stopping = asyncio.create_task(node.stop())
        await asyncio.sleep(0.2)
        held = (snapshot.done(), stopping.done(), _durable_seq(tmp_path))
        journal.release.set()
        await asyncio.wait_for(stopping, WAIT_S)
        # Assert: nothing resolved while the state was ahead of the journal
        assert held == (False, False, durable_before) and durable_before < executed_seq
        blob, seq = snapshot.result(0)
        assert seq == executed_seq == _durable_seq(tmp_path)
        assert Clearinghouse.from_snapshot(blob).state_hash() == executed_hash
        assert all(future.done() and future.exception() is None for future in pending)
        assert (node.final_hash, node.final_seq) == (executed_hash, executed_seq)
        with Journal.for_data_dir(tmp_path, read_only=True) as after:
            saved = after.latest_snapshot()
        assert saved is not None and (saved.seq, saved.state_hash) == (seq, executed_hash)
        again = Engine(EngineConfig(data_dir=tmp_path))
        assert (again.core.state_hash(), again.recovery.snapshot_seq) == (executed_hash, seq)
        again.close()

    asyncio.run(run())


def test_node_stop_after_a_failed_commit_keeps_only_the_journal(tmp_path: Path) -> None:
    async def run() -> None:
        # Arrange: some orders durable, then the disk dies under the next ones
        inline, journal = _inline_over_held_journal(tmp_path)
        for cmd in ORDERS[:4]:
            await asyncio.wrap_future(inline.submit(cmd))
        durable_hash, durable_seq = inline.engine.core.state_hash(), _durable_seq(tmp_path)
        journal.release.clear()
        journal.failing = True
        pending = [inline.submit(cmd) for cmd in ORDERS[4:]]
        executed_hash = inline.engine.core.state_hash()
        node = _node_over(inline, tmp_path)
        # Act
        stopping = asyncio.create_task(node.stop())
        await asyncio.sleep(0.1)
        journal.release.set()
        await asyncio.wait_for(stopping, WAIT_S)
        # Assert: the in-memory state that never became durable is nowhere in the journal
        assert executed_hash != durable_hash
        assert all(future.exception() is not None for future in pending)
        assert (node.final_hash, node.final_seq) == (durable_hash, durable_seq)
        again = Engine(EngineConfig(data_dir=tmp_path))
        assert (again.core.state_hash(), again.recovery.last_seq) == (durable_hash, durable_seq)
        again.close()

    asyncio.run(run())
