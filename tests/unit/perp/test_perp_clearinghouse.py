"""Unit tests for perp.clearinghouse: accounts, fills, fees, funding, risk gate, status, fold.

Every command goes through ``Run``, which after each step checks the invariants
(conservation to the unit, positions == the core's fills) and that folding the events so far
from zero reproduces the live state hash.
"""

from __future__ import annotations

from typing import Any

import pytest

from exchange.core.commands import (
    FIRST_REGISTERED_OWNER_ID,
    AmendOrder,
    BookOnChainWithdrawal,
    CancelOrder,
    CreateMarket,
    Deposit,
    DepositInsurance,
    PlaceOrder,
    RegisterAccount,
    SetKillSwitch,
    SetMarketStatus,
    Tick,
    UpdateOraclePrice,
    Withdraw,
)
from exchange.core.errors import CLEARINGHOUSE_CODES, InvariantViolation, RejectCode
from exchange.core.events import (
    CollateralDeposited,
    CollateralWithdrawn,
    FillSettled,
    FundingRateApplied,
    FundingSampled,
    FundingSettled,
    InsuranceFundDeposited,
    MarketParamsSet,
    MarketStatusChanged,
    MarkPriceUpdated,
    OraclePriceUpdated,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    OrderRested,
    TradeExecuted,
)
from exchange.core.orders import OrderType, Side, TimeInForce
from exchange.core.units import NANOS_PER_SECOND
from perp.circuit_breaker import BreakerReason
from perp.clearinghouse import Clearinghouse
from perp.params import PerpMarketParams
from perp.position import Position
from perp.risk_gate import MarketStatus

TICK = 1_000_000  # 1.0 quote per base unit
LOT = 1_000_000_000  # 1 whole base unit
USDC = 1_000_000
S = NANOS_PER_SECOND
M = 0

PARAMS = PerpMarketParams(
    maker_fee_ppm=-100,
    taker_fee_ppm=500,
    insurance_share_ppm=200_000,
    funding_interest_rate=0,
    funding_interest_band=0,
)


class Run:
    """A clearinghouse plus its journal, with the fold checked after every command."""

    def __init__(self, params: PerpMarketParams = PARAMS) -> None:
        self.ch = Clearinghouse(default_params=params)
        self.journal: list[Any] = []
        self.ts = 1 * S

    def __call__(self, cmd: Any, at: int | None = None) -> list[Any]:
        if at is not None:
            self.ts = at
        events = self.ch.execute(cmd, self.ts)
        self.journal += events
        self.ch.check_invariants()
        folded = Clearinghouse()
        for e in self.journal:
            folded.apply(e)
        assert folded.state_hash() == self.ch.state_hash()
        return events

    def rejected(self, cmd: Any, code: RejectCode) -> str:
        before = self.ch.canonical()
        events = self(cmd)
        assert [type(e) for e in events] == [OrderRejected], events
        assert events[0].code == code, events[0]
        after = self.ch.canonical()
        after["core"]["next_seq"] -= 1
        assert after == before  # a refusal changes nothing but the sequence number
        return str(events[0].message)


def listed(index_price: int = 100_300_000, params: PerpMarketParams = PARAMS) -> Run:
    run = Run(params)
    run(CreateMarket(M, "T-PERP", TICK, LOT))
    run(UpdateOraclePrice(M, index_price, 1_000, 10, 1, True))
    for owner, amount in ((1, 10_000 * USDC), (2, 10_000 * USDC), (3, 100_000 * USDC)):
        run(Deposit(owner, 0, amount))
    return run


def of(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if type(e) is kind]


# ====================================================================== accounts
def test_a_listed_market_journals_its_parameters() -> None:
    # Arrange
    run = Run()
    # Act
    events = run(CreateMarket(M, "T-PERP", TICK, LOT))
    # Assert
    [params] = of(events, MarketParamsSet)
    assert PerpMarketParams.from_json(params.params_json) == PARAMS
    assert run.ch.markets[M].params == PARAMS


