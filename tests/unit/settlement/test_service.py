"""The settlement service's pure parts: batch planning, fill units, error classification,
configuration."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from anchorpy.error import ProgramError
from solana.exceptions import SolanaRpcException
from solana.rpc.core import RPCException
from solders.pubkey import Pubkey
from solders.rpc.errors import SendTransactionPreflightFailureMessage
from solders.rpc.responses import RpcSimulateTransactionResult
from solders.transaction_status import (
    InstructionErrorCustom,
    TransactionErrorFieldless,
    TransactionErrorInstructionError,
)

from exchange.core.events import (
    Event,
    FillSettled,
    FundingRateApplied,
    InsuranceFundPaidBadDebt,
    LiquidationExecuted,
    OnChainLiquidationBooked,
    PositionDeleveraged,
)
from exchange.core.orders import Side
from settlement.errors import FillNotRepresentable, SettlementConfigError, UnmappedAccount
from settlement.onchain import AccountMap, ClearingAddresses
from settlement.service import (
    TAKER_SIDE_BUY,
    TAKER_SIDE_SELL,
    BatchPlanner,
    FillBatch,
    FundingUpdate,
    LiquidationBatch,
    MarketProgress,
    OnChainFill,
    SettlementConfig,
    fill_for_chain,
    liquidation_tx_bytes,
    rejection_of,
    settle_tx_bytes,
)
from settlement.spec import LIQUIDATION_MOVE_ADL, LIQUIDATION_MOVE_PAYMENT, LIQUIDATION_MOVE_SLICE

ADDRESSES = ClearingAddresses(Pubkey.from_bytes(bytes([7]) * 32))
WALLETS = {(o, 0): Pubkey.from_bytes(bytes([o]) * 32) for o in range(1, 31)}
TICK, LOT = 100_000, 10_000_000  # 0.1 quote per tick, 0.01 base per lot


def fill(seq: int, maker: int, taker: int, *, market_id: int = 0, lots: int = 1) -> FillSettled:
    base = lots * LOT
    price = 1000 * TICK  # 100 quote per base unit
    notional = price * base // 10**9
    return FillSettled(seq, 0, market_id, seq - 1, maker, 0, taker, 0, int(Side.BID), base,
                       notional, 0, 0, 0, 0, 0, 0, 0, 0)  # fmt: skip


def funding(seq: int, market_id: int = 0) -> FundingRateApplied:
    return FundingRateApplied(seq, 0, market_id, 0, 0, 12_500, 100_000_000, 0)


def planner(max_fills: int = 64, settled: int = 0, funding_seq: int = 0) -> BatchPlanner:
    progress = {m: MarketProgress(settled, funding_seq, TICK, LOT) for m in (0, 1)}
    return BatchPlanner(
        AccountMap(WALLETS, ADDRESSES),
        progress,
        SettlementConfig(market_ids=(0, 1), max_fills_per_tx=max_fills),
    )


def test_consecutive_fills_of_a_market_share_a_batch_and_users_are_indexed_once() -> None:
    # Arrange
    events = [fill(10, 1, 2), fill(11, 2, 1, lots=3), fill(12, 3, 1)]
    # Act
    actions = planner().plan(events)
    # Assert
    users = tuple(ADDRESSES.user(WALLETS[(o, 0)])[0] for o in (1, 2, 3))
    assert actions == [
        FillBatch(0, 12, 10, (
            OnChainFill(0, 1, TAKER_SIDE_BUY, 1000, 1),
            OnChainFill(1, 0, TAKER_SIDE_BUY, 1000, 3),
            OnChainFill(2, 0, TAKER_SIDE_BUY, 1000, 1),
        ), users, 0)
    ]  # fmt: skip


def test_funding_closes_the_open_batch_of_its_market_only() -> None:
    # Arrange
    events: list[Event] = [
        fill(10, 1, 2), fill(11, 1, 2, market_id=1), funding(12), fill(13, 1, 2),
    ]  # fmt: skip
    # Act
    actions = planner().plan(events)

    # Assert: market 0's fills straddle its funding; market 1's batch is untouched by it
    def kinds(market_id: int) -> list[tuple[str, int]]:
        return [(type(a).__name__, a.sequence) for a in actions if a.market_id == market_id]

    assert len(actions) == 4
    assert kinds(0) == [("FillBatch", 10), ("FundingUpdate", 12), ("FillBatch", 13)]
    assert kinds(1) == [("FillBatch", 11)]
    assert actions[1] == FundingUpdate(0, 12, 12_500, 100_000_000)


def test_what_the_chain_already_has_is_skipped() -> None:
    # Arrange
    events: list[Event] = [fill(10, 1, 2), funding(11), fill(12, 1, 2)]
    # Act
    actions = planner(settled=10, funding_seq=11).plan(events)
    # Assert
    assert [(type(a).__name__, a.sequence) for a in actions] == [("FillBatch", 12)]


def test_each_batch_names_the_sequence_it_continues_across_gaps_and_funding() -> None:
    # Arrange: market 0's fills at 21, 22, 24, 26, 27 (market 1 and funding in the gaps);
    # the chain has settled market 0 up to 20
    events: list[Event] = [
        fill(20, 1, 2), fill(21, 1, 2), fill(22, 2, 1), fill(23, 1, 2, market_id=1),
        fill(24, 1, 2), funding(25), fill(26, 1, 2), fill(27, 2, 1),
    ]  # fmt: skip
    # Act
    actions = planner(max_fills=2, settled=20).plan(events)
    # Assert: (previous, first, last) chain without holes; market 1 starts from its own 20
    chain = [(a.previous_sequence, a.first_seq, a.sequence)
             for a in actions if isinstance(a, FillBatch) and a.market_id == 0]  # fmt: skip
    assert chain == [(20, 21, 22), (22, 24, 24), (24, 26, 27)]
    other = [a for a in actions if isinstance(a, FillBatch) and a.market_id == 1]
    assert [(a.previous_sequence, a.first_seq, a.sequence) for a in other] == [(20, 23, 23)]


def test_batches_close_at_the_fill_cap_and_at_the_transaction_size() -> None:
    # Arrange: 30 distinct pairs of users (60 users): the 1232-byte limit binds first
    pairs = [fill(100 + i, 1 + i % 30, 1 + (i + 1) % 30) for i in range(30)]
    # Act
    by_cap = planner(max_fills=4).plan([fill(10 + i, 1, 2) for i in range(10)])
    by_size = planner().plan(pairs)
    # Assert
    assert [len(b.fills) for b in by_cap if isinstance(b, FillBatch)] == [4, 4, 2]
    sizes = [(len(b.users), len(b.fills)) for b in by_size if isinstance(b, FillBatch)]
    assert sum(f for _, f in sizes) == 30 and len(sizes) > 1
    assert all(settle_tx_bytes(u, f) <= 1232 for u, f in sizes)
    assert all(settle_tx_bytes(u + 1, f + 1) > 1232 for u, f in sizes[:-1])


def test_fill_units_are_exact_or_refused() -> None:
    # Arrange
    good = fill(5, 1, 2, lots=7)
    off_lot = good._replace(base=good.base + 1)
    off_tick = good._replace(notional_quote=good.notional_quote + 1)
    sell = good._replace(taker_side=int(Side.ASK))
    # Act / Assert
    assert fill_for_chain(good, TICK, LOT) == (TAKER_SIDE_BUY, 1000, 7)
    assert fill_for_chain(sell, TICK, LOT)[0] == TAKER_SIDE_SELL
    for bad in (off_lot, off_tick):
        with pytest.raises(FillNotRepresentable, match="seq 5"):
            fill_for_chain(bad, TICK, LOT)


def test_unmapped_accounts_and_markets_are_errors_not_skips() -> None:
    with pytest.raises(UnmappedAccount, match=r"\(99, 0\)"):
        planner().plan([fill(10, 99, 1)])
    with pytest.raises(UnmappedAccount, match="market 7"):
        planner().plan([fill(10, 1, 2, market_id=7)])


def test_program_refusals_halt_and_rpc_failures_retry() -> None:
    # Arrange
    def preflight(err: Any) -> RPCException:
        result = RpcSimulateTransactionResult(err=err, logs=None, accounts=None,
                                              units_consumed=None, return_data=None)  # fmt: skip
        return RPCException(SendTransactionPreflightFailureMessage("failed", result))

    custom = TransactionErrorInstructionError(1, InstructionErrorCustom(6062))
    # Act / Assert
    assert rejection_of(ProgramError(6062, "sequence: expected more")) == (
        6062,
        "sequence: expected more",
    )
    assert rejection_of(preflight(custom)) is not None
    assert rejection_of(preflight(TransactionErrorFieldless.BlockhashNotFound)) is None
    assert rejection_of(httpx.ConnectError("refused")) is None
    status_503 = httpx.HTTPStatusError(
        "503", request=httpx.Request("POST", "http://x"), response=httpx.Response(503)
    )
    assert rejection_of(SolanaRpcException(status_503, print, None, "getLatestBlockhash")) is None


def test_config_and_account_map_are_strict() -> None:
    with pytest.raises(SettlementConfigError, match="market_ids"):
        SettlementConfig(market_ids=())
    with pytest.raises(SettlementConfigError, match="max_fills_per_tx"):
        SettlementConfig(market_ids=(0,), max_fills_per_tx=65)
    with pytest.raises(SettlementConfigError, match="retry_max_s"):
        SettlementConfig(market_ids=(0,), retry_initial_s=2, retry_max_s=1)
    with pytest.raises(TypeError):
        SettlementConfig(market_ids=(0,), unknown=1)  # type: ignore[call-arg]
    with pytest.raises(SettlementConfigError, match="one sub-account per wallet"):
        AccountMap({(1, 0): WALLETS[(1, 0)], (1, 1): WALLETS[(1, 0)]}, ADDRESSES)


# ------------------------------------------------------------------ liquidation batches

USD = 1_000_000
LIQ_TICK, LIQ_LOT = 1_000_000, 1_000_000_000
TARGET, TARGET2, MAKER, KEEPER = (1, 0), (2, 0), (3, 0), (4, 0)


def liquidation_planner(progress: dict[int, MarketProgress] | None = None) -> BatchPlanner:
    accounts = AccountMap(
        {k: Pubkey.from_bytes(bytes([10 + k[0]]) * 32) for k in (TARGET, TARGET2, MAKER, KEEPER)},
        ADDRESSES,
    )
    return BatchPlanner(
        accounts,
        progress or {m: MarketProgress(0, 0, LIQ_TICK, LIQ_LOT) for m in (0, 1)},
        SettlementConfig(market_ids=(0, 1)),
    )


def liq_fill(seq: int, market: int) -> FillSettled:
    return FillSettled(seq, 0, market, seq, *MAKER, *TARGET, 0, LIQ_LOT, 100 * USD,
                       0, 0, 0, 0, 0, 0, 0, 0)  # fmt: skip


def liq_slice(seq: int, market: int = 0, target: tuple[int, int] = TARGET2) -> LiquidationExecuted:
    return LiquidationExecuted(seq, 0, market, *KEEPER, *target, -LIQ_LOT, 92 * USD, 92 * USD,
                               920_000, 460_000, 460_000, 0, 0)  # fmt: skip


def test_liquidations_keep_journal_order_with_fills_and_skip_onchain_booked_slices() -> None:
    # Arrange: fills in two markets around engine liquidations and an on-chain booked slice
    events = [
        liq_fill(1, 0), liq_fill(2, 1), liq_slice(3), liq_slice(4, 1), liq_fill(5, 1),
        OnChainLiquidationBooked(6, 0, 0, *TARGET2, *KEEPER, 0, "sig", 0, 0, 0), liq_slice(7),
        InsuranceFundPaidBadDebt(8, 0, 0xFFFF, *TARGET2, 5, 5, 0, 0), liq_fill(9, 0),
    ]  # fmt: skip
    # Act
    actions = liquidation_planner().plan(events)
    # Assert: the open fill batches close before the liquidation batch, which the next fill
    # closes; the on-chain booked slice and its payment are not posted again
    assert [(type(a).__name__, a.sequence) for a in actions] == [
        ("FillBatch", 1), ("FillBatch", 2), ("LiquidationBatch", 4), ("FillBatch", 5),
        ("FillBatch", 9),
    ]  # fmt: skip
    batch = actions[2]
    assert isinstance(batch, LiquidationBatch)
    assert (batch.first_seq, batch.previous_sequence, batch.markets) == (3, 0, ((0, 1), (1, 2)))
    assert [(m.kind, m.market, m.base_delta, m.quote_delta) for m in batch.moves] == [
        (LIQUIDATION_MOVE_SLICE, 0, -LIQ_LOT, 92 * USD), (LIQUIDATION_MOVE_SLICE, 1, -LIQ_LOT, 92 * USD),
    ]  # fmt: skip
    after = actions[3]
    assert isinstance(after, FillBatch) and after.previous_sequence == 4  # continues market 1
    assert isinstance(actions[4], FillBatch) and actions[4].previous_sequence == 4


def test_a_booking_straddling_two_reads_is_still_skipped() -> None:
    booked: dict[int, type] = {}
    first = liquidation_planner()
    first.booked_onchain = booked
    assert first.plan([OnChainLiquidationBooked(6, 0, 0, *TARGET2, *KEEPER, 0, "s", 0, 0, 0)]) == []
    second = liquidation_planner()
    second.booked_onchain = booked
    assert second.plan([liq_slice(7)]) == []
    assert [type(a) for a in second.plan([liq_slice(9)])] == [LiquidationBatch]


def test_liquidation_moves_map_adl_and_payments_and_skip_what_landed() -> None:
    events = [
        PositionDeleveraged(3, 0, 0, *TARGET, *MAKER, -2 * LIQ_LOT, 190 * USD, 95 * USD, 0, 0),
        InsuranceFundPaidBadDebt(4, 0, 0xFFFF, *TARGET, 0, 7, 0, 0),  # nothing paid: no move
        InsuranceFundPaidBadDebt(5, 0, 0xFFFF, *TARGET, 3, 3, 0, 0),
    ]
    planner = liquidation_planner()
    [batch] = planner.plan(events)
    assert isinstance(batch, LiquidationBatch)
    assert [(m.kind, m.account, m.counterparty, m.quote_delta, m.price) for m in batch.moves] == [
        (LIQUIDATION_MOVE_ADL, 0, 1, 190 * USD, 95 * USD), (LIQUIDATION_MOVE_PAYMENT, 0, 0, 3, 0),
    ]  # fmt: skip
    landed = liquidation_planner()
    landed.liquidation_sequence = 5
    assert landed.plan(events) == []


def test_a_long_liquidation_is_split_into_batches_that_fit_a_transaction() -> None:
    # Arrange: 40 ADL fills of one bankrupt account against four counterparties
    events = [
        PositionDeleveraged(10 + i, 0, 0, *TARGET, *(MAKER, KEEPER, TARGET2)[i % 3], -LIQ_LOT,
                            95 * USD, 95 * USD, 0, 0)
        for i in range(40)
    ]  # fmt: skip
    # Act
    actions = liquidation_planner().plan(events)
    # Assert: each fits, they chain on each other, nothing is lost
    assert len(actions) > 1
    previous = 0
    for batch in actions:
        assert isinstance(batch, LiquidationBatch)
        assert liquidation_tx_bytes(len(batch.markets), len(batch.users), len(batch.moves)) <= 1232
        assert batch.previous_sequence == previous and batch.markets[0][1] == previous
        previous = batch.sequence
    assert sum(len(b.moves) for b in actions if isinstance(b, LiquidationBatch)) == 40
