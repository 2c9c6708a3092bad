"""Margin sweep benchmark: ``python -m bench.liquidation [--quick]``.

1,000,000 accounts over 8 markets (``--quick``: 200,000), 1..4 positions each (mean about
2.4), from ``numpy.random.default_rng(6)``; two-tier maintenance schedules; prices walk and
the funding index moves between screens. Each round screens every account with the compiled
screen (``Sweeper.screen``: the cheap per-account test since the last rebase, the full screen
for the accounts it cannot clear), checks it equals the full screen (``Sweeper.screen_full``,
also timed), then re-checks the candidates with the exact integer maths.

Baselines in the same run: a straightforward numba sparse (CSR) kernel doing the naive int64
margin sum with one ratio (what the performance anchors measured at 58M accounts/s: it
overflows silently for large positions and ignores tiers and funding), and the pure-Python
screen on a slice. Targets (issue 6): >= 30M accounts/s, 1M accounts x 8 markets <= 50 ms.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from typing import Any

import numpy as np
from numba import njit

from exchange.core.units import U64_MAX
from liquidation.sweeper import Sweeper, SweeperMarket
from perp.math.margin import MarginSchedule, MarginTier
from perp.position import Position

USD = 1_000_000
BASE = 1_000_000_000
N_MARKETS = 8
TARGET_ACCOUNTS_PER_S = 30e6
TARGET_MS_1M = 50.0
BASELINE_MAINTENANCE_PPM = 25_000  # the first tier of SCHEDULE
SCHEDULE = MarginSchedule(
    tiers=(
        MarginTier(
            up_to_notional_quote=1_000_000 * USD, initial_ppm=50_000, maintenance_ppm=25_000
        ),
        MarginTier(up_to_notional_quote=U64_MAX, initial_ppm=100_000, maintenance_ppm=50_000),
    )
)
PRICES = np.array([95_000, 3_500, 180, 25, 1, 600, 12, 2_000], dtype=np.int64) * USD


@njit(cache=True)
def baseline_sparse_kernel(
    row_start: np.ndarray,
    row_len: np.ndarray,
    collateral: np.ndarray,
    slot_market: np.ndarray,
    slot_base: np.ndarray,
    slot_entry: np.ndarray,
    prices: np.ndarray,
    maintenance_ppm: int,
    out: np.ndarray,
) -> int:
    """The naive CSR sweep: exact-looking int64 maths that overflows for large positions."""
    count = 0
    for a in range(row_start.shape[0]):
        equity = collateral[a]
        requirement = 0
        start = row_start[a]
        for i in range(start, start + row_len[a]):
            value = slot_base[i] * prices[slot_market[i]] // 1_000_000_000
            equity += value + slot_entry[i]
            notional = value if value >= 0 else -value
            requirement += notional * maintenance_ppm // 1_000_000
        if equity < requirement:
            out[count] = a
            count += 1
    return count


def make_accounts(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = rng.choice(np.array([1, 2, 3, 4]), size=n, p=[0.2, 0.3, 0.4, 0.1]).astype(np.int64)
    total = int(counts.sum())
    # distinct markets per account: the first `count` of a random permutation of 8
    perms = np.argsort(rng.random((n, N_MARKETS)), axis=1)
    take = np.arange(N_MARKETS)[None, :] < counts[:, None]
    market = perms[take].astype(np.int64)
    price = PRICES[market]
    notional_usd = rng.lognormal(mean=8.0, sigma=1.5, size=total).clip(10, 5_000_000)
    size = (notional_usd * USD / price * BASE).astype(np.int64) // 1_000 * 1_000
    size = np.maximum(size, 1_000)
    side = np.where(rng.random(total) < 0.5, 1, -1)
    base = side * size
    entry_price = (price * (1 + rng.normal(0, 0.01, total))).astype(np.int64)
    entry = -(base // 1_000 * (entry_price // 1_000)) // 1_000  # about -base x entry / 1e9
    owner = np.repeat(np.arange(n), counts)
    notional_per_account = np.bincount(owner, weights=notional_usd, minlength=n)
    leverage = rng.uniform(1.5, 16.0, n)
    collateral = (notional_per_account / leverage * USD).astype(np.int64)
    return {
        "counts": counts,
        "market": market,
        "base": base,
        "entry": entry,
        "collateral": collateral,
    }


def build(data: dict[str, np.ndarray]) -> Sweeper:
    markets = [
        # bounds: $100M of notional at today's price, prices up to 20x
        SweeperMarket(
            schedule=SCHEDULE, max_position_base=10**8 * USD * BASE // int(p), max_price=20 * int(p)
        )
        for p in PRICES
    ]
    sweeper = Sweeper(markets=markets)
    sweeper.bulk_load(
        collateral_quote=data["collateral"],
        positions_per_account=data["counts"],
        market_id=data["market"],
        base=data["base"],
        entry_quote=data["entry"],
    )
    return sweeper


def price_path(rounds: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    path, prices = [], PRICES.copy()
    for _ in range(rounds):
        prices = (prices * (1 + rng.normal(0, 0.004, N_MARKETS))).astype(np.int64)
        path.append(prices.copy())
    return path


def timed(fn: Any, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n = 200_000 if args.quick else 1_000_000
    rounds = 10 if args.quick else 30
    python_slice = 5_000 if args.quick else 20_000

    t0 = time.perf_counter()
    data = make_accounts(n, seed=6)
    sweeper = build(data)
    load_s = time.perf_counter() - t0
    n_positions = int(data["counts"].sum())
    out = np.zeros(n, dtype=np.int64)
    row_start, row_len = sweeper.row_start[:n], sweeper.row_len[:n]
    gc.collect()
    gc.disable()

    screen_s, full_s, baseline_s, recheck_s = [], [], [], []
    candidates = confirmed = baseline_hits = rebases = checked = 0
    for step, prices in enumerate(price_path(rounds + 1, seed=7)):
        for m in range(N_MARKETS):
            funding = step * int(prices[m]) * 50_000  # 0.005 % of price per round, x 1e9
            sweeper.update_market(
                m,
                oracle_price=int(prices[m]),
                valid_for_liquidation=True,
                cumulative_funding=funding,
            )
        t1 = time.perf_counter()
        found = sweeper.screen()
        screen_s.append(time.perf_counter() - t1)
        t1 = time.perf_counter()
        found_full = sweeper.screen_full()
        full_s.append(time.perf_counter() - t1)
        if not np.array_equal(found, found_full):
            raise AssertionError("two-level screen differs from the full screen")
        baseline_s.extend(
            timed(
                lambda p=prices: baseline_sparse_kernel(
                    row_start,
                    row_len,
                    sweeper.collateral[:n],
                    sweeper.slot_market,
                    sweeper.slot_base,
                    sweeper.slot_entry,
                    p,
                    BASELINE_MAINTENANCE_PPM,
                    out,
                ),
                1,
            )
        )
        t1 = time.perf_counter()
        intents = [i for i in (sweeper.recheck(int(a)) for a in found) if i is not None]
        recheck_s.append(time.perf_counter() - t1)
        if step == 0:  # the first round compiles / warms caches: not counted
            screen_s.clear()
            full_s.clear()
            baseline_s.clear()
            recheck_s.clear()
            continue
        candidates += len(found)
        confirmed += len(intents)
        rebases += sweeper.last_screen_rebased
        checked += sweeper.last_screen_checked
        baseline_hits += int(
            baseline_sparse_kernel(
                row_start,
                row_len,
                sweeper.collateral[:n],
                sweeper.slot_market,
                sweeper.slot_base,
                sweeper.slot_entry,
                prices,
                BASELINE_MAINTENANCE_PPM,
                out,
            )
        )

    # pure-Python screen on a slice of accounts (same formulas, plain ints)
    sub = Sweeper(markets=sweeper.markets)
    cut = int(data["counts"][:python_slice].sum())
    sub.bulk_load(
        collateral_quote=data["collateral"][:python_slice],
        positions_per_account=data["counts"][:python_slice],
        market_id=data["market"][:cut],
        base=data["base"][:cut],
        entry_quote=data["entry"][:cut],
    )
    for m in range(N_MARKETS):
        sub.update_market(
            m, oracle_price=int(PRICES[m]), valid_for_liquidation=True, cumulative_funding=0
        )
    python_s = statistics.median(timed(sub.screen_python, 3))
    assert np.array_equal(sub.screen_python(), sub.screen())

    # incremental updates: a fill changes one position and the collateral
    rng = np.random.default_rng(8)
    accounts = rng.integers(0, n, 20_000)
    markets = rng.integers(0, N_MARKETS, 20_000)

    def fills() -> None:
        for a, m in zip(accounts.tolist(), markets.tolist()):
            sweeper.set_position(a, m, Position(BASE, -int(PRICES[m]), 0, 0))
            sweeper.set_collateral(a, 1_000 * USD)

    update_s = statistics.median(timed(fills, 3)) / 20_000
    gc.enable()

    screen_med = statistics.median(screen_s)
    full_med = statistics.median(full_s)
    base_med = statistics.median(baseline_s)
    figures = {
        "accounts": n,
        "markets": N_MARKETS,
        "positions": n_positions,
        "rounds": rounds,
        "screen_ms_median": round(screen_med * 1e3, 2),
        "screen_ms_p90": round(sorted(screen_s)[int(0.9 * (len(screen_s) - 1))] * 1e3, 2),
        "screen_accounts_per_s": round(n / screen_med),
        "rebases": rebases,
        "full_screens_per_pass_avg": round(checked / rounds),
        "full_screen_ms_median": round(full_med * 1e3, 2),
        "full_screen_accounts_per_s": round(n / full_med),
        "full_ratio_vs_baseline": round(base_med / full_med, 3),
        "baseline_ms_median": round(base_med * 1e3, 2),
        "baseline_accounts_per_s": round(n / base_med),
        "ratio_vs_baseline": round(base_med / screen_med, 3),
        "python_screen_accounts_per_s": round(python_slice / python_s),
        "ratio_vs_python": round((n / screen_med) / (python_slice / python_s), 1),
        "ms_per_1m_accounts": round(screen_med * 1e3 * 1_000_000 / n, 2),
        "candidates_per_round": round(candidates / rounds, 1),
        "confirmed_per_round": round(confirmed / rounds, 1),
        "baseline_flagged_per_round": round(baseline_hits / rounds, 1),
        "recheck_ms_median": round(statistics.median(recheck_s) * 1e3, 2),
        "incremental_update_us": round(update_s * 1e6, 2),
        "bulk_load_s": round(load_s, 2),
        "target_accounts_per_s": TARGET_ACCOUNTS_PER_S,
        "target_ms_1m": TARGET_MS_1M,
        "targets_met": n / screen_med >= TARGET_ACCOUNTS_PER_S
        and screen_med * 1e3 * 1_000_000 / n <= TARGET_MS_1M,
    }
    print(
        f"screen: {n:,} accounts x {N_MARKETS} markets ({n_positions:,} positions): "
        f"median {figures['screen_ms_median']} ms = {figures['screen_accounts_per_s'] / 1e6:.1f}M accounts/s "
        f"({rebases} rebases in {rounds} rounds, {figures['full_screens_per_pass_avg']:,} accounts "
        f"screened in full per pass on average)"
    )
    print(
        f"full screen of every account: {figures['full_screen_ms_median']} ms = "
        f"{figures['full_screen_accounts_per_s'] / 1e6:.1f}M accounts/s"
    )
    print(
        f"baseline numba sparse (naive int64, one ratio): {figures['baseline_ms_median']} ms = "
        f"{figures['baseline_accounts_per_s'] / 1e6:.1f}M/s; ratio {figures['ratio_vs_baseline']} "
        f"(full screen: {figures['full_ratio_vs_baseline']})"
    )
    print(
        f"pure-Python screen: {figures['python_screen_accounts_per_s']:,} accounts/s "
        f"(compiled x{figures['ratio_vs_python']})"
    )
    print(
        f"candidates/round {figures['candidates_per_round']}, confirmed {figures['confirmed_per_round']}, "
        f"exact re-check {figures['recheck_ms_median']} ms; incremental update "
        f"{figures['incremental_update_us']} us"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
