"""End-to-end order pipeline benchmark: ``python -m bench.pipeline [--quick]``.

The matching workload (``bench.workload``: warm-up limits, then adds and cancels of resting
orders) spread over ``ACCOUNTS`` (1,000) accounts with seeded collateral: each workload order
id belongs to a seeded random account (owner ``account + 1``). Every order goes through
``exchange.engine.fastpath.FastPipeline``: compiled pre-trade gate (``perp.fastrisk``) ->
``FastMarket`` match -> exact position / collateral / fee update of both sides -> compact
binary rows, group-committed to a SQLite journal (WAL, ``synchronous=FULL``) by a writer
thread, one batch per ``GROUP_ORDERS`` commands. The clock stops once the last group is
durable. Cancels whose target was refused by the gate still go to the book (and are
journaled as rejected), as a sequencer would.

Same-run baseline: the pure-Python pipeline (``ExchangeCore`` + ``perp.margin_check`` +
``perp.risk_gate`` + ``perp.ledger.Ledger`` + ``Journal.append`` of the events, group commit
too) on the first ``--subset`` timed ops after the same warm-up; the fast pipeline runs the
same subset in a fresh state and both journals must read back to the SAME events, and both
end in the same collateral, positions, resting exposure, fee pool and insurance fund.

Full-run checks: the fast journal is read back (``Journal.read``), its fills replayed into
``perp.ledger.Ledger``: every account's collateral and position equal the fast state, the
fee pool and the insurance fund too, and value is conserved to the unit.

GIL: the journal writer thread and the order thread share the GIL. Every time a commit
comes back from SQLite (fsync) the writer must re-take it from the busy order thread, which
by default waits up to ``sys.getswitchinterval()`` (5 ms): a few such waits per commit made
each commit ~30 ms under load and slowed the order thread too. The benchmark sets the switch
interval to ``SWITCH_INTERVAL_S`` (0.1 ms) while it runs (restored after); an engine running
this pipeline should do the same (or journal from another process).

Breakdown: a separate instrumented pass (``perf_counter_ns`` around each stage, so its total
is slower than the clean run) splits the time into risk / match / update (rows applied and
encoded) / journal (group hand-off in the loop; the writer's commit time is reported apart).
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

from bench.workload import ADD, QUICK_OPS, Op, generate
from exchange.core.commands import CreateMarket
from exchange.core.errors import RejectCode
from exchange.core.events import (
    OrderRejected,
    TradeExecuted,
)
from exchange.core.market import MarketSpec
from exchange.core.state import ExchangeCore
from exchange.core.units import U64_MAX
from exchange.engine.fastpath import FastPipeline, ReferencePipeline
from exchange.engine.journal import Journal
from perp.ledger import Ledger
from perp.math.fees import FeeSchedule
from perp.math.margin import MarginSchedule, MarginTier
from perp.risk_gate import RiskLimits

USD = 1_000_000
ACCOUNTS = 1_000
FULL_OPS = 1_000_000
TARGET_ORDERS_PER_S = 300_000
GROUP_ORDERS = 4_096
SWITCH_INTERVAL_S = 1e-4
NS_PER_OP = 1_000  # simulated arrival: one command per microsecond
SPEC = MarketSpec(
    market_id=1,
    symbol="BTC-PERP",
    tick_size=USD,  # 1.0 quote per whole unit
    lot_size=1_000_000,  # 0.001 of a unit at BASE_PRECISION 1e9
    min_size_lots=1,
    max_size_lots=10**7,
    max_price_ticks=10**6,
)
MARK_PRICE = 100_000 * USD  # the workload's starting mid, 100,000 ticks
LIMITS = RiskLimits(
    max_orders_per_second=2_000,
    max_orders_per_minute=100_000,
    max_order_base=190 * SPEC.lot_size,
    max_position_base=2_000 * SPEC.lot_size,
    max_order_notional_quote=25_000 * USD,
    daily_loss_limit_quote=50_000 * USD,
    price_band_ppm=50_000,
)
SCHEDULE = MarginSchedule(
    tiers=(
        MarginTier(up_to_notional_quote=50_000 * USD, initial_ppm=50_000, maintenance_ppm=25_000),
        MarginTier(up_to_notional_quote=500_000 * USD, initial_ppm=100_000, maintenance_ppm=50_000),
        MarginTier(up_to_notional_quote=U64_MAX, initial_ppm=250_000, maintenance_ppm=125_000),
    )
)
FEES = FeeSchedule(maker_ppm=-100, taker_ppm=500, insurance_share_ppm=200_000)


def accounts_of(n_ids: int, seed: int) -> list[int]:
    """Workload order id -> account (index 0 unused)."""
    rng = random.Random(seed * 7919 + 1)
    return [0] + [rng.randrange(ACCOUNTS) for _ in range(n_ids)]


def deposits(seed: int) -> list[int]:
    rng = random.Random(seed * 7919 + 2)
    return [rng.choice((2_000, 10_000, 50_000, 250_000)) * USD for _ in range(ACCOUNTS)]


def market_created() -> Any:
    out: list[Any] = []
    ExchangeCore().execute(
        CreateMarket(
            SPEC.market_id,
            SPEC.symbol,
            SPEC.tick_size,
            SPEC.lot_size,
            SPEC.min_size_lots,
            SPEC.max_size_lots,
            SPEC.max_price_ticks,
            SPEC.max_open_orders_per_account,
        ),
        0,
        out,
    )
    return out


# ---------------------------------------------------------------- the compiled pipeline
def fast_pipeline(url: str, max_orders: int, seed: int) -> FastPipeline:
    with Journal(url) as journal:
        journal.append(market_created())
    pipe = FastPipeline(
        SPEC,
        accounts=ACCOUNTS,
        limits=LIMITS,
        schedule=SCHEDULE,
        fees=FEES,
        mark_price=MARK_PRICE,
        oracle_price=MARK_PRICE,
        journal_url=url,
        max_orders=max_orders,
        group_orders=GROUP_ORDERS,
        start_seq=2,
    )
    for account, amount in enumerate(deposits(seed)):
        pipe.deposit(account, amount)
    return pipe


def run_fast_ops(
    pipe: FastPipeline, ops: list[Op], acct: list[int], ids: list[int], t0_op: int
) -> None:
    """Every op through the pipeline, a group commit every ``GROUP_ORDERS`` ops."""
    place, cancel, flush = pipe.place, pipe.cancel, pipe.flush
    i = t0_op
    for g in range(0, len(ops), GROUP_ORDERS):
        for kind, wid, side, price, qty in ops[g : g + GROUP_ORDERS]:
            a = acct[wid]
            if kind == ADD:
                got = place(a, side, price, qty, i * NS_PER_OP)
                if got > 0:
                    ids[wid] = got
            else:
                cancel(a, ids[wid], i * NS_PER_OP)
            i += 1
        flush()


def run_fast_profiled(
    pipe: FastPipeline, ops: list[Op], acct: list[int], ids: list[int], t0_op: int
) -> dict[str, int]:
    """``run_fast_ops`` with a clock around each stage (the same kernels, inlined)."""
    from exchange.engine.fastpath import _E_AFTER, _E_CHECK

    pc = time.perf_counter_ns
    spent = {"risk": 0, "match": 0, "update": 0, "journal": 0}
    raddr, aaddr = pipe._raddr, pipe._aaddr
    place_limit, book_cancel = pipe.market.place_limit, pipe.market.cancel
    lot, tick = SPEC.lot_size, SPEC.tick_size
    i = t0_op
    for g in range(0, len(ops), GROUP_ORDERS):
        for kind, wid, side, price, qty in ops[g : g + GROUP_ORDERS]:
            a = acct[wid]
            ts = i * NS_PER_OP
            i += 1
            if kind == ADD:
                t0 = pc()
                code = _E_CHECK(raddr, a, 0, side == 0, qty * lot, price * tick, False, False, ts)
                t1 = pc()
                spent["risk"] += t1 - t0
                if code:
                    pipe._refused(a, code, ts)
                    spent["update"] += pc() - t1
                    continue
                n = place_limit(a + 1, 0, side, price * tick, qty * lot, ts)
            else:
                t1 = pc()
                n = book_cancel(a + 1, 0, ids[wid], 0, ts)
            t2 = pc()
            status = _E_AFTER(aaddr, n)
            if status < 0:
                status = pipe._settle(status, n)
            if kind == ADD and status > 0:
                ids[wid] = status
            t3 = pc()
            spent["match"] += t2 - t1
            spent["update"] += t3 - t2
        t4 = pc()
        pipe.flush()
        spent["journal"] += pc() - t4
    return spent


# ---------------------------------------------------------------- the pure-Python pipeline
class PythonPipeline(ReferencePipeline):
    """The pure-Python pipeline on this benchmark's market and accounts."""

    def __init__(self, url: str, seed: int) -> None:
        super().__init__(
            SPEC,
            accounts=ACCOUNTS,
            limits=LIMITS,
            schedule=SCHEDULE,
            fees=FEES,
            mark_price=MARK_PRICE,
            oracle_price=MARK_PRICE,
            journal_url=url,
            deposits=deposits(seed),
        )


