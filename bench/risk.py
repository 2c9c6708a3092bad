"""Pre-trade risk check benchmark: ``python -m bench.risk [--quick]``.

One call per order, from Python, for an account holding positions and resting orders in
three markets, from a seeded order stream:

* compiled (the headline): ``perp.fastrisk.FastRisk.check``, the numba gate with the margin
  after the fill, over the account's flat int64 state;
* pure Python (the same-run baseline): ``perp.risk_gate.check_order`` fed with
  ``perp.margin_check.order_margin_shortfall``;
* bare: a single-market initial-margin comparison (one notional, one ratio, one
  comparison), the least any pre-trade check can do, for scale.

Both gates must return the same code for every order (checked). Latencies are
``time.perf_counter_ns`` around each call (as ``bench.matching``); throughput is a separate
untimed-per-call loop. Target (issue): p50 <= 0.8 us, p99 <= 3 us.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from typing import Any

from exchange.core.units import U64_MAX
from perp.fastrisk import FastRisk
from perp.margin_check import OpenOrders, order_margin_shortfall
from perp.math.margin import MarginSchedule, MarginTier
from perp.position import Position
from perp.risk_gate import AccountRiskState, MarketStatus, OrderIntent, RiskLimits, check_order

USD = 1_000_000
BASE = 1_000_000_000
TARGET_P50_US = 0.8
TARGET_P99_US = 3.0

SCHEDULE = MarginSchedule(
    tiers=(
        MarginTier(up_to_notional_quote=500_000 * USD, initial_ppm=50_000, maintenance_ppm=25_000),
        MarginTier(
            up_to_notional_quote=5_000_000 * USD, initial_ppm=100_000, maintenance_ppm=50_000
        ),
        MarginTier(up_to_notional_quote=U64_MAX, initial_ppm=250_000, maintenance_ppm=125_000),
    )
)
LIMITS = RiskLimits(
    max_orders_per_second=10**9,
    max_orders_per_minute=10**7,  # the compiled bucket needs limit x 60 s < 2**62 ns
    max_order_base=1_000 * BASE,
    max_position_base=10_000 * BASE,
    max_order_notional_quote=10**9 * USD,
    daily_loss_limit_quote=10**6 * USD,
    price_band_ppm=100_000,
)
MARKS = {0: 95_000 * USD, 1: 3_500 * USD, 2: 180 * USD}


def make_orders(n: int, seed: int) -> list[tuple[int, OrderIntent]]:
    rng = random.Random(seed)
    orders = []
    for _ in range(n):
        market = rng.randrange(3)
        mark = MARKS[market]
        is_bid = rng.random() < 0.5
        price = mark + (rng.randint(-50, 10) if is_bid else rng.randint(-10, 50)) * mark // 10_000
        orders.append(
            (
                market,
                OrderIntent(
                    is_bid, rng.randint(1, 100) * BASE // 1_000, price, False, rng.random() < 0.3
                ),
            )
        )
    return orders


POSITIONS = {
    0: Position(2 * BASE, -190_000 * USD),
    1: Position(-30 * BASE, 105_000 * USD),
    2: Position(500 * BASE, -90_000 * USD),
}
OPEN_ORDERS = {
    0: OpenOrders(BASE, BASE),
    1: OpenOrders(5 * BASE, 0),
    2: OpenOrders(0, 100 * BASE),
}
COLLATERAL = 1_000_000 * USD
TAKER_FEE_PPM = 500


def fast_state() -> FastRisk:
    """The benchmark account (index 0) in the compiled gate's state."""
    fast = FastRisk(accounts=1, markets=3)
    for m, mark in MARKS.items():
        fast.set_market(
            m,
            limits=LIMITS,
            schedule=SCHEDULE,
            taker_fee_ppm=TAKER_FEE_PPM,
            mark_price=mark,
            oracle_price=mark,
        )
        fast.set_position(0, m, POSITIONS[m].base, POSITIONS[m].entry_quote)
        fast.set_open_orders(0, m, OPEN_ORDERS[m].bid_base, OPEN_ORDERS[m].ask_base)
    fast.set_collateral(0, COLLATERAL)
    return fast


def run_fast(
    orders: list[tuple[int, OrderIntent]], timed: bool, codes: list[int] | None = None
) -> tuple[float, list[int]]:
    check = fast_state().check
    lat: list[int] = []
    pc = time.perf_counter_ns
    accepted = 0
    start = pc()
    for i, (market, (is_bid, base, price, reduce_only, post_only)) in enumerate(orders):
        t0 = pc() if timed else 0
        code = check(0, market, is_bid, base, price, reduce_only, post_only, i * 1_000)
        accepted += code == 0
        if timed:
            lat.append(pc() - t0)
        if codes is not None:
            codes.append(code)
    elapsed = pc() - start
    if accepted == 0:
        raise RuntimeError("every order was refused: the benchmark measures nothing real")
    return len(orders) * 1e9 / elapsed, lat


