"""Properties of liquidation in the clearinghouse: over random populations and oracle moves,
the incrementally synced sweeper finds exactly the accounts ``liquidation_health`` calls
liquidatable; liquidating every candidate keeps conservation to the unit and the fund >= 0,
leaves none of them liquidatable, and the journal folds back to the same hash."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.core.commands import (
    CreateMarket,
    Deposit,
    DepositInsurance,
    Liquidate,
    PlaceOrder,
    UpdateOraclePrice,
)
from exchange.core.events import AccountLiquidated
from exchange.core.orders import SUB_ACCOUNTS_PER_OWNER, Side, TimeInForce
from exchange.core.units import NANOS_PER_SECOND
from liquidation.keeper import LiquidationWatch
from liquidation.rules import Health
from perp.clearinghouse import Clearinghouse

TICK = 1_000_000
LOT = 1_000_000_000
USDC = 1_000_000
S = NANOS_PER_SECOND
MAKER, KEEPER = 2, 3

trader = st.tuples(
    st.integers(100, 5_000),  # collateral, whole USDC
    st.integers(1, 19),  # leverage
    st.booleans(),  # long
)


@settings(max_examples=25, deadline=None)
@given(
    traders=st.lists(trader, min_size=1, max_size=12),
    moves=st.lists(st.integers(-12, 12), min_size=1, max_size=4),  # percent per step
    fund=st.integers(0, 2_000),
)
def test_sweeper_candidates_match_the_exact_rule_and_liquidations_restore(
    traders: list[tuple[int, int, bool]], moves: list[int], fund: int
) -> None:
    ch = Clearinghouse()
    journal: list[Any] = []
    ts = 1 * S

    def run(cmd: Any) -> list[Any]:
        events = ch.execute(cmd, ts)
        journal.extend(events)
        return events

    run(CreateMarket(0, "T-PERP", TICK, LOT))
    run(UpdateOraclePrice(0, 100 * TICK, 0, 1, 1, True))
    run(Deposit(MAKER, 0, 10_000_000 * USDC))
    run(Deposit(KEEPER, 0, 10_000_000 * USDC))
    if fund:
        run(DepositInsurance(fund * USDC))
    owners = []
    for i, (collateral, leverage, is_long) in enumerate(traders):
        owner = 100 + i
        lots = collateral * leverage // 100
        if not lots:
            continue
        run(Deposit(owner, 0, collateral * USDC))
        maker_side, taker_side = (Side.ASK, Side.BID) if is_long else (Side.BID, Side.ASK)
        run(PlaceOrder(0, MAKER, 0, maker_side, 100 * TICK, lots * LOT))
        run(
            PlaceOrder(
                0, owner, 0, taker_side, 100 * TICK, lots * LOT, time_in_force=TimeInForce.IOC
            )
        )
        owners.append(owner)
    watch = LiquidationWatch(ch)
    price = 100 * TICK
    slot = 1
    for move in moves:
        ts += S
        slot += 1
        price = max(TICK, price + price * move // 100 // TICK * TICK)
        watch.sync(run(UpdateOraclePrice(0, price, 0, slot, ts // S, True)))
        found = {c.account_id for c in watch.candidates(ts)}
        expected = {
            account_id
            for account_id in ch.accounts
            if ch.liquidation_health(*divmod(account_id, SUB_ACCOUNTS_PER_OWNER), ts)
            == Health.LIQUIDATABLE
        }
        assert found == expected
        for account_id in sorted(found):
            owner, sub = divmod(account_id, SUB_ACCOUNTS_PER_OWNER)
            liquidator = KEEPER if owner != KEEPER else MAKER
            events = run(Liquidate(liquidator, 0, owner, sub))
            watch.sync(events)
            assert any(type(e) is AccountLiquidated for e in events)
            assert ch.liquidation_health(owner, sub, ts) != Health.LIQUIDATABLE
            assert ch.insurance_fund_quote >= 0
            ch.check_invariants()
    folded = Clearinghouse()
    for e in journal:
        folded.apply(e)
    assert folded.state_hash() == ch.state_hash()