def run_python_ops(
    pipe: PythonPipeline, ops: list[Op], acct: list[int], ids: list[int], t0_op: int
) -> None:
    i = t0_op
    for g in range(0, len(ops), GROUP_ORDERS):
        for kind, wid, side, price, qty in ops[g : g + GROUP_ORDERS]:
            a = acct[wid]
            if kind == ADD:
                got = pipe.place(a, side, price, qty, i * NS_PER_OP)
                if got > 0:
                    ids[wid] = got
            else:
                pipe.cancel(a, ids[wid], i * NS_PER_OP)
            i += 1
        pipe.flush()


# ---------------------------------------------------------------- checks
def ledger_replay(url: str, seed: int) -> tuple[Ledger, int]:
    """The journal read back, its fills booked by ``perp.ledger.Ledger``."""
    ledger = Ledger()
    for account, amount in enumerate(deposits(seed)):
        ledger.deposit(account, amount)
    lot, qptl, n = SPEC.lot_size, SPEC.quote_per_tick_lot, 0
    with Journal(url, read_only=True) as journal:
        for e in journal.read():
            n += 1
            if type(e) is TradeExecuted:
                ledger.trade(
                    e.market_id,
                    e.maker_owner_id - 1,
                    e.taker_owner_id - 1,
                    e.taker_side == 0,
                    e.num_base_lots * lot,
                    e.price_ticks * e.num_base_lots * qptl,
                    FEES,
                )
    return ledger, n


