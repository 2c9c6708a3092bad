"""Pre-trade risk check benchmark: ``python -m bench.risk [--quick]``.

One call per order through the full gate (``perp.risk_gate.check_order``) with its margin
input (``perp.margin_check.order_margin_shortfall``) for an account holding positions and
resting orders in three markets, from a seeded order stream. Baseline in the same run: a
bare single-market initial-margin comparison (one notional, one ratio, one comparison), the
least any pre-trade margin check can do. Target (issue): p50 <= 0.8 us, p99 <= 3 us.
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
    max_orders_per_minute=10**10,
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


def run_full(orders: list[tuple[int, OrderIntent]], timed: bool) -> tuple[float, list[int]]:
    positions = {
        0: Position(2 * BASE, -190_000 * USD),
        1: Position(-30 * BASE, 105_000 * USD),
        2: Position(500 * BASE, -90_000 * USD),
    }
    open_orders = {
        0: OpenOrders(BASE, BASE),
        1: OpenOrders(5 * BASE, 0),
        2: OpenOrders(0, 100 * BASE),
    }
    schedules = {0: SCHEDULE, 1: SCHEDULE, 2: SCHEDULE}
    state = AccountRiskState()
    collateral = 1_000_000 * USD
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
            taker_fee_ppm=500,
        )
        result = check_order(
            order,
            now_ns=i * 1_000,
            status=MarketStatus.ACTIVE,
            limits=LIMITS,
            state=state,
            position_base=positions[market].base,
            oracle_price=MARKS[market],
            day_loss_quote=0,
            margin_shortfall_quote=shortfall,
        )
        state = result.state
        accepted += result.code is None
        if timed:
            lat.append(pc() - t0)
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
    try:
        run_full(orders[:2_000], timed=False)  # warm-up
        full_ops, _ = run_full(orders, timed=False)
        _, full_lat = run_full(orders, timed=True)
        base_ops, _ = run_baseline(orders, timed=False)
        _, base_lat = run_baseline(orders, timed=True)
    finally:
        gc.enable()
        gc.unfreeze()
    figures = {
        "checks_per_s": round(full_ops),
        "p50_us": pct(full_lat, 0.5),
        "p99_us": pct(full_lat, 0.99),
        "baseline_checks_per_s": round(base_ops),
        "baseline_p50_us": pct(base_lat, 0.5),
        "ratio_vs_baseline": round(full_ops / base_ops, 4),
        "meets_target": pct(full_lat, 0.5) <= TARGET_P50_US
        and pct(full_lat, 0.99) <= TARGET_P99_US,
        "target": f"p50 <= {TARGET_P50_US} us, p99 <= {TARGET_P99_US} us",
        "orders": n,
        "seed": args.seed,
        "quick": args.quick,
        "path": "pure Python: perp.margin_check.order_margin_shortfall + perp.risk_gate.check_order",
    }
    sys.stdout.write(
        f"pre-trade check (3 markets, positions + resting orders): {full_ops:,.0f}/s, "
        f"p50 {figures['p50_us']} us, p99 {figures['p99_us']} us\n"
        f"baseline (bare one-ratio margin comparison): {base_ops:,.0f}/s, "
        f"p50 {figures['baseline_p50_us']} us\n"
    )
    sys.stdout.write(json.dumps(figures) + "\n")
    return figures


if __name__ == "__main__":
    main()
