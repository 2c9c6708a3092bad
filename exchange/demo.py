"""A seeded demo order flow: market makers quoting around a random walk, takers crossing.

It drives a real ``Engine`` (journal, group commit, recovery, clearinghouse with risk gate,
positions, fees, funding) through an ``EngineRunner``: the accounts deposit collateral, the
random walk is fed as the oracle price, and the report shows the books, the latest fills,
positions, fees, the insurance fund and the throughput. Restarting on the same data
directory resumes from the journal.
"""

from __future__ import annotations

import random
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from exchange.core.commands import (
    CancelAll,
    CreateMarket,
    Deposit,
    PlaceOrder,
    UpdateOraclePrice,
)
from exchange.core.events import Event, OrderRejected, TradeExecuted
from exchange.core.orders import OrderType, SelfTradePrevention, Side, TimeInForce
from exchange.core.units import BASE_PRECISION, PRICE_PRECISION, QUOTE_PRECISION
from exchange.engine.sequencer import Engine, EngineRunner


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoMarket:
    market_id: int
    symbol: str
    tick_size: int  # PRICE_PRECISION per base unit
    lot_size: int  # BASE_PRECISION
    start_price: int  # PRICE_PRECISION


DEMO_MARKETS = (
    DemoMarket(
        market_id=0,
        symbol="BTC-PERP",
        tick_size=PRICE_PRECISION // 10,
        lot_size=BASE_PRECISION // 10_000,
        start_price=95_000 * PRICE_PRECISION,
    ),
    DemoMarket(
        market_id=1,
        symbol="ETH-PERP",
        tick_size=PRICE_PRECISION // 100,
        lot_size=BASE_PRECISION // 1_000,
        start_price=3_500 * PRICE_PRECISION,
    ),
    DemoMarket(
        market_id=2,
        symbol="SOL-PERP",
        tick_size=PRICE_PRECISION // 1_000,
        lot_size=BASE_PRECISION // 100,
        start_price=180 * PRICE_PRECISION,
    ),
)

MAKER_OWNERS = (1, 2, 3)
TAKER_OWNERS = (10, 11)
MAKER_DEPOSIT_QUOTE = 5_000_000 * QUOTE_PRECISION
TAKER_DEPOSIT_QUOTE = 50_000 * QUOTE_PRECISION


@dataclass(frozen=True, slots=True)
class DemoReport:
    commands: int
    events: int
    fills: int
    rejections: int
    seconds: float
    state_hash: str
    last_seq: int


def market_setup_commands() -> list[CreateMarket]:
    return [CreateMarket(m.market_id, m.symbol, m.tick_size, m.lot_size) for m in DEMO_MARKETS]


def account_setup_commands() -> list[Deposit]:
    """Collateral for the demo accounts (sub-account 0 of every maker and taker)."""
    return [Deposit(o, 0, MAKER_DEPOSIT_QUOTE) for o in MAKER_OWNERS] + [
        Deposit(o, 0, TAKER_DEPOSIT_QUOTE) for o in TAKER_OWNERS
    ]