def check_against_ledger(pipe: FastPipeline, url: str, seed: int) -> dict[str, Any]:
    ledger, n_events = ledger_replay(url, seed)
    if ledger.conservation_gap() != 0:
        raise RuntimeError(f"ledger: expected conservation gap 0, got {ledger.conservation_gap()}")
    fast = pipe.state()
    mid = SPEC.market_id
    for a in range(ACCOUNTS):
        p = ledger.position(a, mid)
        if fast["collateral"][a] != ledger.collateral[a] or fast["positions"][a] != (
            p.base,
            p.entry_quote,
        ):
            raise RuntimeError(
                f"account {a}: expected collateral {ledger.collateral[a]} and position "
                f"{(p.base, p.entry_quote)} (ledger), got {fast['collateral'][a]} and "
                f"{fast['positions'][a]}"
            )
    if (fast["fee_pool"], fast["insurance"]) != (
        ledger.fee_pool_quote,
        ledger.insurance_fund_quote,
    ):
        raise RuntimeError("fee pool / insurance fund: expected the ledger's figures")
    held = (
        sum(fast["collateral"])
        + sum(e for _, e in fast["positions"])
        + fast["fee_pool"]
        + fast["insurance"]
    )
    if held != sum(deposits(seed)):
        raise RuntimeError(f"conservation: expected {sum(deposits(seed))}, got {held}")
    return {"events_read_back": n_events, "conservation_gap": 0}