def test_a_deposit_credits_collateral_and_net_deposits() -> None:
    run = Run()
    [e] = run(Deposit(7, 2, 5 * USDC))
    assert type(e) is CollateralDeposited and e.collateral_quote == 5 * USDC
    assert run.ch.account(7, 2).collateral_quote == 5 * USDC
    assert run.ch.net_deposits_quote == 5 * USDC


def test_a_zero_deposit_is_refused() -> None:
    run = Run()
    message = run.rejected(Deposit(7, 0, 0), RejectCode.NON_POSITIVE_AMOUNT)
    assert message.startswith("amount_quote: expected 1..")


def test_an_insurance_top_up_is_an_event() -> None:
    run = Run()
    [e] = run(DepositInsurance(250))
    assert type(e) is InsuranceFundDeposited and e.balance_quote == 250
    assert run.ch.insurance_fund_quote == 250
    run.rejected(DepositInsurance(0), RejectCode.NON_POSITIVE_AMOUNT)


def test_withdrawal_without_positions_takes_collateral() -> None:
    run = listed()
    [e] = run(Withdraw(1, 0, 4_000 * USDC))
    assert type(e) is CollateralWithdrawn and e.collateral_quote == 6_000 * USDC
    assert run.ch.net_deposits_quote == 116_000 * USDC


def test_withdrawal_beyond_free_collateral_is_refused() -> None:
    # Arrange: a long of 50 units at 100 (notional 5,000, initial margin 5 % = 250) plus
    # fees leaves free collateral just under 9,750.
    run = listed()
    run(PlaceOrder(M, 3, 0, Side.ASK, 100 * TICK, 50 * LOT))
    run(PlaceOrder(M, 1, 0, Side.BID, 100 * TICK, 50 * LOT, time_in_force=TimeInForce.IOC))
    summary = run.ch.margin(1, 0)
    free = summary.free_collateral_quote
    # Act / Assert
    message = run.rejected(Withdraw(1, 0, free + 1), RejectCode.WITHDRAWAL_ABOVE_FREE_COLLATERAL)
    assert message == f"amount_quote: expected <= free collateral {free}, got {free + 1}"
    run(Withdraw(1, 0, free))
    assert run.ch.margin(1, 0).free_collateral_quote == 0


def test_withdrawal_from_an_unknown_account_is_refused() -> None:
    run = Run()
    run.rejected(Withdraw(9, 0, 1), RejectCode.WITHDRAWAL_ABOVE_FREE_COLLATERAL)
    run.rejected(Withdraw(9, 0, 0), RejectCode.NON_POSITIVE_AMOUNT)