def demo_round(rng: random.Random, mids_ticks: dict[int, int]) -> list[Any]:
    """One round of flow: the oracle moves, every maker re-quotes, then some takers act."""
    commands: list[Any] = []
    for m in DEMO_MARKETS:
        mid = mids_ticks[m.market_id]
        # A lazy random walk of the reference price, in ticks: it is the oracle's price.
        mid = max(100, mid + rng.choice((-3, -2, -1, 0, 0, 1, 2, 3)))
        mids_ticks[m.market_id] = mid
        # The mark it yields arms the stop orders (no separate trigger-price command).
        commands.append(UpdateOraclePrice(m.market_id, mid * m.tick_size, m.tick_size, 0, 0, True))
        for maker in MAKER_OWNERS:
            commands.append(CancelAll(m.market_id, maker, 0))
            for level in range(1, 6):
                spread = level * (1 + maker)
                size = rng.randint(1, 50) * m.lot_size
                commands.append(
                    PlaceOrder(
                        m.market_id,
                        maker,
                        0,
                        Side.BID,
                        (mid - spread) * m.tick_size,
                        size,
                        time_in_force=TimeInForce.POST_ONLY_SLIDE,
                    )
                )
                commands.append(
                    PlaceOrder(
                        m.market_id,
                        maker,
                        0,
                        Side.ASK,
                        (mid + spread) * m.tick_size,
                        size,
                        time_in_force=TimeInForce.POST_ONLY_SLIDE,
                    )
                )
        for taker in TAKER_OWNERS:
            roll = rng.random()
            side = rng.choice((Side.BID, Side.ASK))
            through = 6 if side == Side.BID else -6
            size = rng.randint(1, 120) * m.lot_size
            if roll < 0.5:
                commands.append(
                    PlaceOrder(
                        m.market_id,
                        taker,
                        0,
                        side,
                        (mid + through) * m.tick_size,
                        size,
                        time_in_force=TimeInForce.IOC,
                    )
                )
            elif roll < 0.7:
                commands.append(
                    PlaceOrder(
                        m.market_id,
                        taker,
                        0,
                        side,
                        (mid + 3 * through) * m.tick_size,
                        size,
                        order_type=OrderType.MARKET,
                        time_in_force=TimeInForce.IOC,
                    )
                )
            elif roll < 0.8:
                # A stop far enough away that it fires only on a real move.
                trigger = mid + (20 if side == Side.BID else -20)
                commands.append(
                    PlaceOrder(
                        m.market_id,
                        taker,
                        0,
                        side,
                        (trigger + through) * m.tick_size,
                        size,
                        order_type=OrderType.STOP_MARKET,
                        time_in_force=TimeInForce.IOC,
                        trigger_price=trigger * m.tick_size,
                        stp_mode=SelfTradePrevention.CANCEL_RESTING,
                    )
                )
    return commands


def run_demo(engine: Engine, *, rounds: int, seed: int, echo: Any = print) -> DemoReport:
    """Feed ``rounds`` rounds of seeded flow through the engine and report what happened."""
    rng = random.Random(seed)
    runner = EngineRunner(engine)
    recent_fills: deque[TradeExecuted] = deque(maxlen=10)
    counters = {"events": 0, "fills": 0, "rejections": 0}

    def on_events(events: Any) -> None:
        counters["events"] += len(events)
        for e in events:
            if type(e) is TradeExecuted:
                counters["fills"] += 1
                recent_fills.append(e)
            elif type(e) is OrderRejected:
                counters["rejections"] += 1

    engine.subscribe(on_events)
    try:
        existing = set(engine.core.books)
        setup: list[Any] = [c for c in market_setup_commands() if c.market_id not in existing]
        if not existing:  # a fresh exchange: fund the demo accounts once
            setup += account_setup_commands()
        for future in [runner.submit(c) for c in setup]:
            for event in future.result():
                if type(event) is OrderRejected:
                    raise RuntimeError(f"demo market setup refused: {event.message}")
        mids = {}
        for m in DEMO_MARKETS:
            book = engine.core.books[m.market_id]
            bid, ask = book.best_bid(), book.best_ask()
            mids[m.market_id] = (bid + ask) // 2 if bid and ask else m.start_price // m.tick_size
        commands = 0
        started = time.perf_counter()
        pending: list[Future[list[Event]]] = []
        for _ in range(rounds):
            for cmd in demo_round(rng, mids):
                pending.append(runner.submit(cmd))
                commands += 1
            if len(pending) > 20_000:
                for future in pending:
                    future.result()
                pending.clear()
        for future in pending:
            future.result()
        seconds = time.perf_counter() - started
    finally:
        runner.close()
    report = DemoReport(
        commands,
        counters["events"],
        counters["fills"],
        counters["rejections"],
        seconds,
        engine.core.state_hash(),
        engine.core.next_seq - 1,
    )
    echo_books(engine, echo)
    echo_accounts(engine, echo)
    echo("\nlatest fills:")
    for t in recent_fills:
        m = DEMO_MARKETS[t.market_id]
        echo(
            f"  #{t.seq:<9} {m.symbol:<9} {'BUY ' if t.taker_side == Side.BID else 'SELL'} "
            f"{fmt(t.num_base_lots * m.lot_size, BASE_PRECISION):>10} @ "
            f"{fmt(t.price_ticks * m.tick_size, PRICE_PRECISION):>12}  "
            f"maker {t.maker_owner_id}/{t.maker_sub_account_id} taker "
            f"{t.taker_owner_id}/{t.taker_sub_account_id}"
        )
    return report