# ---------------------------------------------------------------- main
def _timed(fn: Any, cpu: list[float] | None = None) -> float:
    """Wall seconds of ``fn()`` (GC frozen and off); appends the calling thread's CPU
    seconds to ``cpu`` when given."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        fn()
        wall = (time.perf_counter_ns() - t0) / 1e9
        if cpu is not None:
            cpu.append((time.thread_time_ns() - c0) / 1e9)
        return wall
    finally:
        gc.enable()
        gc.unfreeze()


def _run(
    args: argparse.Namespace,
    w: Any,
    acct: list[int],
    root: Path,
    n_ops: int,
    subset: int,
    figures: dict[str, Any],
) -> None:
    """The three runs and their checks; figures go into ``figures``."""
    # 1. the full run, clean clock
    url = f"sqlite:///{root / 'fast.sqlite'}"
    pipe = fast_pipeline(url, w.n_adds, args.seed)
    ids = [0] * (w.n_adds + 1)
    run_fast_ops(pipe, w.warmup, acct, ids, 0)
    pipe.sync()  # the warm-up is durable before the clock starts
    start_op = len(w.warmup)

    def timed_run() -> None:
        run_fast_ops(pipe, w.ops, acct, ids, start_op)
        pipe.close()

    writer_cpu0 = pipe.writer.cpu_ns
    cpu: list[float] = []
    seconds = _timed(timed_run, cpu)
    fast_ops = n_ops / seconds
    trades, lots = pipe.fills
    if trades < n_ops // 10:
        raise RuntimeError(f"expected a fill every few ops, got {trades} in {n_ops} ops")
    checks = check_against_ledger(pipe, url, args.seed)
    writer = pipe.writer
    figures.update(
        orders_per_s=round(fast_ops),
        seconds=round(seconds, 3),
        fills=trades,
        lots=lots,
        journal_batches=writer.batches,
        journal_bytes=writer.bytes,
        journal_bytes_per_event=round(writer.bytes / max(1, checks["events_read_back"]), 1),
        journal_commit_s=round(writer.busy_ns / 1e9, 3),
        # load-independent: CPU seconds of the order thread, and of the journal writer
        orders_per_order_thread_cpu_s=round(n_ops / cpu[0]),
        order_thread_cpu_s=round(cpu[0], 3),
        writer_cpu_s=round((writer.cpu_ns - writer_cpu0) / 1e9, 3),
        **checks,
    )
    # 2. the instrumented pass (fresh state, same ops)
    url2 = f"sqlite:///{root / 'profiled.sqlite'}"
    pipe2 = fast_pipeline(url2, w.n_adds, args.seed)
    ids2 = [0] * (w.n_adds + 1)
    run_fast_ops(pipe2, w.warmup, acct, ids2, 0)
    pipe2.sync()  # the warm-up is durable before the clock starts
    spent: dict[str, int] = {}
    profiled_s = _timed(lambda: spent.update(run_fast_profiled(pipe2, w.ops, acct, ids2, start_op)))
    pipe2.close()
    if pipe2.state() != pipe.state():
        raise RuntimeError("instrumented pass: expected the clean run's end state")
    total = sum(spent.values())
    figures["breakdown_us_per_op"] = {k: round(v / 1e3 / n_ops, 3) for k, v in spent.items()}
    figures["breakdown_share"] = {k: round(v / total, 3) for k, v in spent.items()}
    figures["profiled_seconds"] = round(profiled_s, 3)
    figures["profiled_commit_s"] = round(pipe2.writer.busy_ns / 1e9, 3)
    # 3. the pure-Python pipeline on a subset, and the fast one on the same subset
    sub = w.ops[:subset]
    url_py = f"sqlite:///{root / 'python.sqlite'}"
    py = PythonPipeline(url_py, args.seed)
    ids_py = [0] * (w.n_adds + 1)
    run_python_ops(py, w.warmup, acct, ids_py, 0)
    py_s = _timed(lambda: run_python_ops(py, sub, acct, ids_py, start_op))
    py.close()
    url3 = f"sqlite:///{root / 'fast-subset.sqlite'}"
    pipe3 = fast_pipeline(url3, w.n_adds, args.seed)
    ids3 = [0] * (w.n_adds + 1)
    run_fast_ops(pipe3, w.warmup, acct, ids3, 0)
    pipe3.sync()  # the warm-up is durable before the clock starts

    def fast_subset() -> None:
        run_fast_ops(pipe3, sub, acct, ids3, start_op)
        pipe3.close()

    fast_sub_s = _timed(fast_subset)
    if pipe3.state() != py.state():
        raise RuntimeError("subset: expected the fast and Python pipelines to end equal")
    with Journal(url3, read_only=True) as j3, Journal(url_py, read_only=True) as jp:
        events_fast, events_py = list(j3.read()), list(jp.read())
    if events_fast != events_py:
        i = next(
            (i for i, (a, b) in enumerate(zip(events_fast, events_py)) if a != b),
            min(len(events_fast), len(events_py)),
        )
        raise RuntimeError(
            f"subset journals: expected equal events, first difference at {i}: "
            f"{events_fast[i : i + 1]} vs {events_py[i : i + 1]}"
        )
    rejected: dict[str, int] = {}
    for e in events_fast:
        if type(e) is OrderRejected:
            name = RejectCode(e.code).name
            rejected[name] = rejected.get(name, 0) + 1
    figures.update(
        python_orders_per_s=round(subset / py_s),
        fast_subset_orders_per_s=round(subset / fast_sub_s),
        ratio_vs_python=round(py_s / fast_sub_s, 2),
        subset_ops=subset,
        subset_events_equal=len(events_fast),
        subset_rejected_by_code=rejected,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_OPS} ops, not {FULL_OPS}")
    parser.add_argument("--ops", type=int, default=0)
    parser.add_argument("--subset", type=int, default=0, help="ops for the Python comparison")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", default="", help="journal directory (default: a temp dir)")
    args = parser.parse_args(argv)
    n_ops = args.ops or (QUICK_OPS if args.quick else FULL_OPS)
    subset = args.subset or (10_000 if args.quick else 30_000)
    w = generate(n_ops, args.seed)
    acct = accounts_of(w.n_adds, args.seed)
    tmp = tempfile.TemporaryDirectory(dir=args.dir or None)
    root = Path(tmp.name)
    figures: dict[str, Any] = {}
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        with tmp:
            _run(args, w, acct, root, n_ops, subset, figures)
    finally:
        sys.setswitchinterval(switch_interval)
    fast_ops = figures["orders_per_s"]
    figures.update(
        meets_target=fast_ops >= TARGET_ORDERS_PER_S,
        target=f">= {TARGET_ORDERS_PER_S:,} orders/s end to end",
        ops=n_ops,
        accounts=ACCOUNTS,
        group_orders=GROUP_ORDERS,
        switch_interval_s=SWITCH_INTERVAL_S,
        seed=args.seed,
        quick=args.quick,
    )
    b = figures["breakdown_us_per_op"]
    sys.stdout.write(
        f"fast pipeline (risk + match + ledger + journal, {ACCOUNTS} accounts): "
        f"{fast_ops:,.0f} orders/s over {n_ops:,} ops ({figures['seconds']:.2f} s; journal "
        f"{figures['journal_batches']} commits, {figures['journal_bytes_per_event']} B/event)\n"
        f"CPU time: order thread {figures['order_thread_cpu_s']} s "
        f"({figures['orders_per_order_thread_cpu_s']:,} orders per CPU-second), journal writer "
        f"{figures['writer_cpu_s']} s\n"
        f"breakdown us/op (instrumented): risk {b['risk']}, match {b['match']}, "
        f"update {b['update']}, journal hand-off {b['journal']}; writer commit "
        f"{figures['profiled_commit_s']} s\n"
        f"pure-Python pipeline on {subset:,} ops: {figures['python_orders_per_s']:,}/s vs fast "
        f"{figures['fast_subset_orders_per_s']:,}/s (x{figures['ratio_vs_python']}); "
        f"{figures['subset_events_equal']:,} journaled events equal\n"
        f"ledger replay of the journal: {figures['events_read_back']:,} events, positions, "
        f"collateral, fees equal; conservation gap 0\n"
    )
    sys.stdout.write(json.dumps(figures) + "\n")
    return figures


if __name__ == "__main__":
    main()
