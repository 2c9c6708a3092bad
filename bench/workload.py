"""The matching-benchmark workload of ``/work/shared/notes/performance-anchors.md``.

A seeded generator (``random.Random(seed)``) that produces every operation up front:

* ``WARMUP_ORDERS`` (20,000) untimed warm-up limit orders (the limit part of the mix below:
  passive and marketable in the ratio 60 : 15), then
* ``n_ops`` timed operations (1,000,000; 100,000 with ``--quick``):
  60 % passive limits near the touch: 1..10 ticks from the reference mid (1..100 lots),
  25 % cancels of an order that is resting at that moment (uniform among resting ids),
  15 % marketable limits priced 1..5 ticks through the opposite touch (1..200 lots; the
  remainder rests GTC).
* A reference mid does a lazy random walk: before every operation, with probability 2 %, it
  steps one tick up or down.

The generator knows which orders rest because it runs every order through its own small
reference book (sorted price lists + FIFO lists, eager cancel: a different algorithm from the
heap + lazy-cancel baseline in ``bench.peers``). That book's end state is the expected end
state of every correct price-time engine on the workload.

An operation is a plain tuple of ints ``(kind, order_id, side, price_ticks, qty_lots)``:
``kind`` is ``ADD`` or ``CANCEL``; ``side`` is 0 = bid, 1 = ask (``exchange.core`` Side values).
Order ids are 1, 2, 3, ... in submission order (every order is accepted), so they equal the
ids ``ExchangeCore`` assigns. A cancel carries the target's side and price and qty 0. Each
order comes from its own owner (``owner_id = order_id``), so self-trade prevention never
applies.
"""

from __future__ import annotations

import random
from bisect import bisect_left, insort
from typing import NamedTuple

ADD = 0
CANCEL = 1
BID = 0
ASK = 1

WARMUP_ORDERS = 20_000
FULL_OPS = 1_000_000
QUICK_OPS = 100_000
START_MID = 100_000  # ticks (1 tick = 1.0 quote: a BTC-like price of 100,000)
P_PASSIVE = 0.60
P_CANCEL = 0.25  # the rest (0.15) is marketable
P_MID_STEP = 0.02
PASSIVE_DEPTH = 10  # passive bids at mid-1-d, asks at mid+1+d, d in 0..9
MAX_THROUGH = 5  # marketable orders are priced 1..5 ticks through the opposite touch

Op = tuple[int, int, int, int, int]


class EndState(NamedTuple):
    best_bid: int  # ticks, 0 = no bids
    best_ask: int  # ticks, 0 = no asks
    bid_qty: int  # resting lots on the bid side
    ask_qty: int
    fills: int  # maker fills (one per maker touched by a taker), warm-up included
    filled_qty: int  # lots traded, warm-up included


class Workload(NamedTuple):
    seed: int
    warmup: list[Op]
    ops: list[Op]
    expected: EndState
    resting_after_warmup: int
    resting_at_end: int
    max_resting: int
    timed_fills: int  # maker fills during the timed ops only
    n_adds: int  # orders in warm-up + timed ops


