"""Golden vectors for the on-chain maths, computed by the Python engine's own functions.

    python -m settlement.gen_golden            # write tests/fixtures/golden/*.json
    python -m settlement.gen_golden --check    # exit 1 if a file is out of date

Each case is ``{"fn": name, "in": {...}, "out": {...}}`` or ``{"fn", "in", "error": IdlErrorName}``.
Values come from ``perp`` (fees, funding, margin, positions, account margin) and ``oracle_feeds``
(oracle value conversion); the program (``settlement/program/src/pd_math.c``) must give the same
numbers to the unit. Where the program's fixed-width fields cannot hold a result the Python
integers can, the case expects the program's error (the one check that fails first, in the
program's order). Inputs are hand-picked edge values plus seeded random ones, all within the
on-chain field types (i64 / u64 / i128, ratios as u32).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from exchange.core.units import I64_MAX, I64_MIN, U64_MAX
from liquidation.rules import LiquidationConfig, LiquidationPlan, OracleReading, plan_liquidation
from oracle_feeds.errors import OracleError
from oracle_feeds.price import MAX_EXPONENT, MIN_EXPONENT, confidence_from_raw, price_from_raw
from perp.margin_check import margin_summary
from perp.math.fees import FeeConfigError, FeeSchedule, fee_quote, fill_fees
from perp.math.funding import index_delta, settle, sweep_surplus
from perp.math.margin import (
    MarginConfigError,
    MarginKind,
    MarginSchedule,
    MarginTier,
    notional_quote,
    requirement_quote,
    unrealized_pnl_quote,
)
from perp.position import Position, apply_fill
from settlement.spec import LIQUIDATION_BUFFER_PPM, LIQUIDATOR_SHARE_PPM

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_DIR = ROOT / "tests" / "fixtures" / "golden"
I128_MIN, I128_MAX = -(2**127), 2**127 - 1

Case = dict[str, Any]


def _fits_i64(v: int) -> bool:
    return I64_MIN <= v <= I64_MAX


def _ok(fn: str, inputs: dict[str, Any], out: dict[str, Any]) -> Case:
    return {"fn": fn, "in": inputs, "out": out}


def _err(fn: str, inputs: dict[str, Any], error: str) -> Case:
    return {"fn": fn, "in": inputs, "error": error}


# ------------------------------------------------------------------ value pools

EDGE_I64 = [I64_MIN, I64_MIN + 1, -(10**18), -(10**9), -1, 0, 1, 10**9, 10**18, I64_MAX]
EDGE_U64 = [0, 1, 999_999, 10**6, 10**9, 10**18, 2**63, U64_MAX - 1, U64_MAX]


def _i64(rng: random.Random) -> int:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.choice(EDGE_I64)
    if kind == 1:
        return rng.randrange(-(10**12), 10**12)  # realistic base / quote
    if kind == 2:
        return rng.randrange(-(10**15), 10**15) * 10**3
    return rng.randrange(I64_MIN, I64_MAX + 1)


def _u64(rng: random.Random) -> int:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.choice(EDGE_U64)
    if kind == 1:
        return rng.randrange(1, 10**12)  # realistic prices (up to 1M USD) / notionals
    if kind == 2:
        return rng.randrange(0, 10**15) * 10**3
    return rng.randrange(0, U64_MAX + 1)


def _i128(rng: random.Random) -> int:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.choice([I128_MIN, I128_MIN + 1, -1, 0, 1, I128_MAX, 10**30, -(10**30)])
    if kind == 1:
        return rng.randrange(-(10**22), 10**22)  # realistic funding indices
    if kind == 2:
        return rng.randrange(-(2**80), 2**80)
    return rng.randrange(I128_MIN, I128_MAX + 1)


def _schedule(rng: random.Random) -> list[tuple[int, int, int]]:
    """A valid margin schedule of 1..4 tiers (upper, initial_ppm, maintenance_ppm)."""
    n = rng.randrange(1, 5)
    uppers = [*sorted(rng.sample(range(1, 10**13), n - 1)), U64_MAX]
    tiers = []
    im, mm = rng.randrange(2, 200_000), 0
    mm = rng.randrange(1, im)
    for upper in uppers:
        tiers.append((upper, im, mm))
        im = min(10**6, im + rng.randrange(0, 100_000))
        mm = min(im - 1, mm + rng.randrange(0, 50_000))
    return tiers


def _margin_schedule(tiers: list[tuple[int, int, int]]) -> MarginSchedule:
    return MarginSchedule(
        tiers=tuple(
            MarginTier(up_to_notional_quote=u, initial_ppm=i, maintenance_ppm=m)
            for u, i, m in tiers
        )
    )


# ------------------------------------------------------------------ fees


def fee_cases(rng: random.Random) -> Iterator[Case]:
    hand = [(0, 0), (1, 1), (1, -1), (999_999, 1), (10**6, 250), (10**6, -100), (U64_MAX, 10**4),
            (U64_MAX, -(10**4)), (U64_MAX, 10**6), (U64_MAX, I64_MAX), (U64_MAX, I64_MIN),
            (10**12, I64_MAX)]  # fmt: skip
    pairs = hand + [
        (_u64(rng), rng.choice([rng.randrange(-(10**4), 10**4 + 1), _i64(rng)])) for _ in range(300)
    ]
    for notional, rate in pairs:
        fee = fee_quote(notional, rate)
        inputs = {"notional_quote": notional, "rate_ppm": rate}
        if _fits_i64(fee):
            yield _ok("fee_quote", inputs, {"fee_quote": fee})
        else:
            yield _err("fee_quote", inputs, "FeeOverflow")
    hand_schedules = [(0, 0, 0), (-5, 5, 0), (-6, 5, 0), (10_000, 10_000, 10**6),
                      (0, 10_001, 0), (0, -1, 0), (10_001, 10_000, 0), (0, 0, 10**6 + 1)]  # fmt: skip
    schedules = hand_schedules + [
        (
            rng.randrange(-(10**4), 10**4 + 1),
            rng.randrange(0, 10**4 + 1),
            rng.randrange(0, 10**6 + 1),
        )
        for _ in range(200)
    ]
    for maker, taker, share in schedules:
        notional = _u64(rng)
        inputs = {"notional_quote": notional, "maker_ppm": maker, "taker_ppm": taker,
                  "insurance_share_ppm": share}  # fmt: skip
        try:
            schedule = FeeSchedule(maker_ppm=maker, taker_ppm=taker, insurance_share_ppm=share)
        except FeeConfigError:
            yield _err("fill_fees", inputs, "InvalidFeeSchedule")
            continue
        split = fill_fees(notional, schedule)
        yield _ok(
            "fill_fees",
            inputs,
            {
                "maker_fee_quote": split.maker_fee_quote,
                "taker_fee_quote": split.taker_fee_quote,
                "insurance_quote": split.insurance_quote,
                "venue_quote": split.venue_quote,
            },
        )


# ------------------------------------------------------------------ funding


def funding_cases(rng: random.Random) -> Iterator[Case]:
    d = 10**18
    hand = [(0, 0, 0), (1, 0, 1), (-1, 0, 1), (1, 0, -1), (10**9, 0, 10**9 * 3 + 1),
            (-(10**9), 0, 10**9 * 3 + 1), (I64_MAX, 0, d), (I64_MIN, 0, d), (I64_MIN, d, 0),
            (I64_MAX, I128_MIN, I128_MAX), (I64_MIN, I128_MAX, I128_MIN), (1, I128_MIN, I128_MAX),
            (-1, I128_MIN, I128_MAX), (10**9, 5 * 10**17, 10**18), (3, 0, d - 1),
            (9 * 10**18, 0, 10**18 + 10**17)]  # fmt: skip
    triples = hand + [(_i64(rng), rng.choice([0, _i128(rng)]), _i128(rng)) for _ in range(200)]
    for _ in range(400):  # realistic: positions up to 10k units, indices near each other
        snapshot = rng.randrange(-(10**22), 10**22)
        triples.append((rng.randrange(-(10**13), 10**13), snapshot,
                        snapshot + rng.randrange(-(10**19), 10**19)))  # fmt: skip
    carries = [0, 1, d // 2, d - 1]
    for k, (base, snapshot, now) in enumerate(triples):
        # the carry: 0 for the first hand cases, then the edges and random values in turn
        carry = 0 if k < len(hand) else rng.choice([*carries, rng.randrange(d)])
        inputs = {"base": base, "snapshot": snapshot, "index_now": now, "carry_numerator": carry}
        s = settle(base, snapshot, now, carry)
        # the program computes the carry-less amount first: it must fit an i64 too
        if _fits_i64(settle(base, snapshot, now).payment_quote) and _fits_i64(s.payment_quote):
            out = {"payment_quote": s.payment_quote, "carry_numerator": s.carry_numerator}
            yield _ok("funding_settle", inputs, out)
        else:
            yield _err("funding_settle", inputs, "FundingPaymentOverflow")
    for carry in carries:  # both edges of the decrement, and a carry out of range
        for base, now in [(-1, 1), (1, 1), (I64_MIN, d), (-(10**9), 3 * 10**9 + 1)]:
            inputs = {"base": base, "snapshot": 0, "index_now": now, "carry_numerator": carry}
            s = settle(base, 0, now, carry)
            if _fits_i64(s.payment_quote):
                out = {"payment_quote": s.payment_quote, "carry_numerator": s.carry_numerator}
                yield _ok("funding_settle", inputs, out)
            else:
                yield _err("funding_settle", inputs, "FundingPaymentOverflow")
    for carry in (d, U64_MAX):
        inputs = {"base": 1, "snapshot": 0, "index_now": 1, "carry_numerator": carry}
        yield _err("funding_settle", inputs, "FundingCarryOutOfRange")
    for surplus in [0, 1, d - 1, d, d + 1, 2 * d - 1, U64_MAX] + [_u64(rng) for _ in range(50)]:
        swept, rest = sweep_surplus(surplus)
        yield _ok("sweep_surplus", {"surplus_numerator": surplus},
                  {"swept_quote": swept, "rest_numerator": rest})  # fmt: skip
    hand_advance = [(0, 1, 1), (0, 0, 1), (0, 5, 0), (I128_MAX, 1, 1), (I128_MIN, -1, 1),
                    (I128_MAX - 10, 1, 10), (I128_MIN, I64_MIN, U64_MAX),
                    (0, I64_MIN, U64_MAX), (0, I64_MAX, U64_MAX)]  # fmt: skip
    for cumulative, rate, price in hand_advance + [
        (_i128(rng), _i64(rng), _u64(rng)) for _ in range(200)
    ]:
        inputs = {"cumulative_funding": cumulative, "rate": rate, "index_price": price}
        if price == 0:
            yield _err("funding_advance", inputs, "IndexPriceZero")
            continue
        after = cumulative + index_delta(rate, price)
        if I128_MIN <= after <= I128_MAX:
            yield _ok("funding_advance", inputs, {"cumulative_funding": after})
        else:
            yield _err("funding_advance", inputs, "FundingIndexOverflow")


# ------------------------------------------------------------------ margin


def margin_cases(rng: random.Random) -> Iterator[Case]:
    for base, price in [(0, 0), (1, 1), (-1, 1), (I64_MIN, U64_MAX), (I64_MAX, U64_MAX),
                        (10**9, 10**6), (-(10**9) - 1, 10**6), (I64_MIN, 10**9)] + [
        (_i64(rng), _u64(rng)) for _ in range(150)
    ] + [(rng.randrange(-(10**14), 10**14), rng.randrange(1, 10**12)) for _ in range(200)]:  # fmt: skip
        inputs: dict[str, Any] = {"base": base, "price": price}
        notional = notional_quote(base, price)
        if notional <= U64_MAX:
            yield _ok("notional_quote", inputs, {"notional_quote": notional})
        else:
            yield _err("notional_quote", inputs, "NotionalOverflow")
    for base, entry, mark in [(0, 0, 0), (-1, 0, 1), (1, 0, 1), (-(10**9), 10**6, 999_999),
                              (I64_MIN, I64_MIN, U64_MAX), (I64_MAX, I64_MAX, U64_MAX),
                              (I64_MAX, I64_MIN, 10**9), (I64_MIN, I64_MAX, 10**9)] + [
        (_i64(rng), _i64(rng), _u64(rng)) for _ in range(150)
    ] + [(rng.randrange(-(10**14), 10**14), rng.randrange(-(10**15), 10**15),
          rng.randrange(1, 10**12)) for _ in range(200)]:  # fmt: skip
        inputs = {"base": base, "entry_quote": entry, "mark_price": mark}
        pnl = unrealized_pnl_quote(base, entry, mark)
        if _fits_i64(pnl):
            yield _ok("unrealized_pnl_quote", inputs, {"pnl_quote": pnl})
        else:
            yield _err("unrealized_pnl_quote", inputs, "PnlOverflow")
    for _ in range(300):
        tiers = _schedule(rng)
        schedule = _margin_schedule(tiers)
        notional = rng.choice(
            [0, 1, tiers[0][0], min(U64_MAX, tiers[0][0] + 1), U64_MAX, _u64(rng)]
        )
        for kind in MarginKind:
            inputs = {"notional_quote": notional, "tiers": tiers, "kind": int(kind)}
            yield _ok("requirement_quote", inputs,
                      {"requirement_quote": requirement_quote(notional, schedule, kind)})  # fmt: skip
    bad = [[], [(U64_MAX, 100, 100)], [(U64_MAX, 100, 0)], [(U64_MAX, 10**6 + 1, 1)],
           [(5, 100, 50)], [(5, 100, 50), (5, 100, 50), (U64_MAX, 100, 50)],
           [(5, 100, 50), (U64_MAX, 99, 50)], [(5, 100, 50), (U64_MAX, 100, 49)],
           [(1, 2, 1), (2, 3, 2), (3, 4, 3), (4, 5, 4), (U64_MAX, 6, 5)],
           [(U64_MAX, 10**6, 999_999)], [(5, 100, 50), (U64_MAX, 100, 50)]]  # fmt: skip
    for tiers in bad + [_schedule(rng) for _ in range(30)]:
        try:
            if not 1 <= len(tiers) <= 4:
                raise MarginConfigError("tier count")
            _margin_schedule(tiers)
            yield _ok("validate_margin_tiers", {"tiers": tiers}, {})
        except MarginConfigError:
            yield _err("validate_margin_tiers", {"tiers": tiers}, "InvalidMarginTiers")
    for i in range(300):
        yield _margin_summary_case(rng, big=i % 5 == 0)


def _margin_summary_case(rng: random.Random, *, big: bool) -> Case:
    collateral = _i64(rng) if big else rng.randrange(-(10**10), 10**13)
    positions: list[dict[str, Any]] = []
    for _ in range(rng.randrange(0, 9)):
        if big:
            base, entry, price = _i64(rng), _i64(rng), _u64(rng)
        else:
            base = rng.choice([0, rng.randrange(-(10**13), 10**13)])
            price = rng.randrange(1, 10**11)
            entry = -(base * price // 10**9) + rng.randrange(-(10**9), 10**9)
        positions.append({"base": base, "entry_quote": entry, "price": price,
                          "tiers": _schedule(rng)})  # fmt: skip
    inputs = {"collateral_quote": collateral, "positions": positions}
    for p in positions:
        if p["base"] and notional_quote(p["base"], p["price"]) > U64_MAX:
            return _err("margin_summary", inputs, "NotionalOverflow")
    summary = margin_summary(
        collateral,
        {
            i: Position(base=p["base"], entry_quote=p["entry_quote"])
            for i, p in enumerate(positions)
        },
        {},
        {i: p["price"] for i, p in enumerate(positions)},
        {i: _margin_schedule(p["tiers"]) for i, p in enumerate(positions)},
    )
    if not _fits_i64(summary.equity_quote):
        return _err("margin_summary", inputs, "PnlOverflow")
    if summary.initial_quote > U64_MAX or summary.maintenance_quote > U64_MAX:
        return _err("margin_summary", inputs, "RequirementOverflow")
    return _ok(
        "margin_summary",
        inputs,
        {
            "equity_quote": summary.equity_quote,
            "initial_quote": summary.initial_quote,
            "maintenance_quote": summary.maintenance_quote,
            "free_collateral_quote": summary.free_collateral_quote,
        },
    )


# ------------------------------------------------------------------ positions


def position_cases(rng: random.Random) -> Iterator[Case]:
    hand = [(0, 0, 0, 10, -100), (10, -100, 0, -10, 120), (10, -100, 0, -4, 50),
            (10, -100, 0, -15, 180), (-7, 70, 5, 3, -31), (5, -5, 0, 0, 0),
            (I64_MAX, 0, 0, 1, 0), (1, I64_MIN, 0, 1, -1), (I64_MIN, I64_MAX, 0, I64_MAX, I64_MIN),
            (I64_MAX, I64_MIN, I64_MIN, I64_MIN, I64_MIN), (3, -10, 0, -2, 7), (-3, 10, 0, 2, -7)]  # fmt: skip
    cases = hand + [(_i64(rng), _i64(rng), _i64(rng), _i64(rng), _i64(rng)) for _ in range(300)]
    for _ in range(300):  # realistic: entry near base x price
        base = rng.randrange(-(10**13), 10**13)
        price = rng.randrange(1, 10**11)
        delta = rng.choice([-1, 1]) * rng.randrange(1, 2 * 10**13)
        cases.append(
            (base, -(base * price // 10**9), rng.randrange(-(10**12), 10**12), delta,
             -(delta * rng.randrange(1, 10**11) // 10**9))
        )  # fmt: skip
    for base, entry, realized, base_delta, quote_delta in cases:
        inputs = {"base": base, "entry_quote": entry, "realized_pnl_quote": realized,
                  "base_delta": base_delta, "quote_delta": quote_delta}  # fmt: skip
        if base_delta == 0:
            yield _err("apply_fill", inputs, "FillZeroSize")
            continue
        result = apply_fill(Position(base, entry, realized, 0), base_delta, quote_delta)
        p = result.position
        values = (p.base, p.entry_quote, p.realized_pnl, result.realized_quote)
        if not all(_fits_i64(v) for v in values):
            yield _err("apply_fill", inputs, "PositionOverflow")
            continue
        yield _ok("apply_fill", inputs, {"base": p.base, "entry_quote": p.entry_quote,
                                         "realized_pnl_quote": p.realized_pnl,
                                         "realized_quote": result.realized_quote})  # fmt: skip


# ------------------------------------------------------------------ oracle values


def oracle_cases(rng: random.Random) -> Iterator[Case]:
    hand = [(1, -8), (5, -7), (15, -7), (25, -7), (4, -7), (6_512_345_678_901, -8), (1, -6),
            (1, 0), (9_223_372_036_854, 0), (9_223_372_036_855, 0), (1, 12), (1, 13),
            (0, -8), (-5, -8), (1, -39), (1, 39), (I64_MAX, -38), (I128_MAX, -38),
            (I128_MAX, -18), (65_123_450_000_000_000_000_000, -18), (5 * 10**31, -38),
            (4 * 10**31, -38), (I128_MAX, -20), (I128_MAX, 0)]  # fmt: skip
    pairs = hand + [
        (rng.choice([rng.randrange(1, 10**12), _i128(rng), rng.randrange(-5, 10**20)]),
         rng.randrange(MIN_EXPONENT - 2, MAX_EXPONENT + 3))
        for _ in range(300)
    ] + [(rng.randrange(1, 10**15), rng.randrange(-12, -1)) for _ in range(200)] + [
        (rng.randrange(1, 10**24), -18) for _ in range(100)
    ]  # fmt: skip
    for mantissa, exponent in pairs:
        inputs = {"mantissa": mantissa, "exponent": exponent}
        yield _convert("price_from_raw", inputs, price_from_raw, "price", mantissa, exponent)
        yield _convert(
            "confidence_from_raw", inputs, confidence_from_raw, "confidence", mantissa, exponent
        )


def _convert(
    fn: str,
    inputs: dict[str, Any],
    convert: Callable[[int, int], int],
    out_name: str,
    mantissa: int,
    exponent: int,
) -> Case:
    if fn == "price_from_raw" and mantissa <= 0:
        return _err(fn, inputs, "OracleNonPositivePrice")
    if fn == "confidence_from_raw" and mantissa < 0:
        return _err(fn, inputs, "OracleConfidenceOutOfRange")
    if not MIN_EXPONENT <= exponent <= MAX_EXPONENT:
        return _err(fn, inputs, "OracleExponentOutOfRange")
    try:
        return _ok(fn, inputs, {out_name: convert(mantissa, exponent)})
    except OracleError:
        name = "OraclePriceOutOfRange" if fn == "price_from_raw" else "OracleConfidenceOutOfRange"
        return _err(fn, inputs, name)


# ------------------------------------------------------------------ liquidation


def liquidation_cases(rng: random.Random) -> Iterator[Case]:
    """liquidation.rules.plan_liquidation of non-bankrupt accounts (the on-chain liquidate):
    1..4 markets, collateral around the maintenance requirement, one fee for every market
    (the rules' venue-wide config; on-chain each Market's fee, set equal here)."""
    for i in range(400):
        yield _liquidation_case(rng, hand=i < 40)


def _liquidation_case(rng: random.Random, *, hand: bool) -> Case:
    num_markets = rng.randrange(1, 5)
    market_ids = sorted(rng.sample(range(8), num_markets))
    positions: list[dict[str, Any]] = []
    for market_id in market_ids:
        tiers = _schedule(rng)
        lot = rng.choice([1, 1_000, 10**6, 10**8, 10**9])
        lots = rng.randrange(1, 10**6 if lot < 10**8 else 10**4)
        base = rng.choice([-1, 1]) * lots * lot
        price = rng.randrange(10**4, 10**11)
        entry_price = price + rng.randrange(-price // 5, price // 5 + 1)
        entry = -(base * entry_price // 10**9)
        positions.append({"market_index": market_id, "base": base, "entry_quote": entry,
                          "price": price, "lot_size": lot, "tiers": tiers})  # fmt: skip
    smallest_mm = min(p["tiers"][0][2] for p in positions)
    if hand:
        share, buffer = LIQUIDATOR_SHARE_PPM, LIQUIDATION_BUFFER_PPM
        fee = min(smallest_mm // 2, 100_000)
    else:
        share, buffer = rng.randrange(0, 10**6 + 1), rng.randrange(0, 100_001)
        fee = rng.randrange(0, min(smallest_mm, 100_001)) if rng.randrange(20) else smallest_mm
        fee = min(fee, 100_000, smallest_mm + buffer)
    per_market = not hand and rng.randrange(2) == 0  # each market its own fee, share, buffer
    for p in positions:
        p["liquidation_fee_ppm"], p["liquidator_share_ppm"], p["liquidation_buffer_ppm"] = (
            fee,
            share,
            buffer,
        )
        if per_market:
            mm = p["tiers"][0][2]
            p["liquidator_share_ppm"] = rng.randrange(0, 10**6 + 1)
            p["liquidation_buffer_ppm"] = rng.randrange(0, 100_001)
            p["liquidation_fee_ppm"] = min(
                rng.randrange(0, min(mm, 100_001)), mm + p["liquidation_buffer_ppm"]
            )
    schedules = {p["market_index"]: _margin_schedule(p["tiers"]) for p in positions}
    held = {p["market_index"]: Position(base=p["base"], entry_quote=p["entry_quote"])
            for p in positions}  # fmt: skip
    prices = {p["market_index"]: p["price"] for p in positions}
    maintenance = sum(
        requirement_quote(notional_quote(p["base"], p["price"]), schedules[m], MarginKind.MAINTENANCE)
        for m, p in zip(market_ids, positions, strict=True)
    )  # fmt: skip
    pnl = sum(unrealized_pnl_quote(p["base"], p["entry_quote"], p["price"]) for p in positions)
    # equity = collateral + pnl around the maintenance requirement: healthy, liquidatable,
    # deeply liquidatable, bankrupt
    equity = rng.choice([
        maintenance + rng.randrange(0, 10**6), maintenance * rng.randrange(50, 100) // 100,
        maintenance * rng.randrange(1, 50) // 100, rng.randrange(0, 10**3),
        -rng.randrange(1, 10**6), maintenance - 1,
    ])  # fmt: skip
    collateral = equity - pnl
    fund = rng.choice([0, 1, 10**6, 10**12])
    inputs = {"collateral_quote": collateral, "insurance_fund_quote": fund,
              "positions": positions}  # fmt: skip
    if not _fits_i64(collateral):
        return _err("liquidation_plan", inputs, "CollateralOverflow")
    if equity >= maintenance:
        return _err("liquidation_plan", inputs, "NotLiquidatable")
    if equity < 0:
        return _err("liquidation_plan", inputs, "AccountBankrupt")
    if any(
        p["tiers"][0][2] + p["liquidation_buffer_ppm"] <= p["liquidation_fee_ppm"]
        for p in positions
    ):
        return _err("liquidation_plan", inputs, "InvalidLiquidationFee")
    plan = plan_liquidation(
        account_id=1, collateral_quote=collateral, positions=held, open_order_markets=(),
        oracles={m: OracleReading(price, True) for m, price in prices.items()},
        schedules=schedules, lot_sizes={p["market_index"]: p["lot_size"] for p in positions},
        config={p["market_index"]: LiquidationConfig(
            liquidation_fee_ppm=p["liquidation_fee_ppm"],
            liquidator_share_ppm=p["liquidator_share_ppm"],
            buffer_ppm=p["liquidation_buffer_ppm"]) for p in positions},
        insurance_fund_quote=fund, adl_candidates={},
    )  # fmt: skip
    assert isinstance(plan, LiquidationPlan) and not plan.bankrupt, plan
    index = {m: i for i, m in enumerate(market_ids)}
    return _ok("liquidation_plan", inputs, {
        "transfers": [[index[t.market_id], t.base_delta, t.quote_delta, t.fee_quote,
                       t.liquidator_fee_quote, t.insurance_fee_quote] for t in plan.transfers],
        "equity_before_quote": plan.equity_before_quote,
        "maintenance_before_quote": plan.maintenance_before_quote,
        "insurance_payment_quote": plan.insurance_payment_quote,
        "collateral_after_quote": plan.collateral_after_quote,
    })  # fmt: skip


# ------------------------------------------------------------------ files

FILES: dict[str, tuple[Callable[[random.Random], Iterator[Case]], str]] = {
    "fees": (fee_cases, "perp.math.fees: fee_quote, fill_fees (and schedule validation)"),
    "funding": (funding_cases, "perp.math.funding: settle, sweep_surplus, index advance"),
    "margin": (
        margin_cases,
        "perp.math.margin + perp.margin_check: notional, PnL, tiers, "
        "free collateral (positions only, as on-chain)",
    ),
    "position": (position_cases, "perp.position.apply_fill"),
    "oracle": (oracle_cases, "oracle_feeds.price: price_from_raw, confidence_from_raw"),
    "liquidation": (
        liquidation_cases,
        "liquidation.rules.plan_liquidation (non-bankrupt; the on-chain liquidate)",
    ),
}
SEED = 20_261_121


def render(name: str) -> str:
    """One golden file's text (deterministic: a seed per file)."""
    generate, what = FILES[name]
    rng = random.Random(f"{SEED}:{name}")
    body = {
        "generator": "python -m settlement.gen_golden",
        "source": what,
        "units": "docs/PROTOCOL.md; errors are IDL error names (settlement/spec.py)",
        "cases": list(generate(rng)),
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m settlement.gen_golden", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name in FILES:
        path = GOLDEN_DIR / f"{name}.json"
        text = render(name)
        if path.exists() and path.read_text() == text:
            continue
        if args.check:
            stale.append(path.name)
            continue
        GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(
            f"out of date: {', '.join(stale)} (run python -m settlement.gen_golden)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