# ====================================================================== golden vector
def test_golden_fill_fee_and_funding_sequence() -> None:
    """Worked by hand (docs/PROTOCOL.md). Index 100.3; maker fee -1 bp, taker 5 bp,
    insurance share 20 %; interest 0, band 0 (rate == premium).

    Fill: A sells 2 @ 100 to B. notional = 200.000000 = 200_000_000.
      maker fee = -floor(200_000_000 x 100 / 1e6) = -20_000 (rebate)
      taker fee =  ceil(200_000_000 x 500 / 1e6) = 100_000
      insurance = floor(80_000 x 200_000 / 1e6) = 16_000; venue = 64_000
    Book then: C bids 10 @ 101, asks 10 @ 102 -> impact bid 101, ask 102 (200 USDC fits).
      premium = trunc((101 - 100.3) x 1e9 / 100.3) = trunc(6_979_062.81) = 6_979_062
      rate = 6_979_062; index += 6_979_062 x 100_300_000 = 699_999_918_600_000
    Settlement, D = 1e18:
      B long 2: x = 2e9 x 699_999_918_600_000 = 1_399_999_837_200_000_000_000_000
        pays ceil(x / D) = 1_400_000, carry 162_800_000_000_000_000 (stays in the position)
      A short: receives floor(x / D) = 1_399_999, carry 837_200_000_000_000_000
      carries total = 1e18 = the pool's 1 unit; nothing is swept while the positions are open.
    """
    # Arrange
    run = listed()
    # Act: the fill
    run(PlaceOrder(M, 1, 0, Side.ASK, 100 * TICK, 2 * LOT))
    fill_events = run(
        PlaceOrder(M, 2, 0, Side.BID, 100 * TICK, 2 * LOT, time_in_force=TimeInForce.IOC)
    )
    # Assert: the fill
    [trade] = of(fill_events, TradeExecuted)
    [fill] = of(fill_events, FillSettled)
    assert fill_events[-1] is fill and fill.trade_seq == trade.seq
    assert (fill.base, fill.notional_quote) == (2 * LOT, 200_000_000)
    assert (fill.maker_fee_quote, fill.taker_fee_quote, fill.insurance_quote) == (
        -20_000,
        100_000,
        16_000,
    )
    assert (fill.maker_realized_quote, fill.taker_realized_quote) == (0, 0)
    assert run.ch.account(1, 0).positions[M] == Position(-2 * LOT, 200_000_000, 0, 0)
    assert run.ch.account(2, 0).positions[M] == Position(2 * LOT, -200_000_000, 0, 0)
    assert run.ch.fee_pool_quote == 64_000
    assert run.ch.insurance_fund_quote == 16_000

    # Act: the book the premium is sampled from, a sample, and the hour's funding
    run(PlaceOrder(M, 3, 0, Side.BID, 101 * TICK, 10 * LOT))
    run(PlaceOrder(M, 3, 0, Side.ASK, 102 * TICK, 10 * LOT))
    [sample] = of(run(Tick(), at=10 * S), FundingSampled)
    hour = run(Tick(), at=3600 * S)
    # Assert: premium, rate, index
    assert (sample.impact_bid, sample.impact_ask) == (101 * TICK, 102 * TICK)
    assert sample.premium_rate == 6_979_062
    [applied] = of(hour, FundingRateApplied)
    assert (applied.num_samples, applied.average_premium_rate, applied.funding_rate) == (
        2,
        6_979_062,
        6_979_062,
    )
    assert applied.cumulative_funding == 699_999_918_600_000

    # Act: both accounts touched (lazily) by a withdrawal
    [paid, _] = run(Withdraw(2, 0, 1 * USDC), at=3601 * S)
    [received, _] = run(Withdraw(1, 0, 1 * USDC))
    # Assert: exact settlement, the rounding kept as each position's carry (the pool's unit)
    assert type(paid) is FundingSettled and (paid.payment_quote, paid.swept_quote) == (1_400_000, 0)
    assert type(received) is FundingSettled
    assert (received.payment_quote, received.swept_quote) == (-1_399_999, 0)
    assert run.ch.account(2, 0).collateral_quote == 10_000 * USDC - 100_000 - 1_400_000 - USDC
    assert run.ch.account(1, 0).collateral_quote == 10_000 * USDC + 20_000 + 1_399_999 - USDC
    assert run.ch.account(2, 0).positions[M].funding_carry_numerator == 162_800_000_000_000_000
    assert run.ch.account(1, 0).positions[M].funding_carry_numerator == 837_200_000_000_000_000
    assert run.ch.insurance_fund_quote == 16_000
    market = run.ch.markets[M]
    assert (market.funding_pool_quote, market.funding_surplus_numerator) == (1, 0)
    assert run.ch.conservation_gap_quote() == 0
    run.ch.check_invariants()


