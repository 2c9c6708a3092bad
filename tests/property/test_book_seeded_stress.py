"""Seeded random stress of ExchangeCore (Phoenix-style): ``random.Random(seed)``, seeds 0..9.

Each seed drives 5,000 random commands (every order type and TIF, STP modes, reduce-only,
client ids, expiry, triggers, amends, cancels) over a drifting mid price, and checks

* every command's events equal the independent reference model's (``ref_book_model``);
* quantity conservation and "no self-trade" from the events (``Ledger``) every command;
* ``check_invariants``, an uncrossed book and book == reference every 250 commands;
* at the end: a fresh core folding the (JSON-encoded) journal has the same ``state_hash``,
  ``from_snapshot`` has the same hash, and a core restored from a mid-run snapshot produced
  exactly the same events as the original for the second half of the run.
"""

from __future__ import annotations

import os
import random
import sys

import pytest

from exchange.core.commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    CreateMarket,
    ExpireOrders,
    PlaceOrder,
    UpdateTriggerPrice,
)
from exchange.core.events import decode_events, encode_events
from exchange.core.state import ExchangeCore

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_book_model import (
    BID,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    POST_ONLY,
    POST_ONLY_SLIDE,
    STOP_LIMIT,
    STOP_MARKET,
    TP_LIMIT,
    TP_MARKET,
    Ledger,
    RefMarket,
    assert_book_matches,
    core_live_lots,
    core_positions,
    normalize,
)

M = 3
TICK = 5_000  # 0.005 quote
LOT = 2 * 10**6  # 0.002 base; one tick x one lot = 10 quote units
MAX_TICKS = 400
MAX_LOTS = 50
MAX_OPEN = 12
N_COMMANDS = 5_000
CHECK_EVERY = 250
OWNERS = (1, 2, 3, 4)

KIND_WEIGHTS = [
    ((LIMIT, GTC), 40),
    ((LIMIT, IOC), 8),
    ((LIMIT, FOK), 5),
    ((LIMIT, POST_ONLY), 5),
    ((LIMIT, POST_ONLY_SLIDE), 5),
    ((MARKET, IOC), 4),
    ((MARKET, FOK), 2),
    ((STOP_MARKET, IOC), 3),
    ((STOP_LIMIT, GTC), 3),
    ((STOP_LIMIT, IOC), 1),
    ((TP_MARKET, IOC), 2),
    ((TP_LIMIT, GTC), 2),
    ((MARKET, GTC), 1),
    ((STOP_LIMIT, FOK), 1),
]
KINDS = [k for k, _ in KIND_WEIGHTS]
KIND_W = [w for _, w in KIND_WEIGHTS]
ACTIONS = ["place", "cancel", "cancel_all", "amend", "trigger", "expire"]
ACTION_W = [66, 10, 1, 14, 6, 3]


