"""The clearinghouse's hot paths change no event: the same command stream gives a
byte-identical journal (``encode_events``) and the same state hash through the fast paths
and through the readable reference rules they replace (``Clearinghouse._place_reference``).

The streams are seeded and built to reach every branch of the order path: thin collateral
(margin refusals), positions and open orders in several markets, rate limits, every market
status, amends, stops, funding intervals, price jumps, deposits and withdrawals.
"""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import pytest

from exchange.core.commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    CreateMarket,
    Deposit,
    PlaceOrder,
    SetMarketStatus,
    SetRiskParams,
    Tick,
    UpdateOraclePrice,
    Withdraw,
)
from exchange.core.errors import RejectCode
from exchange.core.events import FillSettled, OrderRejected, RiskParamsChanged, encode_events
from exchange.core.orders import OrderType, Side, TimeInForce
from exchange.core.units import NANOS_PER_SECOND
from exchange.demo import (
    DEMO_MARKETS,
    account_setup_commands,
    demo_round,
    market_setup_commands,
)
from perp.clearinghouse import Clearinghouse, PerpMarket
from perp.margin_check import OpenOrders
from perp.math.margin import MarginKind, requirement_quote
from perp.params import PerpMarketParams

TICK = 10_000
LOT = 10_000_000
USDC = 1_000_000
OWNERS = (1, 2, 3, 4, 5, 6)
PARAMS = PerpMarketParams(
    maker_fee_ppm=-150,
    taker_fee_ppm=450,
    funding_sample_interval_ns=60 * NANOS_PER_SECOND,
    funding_interval_ns=600 * NANOS_PER_SECOND,
    funding_cap_rate=50_000_000,
    impact_notional_quote=50 * USDC,
    breaker_max_move_ppm=300_000,
    max_orders_per_second=40,
    max_orders_per_minute=100,
    max_order_base=500 * LOT,
    max_position_base=600 * LOT,
    max_order_notional_quote=450 * USDC,
    daily_loss_limit_quote=20 * USDC,
    price_band_ppm=50_000,
)

#: Refusals every random stream must reach (so the gate's branches are compared).
REACHED_CODES = {
    "INSUFFICIENT_MARGIN",
    "PRICE_OUTSIDE_BAND",
    "RATE_LIMITED_PER_SECOND",
    "MARKET_NOT_ACCEPTING",
    "ORDER_SIZE_ABOVE_LIMIT",
    "POSITION_ABOVE_LIMIT",
}