def test_closing_realises_pnl_into_collateral() -> None:
    # Arrange: B buys 2 @ 100 from A
    run = listed()
    run(PlaceOrder(M, 1, 0, Side.ASK, 100 * TICK, 2 * LOT))
    run(PlaceOrder(M, 2, 0, Side.BID, 100 * TICK, 2 * LOT, time_in_force=TimeInForce.IOC))
    before = run.ch.account(2, 0).collateral_quote
    # Act: B sells 2 @ 103 to C
    run(PlaceOrder(M, 3, 0, Side.BID, 103 * TICK, 2 * LOT))
    events = run(PlaceOrder(M, 2, 0, Side.ASK, 103 * TICK, 2 * LOT, time_in_force=TimeInForce.IOC))
    # Assert: +6.000000 realised, minus the taker fee ceil(206e6 x 500 / 1e6) = 103_000
    [fill] = of(events, FillSettled)
    assert fill.taker_realized_quote == 6 * USDC
    assert M not in run.ch.account(2, 0).positions
    assert run.ch.account(2, 0).collateral_quote == before + 6 * USDC - 103_000
    assert run.ch.account(2, 0).realized_pnl_quote == 6 * USDC


# ====================================================================== risk gate
def test_orders_wait_for_an_index_price() -> None:
    run = Run()
    run(CreateMarket(M, "T-PERP", TICK, LOT))
    run(Deposit(1, 0, 1_000 * USDC))
    message = run.rejected(
        PlaceOrder(M, 1, 0, Side.BID, 100 * TICK, LOT), RejectCode.MARKET_NOT_ACCEPTING
    )
    assert message == "index price: expected an oracle price, the market has none yet"


def test_an_order_the_account_cannot_margin_is_refused_before_the_book() -> None:
    # Arrange: 10,000 collateral; 2,000 units at 100 = 200,000 notional needs 5 % of the
    # first 1M = 10,000 initial, plus the fee: short.
    run = listed()
    # Act
    message = run.rejected(
        PlaceOrder(M, 1, 0, Side.BID, 100 * TICK, 2_000 * LOT), RejectCode.INSUFFICIENT_MARGIN
    )
    # Assert
    assert message.startswith("margin: expected equity >= initial margin after the fill, short by")
    assert type(run(PlaceOrder(M, 1, 0, Side.BID, 100 * TICK, 1_000 * LOT))[0]) is OrderAccepted


def test_resting_orders_count_toward_initial_margin() -> None:
    # Arrange: 1,900 units resting use 9,500 of the 10,000
    run = listed()
    [accepted, _] = run(PlaceOrder(M, 1, 0, Side.BID, 100 * TICK, 1_900 * LOT))
    assert type(accepted) is OrderAccepted
    # Act / Assert: another 200 on the same side does not fit; on the other side it does
    run.rejected(
        PlaceOrder(M, 1, 0, Side.BID, 100 * TICK, 200 * LOT), RejectCode.INSUFFICIENT_MARGIN
    )
    assert type(run(PlaceOrder(M, 1, 0, Side.ASK, 101 * TICK, 200 * LOT))[0]) is OrderAccepted


def test_an_amend_that_grows_past_margin_is_refused() -> None:
    run = listed()
    [accepted, _] = run(PlaceOrder(M, 1, 0, Side.BID, 100 * TICK, 1_000 * LOT))
    run.rejected(
        AmendOrder(M, 1, 0, accepted.order_id, 100 * TICK, 2_500 * LOT),
        RejectCode.INSUFFICIENT_MARGIN,
    )
    events = run(AmendOrder(M, 1, 0, accepted.order_id, 100 * TICK, 1_500 * LOT))
    assert type(events[0]) is not OrderRejected


