"""Unit tests for the clearinghouse's ``Liquidate``: eligibility at fresh valid oracles,
orders cancelled first, partial liquidation with the fee split, bankruptcy (insurance fund,
then ADL in rank order), refusals that change nothing, races, and the fold.

Every command goes through ``Run``: after each step the invariants hold (conservation to the
unit, positions == the core's fills, insurance fund >= 0) and the fold of the journal from
zero reproduces the live state hash; a snapshot round trip does too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exchange.core.commands import (
    CreateMarket,
    Deposit,
    DepositInsurance,
    Liquidate,
    PlaceOrder,
    UpdateOraclePrice,
)
from exchange.core.errors import LIQUIDATION_CODES, RejectCode
from exchange.core.events import (
    NO_MARKET_ID,
    AccountLiquidated,
    InsuranceFundPaidBadDebt,
    LiquidationExecuted,
    OrderCanceled,
    OrderRejected,
    PositionDeleveraged,
    decode_events,
    encode_events,
)
from exchange.core.orders import Side, TimeInForce
from exchange.core.units import NANOS_PER_SECOND
from liquidation.rules import Health
from perp.clearinghouse import Clearinghouse
from perp.params import PerpMarketParams

TICK = 1_000_000  # 1.0 quote per base unit
LOT = 1_000_000_000  # 1 whole base unit
USDC = 1_000_000
S = NANOS_PER_SECOND
M, M2 = 0, 1
TRADER, MAKER, KEEPER, KEEPER2, SHORT2 = 1, 3, 4, 5, 6

PARAMS = PerpMarketParams(
    maker_fee_ppm=0,
    taker_fee_ppm=500,
    insurance_share_ppm=0,  # the fund starts empty unless a test tops it up
    funding_interest_rate=0,
    funding_interest_band=0,
)


class Run:
    """A clearinghouse plus its journal; fold, snapshot and invariants checked every step."""

    def __init__(self) -> None:
        self.ch = Clearinghouse(default_params=PARAMS)
        self.journal: list[Any] = []
        self.ts = 1 * S

    def __call__(self, cmd: Any, at: int | None = None) -> list[Any]:
        if at is not None:
            self.ts = at
        events = self.ch.execute(cmd, self.ts)
        self.journal += events
        self.ch.check_invariants()
        assert self.ch.insurance_fund_quote >= 0
        folded = Clearinghouse()
        for e in decode_events(encode_events(self.journal)):  # through the codec
            folded.apply(e)
        assert folded.state_hash() == self.ch.state_hash()
        assert Clearinghouse.from_snapshot(self.ch.snapshot()).state_hash() == folded.state_hash()
        return events

    def rejected(self, cmd: Any, code: RejectCode) -> str:
        before = self.ch.canonical()
        events = self(cmd)
        assert [type(e) for e in events] == [OrderRejected], events
        assert events[0].code == code, events[0]
        assert (events[0].owner_id, events[0].sub_account_id) == (cmd.owner_id, cmd.sub_account_id)
        after = self.ch.canonical()
        after["core"]["next_seq"] -= 1
        assert after == before  # a refusal changes nothing but the sequence number
        return str(events[0].message)


def of(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if type(e) is kind]


def trade(run: Run, maker: int, taker: int, taker_side: Side, base_lots: int, price: int) -> None:
    maker_side = Side.ASK if taker_side == Side.BID else Side.BID
    run(PlaceOrder(M, maker, 0, maker_side, price * TICK, base_lots * LOT))
    run(
        PlaceOrder(
            M, taker, 0, taker_side, price * TICK, base_lots * LOT, time_in_force=TimeInForce.IOC
        )
    )


def long_trader(collateral: int = 100 * USDC) -> Run:
    """TRADER long 10 at 100 with 100 USDC (10x); MAKER short 10; keepers funded."""
    run = Run()
    run(CreateMarket(M, "T-PERP", TICK, LOT))
    run(UpdateOraclePrice(M, 100 * TICK, 1_000, 10, 1, True))
    run(Deposit(TRADER, 0, collateral))
    for owner in (MAKER, KEEPER, KEEPER2, SHORT2):
        run(Deposit(owner, 0, 100_000 * USDC))
    trade(run, MAKER, TRADER, Side.BID, 10, 100)
    return run


def oracle(run: Run, price_ticks: int, at: int) -> None:
    run(UpdateOraclePrice(M, price_ticks * TICK, 1_000, 20, at // S, True), at=at)


# ====================================================================== refusals
def test_a_healthy_account_is_refused_and_nothing_changes() -> None:
    run = long_trader()
    message = run.rejected(Liquidate(KEEPER, 0, TRADER, 0), RejectCode.LIQUIDATION_NOT_ELIGIBLE)
    assert "expected < maintenance" in message


def test_an_account_without_positions_is_refused() -> None:
    run = long_trader()
    message = run.rejected(Liquidate(TRADER, 0, KEEPER, 0), RejectCode.LIQUIDATION_NOT_ELIGIBLE)
    assert "no positions" in message


def test_self_liquidation_across_sub_accounts_is_refused() -> None:
    run = long_trader()
    oracle(run, 92, 2 * S)
    run.rejected(Liquidate(TRADER, 1, TRADER, 0), RejectCode.LIQUIDATION_SELF)


def test_an_unknown_market_is_refused() -> None:
    run = long_trader()
    oracle(run, 92, 2 * S)
    run.rejected(Liquidate(KEEPER, 0, TRADER, 0, 9), RejectCode.UNKNOWN_MARKET)


def test_a_stale_oracle_refuses_liquidation() -> None:
    # Arrange: below maintenance at 92, but the reading is older than the age bound.
    run = long_trader()
    oracle(run, 92, 2 * S)
    run.ts = 2 * S + run.ch.liquidation_max_oracle_age_ns + 1
    # Act / Assert
    message = run.rejected(Liquidate(KEEPER, 0, TRADER, 0), RejectCode.LIQUIDATION_ORACLE_INVALID)
    assert "[0]" in message
    assert run.ch.liquidation_health(TRADER, 0, run.ts) == Health.ORACLE_INVALID


def test_an_invalid_oracle_refuses_liquidation() -> None:
    run = long_trader()
    oracle(run, 92, 2 * S)
    run(UpdateOraclePrice(M, 0, 0, 21, 3, False), at=3 * S)
    run.rejected(Liquidate(KEEPER, 0, TRADER, 0), RejectCode.LIQUIDATION_ORACLE_INVALID)


def test_a_liquidator_without_margin_is_refused() -> None:
    run = long_trader()
    oracle(run, 92, 2 * S)
    message = run.rejected(Liquidate(7, 0, TRADER, 0), RejectCode.LIQUIDATOR_INSUFFICIENT_MARGIN)
    assert "short by" in message


def test_every_liquidation_code_is_covered_here() -> None:
    # here, and BookOnChainLiquidation's in test_clearinghouse_onchain_liquidation.py
    source = "".join(
        Path(__file__).with_name(name).read_text()
        for name in (
            "test_clearinghouse_liquidation.py",
            "test_clearinghouse_onchain_liquidation.py",
        )
    )
    assert all(f"RejectCode.{code.name}" in source for code in LIQUIDATION_CODES)


# ====================================================================== partial liquidation
def test_partial_liquidation_cancels_orders_then_restores_maintenance_plus_buffer() -> None:
    # Arrange: TRADER rests a bid; the oracle falls to 92 (equity 19.5 < maintenance 27.6).
    run = long_trader()
    run(PlaceOrder(M, TRADER, 0, Side.BID, 97 * TICK, 1 * LOT))
    oracle(run, 92, 2 * S)
    assert run.ch.liquidation_health(TRADER, 0, run.ts) == Health.LIQUIDATABLE
    keeper_before = run.ch.account(KEEPER, 0).collateral_quote
    # Act
    events = run(Liquidate(KEEPER, 0, TRADER, 0))
    # Assert: orders first, then the slices, then the record.
    kinds = [type(e) for e in events]
    assert kinds.index(OrderCanceled) < kinds.index(LiquidationExecuted)
    assert kinds[-1] is AccountLiquidated
    slices = of(events, LiquidationExecuted)
    assert slices and all(s.price == 92 * TICK for s in slices)
    closed = -sum(s.base_delta for s in slices)
    assert 0 < closed < 10 * LOT and closed % LOT == 0  # partial, whole lots
    for s in slices:
        assert s.fee_quote == s.liquidator_fee_quote + s.insurance_fee_quote
        assert s.liquidator_fee_quote == s.fee_quote * 500_000 // 1_000_000
    [record] = of(events, AccountLiquidated)
    assert record.equity_before_quote < record.maintenance_before_quote
    buffer = -(-(10 * LOT - closed) // LOT * 92 * USDC * PARAMS.liquidation_buffer_ppm // 10**6)
    assert record.equity_after_quote >= record.maintenance_after_quote + buffer
    keeper = run.ch.account(KEEPER, 0)
    assert keeper.positions[M].base == closed
    fees = sum(s.liquidator_fee_quote for s in slices)
    assert keeper.collateral_quote == keeper_before + fees
    assert run.ch.insurance_fund_quote == sum(s.insurance_fee_quote for s in slices)
    assert not run.ch.books[M].account_orders.get(TRADER * 2**16)


def test_racing_keepers_the_second_is_refused_as_not_eligible() -> None:
    run = long_trader()
    oracle(run, 92, 2 * S)
    first = run(Liquidate(KEEPER, 0, TRADER, 0))
    assert of(first, AccountLiquidated)
    message = run.rejected(Liquidate(KEEPER2, 0, TRADER, 0), RejectCode.LIQUIDATION_NOT_ELIGIBLE)
    assert "expected < maintenance" in message
    assert M not in run.ch.account(KEEPER2, 0).positions


def test_a_market_restricted_liquidation_outside_the_plan_is_refused() -> None:
    run = long_trader()
    run(CreateMarket(M2, "U-PERP", TICK, LOT))
    run(UpdateOraclePrice(M2, 100 * TICK, 1_000, 10, 1, True))
    oracle(run, 92, 2 * S)
    run.rejected(Liquidate(KEEPER, 0, TRADER, 0, M2), RejectCode.LIQUIDATION_NOT_ELIGIBLE)
    events = run(Liquidate(KEEPER, 0, TRADER, 0, M))
    assert of(events, AccountLiquidated)[0].market_id == M


# ====================================================================== bankruptcy
def test_bankruptcy_within_the_fund_the_fund_pays_the_deficit() -> None:
    # Arrange: at 89 equity is 100 - 0.5 - 110 = -10.5; the fund holds 1,000.
    run = long_trader()
    run(DepositInsurance(1_000 * USDC))
    oracle(run, 89, 2 * S)
    # Act
    events = run(Liquidate(KEEPER, 0, TRADER, 0))
    # Assert
    [paid] = of(events, InsuranceFundPaidBadDebt)
    assert paid.bad_debt_quote == 10_500_000 == paid.amount_quote
    assert paid.uncovered_quote == 0
    assert paid.balance_quote == run.ch.insurance_fund_quote == 1_000 * USDC - 10_500_000
    assert all(s.fee_quote == 0 for s in of(events, LiquidationExecuted))
    assert run.ch.account(TRADER, 0).positions == {}
    assert run.ch.account(TRADER, 0).collateral_quote == 0
    assert run.ch.account(KEEPER, 0).positions[M].base == 10 * LOT


def test_bankruptcy_beyond_the_fund_deleverages_opposite_positions_in_rank_order() -> None:
    # Arrange: two shorts against TRADER's long: MAKER short 6 at 100, SHORT2 short 4 at 100.
    run = Run()
    run(CreateMarket(M, "T-PERP", TICK, LOT))
    run(UpdateOraclePrice(M, 100 * TICK, 1_000, 10, 1, True))
    run(Deposit(TRADER, 0, 100 * USDC))
    run(Deposit(MAKER, 0, 100_000 * USDC))
    run(Deposit(SHORT2, 0, 100 * USDC))  # higher leverage: ranked first
    run(Deposit(KEEPER, 0, 100_000 * USDC))
    trade(run, MAKER, TRADER, Side.BID, 6, 100)
    trade(run, SHORT2, TRADER, Side.BID, 4, 100)
    run(DepositInsurance(4 * USDC))
    oracle(run, 89, 2 * S)
    ranks = run.ch.adl_ranks(M)
    assert run.ch.adl_rank(SHORT2, 0, M) == 1 and run.ch.adl_rank(MAKER, 0, M) == 2
    assert ranks[TRADER * 2**16] == 1  # alone on its side
    # Act
    events = run(Liquidate(KEEPER, 0, TRADER, 0))
    # Assert: SHORT2 first (4), then MAKER (6), at the bankruptcy price; the fund pays the rest.
    adl = of(events, PositionDeleveraged)
    assert [(e.counterparty_owner_id, -e.base_delta) for e in adl] == [
        (SHORT2, 4 * LOT),
        (MAKER, 6 * LOT),
    ]
    assert len({e.bankruptcy_price for e in adl}) == 1 and adl[0].bankruptcy_price > 89 * TICK
    [paid] = of(events, InsuranceFundPaidBadDebt)
    assert paid.bad_debt_quote > 4 * USDC and paid.amount_quote <= 4 * USDC
    assert paid.uncovered_quote == 0
    assert run.ch.account(TRADER, 0).positions == {}
    assert run.ch.account(TRADER, 0).collateral_quote >= 0
    assert M not in run.ch.account(KEEPER, 0).positions  # ADL gives the keeper nothing
    [record] = of(events, AccountLiquidated)
    assert record.num_deleveraged == 2 and record.num_transfers == 0
    assert record.market_id == NO_MARKET_ID
