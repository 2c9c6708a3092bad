"""Value is conserved to the unit over random order flow, fees, funding and price paths."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from perp.ledger import Ledger
from perp.math.fees import FeeSchedule

STEP = st.one_of(
    st.tuples(st.just("deposit"), st.integers(0, 4), st.integers(1, 10**12)),
    st.tuples(
        st.just("trade"),
        st.integers(0, 4),
        st.integers(0, 4),
        st.booleans(),
        st.integers(1, 10**10),  # base, 1e-9 .. 10 units
        st.integers(1, 10**11),  # price, 1e-6 .. 100,000
        st.integers(0, 1),  # market
    ),
    st.tuples(
        st.just("funding"), st.integers(0, 1), st.integers(-(10**7), 10**7), st.integers(1, 10**11)
    ),
    st.tuples(st.just("settle"), st.integers(0, 4), st.integers(0, 1)),
    st.tuples(st.just("withdraw"), st.integers(0, 4), st.integers(1, 10**9)),
)
FEES = FeeSchedule(maker_ppm=-150, taker_ppm=450, insurance_share_ppm=250_000)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=120))
def test_every_unit_is_accounted_for(steps: list[tuple]) -> None:
    ledger = Ledger()
    for step in steps:
        kind = step[0]
        if kind == "deposit":
            ledger.deposit(step[1], step[2])
        elif kind == "trade":
            _, maker, taker, taker_buys, base, price, market = step
            if maker == taker:
                continue
            notional = -(-base * price // 1_000_000_000)  # any exact integer notional
            ledger.trade(market, maker, taker, taker_buys, base, notional, FEES)
        elif kind == "funding":
            ledger.accrue_funding(step[1], step[2], step[3])
        elif kind == "settle":
            ledger.settle(step[1], step[2])
        elif kind == "withdraw":
            held = ledger.collateral.get(step[1], 0)
            if 0 < step[2] <= held:
                ledger.withdraw(step[1], step[2])
        assert ledger.conservation_gap() == 0
        for market in (0, 1):
            assert sum(p.base for (_, m), p in ledger.positions.items() if m == market) == 0
    # Settle everyone: each funding pool holds exactly its open positions' carries and the
    # unswept surplus (zero-sum; whole units of closed positions' carries were swept).
    for account in range(5):
        for market in (0, 1):
            ledger.settle(account, market)
    assert ledger.conservation_gap() == 0
    for market_id, m in ledger.funding.items():
        carries = sum(
            p.funding_carry_numerator
            for (_, mid), p in ledger.positions.items()
            if mid == market_id
        )
        assert m.pool_quote * 10**18 == carries + m.surplus_numerator
    assert ledger.insurance_fund_quote >= 0
