"""perp.clearinghouse: amends through the risk gate, market parameter changes
(``SetRiskParams`` -> ``RiskParamsChanged``) and the rule for positions a change leaves over a
new limit.

Every command goes through ``Run``, which checks the invariants after each step and that the
fold of the journal so far (from zero, and from a snapshot) reproduces the live state hash.
"""

from __future__ import annotations

import json
from typing import Any

from exchange.core.commands import (
    AmendOrder,
    CreateMarket,
    Deposit,
    PlaceOrder,
    SetMarketStatus,
    SetRiskParams,
    UpdateOraclePrice,
)
from exchange.core.errors import RejectCode
from exchange.core.events import (
    FillSettled,
    OrderAccepted,
    OrderAmended,
    OrderRejected,
    RiskParamsChanged,
)
from exchange.core.orders import Side, TimeInForce
from exchange.core.units import NANOS_PER_SECOND, U64_MAX
from perp.clearinghouse import Clearinghouse
from perp.params import PerpMarketParams
from perp.risk_gate import MarketStatus

TICK = 1_000_000
LOT = 1_000_000_000
USDC = 1_000_000
S = NANOS_PER_SECOND
M = 0
PARAMS = PerpMarketParams(
    maker_fee_ppm=0,
    taker_fee_ppm=500,
    funding_interest_rate=0,
    funding_interest_band=0,
    margin_tiers=((U64_MAX, 100_000, 50_000),),  # 10x, one tier
)


class Run:
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
        assert Clearinghouse.from_snapshot(self.ch.snapshot()).state_hash() == (
            self.ch.state_hash()
        )
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

    def accepted(self, cmd: Any) -> list[Any]:
        events = self(cmd)
        assert not [e for e in events if type(e) is OrderRejected], events
        return events


def listed(params: PerpMarketParams = PARAMS) -> Run:
    run = Run(params)
    run(CreateMarket(M, "T-PERP", TICK, LOT))
    run(UpdateOraclePrice(M, 100 * TICK, 1_000, 10, 1, True))
    for owner, amount in ((1, 1_000 * USDC), (2, 10_000 * USDC), (3, 100_000 * USDC)):
        run(Deposit(owner, 0, amount))
    return run


def change(**values: Any) -> SetRiskParams:
    return SetRiskParams(M, json.dumps(values), proposal_id=7)


# ====================================================================== amends
def test_an_amend_spends_a_rate_limit_token_like_a_new_order() -> None:
    # Arrange: 2 requests per second
    run = listed(PerpMarketParams(max_orders_per_second=2))
    [placed, _] = run(PlaceOrder(M, 1, 0, Side.BID, 99 * TICK, LOT))
    assert type(run(AmendOrder(M, 1, 0, placed.order_id, 98 * TICK, LOT))[0]) is OrderAmended
    # Act / Assert: the third request inside the second is refused, amend or not
    run.rejected(
        AmendOrder(M, 1, 0, placed.order_id, 97 * TICK, LOT), RejectCode.RATE_LIMITED_PER_SECOND
    )
    run.rejected(PlaceOrder(M, 1, 0, Side.BID, 97 * TICK, LOT), RejectCode.RATE_LIMITED_PER_SECOND)
    assert type(run(AmendOrder(M, 1, 0, placed.order_id, 97 * TICK, LOT), at=2 * S)[0]) is (
        OrderAmended
    )


def test_an_amend_of_an_unknown_order_still_spends_a_token() -> None:
    run = listed(PerpMarketParams(max_orders_per_second=1))
    run.rejected(AmendOrder(M, 1, 0, 12345, 99 * TICK, LOT), RejectCode.UNKNOWN_ORDER)
    run.rejected(PlaceOrder(M, 1, 0, Side.BID, 99 * TICK, LOT), RejectCode.RATE_LIMITED_PER_SECOND)