def run_full(
    orders: list[tuple[int, OrderIntent]], timed: bool, codes: list[int] | None = None
) -> tuple[float, list[int]]:
    positions = dict(POSITIONS)
    open_orders = dict(OPEN_ORDERS)
    schedules = {0: SCHEDULE, 1: SCHEDULE, 2: SCHEDULE}
    state = AccountRiskState()
    collateral = COLLATERAL
    lat: list[int] = []
    pc = time.perf_counter_ns
    accepted = 0
    start = pc()
    for i, (market, order) in enumerate(orders):
        t0 = pc() if timed else 0
        shortfall = order_margin_shortfall(
            collateral,
            positions,
            open_orders,
            MARKS,
            schedules,
            market_id=market,
            is_bid=order.is_bid,
            base=order.base,
            price=order.price,
            taker_fee_ppm=TAKER_FEE_PPM,
        )
        result = check_order(
            order,
            now_ns=i * 1_000,
            status=MarketStatus.ACTIVE,
            limits=LIMITS,
            state=state,
            position_base=positions[market].base,
            open_bid_base=open_orders[market].bid_base,
            open_ask_base=open_orders[market].ask_base,
            oracle_price=MARKS[market],
            day_loss_quote=0,
            margin_shortfall_quote=shortfall,
        )
        state = result.state
        accepted += result.code is None
        if timed:
            lat.append(pc() - t0)
        if codes is not None:
            codes.append(0 if result.code is None else int(result.code))
    elapsed = pc() - start
    if accepted == 0:
        raise RuntimeError("every order was refused: the benchmark measures nothing real")
    return len(orders) * 1e9 / elapsed, lat


def run_baseline(orders: list[tuple[int, OrderIntent]], timed: bool) -> tuple[float, list[int]]:
    collateral = 1_000_000 * USD
    lat: list[int] = []
    pc = time.perf_counter_ns
    ok = 0
    start = pc()
    for _market, order in orders:
        t0 = pc() if timed else 0
        ok += collateral * 1_000_000 >= order.base * order.price // BASE * 50_000
        if timed:
            lat.append(pc() - t0)
    elapsed = pc() - start
    if ok == 0:
        raise RuntimeError("baseline refused every order: the comparison would be meaningless")
    return len(orders) * 1e9 / elapsed, lat


def pct(lat: list[int], q: float) -> float:
    ordered = sorted(lat)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000, 3)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20k orders instead of 200k")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else 200_000
    orders = make_orders(n, args.seed)
    gc.collect()
    gc.freeze()
    gc.disable()
    fast_codes: list[int] = []
    py_codes: list[int] = []
    try:
        run_fast(orders[:2_000], timed=False)  # warm-up (compiled kernels load from cache)
        run_full(orders[:2_000], timed=False)
        fast_ops, _ = run_fast(orders, timed=False, codes=fast_codes)
        _, fast_lat = run_fast(orders, timed=True)
        full_ops, _ = run_full(orders, timed=False, codes=py_codes)
        _, full_lat = run_full(orders, timed=True)
        base_ops, _ = run_baseline(orders, timed=False)
        _, base_lat = run_baseline(orders, timed=True)
    finally:
        gc.enable()
        gc.unfreeze()
    if fast_codes != py_codes:
        i = next(i for i, (a, b) in enumerate(zip(fast_codes, py_codes)) if a != b)
        raise RuntimeError(f"order {i}: expected code {py_codes[i]} (Python), got {fast_codes[i]}")
    p50, p99 = pct(fast_lat, 0.5), pct(fast_lat, 0.99)
    figures = {
        "checks_per_s": round(fast_ops),
        "p50_us": p50,
        "p99_us": p99,
        "p999_us": pct(fast_lat, 0.999),
        "python_checks_per_s": round(full_ops),
        "python_p50_us": pct(full_lat, 0.5),
        "python_p99_us": pct(full_lat, 0.99),
        "ratio_vs_python": round(fast_ops / full_ops, 2),
        "bare_checks_per_s": round(base_ops),
        "bare_p50_us": pct(base_lat, 0.5),
        "accepted": fast_codes.count(0),
        "codes_equal": True,
        "meets_target": p50 <= TARGET_P50_US and p99 <= TARGET_P99_US,
        "target": f"p50 <= {TARGET_P50_US} us, p99 <= {TARGET_P99_US} us",
        "orders": n,
        "seed": args.seed,
        "quick": args.quick,
        "path": "compiled: perp.fastrisk.FastRisk.check per call; baseline: "
        "perp.margin_check.order_margin_shortfall + perp.risk_gate.check_order",
    }
    sys.stdout.write(
        f"compiled pre-trade check (3 markets, positions + resting orders): {fast_ops:,.0f}/s, "
        f"p50 {p50} us, p99 {p99} us\n"
        f"pure-Python gate + margin (baseline): {full_ops:,.0f}/s, "
        f"p50 {figures['python_p50_us']} us, p99 {figures['python_p99_us']} us "
        f"(compiled x{figures['ratio_vs_python']})\n"
        f"bare one-ratio margin comparison: {base_ops:,.0f}/s, p50 {figures['bare_p50_us']} us\n"
        f"codes equal on all {n} orders ({figures['accepted']} accepted)\n"
    )
    sys.stdout.write(json.dumps(figures) + "\n")
    return figures


if __name__ == "__main__":
    main()