def test_an_amend_that_does_not_grow_the_worst_case_skips_margin() -> None:
    # Arrange: account 4 long 5 with a resting ask of 3, then under initial margin
    run = listed()
    run(Deposit(4, 0, 30 * USDC))
    run(PlaceOrder(M, 3, 0, Side.ASK, 100 * TICK, 5 * LOT))
    run(PlaceOrder(M, 4, 0, Side.BID, 100 * TICK, 5 * LOT, time_in_force=TimeInForce.IOC))
    [ask, _] = run(PlaceOrder(M, 4, 0, Side.ASK, 97 * TICK, 3 * LOT))
    run(UpdateOraclePrice(M, 96 * TICK, 0, 11, 2, True))
    # Act / Assert: re-pricing it (same size) and growing it to the position are accepted
    assert type(run(AmendOrder(M, 4, 0, ask.order_id, 96 * TICK, 3 * LOT))[0]) is not (
        OrderRejected
    )
    assert type(run(AmendOrder(M, 4, 0, ask.order_id, 96 * TICK, 10 * LOT))[0]) is not (
        OrderRejected
    )
    run.rejected(
        AmendOrder(M, 4, 0, ask.order_id, 96 * TICK, 11 * LOT), RejectCode.INSUFFICIENT_MARGIN
    )


def test_orders_that_do_not_grow_the_worst_case_skip_margin_others_do_not() -> None:
    # Arrange: account 4 long 5 @ 100 on 30 USDC, then the index falls to 96: equity
    # 29.75 - 20 = 9.75 against an initial requirement of 5 x 96 x 5 % = 24.
    run = listed()
    run(Deposit(4, 0, 30 * USDC))
    run(PlaceOrder(M, 3, 0, Side.ASK, 100 * TICK, 5 * LOT))
    run(PlaceOrder(M, 4, 0, Side.BID, 100 * TICK, 5 * LOT, time_in_force=TimeInForce.IOC))
    run(UpdateOraclePrice(M, 96 * TICK, 0, 11, 2, True))
    summary = run.ch.margin(4, 0)
    assert summary.equity_quote < summary.initial_quote
    # Act / Assert: asks up to twice the position leave the worst case at 5: accepted
    assert type(run(PlaceOrder(M, 4, 0, Side.ASK, 96 * TICK, 3 * LOT))[0]) is OrderAccepted
    assert type(run(PlaceOrder(M, 4, 0, Side.ASK, 96 * TICK, 5 * LOT))[0]) is OrderAccepted
    # one more would make the worst case a short of 8: the margin check runs and refuses
    run.rejected(PlaceOrder(M, 4, 0, Side.ASK, 96 * TICK, 5 * LOT), RejectCode.INSUFFICIENT_MARGIN)


def test_the_price_band_and_size_limits_apply() -> None:
    run = listed(params=PerpMarketParams(max_order_base=5 * LOT, max_position_base=8 * LOT))
    run.rejected(PlaceOrder(M, 1, 0, Side.BID, 110 * TICK, LOT), RejectCode.PRICE_OUTSIDE_BAND)
    run.rejected(
        PlaceOrder(M, 1, 0, Side.BID, 100 * TICK, 6 * LOT), RejectCode.ORDER_SIZE_ABOVE_LIMIT
    )
    run(PlaceOrder(M, 3, 0, Side.ASK, 100 * TICK, 5 * LOT))
    run(PlaceOrder(M, 1, 0, Side.BID, 100 * TICK, 5 * LOT, time_in_force=TimeInForce.IOC))
    run.rejected(
        PlaceOrder(M, 1, 0, Side.BID, 100 * TICK, 4 * LOT), RejectCode.POSITION_ABOVE_LIMIT
    )


def test_reduce_only_status_takes_reducing_orders_by_the_real_position() -> None:
    # Arrange: account 1 long 3
    run = listed()
    run(PlaceOrder(M, 3, 0, Side.ASK, 100 * TICK, 3 * LOT))
    run(PlaceOrder(M, 1, 0, Side.BID, 100 * TICK, 3 * LOT, time_in_force=TimeInForce.IOC))
    [changed] = run(SetMarketStatus(M, MarketStatus.REDUCE_ONLY))
    assert (changed.old_status, changed.new_status) == (
        MarketStatus.ACTIVE,
        MarketStatus.REDUCE_ONLY,
    )
    # Act / Assert
    run.rejected(PlaceOrder(M, 1, 0, Side.BID, 100 * TICK, LOT), RejectCode.MARKET_NOT_ACCEPTING)
    run.rejected(PlaceOrder(M, 2, 0, Side.ASK, 100 * TICK, LOT), RejectCode.MARKET_NOT_ACCEPTING)
    assert type(run(PlaceOrder(M, 1, 0, Side.ASK, 101 * TICK, 2 * LOT))[0]) is OrderAccepted