def test_an_amend_passes_the_size_band_and_notional_limits_on_its_new_values() -> None:
    run = listed(PerpMarketParams(max_order_base=5 * LOT, max_order_notional_quote=400 * USDC))
    [placed, _] = run(PlaceOrder(M, 3, 0, Side.BID, 99 * TICK, 2 * LOT))
    run.rejected(
        AmendOrder(M, 3, 0, placed.order_id, 99 * TICK, 6 * LOT), RejectCode.ORDER_SIZE_ABOVE_LIMIT
    )
    run.rejected(
        AmendOrder(M, 3, 0, placed.order_id, 90 * TICK, 2 * LOT), RejectCode.PRICE_OUTSIDE_BAND
    )
    run.rejected(
        AmendOrder(M, 3, 0, placed.order_id, 99 * TICK, 5 * LOT), RejectCode.NOTIONAL_ABOVE_LIMIT
    )
    run.accepted(AmendOrder(M, 3, 0, placed.order_id, 98 * TICK, 4 * LOT))


# ====================================================================== parameter changes
def test_an_executed_change_is_journaled_whole_and_in_force_at_once() -> None:
    # Arrange
    run = listed()
    # Act
    [event] = run(change(taker_fee_ppm=1_000, max_order_base=20 * LOT))
    # Assert: the event carries every value, the market runs on them
    assert type(event) is RiskParamsChanged
    assert (event.market_id, event.proposal_id) == (M, 7)
    new = PerpMarketParams.from_json(event.params_json)
    assert new == PerpMarketParams.from_mapping(
        {"taker_fee_ppm": 1_000, "max_order_base": 20 * LOT}, base=PARAMS
    )
    assert run.ch.markets[M].params == new


def test_the_next_margin_check_uses_the_new_margin() -> None:
    # Arrange: account 1 (1,000 USDC) can bid 90 units at 10x (900 initial + gap + fee)
    run = listed()
    bid = PlaceOrder(M, 1, 0, Side.BID, 100 * TICK, 90 * LOT)
    [accepted, _] = run.accepted(bid)
    before = run.ch.margin(1, 0)
    # Act: margin doubles to 5x (tightening is never rate-limited)
    run(change(margin_tiers=[[U64_MAX, 200_000, 100_000]]))
    # Assert: the resting order now needs twice the margin; the same order again is refused
    after = run.ch.margin(1, 0)
    assert after.initial_quote == 2 * before.initial_quote == 1_800 * USDC
    run.rejected(PlaceOrder(M, 1, 0, Side.BID, 100 * TICK, LOT), RejectCode.INSUFFICIENT_MARGIN)
    assert accepted.order_id in run.ch.books[M].account_orders[1 * 2**16]  # it still rests


def test_the_next_fill_pays_the_new_fees() -> None:
    run = listed()
    run(PlaceOrder(M, 3, 0, Side.ASK, 100 * TICK, LOT))
    run(change(taker_fee_ppm=1_000))
    events = run(PlaceOrder(M, 2, 0, Side.BID, 100 * TICK, LOT, time_in_force=TimeInForce.IOC))
    [fill] = [e for e in events if type(e) is FillSettled]
    assert fill.taker_fee_quote == 100 * USDC // 1_000


def test_refused_changes_leave_everything_as_it_was() -> None:
    run = listed()
    assert "expected" in run.rejected(
        SetRiskParams(9, json.dumps({"taker_fee_ppm": 1})), RejectCode.UNKNOWN_MARKET
    )
    for bad in ("{", "[1]", '{"max_leverage": 5}', '{"taker_fee_ppm": 1.5}'):
        run.rejected(SetRiskParams(M, bad), RejectCode.RISK_PARAMS_OUT_OF_BOUNDS)
    message = run.rejected(
        change(margin_tiers=[[U64_MAX, 79_999, 50_000]]), RejectCode.RISK_PARAMS_CHANGE_TOO_LARGE
    )
    assert "initial_ppm: expected >= 100000 x 800000" in message
    run.rejected(
        change(max_position_base=3 * PARAMS.max_position_base),
        RejectCode.RISK_PARAMS_CHANGE_TOO_LARGE,
    )


