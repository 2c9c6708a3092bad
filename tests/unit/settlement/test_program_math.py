"""The program's C maths (settlement/program/src/pd_math.c) against the golden vectors.

The same C source the on-chain program is built from is compiled here for the host and called
through ctypes; every golden case (generated from the Python engine by
``python -m settlement.gen_golden``) must give the same numbers, or the same IDL error.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from settlement import gen_golden
from settlement.spec import ERRORS

PROGRAM = Path(__file__).resolve().parents[3] / "settlement" / "program"
ERROR_CODES = {e.name: e.code for e in ERRORS}
U64 = ctypes.c_uint64
I64 = ctypes.c_int64


class MarginTier(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("up_to_notional_quote", U64), ("initial_ppm", ctypes.c_uint32),
                ("maintenance_ppm", ctypes.c_uint32)]  # fmt: skip


class FillFees(ctypes.Structure):
    _fields_ = [("maker_fee_quote", I64), ("taker_fee_quote", I64), ("insurance_quote", U64),
                ("venue_quote", U64)]  # fmt: skip


class FundingSettlement(ctypes.Structure):
    _fields_ = [("payment_quote", I64), ("carry_numerator", U64)]


class PositionState(ctypes.Structure):
    _fields_ = [("base", I64), ("entry_quote", I64), ("realized_pnl_quote", I64)]


class MarginPosition(ctypes.Structure):
    _fields_ = [("base", I64), ("entry_quote", I64), ("price", U64),
                ("tiers", ctypes.POINTER(MarginTier)), ("num_tiers", U64)]  # fmt: skip


class MarginResult(ctypes.Structure):
    _fields_ = [("equity_quote", I64), ("initial_quote", U64), ("maintenance_quote", U64),
                ("free_collateral_quote", U64)]  # fmt: skip


class LiqPosition(ctypes.Structure):
    _fields_ = [("base", I64), ("entry_quote", I64), ("price", U64), ("lot_size", U64),
                ("liquidation_fee_ppm", U64), ("liquidator_share_ppm", U64),
                ("liquidation_buffer_ppm", U64), ("tiers", ctypes.POINTER(MarginTier)),
                ("num_tiers", U64), ("market_index", U64)]  # fmt: skip


class LiqInput(ctypes.Structure):
    _fields_ = [("collateral_quote", I64), ("insurance_fund_quote", U64),
                ("num_positions", U64)]  # fmt: skip


class LiqTransfer(ctypes.Structure):
    _fields_ = [("position", U64), ("base_delta", I64), ("quote_delta", I64), ("fee_quote", U64),
                ("liquidator_fee_quote", U64), ("insurance_fee_quote", U64)]  # fmt: skip


class LiqPlan(ctypes.Structure):
    _fields_ = [("transfers", LiqTransfer * 8), ("num_transfers", U64),
                ("equity_before_quote", I64), ("maintenance_before_quote", U64),
                ("insurance_payment_quote", U64), ("collateral_after_quote", I64)]  # fmt: skip


def i128(value: int) -> ctypes.Array[ctypes.c_uint64]:
    raw = value & (2**128 - 1)
    return (U64 * 2)(raw & (2**64 - 1), raw >> 64)


def from_i128(buf: ctypes.Array[ctypes.c_uint64]) -> int:
    raw = buf[0] | (buf[1] << 64)
    return raw - 2**128 if raw >= 2**127 else raw


def tiers_array(tiers: list[list[int]]) -> ctypes.Array[MarginTier]:
    return (MarginTier * max(1, len(tiers)))(*(MarginTier(*t) for t in tiers))


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert compiler, "a C compiler is needed to run the program maths on the host"
    out = tmp_path_factory.mktemp("pd_math") / "pd_math.so"
    subprocess.run(
        [compiler, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
         "-I", str(PROGRAM / "sdk"), "-I", str(PROGRAM / "include"),
         str(PROGRAM / "src" / "pd_math.c"), str(PROGRAM / "src" / "pd_liquidation.c"),
         "-o", str(out)],
        check=True,
    )  # fmt: skip
    lib = ctypes.CDLL(str(out))
    for name in (
        "pd_fee_quote", "pd_fill_fees_split", "pd_funding_settle", "pd_funding_advance",
        "pd_notional_quote", "pd_unrealized_pnl_quote", "pd_requirement_quote",
        "pd_validate_margin_tiers", "pd_margin_summary", "pd_apply_fill", "pd_price_from_raw",
        "pd_confidence_from_raw", "pd_liquidation_plan",
    ):  # fmt: skip
        getattr(lib, name).restype = U64
    lib.pd_fee_quote.argtypes = [U64, I64, ctypes.POINTER(I64)]
    lib.pd_fill_fees_split.argtypes = [U64, I64, I64, U64, ctypes.POINTER(FillFees)]
    lib.pd_funding_settle.argtypes = [I64, ctypes.c_void_p, ctypes.c_void_p, U64,
                                     ctypes.POINTER(FundingSettlement)]  # fmt: skip
    lib.pd_sweep_surplus.restype = None
    lib.pd_sweep_surplus.argtypes = [U64, ctypes.POINTER(U64), ctypes.POINTER(U64)]
    lib.pd_funding_advance.argtypes = [ctypes.c_void_p, I64, U64]
    lib.pd_notional_quote.argtypes = [I64, U64, ctypes.POINTER(U64)]
    lib.pd_unrealized_pnl_quote.argtypes = [I64, I64, U64, ctypes.POINTER(I64)]
    lib.pd_requirement_quote.argtypes = [U64, ctypes.POINTER(MarginTier), U64, U64,
                                         ctypes.POINTER(U64)]  # fmt: skip
    lib.pd_validate_margin_tiers.argtypes = [ctypes.POINTER(MarginTier), U64]
    lib.pd_margin_summary.argtypes = [I64, ctypes.POINTER(MarginPosition), U64,
                                      ctypes.POINTER(MarginResult)]  # fmt: skip
    lib.pd_apply_fill.argtypes = [ctypes.POINTER(PositionState), I64, I64, ctypes.POINTER(I64)]
    lib.pd_price_from_raw.argtypes = [ctypes.c_void_p, I64, ctypes.POINTER(U64)]
    lib.pd_confidence_from_raw.argtypes = [ctypes.c_void_p, I64, ctypes.POINTER(U64)]
    lib.pd_liquidation_plan.argtypes = [ctypes.POINTER(LiqInput), ctypes.POINTER(LiqPosition),
                                        ctypes.POINTER(LiqPlan)]  # fmt: skip
    return lib


# Each runner calls the C function for one case's inputs: (error code, outputs or None).
Runner = Callable[[ctypes.CDLL, dict[str, Any]], tuple[int, dict[str, Any]]]


def run_fee_quote(lib: ctypes.CDLL, i: dict[str, Any]) -> tuple[int, dict[str, int]]:
    fee = I64(-7)
    code = lib.pd_fee_quote(i["notional_quote"], i["rate_ppm"], ctypes.byref(fee))
    return code, {"fee_quote": fee.value}


def run_fill_fees(lib: ctypes.CDLL, i: dict[str, Any]) -> tuple[int, dict[str, int]]:
    out = FillFees()
    code = lib.pd_fill_fees_split(i["notional_quote"], i["maker_ppm"], i["taker_ppm"],
                                  i["insurance_share_ppm"], ctypes.byref(out))  # fmt: skip
    return code, {name: getattr(out, name) for name, _ in FillFees._fields_}


def run_funding_settle(lib: ctypes.CDLL, i: dict[str, Any]) -> tuple[int, dict[str, int]]:
    out = FundingSettlement()
    code = lib.pd_funding_settle(i["base"], i128(i["snapshot"]), i128(i["index_now"]),
                                 U64(i["carry_numerator"]), ctypes.byref(out))  # fmt: skip
    return code, {"payment_quote": out.payment_quote, "carry_numerator": out.carry_numerator}


def run_sweep(lib: ctypes.CDLL, i: dict[str, Any]) -> tuple[int, dict[str, int]]:
    swept, rest = U64(), U64()
    lib.pd_sweep_surplus(i["surplus_numerator"], ctypes.byref(swept), ctypes.byref(rest))
    return 0, {"swept_quote": swept.value, "rest_numerator": rest.value}


def run_funding_advance(lib: ctypes.CDLL, i: dict[str, Any]) -> tuple[int, dict[str, int]]:
    cumulative = i128(i["cumulative_funding"])
    code = lib.pd_funding_advance(cumulative, i["rate"], i["index_price"])
    if code:
        assert from_i128(cumulative) == i["cumulative_funding"], "written on failure"
    return code, {"cumulative_funding": from_i128(cumulative)}


def run_notional(lib: ctypes.CDLL, i: dict[str, Any]) -> tuple[int, dict[str, int]]:
    out = U64()
    return lib.pd_notional_quote(i["base"], i["price"], ctypes.byref(out)), {
        "notional_quote": out.value
    }


def run_pnl(lib: ctypes.CDLL, i: dict[str, Any]) -> tuple[int, dict[str, int]]:
    out = I64()
    code = lib.pd_unrealized_pnl_quote(i["base"], i["entry_quote"], i["mark_price"],
                                       ctypes.byref(out))  # fmt: skip
    return code, {"pnl_quote": out.value}


def run_requirement(lib: ctypes.CDLL, i: dict[str, Any]) -> tuple[int, dict[str, int]]:
    out = U64()
    tiers = tiers_array(i["tiers"])
    code = lib.pd_requirement_quote(i["notional_quote"], tiers, len(i["tiers"]), i["kind"],
                                    ctypes.byref(out))  # fmt: skip
    return code, {"requirement_quote": out.value}


def run_validate_tiers(lib: ctypes.CDLL, i: dict[str, Any]) -> tuple[int, dict[str, int]]:
    return lib.pd_validate_margin_tiers(tiers_array(i["tiers"]), len(i["tiers"])), {}


def run_margin_summary(lib: ctypes.CDLL, i: dict[str, Any]) -> tuple[int, dict[str, int]]:
    keep = [tiers_array(p["tiers"]) for p in i["positions"]]
    positions = (MarginPosition * max(1, len(keep)))(
        *(
            MarginPosition(p["base"], p["entry_quote"], p["price"], t, len(p["tiers"]))
            for p, t in zip(i["positions"], keep)
        )
    )
    out = MarginResult()
    code = lib.pd_margin_summary(i["collateral_quote"], positions, len(keep), ctypes.byref(out))
    return code, {name: getattr(out, name) for name, _ in MarginResult._fields_}


def run_apply_fill(lib: ctypes.CDLL, i: dict[str, Any]) -> tuple[int, dict[str, int]]:
    state = PositionState(i["base"], i["entry_quote"], i["realized_pnl_quote"])
    realized = I64()
    code = lib.pd_apply_fill(ctypes.byref(state), i["base_delta"], i["quote_delta"],
                             ctypes.byref(realized))  # fmt: skip
    if code:  # nothing half-applied
        assert (state.base, state.entry_quote, state.realized_pnl_quote) == (
            i["base"], i["entry_quote"], i["realized_pnl_quote"])  # fmt: skip
    return code, {"base": state.base, "entry_quote": state.entry_quote,
                  "realized_pnl_quote": state.realized_pnl_quote,
                  "realized_quote": realized.value}  # fmt: skip


def run_price(lib: ctypes.CDLL, i: dict[str, Any]) -> tuple[int, dict[str, int]]:
    out = U64()
    return lib.pd_price_from_raw(i128(i["mantissa"]), i["exponent"], ctypes.byref(out)), {
        "price": out.value
    }


def run_confidence(lib: ctypes.CDLL, i: dict[str, Any]) -> tuple[int, dict[str, int]]:
    out = U64()
    code = lib.pd_confidence_from_raw(i128(i["mantissa"]), i["exponent"], ctypes.byref(out))
    return code, {"confidence": out.value}


def run_liquidation_plan(lib: ctypes.CDLL, i: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    keep = [tiers_array(p["tiers"]) for p in i["positions"]]
    positions = (LiqPosition * len(keep))(
        *(
            LiqPosition(p["base"], p["entry_quote"], p["price"], p["lot_size"],
                        p["liquidation_fee_ppm"], p["liquidator_share_ppm"],
                        p["liquidation_buffer_ppm"], t, len(p["tiers"]), p["market_index"])
            for p, t in zip(i["positions"], keep)
        )
    )  # fmt: skip
    inputs = LiqInput(i["collateral_quote"], i["insurance_fund_quote"], len(keep))
    plan = LiqPlan()
    code = lib.pd_liquidation_plan(ctypes.byref(inputs), positions, ctypes.byref(plan))
    transfers = [[t.position, t.base_delta, t.quote_delta, t.fee_quote, t.liquidator_fee_quote,
                  t.insurance_fee_quote] for t in plan.transfers[: plan.num_transfers]]  # fmt: skip
    return code, {"transfers": transfers,
                  **{name: getattr(plan, name) for name, _ in LiqPlan._fields_[2:]}}  # fmt: skip


RUNNERS: dict[str, Runner] = {
    "fee_quote": run_fee_quote,
    "fill_fees": run_fill_fees,
    "funding_settle": run_funding_settle,
    "sweep_surplus": run_sweep,
    "funding_advance": run_funding_advance,
    "notional_quote": run_notional,
    "unrealized_pnl_quote": run_pnl,
    "requirement_quote": run_requirement,
    "validate_margin_tiers": run_validate_tiers,
    "margin_summary": run_margin_summary,
    "apply_fill": run_apply_fill,
    "price_from_raw": run_price,
    "confidence_from_raw": run_confidence,
    "liquidation_plan": run_liquidation_plan,
}


@pytest.mark.parametrize("name", list(gen_golden.FILES))
def test_c_maths_match_every_golden_vector(lib: ctypes.CDLL, name: str) -> None:
    cases = json.loads((gen_golden.GOLDEN_DIR / f"{name}.json").read_text())["cases"]
    assert len(cases) > 100
    failures = []
    for case in cases:
        code, out = RUNNERS[case["fn"]](lib, case["in"])
        if "error" in case:
            if code != ERROR_CODES[case["error"]]:
                failures.append((case, f"expected error {case['error']}, got code {code}"))
        elif code != 0 or out != case["out"]:
            failures.append((case, f"got code {code}, {out}"))
    assert not failures, f"{len(failures)} of {len(cases)} differ, first: {failures[:3]}"


def test_every_c_function_and_outcome_is_covered() -> None:
    seen = set()
    for name in gen_golden.FILES:
        for case in json.loads((gen_golden.GOLDEN_DIR / f"{name}.json").read_text())["cases"]:
            seen.add(case["fn"])
    assert seen == set(RUNNERS)


def test_the_golden_files_are_up_to_date() -> None:
    assert gen_golden.main(["--check"]) == 0


def test_a_wrong_c_result_is_caught(lib: ctypes.CDLL) -> None:
    # The comparison itself can fail: a case with a deliberately wrong expectation.
    code, out = run_fee_quote(lib, {"notional_quote": 1, "rate_ppm": 1})
    assert (code, out) == (0, {"fee_quote": 1})  # ceil(1 x 1 / 1e6) = 1, never 0
    assert out != {"fee_quote": 0}
