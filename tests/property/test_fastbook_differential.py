"""Differential tests: the numba ``FastMarket`` against the reference ``ExchangeCore``.

Random command streams (a narrow price range so orders cross often, 3 owners x 2
sub-accounts, every time in force, limit and market orders, stop / take-profit trigger
orders and trigger price updates (on and off tick, several firing at once), reduce-only,
every STP mode, colliding client ids, cancels of live / pending / unknown / foreign ids,
cancel-all, amends, expiry by advancing time, and malformed prices and sizes) go through
both cores; after every command the events (messages included), the canonical book, the
pending trigger orders, positions, ``seq`` and ``next_order_id`` must be identical. The fast core starts with a tiny capacity so its
grow-and-copy path runs too.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.core.commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    CreateMarket,
    ExpireOrders,
    PlaceOrder,
    UpdateTriggerPrice,
)
from exchange.core.events import OrderTriggered
from exchange.core.fastbook import FastMarket
from exchange.core.market import MarketSpec
from exchange.core.state import ExchangeCore

TICK = 1_000_000
LOT = 1_000
MID = 7
SPEC = dict(
    market_id=MID,
    symbol="DIFF-PERP",
    tick_size=TICK,
    lot_size=LOT,
    min_size_lots=2,
    max_size_lots=40,
    max_price_ticks=14,
    max_open_orders_per_account=4,
)


def make_pair(
    spec: dict[str, Any] = SPEC, capacity: int = 4, accounts: int = 2
) -> tuple[ExchangeCore, FastMarket]:
    core = ExchangeCore()
    core.execute(CreateMarket(**spec), 0)
    fast = FastMarket(MarketSpec(**spec), capacity=capacity, accounts=accounts)
    fast.seq = core.next_seq
    fast.next_order_id = core.next_order_id
    return core, fast


def core_positions(core: ExchangeCore, market_id: int) -> dict[int, int]:
    return {a: lots for (a, m), lots in core.positions.items() if m == market_id and lots}


def core_triggers(core: ExchangeCore, market_id: int) -> list[tuple[int, ...]]:
    pending = core.trigger_books[market_id].orders.values()
    return [o.canonical() for o in sorted(pending, key=lambda o: o.order_id)]


def assert_same_state(core: ExchangeCore, fast: FastMarket) -> None:
    assert fast.canonical() == core.books[fast.market_id].canonical()
    assert fast.trigger_orders() == core_triggers(core, fast.market_id)
    assert fast.positions() == core_positions(core, fast.market_id)
    assert fast.seq == core.next_seq
    assert fast.next_order_id == core.next_order_id


# ---------------------------------------------------------------- strategies
BAD_PRICES = [0, -TICK, TICK + 1, 15 * TICK, 99 * TICK, 2**40 * TICK, 7 * TICK - 3]
BAD_SIZES = [0, -LOT, LOT + 7, 41 * LOT, 2**50 * LOT, LOT]  # LOT is below min_size_lots
prices = st.integers(0, 99).flatmap(
    lambda x: (
        st.integers(5, 8).map(lambda t: t * TICK)
        if x < 60
        else st.integers(1, 12).map(lambda t: t * TICK)
        if x < 90
        else st.sampled_from(BAD_PRICES)
    )
)
sizes = st.integers(0, 99).flatmap(
    lambda x: st.integers(2, 14).map(lambda n: n * LOT) if x < 88 else st.sampled_from(BAD_SIZES)
)
owners = st.sampled_from([1, 2, 3])
subs = st.sampled_from([0, 1])
cids = st.sampled_from([0, 0, 0, 1, 2, 3, 4, 2**64 - 1])
# (k, own): the k-th most recent order id (k = 0: the next, unknown one); own = address it
# from its real owner / sub-account when it is live, else from the drawn account.
targets = st.tuples(
    st.sampled_from([0, 1, 1, 2, 2, 3, 4, 5, 6, 8, 12]), st.sampled_from([True, True, True, False])
)


# trigger prices: mostly valid ticks near the book, sometimes refused ones
trigger_prices = st.integers(0, 99).flatmap(
    lambda x: (
        st.integers(4, 9).map(lambda t: t * TICK)
        if x < 90
        else st.sampled_from([0, -TICK, TICK + 1, 15 * TICK, 2**70 * TICK])
    )
)
# a trigger price update: on a tick, between ticks, or refused
update_prices = st.integers(0, 99).flatmap(
    lambda x: (
        st.integers(3, 10).map(lambda t: t * TICK)
        if x < 70
        else st.integers(3 * TICK, 10 * TICK)
        if x < 95
        else st.sampled_from([0, -1, 2**64 - 1])
    )
)


@st.composite
def place_cmd(draw: Any) -> PlaceOrder:
    order_type = draw(st.sampled_from([0, 0, 0, 1, 2, 3, 4, 5]))
    if order_type >= 2:  # trigger orders: mostly a valid time in force and trigger price
        tif = draw(st.sampled_from([0, 1, 1, 0, 2, 3]))
        trigger = draw(trigger_prices)
    else:
        tif = draw(st.sampled_from([0, 0, 1, 2, 3, 4]))
        trigger = draw(st.sampled_from([0] * 20 + [3 * TICK, TICK + 1]))
    return PlaceOrder(
        MID,
        draw(owners),
        draw(subs),
        draw(st.sampled_from([0, 1])),
        draw(prices),
        draw(sizes),
        order_type,
        tif,
        draw(cids),
        trigger,
        draw(st.sampled_from([False, False, False, True])),
        draw(st.integers(0, 2)),
        draw(st.sampled_from([0, 0, 0, 0, -1, 1, 5, 30, 120])),  # relative; made absolute
    )


@st.composite
def step(draw: Any) -> tuple[int, Any]:
    dt = draw(st.sampled_from([0, 0, 1, 3, 10, 40]))
    kind = draw(
        st.sampled_from(
            ["place"] * 8 + ["cancel"] * 2 + ["cancel_all", "amend", "amend", "expire", "trigger"]
        )
    )
    if kind == "place":
        return dt, draw(place_cmd())
    if kind == "trigger":
        return dt, UpdateTriggerPrice(MID, draw(update_prices))
    if kind == "cancel":
        if draw(st.booleans()):
            return dt, ("cancel", draw(owners), draw(subs), draw(targets))
        return dt, CancelOrder(MID, draw(owners), draw(subs), 0, draw(cids))
    if kind == "cancel_all":
        return dt, CancelAll(MID, draw(owners), draw(subs))
    if kind == "amend":
        # how: 0 = the drawn price and size, 1 = same price and smaller size (keeps
        # priority), 2 = the current price and size (refused)
        return dt, (
            "amend",
            draw(owners),
            draw(subs),
            draw(targets),
            draw(prices),
            draw(sizes),
            draw(st.sampled_from([0, 0, 1, 2])),
        )
    return dt, ExpireOrders()


def resolve(core: ExchangeCore, cmd: Any, ts: int) -> Any:
    """Make relative expiries absolute and point cancel / amend targets at real orders."""
    if type(cmd) is PlaceOrder:
        if cmd.expire_at_ns:
            return cmd._replace(expire_at_ns=ts + cmd.expire_at_ns)
        return cmd
    if type(cmd) is not tuple:
        return cmd
    owner, sub, (k, own) = cmd[1], cmd[2], cmd[3]
    oid = max(0, core.next_order_id - k)
    order = core.books[MID].orders.get(oid) or core.trigger_books[MID].orders.get(oid)
    if own and order is not None:
        owner, sub = order.owner_id, order.sub_account_id
    if cmd[0] == "cancel":
        return CancelOrder(MID, owner, sub, oid, 0)
    price, size = cmd[4], cmd[5]
    if order is not None and cmd[6]:
        price = order.price_ticks * TICK
        size = order.remaining_lots * LOT
        if cmd[6] == 1:
            size = max(LOT, size - 2 * LOT)
    return AmendOrder(MID, owner, sub, oid, price, size)


def run_both(core: ExchangeCore, fast: FastMarket, cmd: Any, ts: int) -> None:
    expected = core.execute(cmd, ts)
    got = fast.execute(cmd, ts)
    assert got == expected, f"{cmd} at {ts}"
    for a, b in zip(got, expected):  # equal tuples of equal types, field by field
        assert type(a) is type(b)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(step(), min_size=40, max_size=80))
def test_fast_core_matches_reference(steps: list[tuple[int, Any]]) -> None:
    core, fast = make_pair()
    ts = 1_000
    for dt, cmd in steps:
        ts += dt
        run_both(core, fast, resolve(core, cmd, ts), ts)
        assert_same_state(core, fast)


@st.composite
def position_step(draw: Any) -> tuple[int, Any]:
    """Dense trading with many reduce-only orders: positions move and resting reduce-only
    orders get shrunk or cancelled by the upkeep after fills and rests; reduce-only
    triggers fire after the position moved (run, or cancelled whole)."""
    dt = draw(st.sampled_from([0, 1, 2]))
    kind = draw(st.sampled_from(["place"] * 6 + ["amend", "cancel", "trigger", "update"]))
    if kind == "update":
        return dt, UpdateTriggerPrice(MID, draw(st.integers(4 * TICK, 8 * TICK)))
    if kind == "trigger":
        order_type = draw(st.integers(2, 5))
        side = draw(st.sampled_from([0, 1]))
        market = order_type in (2, 4)
        return dt, PlaceOrder(
            MID,
            draw(owners),
            draw(subs),
            side,
            (14 if side == 0 else 1) * TICK if market else draw(st.integers(5, 7)) * TICK,
            draw(st.integers(2, 6)) * LOT,
            order_type,
            1 if market else draw(st.sampled_from([0, 1])),
            0,
            draw(st.integers(5, 7)) * TICK,
            draw(st.sampled_from([False, True, True])),
            draw(st.integers(0, 2)),
            draw(st.sampled_from([0, 0, 0, 20])),
        )
    if kind == "place":
        return dt, PlaceOrder(
            MID,
            draw(owners),
            draw(subs),
            draw(st.sampled_from([0, 1])),
            draw(st.integers(5, 7)) * TICK,
            draw(st.integers(2, 6)) * LOT,
            0,
            draw(st.sampled_from([0, 0, 0, 1, 4])),
            0,
            0,
            draw(st.sampled_from([False, True, True])),
            draw(st.integers(0, 2)),
            draw(st.sampled_from([0, 0, 0, 20])),
        )
    if kind == "cancel":
        return dt, ("cancel", draw(owners), draw(subs), draw(targets))
    return dt, (
        "amend",
        draw(owners),
        draw(subs),
        draw(targets),
        draw(st.integers(5, 7)) * TICK,
        draw(st.integers(2, 8)) * LOT,
        draw(st.sampled_from([0, 1, 1])),
    )


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(position_step(), min_size=40, max_size=80))
def test_reduce_only_upkeep_matches_reference(steps: list[tuple[int, Any]]) -> None:
    core, fast = make_pair(dict(SPEC, max_open_orders_per_account=6))
    ts = 1_000
    for dt, cmd in steps:
        ts += dt
        run_both(core, fast, resolve(core, cmd, ts), ts)
        assert_same_state(core, fast)


# ---------------------------------------------------------------- seeded stress
class StressStream:
    """A long stream near a drifting mid: passive and crossing orders with every flag,
    stop / take-profit orders and trigger price updates near the mid, cancels and amends of
    live and pending orders (mostly by their owner), expiry and cancel-all.
    It looks at the reference core's book to pick real targets."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.mid = 500
        self.ts = 1_000

    def target(self, core: ExchangeCore) -> tuple[int, int, int]:
        rng = self.rng
        owner, sub = rng.randint(1, 6), rng.randint(0, 1)
        orders = core.books[MID].orders
        pending = core.trigger_books[MID].orders
        if pending and rng.random() < 0.1:
            orders = pending
        if orders and rng.random() < 0.85:
            order = orders[rng.choice(tuple(orders))]
            if rng.random() < 0.9:
                owner, sub = order.owner_id, order.sub_account_id
            return owner, sub, order.order_id
        return owner, sub, rng.randint(max(0, core.next_order_id - 50), core.next_order_id)

    def next(self, core: ExchangeCore) -> tuple[Any, int]:
        rng = self.rng
        self.ts += rng.choice((0, 1, 2, 5))
        ts = self.ts
        if rng.random() < 0.02:
            self.mid += rng.choice((-1, 1))
        mid = self.mid
        x = rng.random()
        owner, sub = rng.randint(1, 6), rng.randint(0, 1)
        if x < 0.04:  # a trigger price update near the mid, often between ticks
            cmd: Any = UpdateTriggerPrice(
                MID, (mid + rng.randint(-6, 6)) * TICK + rng.choice((0, 0, TICK // 2))
            )
        elif x < 0.08:  # a stop / take-profit order around the mid
            side = rng.randint(0, 1)
            order_type = rng.randint(2, 5)
            market = order_type in (2, 4)
            ticks = (mid + (20 if side == 0 else -20)) if market else mid + rng.randint(-4, 4)
            cmd = PlaceOrder(
                MID,
                owner,
                sub,
                side,
                ticks * TICK,
                rng.randint(1, 30) * LOT,
                order_type,
                1 if market else rng.choice((0, 1)),
                rng.choice((0, 0, 0, rng.randint(1, 50))),
                (mid + rng.randint(-6, 6)) * TICK,
                rng.random() < 0.2,
                rng.randint(0, 2),
                rng.choice((0, 0, 0, ts + rng.randint(1, 400))),
            )
        elif x < 0.62:
            side = rng.randint(0, 1)
            off = rng.randint(-3, 8)
            ticks = mid - off if side == 0 else mid + off
            tif = rng.choice((0, 0, 0, 0, 1, 2, 3, 4))
            order_type = 1 if tif in (1, 2) and rng.random() < 0.3 else 0
            size = rng.randint(1, 60) * LOT if rng.random() > 0.01 else LOT + 1
            cmd = PlaceOrder(
                MID,
                owner,
                sub,
                side,
                ticks * TICK,
                size,
                order_type,
                tif,
                rng.choice((0, 0, 0, rng.randint(1, 50))),
                0,
                rng.random() < 0.05,
                rng.randint(0, 2),
                rng.choice((0, 0, 0, 0, ts + rng.randint(1, 400))),
            )
        elif x < 0.80:
            owner, sub, oid = self.target(core)
            if rng.random() < 0.85:
                cmd = CancelOrder(MID, owner, sub, oid)
            else:
                cmd = CancelOrder(MID, owner, sub, 0, rng.randint(1, 50))
        elif x < 0.97:
            owner, sub, oid = self.target(core)
            order = core.books[MID].orders.get(oid) or core.trigger_books[MID].orders.get(oid)
            if order is not None and rng.random() < 0.4:  # size down in place
                new_price = order.price_ticks * TICK
                new_size = max(1, order.remaining_lots - rng.randint(0, 3)) * LOT
            else:
                new_price = (mid + rng.randint(-8, 8)) * TICK
                new_size = rng.randint(1, 60) * LOT
            cmd = AmendOrder(MID, owner, sub, oid, new_price, new_size)
        elif x < 0.995:
            cmd = ExpireOrders()
        else:
            cmd = CancelAll(MID, owner, sub)
        return cmd, ts


STRESS_SPEC = dict(
    market_id=MID,
    symbol="STRESS-PERP",
    tick_size=TICK,
    lot_size=LOT,
    min_size_lots=1,
    max_size_lots=1000,
    max_price_ticks=10_000,
    max_open_orders_per_account=200,
)


def test_seeded_stress_100k_commands() -> None:
    """100k commands: per-call events equal the reference's after every command; the batch
    path (the whole array inside numba) yields the same event stream and end state."""
    stream = StressStream(seed=20240601)
    core, fast = make_pair(STRESS_SPEC, capacity=64, accounts=4)
    cmds: list[tuple[Any, int]] = []
    expected: list[Any] = []
    for i in range(100_000):
        cmd, ts = stream.next(core)
        cmds.append((cmd, ts))
        want = core.execute(cmd, ts)
        got = fast.execute(cmd, ts)
        assert got == want, f"command {i}: {cmd}"
        expected.extend(want)
    assert_same_state(core, fast)
    assert fast.open_order_count() > 50  # the stream keeps a real book
    assert sum(type(e) is OrderTriggered for e in expected) > 1000  # and fires triggers

    _, batch = make_pair(STRESS_SPEC, capacity=64, accounts=4)
    rows = batch.run_batch(FastMarket.encode(cmds), keep_events=True)
    got_all = batch.drain_events()
    assert rows == len(got_all) == len(expected)
    assert got_all == expected
    assert_same_state(core, batch)


def test_batch_without_events_counts_rows() -> None:
    stream = StressStream(seed=7)
    core, fast = make_pair(STRESS_SPEC, capacity=16, accounts=4)
    cmds, n = [], 0
    for _ in range(5_000):
        cmd, ts = stream.next(core)
        cmds.append((cmd, ts))
        n += len(core.execute(cmd, ts))
    ops = FastMarket.encode(cmds)
    half = len(ops) // 2
    rows = fast.run_batch(ops[:half]) + fast.run_batch(np.ascontiguousarray(ops[half:]))
    assert rows == n
    assert_same_state(core, fast)