def test_rate_limits_refuse_the_order_past_the_limit() -> None:
    run = listed(params=PerpMarketParams(max_orders_per_second=2))
    run(PlaceOrder(M, 1, 0, Side.BID, 99 * TICK, LOT))
    run(PlaceOrder(M, 1, 0, Side.BID, 98 * TICK, LOT))
    run.rejected(PlaceOrder(M, 1, 0, Side.BID, 97 * TICK, LOT), RejectCode.RATE_LIMITED_PER_SECOND)
    assert type(run(PlaceOrder(M, 1, 0, Side.BID, 97 * TICK, LOT), at=3 * S)[0]) is OrderAccepted


def test_daily_loss_limit_blocks_risk_increasing_orders() -> None:
    # Arrange: B buys 10 @ 100 and sells at 96: a loss of 40 plus fees
    run = listed(params=PerpMarketParams(daily_loss_limit_quote=30 * USDC))
    run(PlaceOrder(M, 1, 0, Side.ASK, 100 * TICK, 10 * LOT))
    run(PlaceOrder(M, 2, 0, Side.BID, 100 * TICK, 10 * LOT, time_in_force=TimeInForce.IOC))
    run(PlaceOrder(M, 3, 0, Side.BID, 96 * TICK, 10 * LOT))
    run(PlaceOrder(M, 2, 0, Side.ASK, 96 * TICK, 10 * LOT, time_in_force=TimeInForce.IOC))
    assert run.ch.account(2, 0).day_loss_quote(run.ts) > 30 * USDC
    # Act / Assert: refused today, accepted the next day
    run.rejected(PlaceOrder(M, 2, 0, Side.BID, 99 * TICK, LOT), RejectCode.DAILY_LOSS_LIMIT)
    assert type(run(PlaceOrder(M, 2, 0, Side.BID, 99 * TICK, LOT), at=86_401 * S)[0]) is (
        OrderAccepted
    )


# ====================================================================== prices
def test_an_oracle_reading_updates_index_and_mark() -> None:
    run = listed()
    run(PlaceOrder(M, 3, 0, Side.BID, 100 * TICK, 10 * LOT))
    run(PlaceOrder(M, 3, 0, Side.ASK, 101 * TICK, 10 * LOT))
    events = run(UpdateOraclePrice(M, 100_500_000, 2_000, 11, 2, True), at=2 * S)
    assert [type(e) for e in events] == [OraclePriceUpdated, MarkPriceUpdated]
    mark = events[1]
    assert (mark.impact_bid, mark.impact_ask) == (100 * TICK, 101 * TICK)
    assert run.ch.markets[M].index_price == 100_500_000
    assert 100 * TICK <= mark.mark_price <= 101 * TICK


def test_the_mark_price_fires_stop_orders_and_their_fills_settle() -> None:
    # Arrange: a stop-market buy triggering at 102, liquidity at 103
    run = listed(index_price=100 * TICK)
    run(PlaceOrder(M, 3, 0, Side.ASK, 103 * TICK, 5 * LOT))
    run(PlaceOrder(M, 3, 0, Side.BID, 101 * TICK, 5 * LOT))
    run(
        PlaceOrder(
            M,
            2,
            0,
            Side.BID,
            104 * TICK,
            LOT,
            order_type=OrderType.STOP_MARKET,
            time_in_force=TimeInForce.IOC,
            trigger_price=102 * TICK,
        )
    )
    # Act: the oracle (and so the mark) moves to 102.5
    events = run(UpdateOraclePrice(M, 102_500_000, 0, 12, 3, True))
    # Assert
    [fill] = of(events, FillSettled)
    assert (fill.taker_owner_id, fill.base, fill.notional_quote) == (2, LOT, 103 * USDC)
    assert run.ch.account(2, 0).positions[M].base == LOT