class ReferenceBook:
    """Price-time book used only by the generator: knows the touch and which ids rest."""

    def __init__(self) -> None:
        self.prices: tuple[list[int], list[int]] = ([], [])  # ascending, per side
        self.levels: tuple[dict[int, list[int]], dict[int, list[int]]] = ({}, {})
        self.qty: dict[int, int] = {}  # resting id -> remaining lots
        self.where: dict[int, tuple[int, int]] = {}  # resting id -> (side, price)
        self.live: list[int] = []  # resting ids, for a uniform choice
        self.pos: dict[int, int] = {}  # resting id -> index in live
        self.fills = 0
        self.filled_qty = 0

    def best_bid(self) -> int:
        p = self.prices[BID]
        return p[-1] if p else 0

    def best_ask(self) -> int:
        p = self.prices[ASK]
        return p[0] if p else 0

    def _forget(self, oid: int) -> None:
        i = self.pos.pop(oid)
        last = self.live.pop()
        if last != oid:
            self.live[i] = last
            self.pos[last] = i
        del self.qty[oid]
        del self.where[oid]

    def add(self, oid: int, side: int, price: int, qty: int) -> None:
        other = 1 - side
        prices, levels = self.prices[other], self.levels[other]
        while qty and prices:
            best = prices[0] if side == BID else prices[-1]
            if (side == BID and best > price) or (side == ASK and best < price):
                break
            queue = levels[best]
            while qty and queue:
                maker = queue[0]
                have = self.qty[maker]
                take = qty if qty < have else have
                qty -= take
                self.fills += 1
                self.filled_qty += take
                if take == have:
                    queue.pop(0)
                    self._forget(maker)
                else:
                    self.qty[maker] = have - take
            if not queue:
                del levels[best]
                if side == BID:
                    prices.pop(0)
                else:
                    prices.pop()
        if qty:
            own = self.levels[side]
            level = own.get(price)
            if level is None:
                level = own[price] = []
                insort(self.prices[side], price)
            level.append(oid)
            self.qty[oid] = qty
            self.where[oid] = (side, price)
            self.pos[oid] = len(self.live)
            self.live.append(oid)

    def cancel(self, oid: int) -> tuple[int, int]:
        side, price = self.where[oid]
        queue = self.levels[side][price]
        queue.remove(oid)
        if not queue:
            del self.levels[side][price]
            prices = self.prices[side]
            del prices[bisect_left(prices, price)]
        self._forget(oid)
        return side, price

    def end_state(self) -> EndState:
        return EndState(
            self.best_bid(),
            self.best_ask(),
            sum(self.qty[o] for q in self.levels[BID].values() for o in q),
            sum(self.qty[o] for q in self.levels[ASK].values() for o in q),
            self.fills,
            self.filled_qty,
        )


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.book = ReferenceBook()
        self.mid = START_MID
        self.next_id = 1

    def _step_mid(self) -> None:
        rng = self.rng
        if rng.random() < P_MID_STEP:
            self.mid += 1 if rng.random() < 0.5 else -1

    def _passive(self) -> Op:
        rng = self.rng
        side = rng.randrange(2)
        depth = rng.randrange(PASSIVE_DEPTH)
        # Priced off the reference mid, not the book: when the book has drifted through the
        # mid such an order trades. That keeps the book near the mid and at ~2k orders.
        price = self.mid - 1 - depth if side == BID else self.mid + 1 + depth
        return self._add(side, price, rng.randint(1, 100))

    def _marketable(self) -> Op:
        rng, book = self.rng, self.book
        side = rng.randrange(2)
        through = rng.randint(1, MAX_THROUGH)
        if side == BID:
            touch = book.best_ask()
            price = touch + through if touch else self.mid + through
        else:
            touch = book.best_bid()
            price = touch - through if touch else self.mid - through
        return self._add(side, price, rng.randint(1, 200))

    def _add(self, side: int, price: int, qty: int) -> Op:
        oid = self.next_id
        self.next_id += 1
        self.book.add(oid, side, price, qty)
        return (ADD, oid, side, price, qty)

    def _cancel(self) -> Op:
        live = self.book.live
        oid = live[self.rng.randrange(len(live))]
        side, price = self.book.cancel(oid)
        return (CANCEL, oid, side, price, 0)

    def limit_op(self) -> Op:
        self._step_mid()
        if self.rng.random() < P_PASSIVE / (1.0 - P_CANCEL):
            return self._passive()
        return self._marketable()

    def op(self) -> Op:
        self._step_mid()
        x = self.rng.random()
        if x < P_PASSIVE:
            return self._passive()
        if x < P_PASSIVE + P_CANCEL and self.book.live:
            return self._cancel()
        if x < P_PASSIVE + P_CANCEL:  # nothing rests (never seen in practice)
            return self._passive()
        return self._marketable()


def generate(n_ops: int = FULL_OPS, seed: int = 1, warmup: int = WARMUP_ORDERS) -> Workload:
    """Pre-generate the warm-up orders and ``n_ops`` timed operations."""
    g = _Generator(seed)
    warm = [g.limit_op() for _ in range(warmup)]
    resting_after_warmup = len(g.book.live)
    fills0 = g.book.fills
    ops: list[Op] = []
    append = ops.append
    max_resting = resting_after_warmup
    for i in range(n_ops):
        append(g.op())
        if not i & 1023 and len(g.book.live) > max_resting:
            max_resting = len(g.book.live)
    return Workload(
        seed,
        warm,
        ops,
        g.book.end_state(),
        resting_after_warmup,
        len(g.book.live),
        max_resting,
        g.book.fills - fills0,
        g.next_id - 1,
    )


if __name__ == "__main__":
    import sys
    import time

    t = time.perf_counter()
    w = generate(int(sys.argv[1]) if len(sys.argv) > 1 else QUICK_OPS)
    kinds = [op[0] for op in w.ops]
    print(
        f"generated in {time.perf_counter() - t:.2f}s: {len(w.ops)} ops, "
        f"{kinds.count(CANCEL)} cancels, resting after warm-up {w.resting_after_warmup}, "
        f"at end {w.resting_at_end}, max {w.max_resting}, "
        f"fills/op {w.timed_fills / len(w.ops):.3f}, expected {w.expected}"
    )
