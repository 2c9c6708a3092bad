"""Unit tests for ``BookOnChainLiquidation``: an on-chain liquidation slice booked as a fact
(no eligibility check), its orders cancelled first, funding settled to the program's index,
exactly once per (signature, slice), refusals that change nothing, and the fold.

Every command goes through ``Run`` (tests/unit/perp/test_clearinghouse_liquidation.py): the
invariants hold after each step and the journal folds (through the codec) and snapshots back
to the live state hash.
"""

from __future__ import annotations

from test_clearinghouse_liquidation import (
    KEEPER,
    LOT,
    MAKER,
    TICK,
    TRADER,
    M,
    Run,
    long_trader,
    of,
)

from exchange.core.commands import BookOnChainLiquidation, PlaceOrder, Tick, parse_command
from exchange.core.errors import RejectCode
from exchange.core.events import (
    InsuranceFundPaidBadDebt,
    LiquidationExecuted,
    OnChainLiquidationBooked,
    OrderCanceled,
    OrderRejected,
)
from exchange.core.orders import Side
from perp.position import settle_funding

SIG = "5" * 87  # a base58 transaction signature


def slice_of(run: Run, lots: int = 4, **overrides: object) -> BookOnChainLiquidation:
    """TRADER's long sold to KEEPER at 90 (the oracle the program read), fee 1 %."""
    base = lots * LOT
    fields: dict[str, object] = dict(
        market_id=M,
        owner_id=TRADER,
        sub_account_id=0,
        liquidator_owner_id=KEEPER,
        liquidator_sub_account_id=0,
        base_delta=-base,
        quote_delta=90 * base * TICK // LOT,
        price=90 * TICK,
        fee_quote=3_600_000,
        liquidator_fee_quote=1_800_000,
        insurance_fee_quote=1_800_000,
        cumulative_funding=run.ch.markets[M].cumulative_funding,
        tx_signature=SIG,
        slice_index=0,
    )
    fields.update(overrides)
    return BookOnChainLiquidation(**fields)  # type: ignore[arg-type]


def test_a_slice_is_booked_as_a_fact_once() -> None:
    # Arrange: TRADER long 10 at 100 is healthy at the engine's oracle (100): the engine would
    # refuse a Liquidate, but the program liquidated it at its own oracle (90)
    run = long_trader(collateral=200 * 1_000_000)
    assert not of(run(PlaceOrder(M, TRADER, 0, Side.ASK, 102 * TICK, LOT)), OrderRejected)
    collateral_before = run.ch.account(TRADER, 0).collateral_quote
    fund_before = run.ch.insurance_fund_quote
    cmd = slice_of(run)
    # Act
    events = run(cmd)
    # Assert: orders cancelled, funding settled at the program's index, the slice booked
    kinds = [type(e) for e in events]
    assert kinds == [OrderCanceled, OnChainLiquidationBooked, LiquidationExecuted], kinds
    [done] = of(events, LiquidationExecuted)
    assert (done.owner_id, done.liquidator_owner_id, done.base_delta, done.quote_delta) == (
        TRADER,
        KEEPER,
        -4 * LOT,
        360_000_000,
    )
    assert run.ch.account(TRADER, 0).positions[M].base == 6 * LOT
    assert run.ch.account(KEEPER, 0).positions[M].base == 4 * LOT  # takes the long over
    # 4 of 10 at an entry of 100 sold at 90: -40 realised, the fee 3.6
    assert run.ch.account(TRADER, 0).collateral_quote == collateral_before - 40_000_000 - 3_600_000
    assert run.ch.insurance_fund_quote == fund_before + 1_800_000
    assert run.ch.onchain_liquidations == {f"{SIG}:0"}
    # Act / Assert: the same slice again is refused and changes nothing
    run.rejected(cmd, RejectCode.ONCHAIN_LIQUIDATION_DUPLICATE)
    # a second slice of the same transaction is another fact
    second = run(slice_of(run, lots=1, slice_index=1, fee_quote=900_000,
                          liquidator_fee_quote=450_000, insurance_fee_quote=450_000))  # fmt: skip
    assert (
        of(second, LiquidationExecuted) and run.ch.account(TRADER, 0).positions[M].base == 5 * LOT
    )


def test_funding_is_settled_to_the_programs_index_not_the_engines() -> None:
    # Arrange: a funding interval the program has not seen yet (the engine's index moved on)
    run = long_trader()
    chain_index = run.ch.markets[M].cumulative_funding
    run(PlaceOrder(M, MAKER, 0, Side.BID, 101 * TICK, 10 * LOT))  # the book above the index
    run(PlaceOrder(M, MAKER, 0, Side.ASK, 102 * TICK, 10 * LOT))
    run(Tick(), at=10 * 10**9)
    run(Tick(), at=3_600 * 10**9)
    assert run.ch.markets[M].cumulative_funding != chain_index
    trader_position = run.ch.account(TRADER, 0).positions[M]
    # Act
    events = run(slice_of(run, cumulative_funding=chain_index))
    # Assert: both positions sit at the program's index (the next settlement covers the rest)
    [booked] = of(events, OnChainLiquidationBooked)
    assert booked.cumulative_funding == chain_index
    assert booked.funding_quote == settle_funding(trader_position, chain_index).payment_quote
    assert run.ch.account(TRADER, 0).positions[M].funding_snapshot == chain_index
    assert run.ch.account(KEEPER, 0).positions[M].funding_snapshot == chain_index


def test_the_funds_payment_of_the_transaction_is_booked_with_its_last_slice() -> None:
    run = long_trader(collateral=200 * 1_000_000)
    events = run(slice_of(run, insurance_payment_quote=5))
    [paid] = of(events, InsuranceFundPaidBadDebt)
    assert (paid.owner_id, paid.amount_quote, paid.uncovered_quote) == (TRADER, 5, 0)


def test_slices_the_engine_cannot_take_are_refused_and_change_nothing() -> None:
    run = long_trader(collateral=200 * 1_000_000)
    inconsistent = RejectCode.ONCHAIN_LIQUIDATION_INCONSISTENT
    run.rejected(slice_of(run, base_delta=4 * LOT), inconsistent)  # would grow the long
    run.rejected(slice_of(run, base_delta=-11 * LOT), inconsistent)  # beyond the position
    run.rejected(slice_of(run, base_delta=-LOT // 2), inconsistent)  # not whole lots
    run.rejected(slice_of(run, owner_id=MAKER + 100), inconsistent)  # no position at all
    run.rejected(slice_of(run, fee_quote=1), inconsistent)  # split does not add up
    run.rejected(slice_of(run, liquidator_owner_id=TRADER), inconsistent)  # itself
    run.rejected(slice_of(run, tx_signature=""), inconsistent)
    run.rejected(slice_of(run, insurance_payment_quote=10**15), inconsistent)
    run.rejected(slice_of(run, market_id=9), RejectCode.UNKNOWN_MARKET)
    assert run.ch.onchain_liquidations == set()


def test_the_command_parses_from_json_with_signed_deltas() -> None:
    cmd = parse_command(
        {"type": "onchain_liquidation", **slice_of(long_trader())._asdict(), "quote_delta": -5}
    )
    assert type(cmd) is BookOnChainLiquidation and cmd.base_delta == -4 * LOT