def test_a_position_over_a_new_limit_may_only_shrink() -> None:
    # Arrange: account 2 long 8; the position cap falls to 5
    run = listed()
    run(PlaceOrder(M, 3, 0, Side.ASK, 100 * TICK, 8 * LOT))
    run(PlaceOrder(M, 2, 0, Side.BID, 100 * TICK, 8 * LOT, time_in_force=TimeInForce.IOC))
    run(change(max_position_base=5 * LOT))
    # Act / Assert: adding is refused, so is flipping past the cap; reducing is accepted
    run.rejected(PlaceOrder(M, 2, 0, Side.BID, 99 * TICK, LOT), RejectCode.POSITION_ABOVE_LIMIT)
    run.rejected(
        PlaceOrder(M, 2, 0, Side.ASK, 101 * TICK, 14 * LOT), RejectCode.POSITION_ABOVE_LIMIT
    )
    assert type(run(PlaceOrder(M, 2, 0, Side.ASK, 101 * TICK, 3 * LOT))[0]) is OrderAccepted


def test_an_account_a_change_leaves_below_maintenance_is_liquidatable() -> None:
    # Arrange: account 1 long 90 on 1,000 USDC (maintenance 450 at 5 %)
    run = listed()
    run(PlaceOrder(M, 3, 0, Side.ASK, 100 * TICK, 90 * LOT))
    run(PlaceOrder(M, 1, 0, Side.BID, 100 * TICK, 90 * LOT, time_in_force=TimeInForce.IOC))
    assert not run.ch.margin(1, 0).below_maintenance
    # Act: maintenance to 12 % (1,080 > equity ~995)
    run(change(margin_tiers=[[U64_MAX, 200_000, 120_000]]))
    # Assert
    assert run.ch.margin(1, 0).below_maintenance


# ====================================================================== breaker window
def test_readings_merged_in_one_breaker_bucket_fold_and_snapshot_alike() -> None:
    # Arrange / Act: three readings inside one bucket (Run folds and snapshots each step)
    run = listed()
    for price in (101, 99, 100):
        run(UpdateOraclePrice(M, price * TICK, 0, 11, 2, True), at=2 * S)
    # Assert: one entry with its newest time, lowest and highest price
    assert run.ch.markets[M].breaker.samples[-1] == (2 * S, 99 * TICK, 101 * TICK)


# ====================================================================== open orders count
def test_resting_orders_together_cannot_pass_the_position_limit() -> None:
    # Arrange: a cap of 10; account 2 rests bids of 6 and 4
    run = listed(PerpMarketParams(max_position_base=10 * LOT))
    run.accepted(PlaceOrder(M, 2, 0, Side.BID, 99 * TICK, 6 * LOT))
    [rest, _] = run.accepted(PlaceOrder(M, 2, 0, Side.BID, 98 * TICK, 4 * LOT))
    # Act / Assert: one more lot on that side would reach 11; the other side is free
    message = run.rejected(
        PlaceOrder(M, 2, 0, Side.BID, 99 * TICK, LOT), RejectCode.POSITION_ABOVE_LIMIT
    )
    assert message.endswith(f"got {11 * LOT}")
    run.accepted(PlaceOrder(M, 2, 0, Side.ASK, 101 * TICK, 10 * LOT))
    # an amend counts in place of its old size: 4 -> 5 no, 4 -> 3 yes
    run.rejected(
        AmendOrder(M, 2, 0, rest.order_id, 98 * TICK, 5 * LOT), RejectCode.POSITION_ABOVE_LIMIT
    )
    run.accepted(AmendOrder(M, 2, 0, rest.order_id, 98 * TICK, 3 * LOT))


def test_reduce_only_market_refuses_orders_that_flip_together() -> None:
    # Arrange: account 2 long 3 rests an ask of 2; the market goes REDUCE_ONLY
    run = listed()
    run(PlaceOrder(M, 3, 0, Side.ASK, 100 * TICK, 3 * LOT))
    run(PlaceOrder(M, 2, 0, Side.BID, 100 * TICK, 3 * LOT, time_in_force=TimeInForce.IOC))
    run.accepted(PlaceOrder(M, 2, 0, Side.ASK, 102 * TICK, 2 * LOT))
    run(SetMarketStatus(M, MarketStatus.REDUCE_ONLY))
    # Act / Assert: 2 + 2 > 3 would flip if both filled; 2 + 1 does not
    run.rejected(
        PlaceOrder(M, 2, 0, Side.ASK, 102 * TICK, 2 * LOT), RejectCode.MARKET_NOT_ACCEPTING
    )
    run.accepted(PlaceOrder(M, 2, 0, Side.ASK, 102 * TICK, LOT))