# ====================================================================== status
def test_an_oracle_jump_halts_the_market_and_cooldown_reopens_it() -> None:
    run = listed(index_price=100 * TICK)
    events = run(UpdateOraclePrice(M, 120 * TICK, 0, 12, 3, True), at=2 * S)
    [halt] = of(events, MarketStatusChanged)
    assert (halt.new_status, halt.reason) == (MarketStatus.HALTED, BreakerReason.ORACLE_MOVE)
    run.rejected(PlaceOrder(M, 1, 0, Side.BID, 120 * TICK, LOT), RejectCode.MARKET_NOT_ACCEPTING)
    run.rejected(CancelOrder(M, 1, 0, 1), RejectCode.MARKET_NOT_ACCEPTING)
    # still inside the cooldown: stays halted
    assert not of(
        run(UpdateOraclePrice(M, 120 * TICK, 0, 13, 4, True), at=100 * S), MarketStatusChanged
    )
    events = run(UpdateOraclePrice(M, 120 * TICK, 0, 14, 5, True), at=400 * S)
    [reopened] = of(events, MarketStatusChanged)
    assert (reopened.new_status, reopened.reason) == (
        MarketStatus.ACTIVE,
        BreakerReason.COOLDOWN_ELAPSED,
    )


def test_an_invalid_oracle_halts_without_moving_the_index() -> None:
    run = listed(index_price=100 * TICK)
    events = run(UpdateOraclePrice(M, 0, 0, 12, 3, False))
    assert [type(e) for e in events] == [OraclePriceUpdated, MarketStatusChanged]
    assert events[1].reason == BreakerReason.ORACLE_INVALID
    assert run.ch.markets[M].index_price == 100 * TICK


def test_the_kill_switch_cancels_resting_orders_halts_and_holds() -> None:
    # Arrange
    run = listed()
    run(PlaceOrder(M, 1, 0, Side.BID, 99 * TICK, LOT))
    run(PlaceOrder(M, 3, 0, Side.ASK, 101 * TICK, LOT))
    # Act
    events = run(SetKillSwitch(M, True))
    # Assert
    assert [type(e) for e in events] == [MarketStatusChanged, OrderCanceled, OrderCanceled]
    assert events[0].reason == BreakerReason.KILL_SWITCH
    assert not run.ch.books[M].orders
    run.rejected(SetMarketStatus(M, MarketStatus.ACTIVE), RejectCode.STATUS_CHANGE_REFUSED)
    [released] = run(SetKillSwitch(M, False))
    assert (released.new_status, released.reason) == (MarketStatus.ACTIVE, BreakerReason.OPERATOR)
    run.rejected(SetKillSwitch(M, False), RejectCode.STATUS_CHANGE_REFUSED)


def test_the_global_kill_switch_halts_every_market() -> None:
    run = listed()
    run(CreateMarket(1, "U-PERP", TICK, LOT))
    events = run(SetKillSwitch(0, True, all_markets=True))
    assert [(e.market_id, e.reason) for e in of(events, MarketStatusChanged)] == [
        (0, BreakerReason.GLOBAL_KILL_SWITCH),
        (1, BreakerReason.GLOBAL_KILL_SWITCH),
    ]


def test_post_only_status_takes_only_post_only_orders() -> None:
    run = listed()
    run(SetMarketStatus(M, MarketStatus.POST_ONLY))
    run.rejected(PlaceOrder(M, 1, 0, Side.BID, 99 * TICK, LOT), RejectCode.MARKET_NOT_ACCEPTING)
    events = run(PlaceOrder(M, 1, 0, Side.BID, 99 * TICK, LOT, time_in_force=TimeInForce.POST_ONLY))
    assert [type(e) for e in events] == [OrderAccepted, OrderRested]


