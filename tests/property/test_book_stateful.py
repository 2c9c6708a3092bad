"""Stateful property test: ExchangeCore against an independent reference model.

A hypothesis ``RuleBasedStateMachine`` places (every order type and TIF, limit and market,
crossing prices, 3 owners x 2 sub-accounts, random STP), cancels, cancels all, amends,
moves the trigger price and advances time, and after every step checks that

* the core's events equal the reference model's, event for event (normalized);
* the resting book equals the reference book exactly (price, ids in time order, lots);
* pending triggers and positions equal the model's;
* the book is never crossed and ``check_invariants`` passes;
* quantity is conserved for every accepted order (from events alone);
* no TradeExecuted joins two orders of one owner;
* seqs are gap-free, and a core folding the same events (``apply``) has the same hash;
* a snapshot round-trip has the same hash.

At teardown the whole journal is encoded/decoded and replayed into a fresh core, and a
snapshot-restored core must react to further commands exactly like the original.
"""

from __future__ import annotations

import os
import sys

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

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
    ASK,
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

M = 7
TICK = 10_000  # 0.01 quote per base unit
LOT = 10**7  # 0.01 base unit
MAX_TICKS = 120
MAX_LOTS = 20
MAX_OPEN = 4
OWNERS = (1, 2, 3)
SUBS = (0, 1)

# (order_type, time_in_force): all legal combinations, weighted towards limits, plus a few
# illegal ones that must be refused with INVALID_ORDER_TYPE.
KINDS = [
    (LIMIT, GTC),
    (LIMIT, GTC),
    (LIMIT, GTC),
    (LIMIT, IOC),
    (LIMIT, FOK),
    (LIMIT, POST_ONLY),
    (LIMIT, POST_ONLY_SLIDE),
    (MARKET, IOC),
    (MARKET, FOK),
    (STOP_MARKET, IOC),
    (STOP_LIMIT, GTC),
    (STOP_LIMIT, IOC),
    (TP_MARKET, IOC),
    (TP_LIMIT, GTC),
    (TP_LIMIT, IOC),
    (MARKET, GTC),
    (STOP_LIMIT, FOK),
    (STOP_MARKET, POST_ONLY),
    (TP_LIMIT, POST_ONLY_SLIDE),
]
prices = st.sampled_from([98, 99, 99, 100, 100, 100, 101, 101, 102, 96, 104, 1, 120])
lots_st = st.sampled_from([1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 6, 8] * 3 + [0, MAX_LOTS, 21])
dts = st.integers(0, 3)


class BookMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core = ExchangeCore()
        self.replayed = ExchangeCore()
        self.ref = RefMarket(M, TICK, LOT, 1, MAX_LOTS, MAX_TICKS, MAX_OPEN)
        self.ledger = Ledger()
        self.journal: list = []
        self.ts = 1_000
        spec = CreateMarket(M, "TEST-PERP", TICK, LOT, 1, MAX_LOTS, MAX_TICKS, MAX_OPEN)
        self._run(spec, [("market", M)])

    # ------------------------------------------------------------ plumbing
    def _run(self, cmd, expected) -> list:
        events = self.core.execute(cmd, self.ts)
        start = len(self.journal)
        self.journal.extend(events)
        got = [normalize(e) for e in events]
        assert got == expected, f"{cmd}\n core: {got}\n  ref: {expected}"
        for i, e in enumerate(events):
            assert e.seq == start + i + 1, f"seq gap at {e!r}"
            assert e.ts_ns == self.ts and e.market_id == M, e
            self.ledger.feed(e)
            self.replayed.apply(e)
        return events

    def _pick(self, idx: int) -> int:
        """An order id: mostly a live one, sometimes any id ever issued (or unknown)."""
        live = sorted([*self.ref.resting, *self.ref.triggers])
        if live and idx % 4:
            return live[idx % len(live)]
        return idx % (self.ref.next_id + 1) + 1

    def _owner_of(self, oid: int, fallback: tuple[int, int]) -> tuple[int, int]:
        o = self.ref.resting.get(oid) or self.ref.triggers.get(oid)
        return o.account if o is not None else fallback

    # ------------------------------------------------------------ rules
    @initialize(
        ladder=st.lists(
            st.tuples(
                st.sampled_from(OWNERS),
                st.sampled_from(SUBS),
                st.integers(1, 3),
                st.integers(1, 4),
                st.sampled_from([0, 0, 0, 1, 2]),
            ),
            min_size=0,
            max_size=6,
        )
    )
    def seed_book(self, ladder) -> None:
        """Start from a small two-sided book (bids 97..99, asks 101..103)."""
        for i, (owner, sub, depth, lots, client) in enumerate(ladder):
            side = BID if i % 2 == 0 else ASK
            price = 100 - depth if side == BID else 100 + depth
            self._place(
                owner, sub, side, price, lots, (LIMIT, GTC), 0, False, client, 0, 0, 0, None
            )

    @rule(
        owner=st.sampled_from(OWNERS),
        sub=st.sampled_from(SUBS),
        side=st.sampled_from([BID, ASK]),
        price=prices,
        lots=lots_st,
        kind=st.sampled_from(KINDS),
        stp=st.integers(0, 2),
        reduce_only=st.sampled_from([False] * 6 + [True]),
        client=st.sampled_from([0, 0, 0, 1, 2]),
        trigger=st.integers(97, 103),
        expire=st.one_of(st.just(0), st.just(0), st.integers(0, 30)),
        dt=dts,
        bad=st.sampled_from([None] * 40 + ["tick", "lot", "neg_price", "trigger", "limit_trigger"]),
    )
    def place(
        self,
        owner,
        sub,
        side,
        price,
        lots,
        kind,
        stp,
        reduce_only,
        client,
        trigger,
        expire,
        dt,
        bad,
    ) -> None:
        self._place(
            owner, sub, side, price, lots, kind, stp, reduce_only, client, trigger, expire, dt, bad
        )

    @rule(
        owner=st.sampled_from(OWNERS),
        sub=st.sampled_from(SUBS),
        side=st.sampled_from([BID, ASK]),
        price=st.integers(98, 102),
        lots=st.integers(1, 5),
        tif=st.sampled_from([GTC, GTC, GTC, IOC, POST_ONLY_SLIDE]),
        stp=st.integers(0, 2),
        dt=dts,
    )
    def place_limit(self, owner, sub, side, price, lots, tif, stp, dt) -> None:
        """Plain limit orders around the touch: builds the book and makes it trade."""
        self._place(owner, sub, side, price, lots, (LIMIT, tif), stp, False, 0, 0, 0, dt, None)

    @rule(
        owner=st.sampled_from(OWNERS),
        sub=st.sampled_from(SUBS),
        side=st.sampled_from([BID, ASK]),
        depth=st.integers(0, 3),
        lots=st.integers(1, 5),
        client=st.sampled_from([0, 1, 2, 3]),
        expire=st.sampled_from([0, 0, 5, 20]),
        dt=dts,
    )
    def place_passive(self, owner, sub, side, depth, lots, client, expire, dt) -> None:
        """Resting orders at or behind the mid (they may still cross a thin book)."""
        price = 100 - depth if side == BID else 100 + depth
        self._place(
            owner, sub, side, price, lots, (LIMIT, GTC), 0, False, client, 0, expire, dt, None
        )

    @rule(
        owner=st.sampled_from(OWNERS),
        sub=st.sampled_from(SUBS),
        side=st.sampled_from([BID, ASK]),
        kind=st.sampled_from(
            [
                (STOP_MARKET, IOC),
                (STOP_LIMIT, GTC),
                (STOP_LIMIT, IOC),
                (TP_MARKET, IOC),
                (TP_LIMIT, GTC),
                (TP_LIMIT, IOC),
            ]
        ),
        price=st.integers(97, 103),
        trigger=st.integers(98, 102),
        lots=st.integers(1, 3),
        reduce_only=st.sampled_from([False, True]),
        stp=st.integers(0, 2),
        expire=st.sampled_from([0, 0, 10]),
        dt=dts,
    )
    def place_trigger(
        self, owner, sub, side, kind, price, trigger, lots, reduce_only, stp, expire, dt
    ) -> None:
        self._place(
            owner, sub, side, price, lots, kind, stp, reduce_only, 0, trigger, expire, dt, None
        )

    def _place(
        self,
        owner,
        sub,
        side,
        price,
        lots,
        kind,
        stp,
        reduce_only,
        client,
        trigger,
        expire,
        dt,
        bad,
    ) -> None:
        self.ts += dt
        otype, tif = kind
        price_raw = price * TICK
        size_raw = lots * LOT
        trigger_raw = (
            trigger * TICK if otype in (STOP_MARKET, STOP_LIMIT, TP_MARKET, TP_LIMIT) else 0
        )
        if bad == "tick":
            price_raw += TICK // 2
        elif bad == "lot":
            size_raw += LOT // 3
        elif bad == "neg_price":
            price_raw = 0
        elif bad == "trigger" and trigger_raw:
            trigger_raw += 1
        elif bad == "limit_trigger" and not trigger_raw:
            trigger_raw = trigger * TICK  # only stop / take-profit orders may have one
        expire_at = self.ts + expire - 2 if expire else 0  # may be in the past: refused
        expire_at = max(expire_at, 0)
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
            trigger_raw,
            reduce_only,
            stp,
            expire_at,
        )
        expected = self.ref.place(
            self.ts,
            owner,
            sub,
            side,
            price_raw,
            size_raw,
            otype,
            tif,
            client,
            trigger_raw,
            reduce_only,
            stp,
            expire_at,
        )
        self._run(cmd, expected)

    @rule(
        idx=st.integers(0, 1000),
        by_client=st.sampled_from([False, False, False, True]),
        wrong_owner=st.sampled_from([False] * 5 + [True]),
        dt=dts,
    )
    def cancel(self, idx, by_client, wrong_owner, dt) -> None:
        self.ts += dt
        oid = self._pick(idx)
        owner, sub = self._owner_of(oid, (OWNERS[idx % 3], SUBS[idx % 2]))
        if wrong_owner:
            sub = 1 - sub
        client = 0
        if by_client:
            o = self.ref.resting.get(oid) or self.ref.triggers.get(oid)
            client = o.client if o is not None and o.client else 1 + idx % 2
            oid = 0
        expected = self.ref.cancel(self.ts, owner, sub, oid, client)
        self._run(CancelOrder(M, owner, sub, oid, client), expected)

    @rule(
        owner=st.sampled_from(OWNERS),
        sub=st.sampled_from(SUBS),
        dt=dts,
        really=st.sampled_from([False, False, False, True]),
    )
    def cancel_all(self, owner, sub, dt, really) -> None:
        if not really:  # keep cancel-all rarer than the other rules
            return
        self.ts += dt
        expected = self.ref.cancel_all(self.ts, owner, sub)
        self._run(CancelAll(M, owner, sub), expected)

    @rule(
        idx=st.integers(0, 1000),
        price=prices,
        lots=lots_st,
        same_price=st.booleans(),
        dt=dts,
        bad=st.sampled_from([None] * 20 + ["tick", "lot", "wrong_owner", "zero_price"]),
    )
    def amend(self, idx, price, lots, same_price, dt, bad) -> None:
        self._amend(idx, price, lots, same_price, dt, bad)

    @rule(
        idx=st.integers(0, 1000),
        price=st.integers(98, 102),
        lots=st.integers(1, 6),
        same_price=st.booleans(),
        dt=dts,
    )
    def amend_live(self, idx, price, lots, same_price, dt) -> None:
        self._amend(idx | 1, price, lots, same_price, dt, None)

    def _amend(self, idx, price, lots, same_price, dt, bad) -> None:
        self.ts += dt
        oid = self._pick(idx)
        owner, sub = self._owner_of(oid, (OWNERS[idx % 3], SUBS[idx % 2]))
        o = self.ref.resting.get(oid)
        if same_price and o is not None:
            price = o.price
        price_raw, size_raw = price * TICK, lots * LOT
        if bad == "tick":
            price_raw += 1
        elif bad == "lot":
            size_raw += 1
        elif bad == "wrong_owner":
            owner = owner % 3 + 1
        elif bad == "zero_price":
            price_raw = 0
        expected = self.ref.amend(self.ts, owner, sub, oid, price_raw, size_raw)
        self._run(AmendOrder(M, owner, sub, oid, price_raw, size_raw), expected)

    @rule(
        price=st.integers(95, 105),
        off_tick=st.sampled_from([0, 0, 0, 1, TICK // 2, TICK - 1]),
        dt=dts,
    )
    def move_trigger_price(self, price, off_tick, dt) -> None:
        """A supplied (mark) price, on or off tick: triggers compare with it exactly."""
        self.ts += dt
        raw = price * TICK + off_tick
        expected = self.ref.update_trigger_price(self.ts, raw)
        self._run(UpdateTriggerPrice(M, raw), expected)

    @rule(dt=st.integers(0, 15))
    def advance_time(self, dt) -> None:
        self.ts += dt
        expected = self.ref.expire_orders(self.ts)
        self._run(ExpireOrders(), expected)

    # ------------------------------------------------------------ invariants
    @invariant()
    def book_matches_reference(self) -> None:
        """Consistent and never crossed; book, triggers and positions equal the model's."""
        assert_book_matches(self.core, self.ref)
        assert core_positions(self.core) == self.ref.open_positions()

    @invariant()
    def quantity_conserved(self) -> None:
        self.ledger.check(core_live_lots(self.core, M))

    @invariant()
    def replay_and_snapshot_agree(self) -> None:
        h = self.core.state_hash()
        assert self.replayed.state_hash() == h
        self.replayed.check_invariants()
        restored = ExchangeCore.from_snapshot(self.core.snapshot())
        assert restored.state_hash() == h

    def teardown(self) -> None:
        if self.replayed.next_seq != self.core.next_seq:
            return  # a step already failed; its error is the one to report
        h = self.core.state_hash()
        fresh = ExchangeCore()
        for e in decode_events(encode_events(self.journal)):
            fresh.apply(e)
        assert fresh.state_hash() == h
        # A snapshot-restored core must behave exactly like the original from here on.
        restored = ExchangeCore.from_snapshot(self.core.snapshot())
        ts = self.ts + 1
        for cmd in (
            UpdateTriggerPrice(M, 94 * TICK),
            UpdateTriggerPrice(M, 106 * TICK),
            PlaceOrder(M, 9, 0, BID, MAX_TICKS * TICK, 40 * LOT, MARKET, IOC),
            PlaceOrder(M, 9, 0, ASK, TICK, 40 * LOT, MARKET, IOC),
            ExpireOrders(),
        ):
            a, b = self.core.execute(cmd, ts), restored.execute(cmd, ts)
            assert a == b, (cmd, a, b)
            ts += 10
        a, b = self.core.execute(ExpireOrders(), 10**18), restored.execute(ExpireOrders(), 10**18)
        assert a == b
        assert restored.state_hash() == self.core.state_hash()
        self.core.check_invariants()


BookMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestBookStateful = BookMachine.TestCase