def fmt(value: int, precision: int) -> str:
    """Decimal text of a fixed-point int (display only)."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), precision)
    digits = len(str(precision)) - 1
    return f"{sign}{whole}.{frac:0{digits}d}".rstrip("0").rstrip(".")


def echo_books(engine: Engine, echo: Any, depth: int = 5) -> None:
    for m in DEMO_MARKETS:
        book = engine.core.books[m.market_id]
        echo(
            f"\n{m.symbol} book (top {depth}):   {'bid size':>12} {'bid':>12} | "
            f"{'ask':<12} {'ask size':<12}"
        )
        bids = book.depth(Side.BID, depth)
        asks = book.depth(Side.ASK, depth)
        for i in range(depth):
            b = bids[i] if i < len(bids) else None
            a = asks[i] if i < len(asks) else None
            left = (
                (
                    f"{fmt(b[1] * m.lot_size, BASE_PRECISION):>12} "
                    f"{fmt(b[0] * m.tick_size, PRICE_PRECISION):>12}"
                )
                if b
                else " " * 25
            )
            right = (
                (
                    f"{fmt(a[0] * m.tick_size, PRICE_PRECISION):<12} "
                    f"{fmt(a[1] * m.lot_size, BASE_PRECISION):<12}"
                )
                if a
                else ""
            )
            echo(f"{'':24}{left} | {right}")


def echo_accounts(engine: Engine, echo: Any) -> None:
    """Positions, collateral, equity and fees of the demo accounts; the venue's pools."""
    ch = engine.core
    echo(
        f"\n{'account':<8} {'collateral':>14} {'equity':>14} {'init margin':>12} "
        f"{'fees paid':>10} {'funding':>9}  positions (base @ avg entry)"
    )
    for owner in MAKER_OWNERS + TAKER_OWNERS:
        acct = ch.account(owner, 0)
        summary = ch.margin(owner, 0)
        held = []
        for market_id, pos in sorted(acct.positions.items()):
            m = DEMO_MARKETS[market_id]
            entry = -pos.entry_quote * BASE_PRECISION // pos.base  # quote per whole base unit
            held.append(
                f"{m.symbol} {fmt(pos.base, BASE_PRECISION)} @ {fmt(entry, PRICE_PRECISION)}"
            )
        echo(
            f"{owner:>3}/0    {fmt(acct.collateral_quote, QUOTE_PRECISION):>14} "
            f"{fmt(summary.equity_quote, QUOTE_PRECISION):>14} "
            f"{fmt(summary.initial_quote, QUOTE_PRECISION):>12} "
            f"{fmt(acct.fees_paid_quote, QUOTE_PRECISION):>10} "
            f"{fmt(acct.funding_paid_quote, QUOTE_PRECISION):>9}  {', '.join(held) or '-'}"
        )
    echo(
        f"venue fee pool {fmt(ch.fee_pool_quote, QUOTE_PRECISION)}, insurance fund "
        f"{fmt(ch.insurance_fund_quote, QUOTE_PRECISION)}, net deposits "
        f"{fmt(ch.net_deposits_quote, QUOTE_PRECISION)} (conservation gap "
        f"{ch.conservation_gap_quote()})"
    )
    for m in DEMO_MARKETS:
        pm = ch.markets[m.market_id]
        echo(
            f"{m.symbol:<9} index {fmt(pm.index_price, PRICE_PRECISION)} mark "
            f"{fmt(pm.mark_price, PRICE_PRECISION)} status {pm.breaker.status.name} "
            f"funding index {pm.cumulative_funding} ({len(pm.premium_samples)} premium samples)"
        )