def test_commands_for_an_unknown_market_are_refused() -> None:
    run = Run()
    run.rejected(UpdateOraclePrice(5, TICK, 0, 0, 0, True), RejectCode.UNKNOWN_MARKET)
    run.rejected(SetMarketStatus(5, 1), RejectCode.UNKNOWN_MARKET)
    run.rejected(SetKillSwitch(5, True), RejectCode.UNKNOWN_MARKET)
    run.rejected(PlaceOrder(5, 1, 0, Side.BID, TICK, LOT), RejectCode.UNKNOWN_MARKET)


def test_a_wallet_registers_once() -> None:
    run = Run()
    [registered] = run(RegisterAccount("ab" * 32))
    assert (registered.owner_id, registered.sub_account_id) == (FIRST_REGISTERED_OWNER_ID, 0)
    run.rejected(RegisterAccount("ab" * 32), RejectCode.ACCOUNT_ALREADY_REGISTERED)


def test_an_escape_hatch_withdrawal_is_booked_once() -> None:
    run = Run()
    [booked] = run(BookOnChainWithdrawal(1, 0, 1_000, "4" * 88))
    assert booked.collateral_quote == -1_000  # the chain decided: no free-collateral check
    run.rejected(
        BookOnChainWithdrawal(1, 0, 1_000, "4" * 88), RejectCode.ONCHAIN_WITHDRAWAL_DUPLICATE
    )


def test_every_clearinghouse_code_is_exercised_here() -> None:
    import inspect

    source = inspect.getsource(inspect.getmodule(test_every_clearinghouse_code_is_exercised_here))  # type: ignore[arg-type]
    assert all(f"RejectCode.{code.name}" in source for code in CLEARINGHOUSE_CODES)


# ====================================================================== fold
def test_snapshot_round_trip_keeps_the_hash_and_the_behaviour() -> None:
    # Arrange
    run = listed()
    run(PlaceOrder(M, 1, 0, Side.ASK, 100 * TICK, 2 * LOT))
    run(PlaceOrder(M, 2, 0, Side.BID, 100 * TICK, 3 * LOT))
    run(Tick(), at=10 * S)
    # Act
    restored = Clearinghouse.from_snapshot(run.ch.snapshot())
    # Assert
    assert restored.state_hash() == run.ch.state_hash()
    cmd = PlaceOrder(M, 3, 0, Side.ASK, 100 * TICK, LOT)
    assert restored.execute(cmd, 11 * S) == run.ch.execute(cmd, 11 * S)
    assert restored.state_hash() == run.ch.state_hash()


def test_a_tampered_fill_fails_the_fold() -> None:
    run = listed()
    run(PlaceOrder(M, 1, 0, Side.ASK, 100 * TICK, 2 * LOT))
    run(PlaceOrder(M, 2, 0, Side.BID, 100 * TICK, 2 * LOT))
    journal = [
        e._replace(taker_realized_quote=5) if type(e) is FillSettled else e for e in run.journal
    ]
    folded = Clearinghouse()
    with pytest.raises(InvariantViolation, match="fill replay disagrees"):
        for e in journal:
            folded.apply(e)


def test_a_fill_with_fees_off_the_schedule_fails_the_fold() -> None:
    run = listed()
    run(PlaceOrder(M, 1, 0, Side.ASK, 100 * TICK, 2 * LOT))
    run(PlaceOrder(M, 2, 0, Side.BID, 100 * TICK, 2 * LOT))
    journal = [
        e._replace(taker_fee_quote=e.taker_fee_quote - 1) if type(e) is FillSettled else e
        for e in run.journal
    ]
    folded = Clearinghouse()
    with pytest.raises(InvariantViolation, match="fill fees disagree"):
        for e in journal:
            folded.apply(e)
