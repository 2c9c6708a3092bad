"""Settlement benchmark: ``python -m bench.settlement [--quick]``.

A real engine (SQLite journal) trades a seeded crossing flow between four accounts in one
market, with a funding interval half-way (so fills after it settle funding on-chain too); the settlement service then posts the journal to the clearing program on the embedded
cluster (``perpdex localnet``'s cluster, in-process, over JSON-RPC with anchorpy), twice on
two fresh stacks with the same flow:

* packed (the headline): as many fills per transaction as fit 1232 bytes / the budget;
* one fill per transaction (the same-run baseline).

Figures: fills per transaction, compute units per fill (from ``getTransaction``'s
``computeUnitsConsumed``; the average over packed batches, and the least-squares slope and
intercept of CU against fills per batch, i.e. the marginal cost of a fill and the fixed cost
of a transaction), settled fills per second end to end (journal read, packing, send, confirm,
Market check), the ratio of the two. Both runs must end with the chain equal to the engine
(the reconciler reports no mismatch). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from solana.rpc.commitment import Confirmed

from exchange.core.units import BASE_PRECISION, NANOS_PER_SECOND, PRICE_PRECISION
from settlement.reconciler import Reconciler, ReconcilerConfig
from settlement.service import MAX_TX_BYTES, SettlementConfig, settle_tx_bytes
from settlement.stack import SettlementStack, StackMarket, crossing_flow

FILLS = 2_000
QUICK_FILLS = 300
MARKET = StackMarket(0, "BTC-PERP", PRICE_PRECISION // 10, BASE_PRECISION // 100, 100_000 * 10**6)
ACCOUNTS = [(owner_id, 0) for owner_id in range(1, 5)]
CU_TARGET_PER_FILL = 3_000
FILLS_PER_TX_TARGET = 20


async def run_once(data_dir: Path, num_fills: int, seed: int, max_fills: int) -> dict[str, Any]:
    deposits = [(o, s, 10_000_000 * 10**6) for o, s in ACCOUNTS]
    async with SettlementStack(data_dir, [MARKET], deposits) as stack:
        rng = random.Random(seed)
        half = num_fills // 2
        stack.process(crossing_flow(rng, [MARKET], ACCOUNTS, half))
        stack.clock.advance(3600 * NANOS_PER_SECOND)  # a funding interval: fills settle funding
        stack.process(crossing_flow(rng, [MARKET], ACCOUNTS, num_fills - half))
        service = stack.service(SettlementConfig(market_ids=(0,), max_fills_per_tx=max_fills))
        await service.resume()
        started = time.perf_counter()
        await service.settle_available()
        seconds = time.perf_counter() - started
        if service.metrics.fills_settled != num_fills:
            raise SystemExit(f"settled {service.metrics.fills_settled} of {num_fills} fills")
        client = stack.client()
        batches: list[tuple[int, int]] = []  # (fills, compute units)
        for sig, fills in service.metrics.posted:
            if not fills:
                continue  # a funding update
            tx = await client.get_transaction(
                sig, commitment=Confirmed, max_supported_transaction_version=0
            )
            assert tx.value is not None and tx.value.transaction.meta is not None
            batches.append((fills, int(tx.value.transaction.meta.compute_units_consumed or 0)))
        assert stack.engine is not None
        report = await Reconciler(
            program=stack.program(stack.operator),
            accounts=stack.accounts,
            config=ReconcilerConfig(market_ids=(0,), halt_on_mismatch=False),
        ).reconcile(stack.engine.core)
        if not report.ok:
            raise SystemExit(f"chain differs from engine: {report.mismatches[:3]}")
        return {"seconds": seconds, "batches": batches, "retries": service.metrics.rpc_retries}


def slope_intercept(points: list[tuple[int, int]]) -> tuple[float, float]:
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return float("nan"), mean_y
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var
    return slope, mean_y - slope * mean_x


async def main_async(num_fills: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-settlement-") as tmp:
        packed = await run_once(Path(tmp) / "packed", num_fills, seed, 64)
        single = await run_once(Path(tmp) / "single", num_fills, seed, 1)
    packed_batches = packed["batches"]
    full = [b for b in packed_batches if b[0] == max(f for f, _ in packed_batches)]
    slope, intercept = slope_intercept(packed_batches + single["batches"])
    single_cu = [cu for _, cu in single["batches"]]
    packed_fps = num_fills / packed["seconds"]
    single_fps = num_fills / single["seconds"]
    max_fills = max(f for f, _ in packed_batches)
    return {
        "bench": "settlement",
        "fills": num_fills,
        "accounts": len(ACCOUNTS),
        "packed_transactions": len(packed_batches),
        "fills_per_tx_max": max_fills,
        "fills_per_tx_mean": round(num_fills / len(packed_batches), 2),
        "fills_per_tx_target": FILLS_PER_TX_TARGET,
        "tx_bytes_at_max": settle_tx_bytes(len(ACCOUNTS), max_fills),
        "tx_bytes_limit": MAX_TX_BYTES,
        "cu_per_fill_full_batch": round(sum(cu for _, cu in full) / sum(f for f, _ in full), 1),
        "cu_per_fill_marginal": round(slope, 1),
        "cu_fixed_per_tx": round(intercept),
        "cu_single_fill_tx_median": sorted(single_cu)[len(single_cu) // 2],
        "cu_per_fill_target": CU_TARGET_PER_FILL,
        "packed_fills_per_s": round(packed_fps, 1),
        "single_fill_tx_fills_per_s": round(single_fps, 1),
        "ratio_packed_vs_single": round(packed_fps / single_fps, 2),
        "rpc_retries": packed["retries"] + single["retries"],
        "chain_equals_engine": True,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_FILLS} fills")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    figures = asyncio.run(main_async(QUICK_FILLS if args.quick else FILLS, args.seed))
    print(
        f"packed: {figures['packed_fills_per_s']:,} fills/s settled, "
        f"{figures['fills_per_tx_max']} fills per tx max ({figures['tx_bytes_at_max']} bytes), "
        f"{figures['cu_per_fill_full_batch']} CU per fill in full batches "
        f"(marginal {figures['cu_per_fill_marginal']}, fixed {figures['cu_fixed_per_tx']} per tx)"
    )
    print(
        f"one fill per tx (baseline): {figures['single_fill_tx_fills_per_s']:,} fills/s, "
        f"median {figures['cu_single_fill_tx_median']} CU; ratio "
        f"{figures['ratio_packed_vs_single']}"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
