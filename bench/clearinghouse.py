"""Clearinghouse overhead benchmark: ``python -m bench.clearinghouse [--quick]``.

The seeded demo flow (``exchange.demo``: the random walk as oracle price, three market
makers re-quoting post-only, two takers sending IOC / market / stop orders, funded accounts)
in memory, one ``execute`` per command, one ``Tick`` per simulated second (1 ms of simulated
time per command), through:

* ``perp.clearinghouse.Clearinghouse`` (the headline): risk gate, margin after fill, matching,
  fill settlement, mark price, funding samples, status;
* bare ``ExchangeCore`` (the same-run baseline): the same orders straight to the matcher,
  oracle readings as ``UpdateTriggerPrice``, ticks as ``ExpireOrders``, no deposits.

Then both journals are folded from zero (``apply``), which must reproduce each live hash.
No journal I/O there: ``bench.journal`` measures that. Apart, the engine path per order
(``engine_path_cpu_us_per_order``): ``bench.api``'s orders (IOC bids from 16 sub-accounts,
accepted, remainder canceled) through ``Engine.process`` (check, clearinghouse, SQLite
journal group commit) in batches of 2,000, thread CPU time per order.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from exchange.core.commands import (
    Deposit,
    ExpireOrders,
    PlaceOrder,
    Tick,
    UpdateOraclePrice,
    UpdateTriggerPrice,
)
from exchange.core.events import OrderRejected, TradeExecuted
from exchange.core.state import ExchangeCore
from exchange.core.units import NANOS_PER_SECOND
from exchange.demo import (
    DEMO_MARKETS,
    account_setup_commands,
    demo_round,
    market_setup_commands,
)
from perp.clearinghouse import Clearinghouse

ROUNDS = 1_000
QUICK_ROUNDS = 150
STEP_NS = 1_000_000  # simulated time per command


def flow(rounds: int, seed: int) -> list[Any]:
    """Setup, then ``rounds`` demo rounds with a Tick every simulated second."""
    rng = random.Random(seed)
    mids = {m.market_id: m.start_price // m.tick_size for m in DEMO_MARKETS}
    commands: list[Any] = [*market_setup_commands(), *account_setup_commands()]
    for _ in range(rounds):
        commands += demo_round(rng, mids)
    out: list[Any] = []
    per_tick = NANOS_PER_SECOND // STEP_NS
    for i, cmd in enumerate(commands):
        if i and i % per_tick == 0:
            out.append(Tick())
        out.append(cmd)
    return out


def as_bare(cmd: Any) -> Any:
    """The baseline's version of a command (``None``: the bare core has no such thing)."""
    kind = type(cmd)
    if kind is UpdateOraclePrice:
        return UpdateTriggerPrice(cmd.market_id, cmd.price)
    if kind is Tick:
        return ExpireOrders()
    if kind is Deposit:
        return None
    return cmd


def run(engine: Any, commands: list[Any]) -> tuple[float, list[Any]]:
    journal: list[Any] = []
    execute = engine.execute
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        ts = NANOS_PER_SECOND
        for cmd in commands:
            ts += STEP_NS
            execute(cmd, ts, journal)
        seconds = time.perf_counter() - started
    finally:
        gc.enable()
    return seconds, journal


def fold(fresh: Any, journal: list[Any]) -> tuple[float, str]:
    gc.collect()
    started = time.perf_counter()
    apply = fresh.apply
    for e in journal:
        apply(e)
    return time.perf_counter() - started, fresh.state_hash()


def engine_path_cpu_us(orders: int, batch: int = 2_000) -> float:
    """Thread CPU time per order of ``Engine.process`` on ``bench.api``'s IOC orders."""
    from bench.api import LOT, MARKET, OWNER, SUB_ACCOUNTS, TICK, start_engine
    from exchange.engine.sequencer import EngineRunner

    with tempfile.TemporaryDirectory() as data_dir:
        runner = start_engine(Path(data_dir), in_process=True)
        assert isinstance(runner, EngineRunner)
        runner.close()  # the engine alone, on this thread
        engine = runner.engine
        try:
            cmds = [
                PlaceOrder(MARKET, OWNER, i % SUB_ACCOUNTS, 0, 99 * TICK, LOT, time_in_force=1)
                for i in range(orders)
            ]
            started = time.thread_time()
            for i in range(0, orders, batch):
                engine.process(cmds[i : i + batch])
            return (time.thread_time() - started) / orders * 1e6
        finally:
            engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROUNDS} rounds")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rounds = QUICK_ROUNDS if args.quick else ROUNDS
    commands = flow(rounds, args.seed)
    bare_commands = [c for c in (as_bare(c) for c in commands) if c is not None]

    ch = Clearinghouse()
    ch_seconds, ch_journal = run(ch, commands)
    ch.check_invariants()
    core = ExchangeCore()
    core_seconds, core_journal = run(core, bare_commands)

    ch_fold_seconds, ch_fold_hash = fold(Clearinghouse(), ch_journal)
    core_fold_seconds, core_fold_hash = fold(ExchangeCore(), core_journal)
    if ch_fold_hash != ch.state_hash() or core_fold_hash != core.state_hash():
        print("fold hash differs from the live hash", file=sys.stderr)
        return 1

    engine_us = engine_path_cpu_us(5_000 if args.quick else 20_000)
    fills = sum(type(e) is TradeExecuted for e in ch_journal)
    rejected = sum(type(e) is OrderRejected for e in ch_journal)
    figures = {
        "bench": "clearinghouse",
        "rounds": rounds,
        "commands": len(commands),
        "events": len(ch_journal),
        "fills": fills,
        "rejections": rejected,
        "clearinghouse_commands_per_s": round(len(commands) / ch_seconds),
        "bare_core_commands_per_s": round(len(bare_commands) / core_seconds),
        "ratio_clearinghouse_vs_bare": round(
            (len(commands) / ch_seconds) / (len(bare_commands) / core_seconds), 3
        ),
        "clearinghouse_fold_events_per_s": round(len(ch_journal) / ch_fold_seconds),
        "bare_core_fold_events_per_s": round(len(core_journal) / core_fold_seconds),
        "fold_hash_equals_live": True,
        "conservation_gap_quote": ch.conservation_gap_quote(),
        "engine_path_cpu_us_per_order": round(engine_us, 1),
    }
    print(
        f"clearinghouse: {figures['clearinghouse_commands_per_s']:,} commands/s "
        f"({len(commands):,} commands, {len(ch_journal):,} events, {fills:,} fills, "
        f"{rejected:,} rejections)"
    )
    print(
        f"bare ExchangeCore (baseline): {figures['bare_core_commands_per_s']:,} commands/s; "
        f"ratio {figures['ratio_clearinghouse_vs_bare']}"
    )
    print(
        f"fold: clearinghouse {figures['clearinghouse_fold_events_per_s']:,} events/s, bare "
        f"core {figures['bare_core_fold_events_per_s']:,} events/s; both equal their live hash"
    )
    print(
        f"engine path (Engine.process + SQLite journal, IOC batches): {engine_us:.1f} us CPU/order"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
