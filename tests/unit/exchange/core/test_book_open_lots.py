"""``OrderBook.open_lots``: each account's open bid / ask lots, kept as orders rest, fill
(as maker and, amended or triggered, as taker), are decremented by self-trade prevention,
amended, cancelled and expire; live and folded from the journal alike."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from exchange.core.commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    CreateMarket,
    ExpireOrders,
    PlaceOrder,
    UpdateTriggerPrice,
)
from exchange.core.orders import SUB_ACCOUNTS_PER_OWNER, OrderType, SelfTradePrevention, TimeInForce
from exchange.core.state import ExchangeCore

TICK = 1_000_000
LOT = 1_000_000_000


def recomputed(core: ExchangeCore, market_id: int) -> dict[int, list[int]]:
    """Open lots per account by a scan of its live orders (the rule the totals keep)."""
    out: dict[int, list[int]] = {}
    for account, live in core.books[market_id].account_orders.items():
        lots = out[account] = [0, 0]
        for order in live.values():
            lots[order.side] += order.remaining_lots
    return out


def stream(seed: int, steps: int, core: ExchangeCore) -> Iterator[Any]:
    """Seeded commands; amends and cancels mostly aim at the account's live orders."""
    rng = random.Random(seed)
    yield CreateMarket(1, "T", TICK, LOT)
    for i in range(steps):
        cmds: list[Any] = []
        owner, sub = rng.randint(1, 4), rng.randint(0, 1)
        live_ids = sorted(
            core.books[1].account_orders.get(owner * SUB_ACCOUNTS_PER_OWNER + sub, {})
        )
        order_id = rng.choice(live_ids) if live_ids and rng.random() < 0.9 else i + 1
        side = rng.randrange(2)
        price = rng.randint(95, 105) * TICK
        size = rng.randint(1, 6) * LOT
        roll = rng.random()
        if roll < 0.5:
            cmds.append(
                PlaceOrder(
                    1,
                    owner,
                    sub,
                    side,
                    price,
                    size,
                    time_in_force=rng.choice((TimeInForce.GTC, TimeInForce.IOC)),
                    stp_mode=rng.choice(list(SelfTradePrevention)),
                    expire_at_ns=rng.choice((0, 0, (i + rng.randint(1, 30)) * 1_000)),
                )
            )
        elif roll < 0.58:
            cmds.append(
                PlaceOrder(
                    1,
                    owner,
                    sub,
                    side,
                    price,
                    size,
                    order_type=OrderType.STOP_LIMIT,
                    trigger_price=rng.randint(95, 105) * TICK,
                )
            )
        elif roll < 0.75:
            cmds.append(AmendOrder(1, owner, sub, order_id, price, size))
        elif roll < 0.85:
            cmds.append(CancelOrder(1, owner, sub, order_id))
        elif roll < 0.88:
            cmds.append(CancelAll(1, owner, sub))
        elif roll < 0.95:
            cmds.append(UpdateTriggerPrice(1, rng.randint(95, 105) * TICK))
        else:
            cmds.append(ExpireOrders())
        yield from cmds


def test_open_lots_equal_a_scan_after_every_command_live_and_folded() -> None:
    # Arrange
    live, folded = ExchangeCore(), ExchangeCore()
    journal: list[Any] = []
    seen_nonempty = 0

    # Act / Assert: after every command, the kept totals equal the scan, in both
    for i, cmd in enumerate(stream(3, 3_000, live)):
        start = len(journal)
        live.execute(cmd, (i + 1) * 1_000, journal)
        for e in journal[start:]:
            folded.apply(e)
        if 1 in live.books:
            assert live.books[1].open_lots == recomputed(live, 1)
            assert folded.books[1].open_lots == live.books[1].open_lots
            seen_nonempty += bool(live.books[1].open_lots)
    live.check_invariants()
    folded.check_invariants()
    assert seen_nonempty > 1_000