def random_command(rng: random.Random, ref: RefMarket, ts: int, mid: int):
    """One random command and the reference model's expected (normalized) events."""
    action = rng.choices(ACTIONS, ACTION_W)[0]
    owner, sub = rng.choice(OWNERS), rng.randrange(2)
    if action == "place":
        otype, tif = rng.choices(KINDS, KIND_W)[0]
        side = rng.randrange(2)
        # Mostly passive (bids below the mid, asks above) so a deep book builds up.
        price = mid - rng.randint(-2, 8) if side == BID else mid + rng.randint(-2, 8)
        if rng.random() < 0.01:
            price = rng.choice([1, MAX_TICKS, MAX_TICKS + 1, 0])
        lots = rng.choice([1, 1, 2, 2, 3, 4, 5, 8, 13])
        if rng.random() < 0.01:
            lots = rng.choice([0, MAX_LOTS, MAX_LOTS + 1])
        price_raw, size_raw = price * TICK, lots * LOT
        if rng.random() < 0.01:
            price_raw += 1
        if rng.random() < 0.01:
            size_raw += 1
        trigger = 0
        if otype in (STOP_MARKET, STOP_LIMIT, TP_MARKET, TP_LIMIT) or rng.random() < 0.005:
            trigger = (mid + rng.randint(-4, 4)) * TICK  # refused on a non-trigger order
        if trigger and rng.random() < 0.01:
            trigger += 1  # off-tick: refused
        client = rng.choice([0, 0, 0, 0, 0, 0, *range(1, 9)])
        reduce_only = rng.random() < 0.1
        stp = rng.randrange(3)
        expire = 0
        r = rng.random()
        if r < 0.15:
            expire = ts + rng.randint(1, 300)
        elif r < 0.17:
            expire = ts - rng.randint(0, 3)
        cmd = PlaceOrder(
            M,
            owner,
            sub,
            side,
            price_raw,
            size_raw,
            otype,
            tif,
            client,
            trigger,
            reduce_only,
            stp,
            max(expire, 0),
        )
        return cmd, ref.place(ts, *cmd[1:])
    live = sorted([*ref.resting, *ref.triggers])
    oid = rng.choice(live) if live and rng.random() < 0.9 else rng.randint(1, ref.next_id)
    o = ref.resting.get(oid) or ref.triggers.get(oid)
    if o is not None and rng.random() < 0.95:
        owner, sub = o.account
    if action == "cancel":
        if o is not None and o.client and rng.random() < 0.3:
            cmd = CancelOrder(M, owner, sub, 0, o.client)
        else:
            cmd = CancelOrder(M, owner, sub, oid, 0)
        return cmd, ref.cancel(ts, owner, sub, cmd.order_id, cmd.client_order_id)
    if action == "cancel_all":
        return CancelAll(M, owner, sub), ref.cancel_all(ts, owner, sub)
    if action == "amend":
        if o is not None and rng.random() < 0.4:
            price = o.price
        else:
            price = mid + rng.randint(-6, 6)
        lots = rng.choice([1, 2, 3, 4, 6])
        price_raw, size_raw = price * TICK, lots * LOT
        if rng.random() < 0.01:
            price_raw = rng.choice([0, price_raw + 1, (MAX_TICKS + 1) * TICK])
        elif rng.random() < 0.01:
            size_raw = rng.choice([0, size_raw + 1, (MAX_LOTS + 1) * LOT])
        cmd = AmendOrder(M, owner, sub, oid, price_raw, size_raw)
        return cmd, ref.amend(ts, owner, sub, oid, price_raw, size_raw)
    if action == "trigger":
        price = (mid + rng.randint(-5, 5)) * TICK + rng.choice([0, 0, 0, 1, TICK // 2])
        return UpdateTriggerPrice(M, price), ref.update_trigger_price(ts, price)
    return ExpireOrders(), ref.expire_orders(ts)


@pytest.mark.parametrize("seed", range(10))
def test_seeded_stress(seed: int) -> None:
    rng = random.Random(seed)
    core = ExchangeCore()
    ref = RefMarket(M, TICK, LOT, 1, MAX_LOTS, MAX_TICKS, MAX_OPEN)
    ledger = Ledger()
    ts = 1_000_000
    journal = core.execute(
        CreateMarket(M, "STRESS-PERP", TICK, LOT, 1, MAX_LOTS, MAX_TICKS, MAX_OPEN), ts
    )
    mid = 200
    restored: ExchangeCore | None = None
    kinds_seen: set[str] = set()
    for i in range(N_COMMANDS):
        ts += rng.randint(0, 5)
        if rng.random() < 0.05:
            mid = min(max(mid + rng.choice([-1, 1]), 20), MAX_TICKS - 20)
        cmd, expected = random_command(rng, ref, ts, mid)
        events = core.execute(cmd, ts)
        got = [normalize(e) for e in events]
        assert got == expected, f"seed {seed} command {i}: {cmd}\n core: {got}\n  ref: {expected}"
        for j, e in enumerate(events):
            assert e.seq == len(journal) + j + 1, f"seq gap at {e!r}"
            ledger.feed(e)
            kinds_seen.add(got[j][0])
        journal.extend(events)
        if restored is not None:
            assert restored.execute(cmd, ts) == events, f"snapshot-restored core diverged at {i}"
        if i == N_COMMANDS // 2:
            restored = ExchangeCore.from_snapshot(core.snapshot())
            assert restored.state_hash() == core.state_hash()
        if i % CHECK_EVERY == 0:
            assert_book_matches(core, ref)
            ledger.check(core_live_lots(core, M))

    assert_book_matches(core, ref)
    ledger.check(core_live_lots(core, M))
    assert core_positions(core) == ref.open_positions()
    h = core.state_hash()
    fresh = ExchangeCore()
    for e in decode_events(encode_events(journal)):
        fresh.apply(e)
    assert fresh.state_hash() == h
    fresh.check_invariants()
    assert ExchangeCore.from_snapshot(core.snapshot()).state_hash() == h
    assert restored is not None and restored.state_hash() == h
    # The run must actually have exercised the interesting paths.
    assert {
        "trade",
        "rested",
        "canceled",
        "expired",
        "amended",
        "triggered",
        "decremented",
        "rejected",
    } <= kinds_seen, kinds_seen