class ReferenceClearinghouse(Clearinghouse):
    """The clearinghouse with the reference rules in place of the hot paths, and the open
    base counted by a scan of the account's live orders instead of the books' kept totals."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._handlers[PlaceOrder] = self._place_reference

    def _open_orders(self, account_id: int) -> dict[int, OpenOrders]:
        out: dict[int, OpenOrders] = {}
        for market_id, book in self.core.books.items():
            if book.account_orders.get(account_id):
                out[market_id] = OpenOrders(*self._open_base(account_id, market_id))
        return out

    def _open_base(self, account_id: int, market_id: int) -> tuple[int, int]:
        book = self.core.books[market_id]
        bids = asks = 0
        for order in book.account_orders.get(account_id, {}).values():
            if order.side == Side.BID:
                bids += order.remaining_lots * book.spec.lot_size
            else:
                asks += order.remaining_lots * book.spec.lot_size
        return bids, asks


def random_stream(seed: int, steps: int) -> list[tuple[int, Any]]:
    """``(ts_ns, command)`` pairs: three markets, six thinly funded owners, mixed flow."""
    rng = random.Random(seed)
    index = {0: 100 * USDC, 1: 20 * USDC, 2: 3 * USDC}
    ts = NANOS_PER_SECOND
    out: list[tuple[int, Any]] = []
    for market_id, price in index.items():
        out.append((ts, CreateMarket(market_id, f"M{market_id}", TICK, LOT)))
        out.append((ts, UpdateOraclePrice(market_id, price, 0, 1, 1, True)))
    for owner in OWNERS:
        for sub in (0, 1):
            out.append((ts, Deposit(owner, sub, rng.randint(2, 80) * USDC)))
    order_ids = 0
    for i in range(steps):
        ts += rng.choice((100_000, 1_000_000, 20_000_000))
        market_id = rng.randrange(3)
        owner, sub = rng.choice(OWNERS), rng.choice((0, 0, 1))
        side = rng.randrange(2)
        offset = rng.randint(-30, 30) if rng.random() < 0.9 else rng.randint(-3_000, 3_000)
        price = max(TICK, (index[market_id] // TICK + offset) * TICK)
        lots = rng.choice((1, 5, 20, 100, 400, 900))
        roll = rng.random()
        cmd: Any
        if roll < 0.55:
            tif = rng.choice(
                (TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.POST_ONLY_SLIDE)
            )
            cmd = PlaceOrder(
                market_id,
                owner,
                sub,
                side,
                price,
                lots * LOT,
                time_in_force=tif,
                client_order_id=rng.choice((0, 0, rng.randint(1, 50))),
                reduce_only=rng.random() < 0.08,
            )
        elif roll < 0.62:
            cmd = PlaceOrder(
                market_id,
                owner,
                sub,
                side,
                price,
                lots * LOT,
                order_type=OrderType.MARKET,
                time_in_force=TimeInForce.IOC,
            )
        elif roll < 0.65:
            trigger = (
                index[market_id] + (rng.randint(1, 60) if side == 0 else -rng.randint(1, 60)) * TICK
            )
            cmd = PlaceOrder(
                market_id,
                owner,
                sub,
                side,
                max(TICK, trigger + (5 if side == 0 else -5) * TICK),
                lots * LOT,
                order_type=OrderType.STOP_MARKET,
                time_in_force=TimeInForce.IOC,
                trigger_price=max(TICK, trigger),
            )
        elif roll < 0.70:
            order_ids += 1
            cmd = AmendOrder(market_id, owner, sub, rng.randint(1, 40 + i), price, lots * LOT)
        elif roll < 0.75:
            cmd = CancelOrder(market_id, owner, sub, rng.randint(1, 40 + i))
        elif roll < 0.78:
            cmd = CancelAll(market_id, owner, sub)
        elif roll < 0.88:
            move = rng.randint(-40, 40) if rng.random() < 0.97 else rng.randint(-3_000, 3_000)
            index[market_id] = max(100 * TICK, index[market_id] + move * TICK)
            cmd = UpdateOraclePrice(
                market_id, index[market_id], 0, i + 2, i + 2, rng.random() > 0.01
            )
        elif roll < 0.92:
            ts += rng.choice((1, 30, 200)) * NANOS_PER_SECOND
            cmd = Tick()
        elif roll < 0.94:
            cmd = Withdraw(owner, sub, rng.randint(1, 2_000) * USDC)
        elif roll < 0.96:
            cmd = Deposit(owner, sub, rng.randint(1, 2_000) * USDC)
        elif roll < 0.975:
            cmd = SetMarketStatus(market_id, rng.choice((0, 0, 0, 1, 2, 3, 4)))
        else:
            cmd = SetMarketStatus(market_id, 0)
        out.append((ts, cmd))
        if rng.random() < 0.01:  # a burst from one account: past its per-second limit
            out += [
                (ts, PlaceOrder(market_id, owner, sub, side, price, LOT, client_order_id=0))
                for _ in range(45)
            ]
    return out


def run(ch: Clearinghouse, stream: list[tuple[int, Any]]) -> list[Any]:
    journal: list[Any] = []
    for ts, cmd in stream:
        ch.execute(cmd, ts, journal)
    return journal


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_stream_journal_is_byte_identical(seed: int) -> None:
    # Arrange
    stream = random_stream(seed, 3_000)
    fast, reference = (
        Clearinghouse(default_params=PARAMS),
        ReferenceClearinghouse(default_params=PARAMS),
    )

    # Act
    fast_journal, reference_journal = run(fast, stream), run(reference, stream)

    # Assert
    assert encode_events(fast_journal) == encode_events(reference_journal)
    assert fast.state_hash() == reference.state_hash()
    assert fast._rate_state == reference._rate_state  # admission state too (not hashed)
    codes = {RejectCode(e.code).name for e in fast_journal if type(e) is OrderRejected}
    assert codes >= REACHED_CODES, codes
    assert sum(type(e) is FillSettled for e in fast_journal) > 100
    fast.check_invariants()


def test_demo_flow_journal_is_byte_identical() -> None:
    # Arrange: the benchmark's own flow (makers re-quoting, takers, stops, funding)
    rng = random.Random(7)
    mids = {m.market_id: m.start_price // m.tick_size for m in DEMO_MARKETS}
    commands: list[Any] = [*market_setup_commands(), *account_setup_commands()]
    for i in range(60):
        commands += demo_round(rng, mids)
        if i % 5 == 4:
            commands.append(Tick())
    fast, reference = Clearinghouse(), ReferenceClearinghouse()

    # Act
    ts = NANOS_PER_SECOND
    fast_journal: list[Any] = []
    reference_journal: list[Any] = []
    for cmd in commands:
        ts += 1_000_000
        fast.execute(cmd, ts, fast_journal)
        reference.execute(cmd, ts, reference_journal)

    # Assert
    assert encode_events(fast_journal) == encode_events(reference_journal)
    assert fast.state_hash() == reference.state_hash()


#: Brackets small enough for the streams' orders to cross them (the default's first one
#: ends at 1M USD): the fast path's own bracket table against ``requirement_quote``.
TIERED = dataclasses.replace(
    PARAMS,
    margin_tiers=(
        (40 * USDC, 50_000, 30_000),
        (150 * USDC, 120_000, 60_000),
        (2**64 - 1, 300_000, 150_000),
    ),
)


@pytest.mark.parametrize("seed", [5, 6])
def test_tiered_margin_and_param_changes_journal_is_byte_identical(seed: int) -> None:
    # Arrange: tiered brackets, and governance raising them mid-stream (the bracket table
    # the fast path derives from the parameters must follow each change)
    stream = random_stream(seed, 2_000)
    raised = json.dumps(
        {
            "margin_tiers": [
                [30 * USDC, 80_000, 40_000],
                [150 * USDC, 150_000, 80_000],
                [2**64 - 1, 350_000, 200_000],
            ]
        }
    )
    for at in (500, 1_200):
        ts = stream[at][0]
        stream[at:at] = [(ts, SetRiskParams(market_id, raised)) for market_id in (0, 1, 2)]
    fast, reference = (
        Clearinghouse(default_params=TIERED),
        ReferenceClearinghouse(default_params=TIERED),
    )

    # Act
    fast_journal, reference_journal = run(fast, stream), run(reference, stream)

    # Assert
    assert encode_events(fast_journal) == encode_events(reference_journal)
    assert fast.state_hash() == reference.state_hash()
    assert fast._rate_state == reference._rate_state
    assert sum(type(e) is RiskParamsChanged for e in fast_journal) == 6
    codes = {RejectCode(e.code).name for e in fast_journal if type(e) is OrderRejected}
    assert "INSUFFICIENT_MARGIN" in codes, codes
    fast.check_invariants()


@pytest.mark.parametrize("params", [PerpMarketParams(), TIERED], ids=["default", "tiered"])
def test_market_initial_quote_equals_requirement_quote(params: PerpMarketParams) -> None:
    # Arrange: notionals at, around and between every bracket edge, and random ones
    rng = random.Random(11)
    edges = [t.up_to_notional_quote for t in params.margin.tiers[:-1]]
    notionals = [0, 1, *(e + d for e in edges for d in (-1, 0, 1))]
    notionals += [rng.randrange(0, 4 * edges[-1]) for _ in range(500)]
    market = PerpMarket(params=params, listed_ns=0)

    # Act / Assert
    for notional in notionals:
        assert market.initial_quote(notional) == requirement_quote(
            notional, params.margin, MarginKind.INITIAL
        ), notional
