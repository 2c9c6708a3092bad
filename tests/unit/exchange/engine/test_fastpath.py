"""The compiled order path against its pure-Python reference: same journaled events, same
ledger; the binary journal batches read back and are checked like any other batch."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from exchange.core.errors import JournalError, RejectCode
from exchange.core.events import OrderRejected, TradeExecuted
from exchange.core.market import MarketSpec
from exchange.core.units import U64_MAX
from exchange.engine.fastpath import (
    X_NROWS,
    FastPathError,
    FastPipeline,
    ReferencePipeline,
    decode_payload,
)
from exchange.engine.journal import Journal
from perp.math.fees import FeeSchedule
from perp.math.margin import MarginSchedule, MarginTier
from perp.risk_gate import RiskLimits

USD = 1_000_000
SPEC = MarketSpec(
    market_id=3,
    symbol="ETH-PERP",
    tick_size=USD,
    lot_size=1_000_000,
    max_price_ticks=10**6,
    max_size_lots=10**7,
)
MARK = 2_000 * USD
CONFIG: dict[str, Any] = dict(
    accounts=6,
    limits=RiskLimits(
        max_orders_per_second=5,
        max_orders_per_minute=10_000,
        max_order_base=45 * SPEC.lot_size,
        max_position_base=120 * SPEC.lot_size,
        max_order_notional_quote=90 * USD,
        daily_loss_limit_quote=30 * USD,
        price_band_ppm=20_000,
    ),
    schedule=MarginSchedule(
        tiers=(
            MarginTier(up_to_notional_quote=100 * USD, initial_ppm=100_000, maintenance_ppm=50_000),
            MarginTier(up_to_notional_quote=U64_MAX, initial_ppm=300_000, maintenance_ppm=150_000),
        )
    ),
    fees=FeeSchedule(maker_ppm=-200, taker_ppm=700, insurance_share_ppm=250_000),
    mark_price=MARK,
    oracle_price=MARK,
)
DEPOSITS = [0, 5 * USD, 40 * USD, 400 * USD, 4_000 * USD, 40_000 * USD]


def pipelines(
    tmp_path: Path, book_capacity: int = 1 << 12
) -> tuple[FastPipeline, ReferencePipeline, str, str]:
    fast_url, ref_url = f"sqlite:///{tmp_path / 'fast.db'}", f"sqlite:///{tmp_path / 'ref.db'}"
    ref = ReferencePipeline(SPEC, journal_url=ref_url, deposits=DEPOSITS, **CONFIG)
    with Journal(fast_url) as j, Journal(ref_url, read_only=True) as r:
        j.append(list(r.read()))  # MarketCreated, seq 1, as ExchangeCore records it
    fast = FastPipeline(
        SPEC,
        journal_url=fast_url,
        max_orders=5_000,
        group_orders=64,
        start_seq=2,
        book_capacity=book_capacity,
        **CONFIG,
    )
    for account, amount in enumerate(DEPOSITS):
        if amount:
            fast.deposit(account, amount)
    return fast, ref, fast_url, ref_url


def drive(pipe: Any, seed: int, n: int) -> None:
    rng = random.Random(seed)
    ids: list[tuple[int, int]] = []
    mid = 2_000
    for i in range(n):
        ts = i * 20_000_000  # 50 commands a second over 6 accounts: 5 per second bites
        if ids and rng.random() < 0.25:
            account, oid = ids[rng.randrange(len(ids))]
            pipe.cancel(account, oid, ts)
        else:
            account = rng.randrange(6)
            side = rng.randrange(2)
            price = mid + rng.randint(-3, 3) + (rng.randint(0, 60) if rng.random() < 0.05 else 0)
            got = pipe.place(account, side, price, rng.randint(1, 50), ts)
            if got > 0:
                ids.append((account, got))
        if i % 64 == 63:
            pipe.flush()


@pytest.mark.parametrize("book_capacity", [1 << 12, 2])  # 2: the book grows (rows move)
def test_fast_pipeline_equals_the_reference_pipeline(tmp_path: Path, book_capacity: int) -> None:
    # Arrange
    fast, ref, fast_url, ref_url = pipelines(tmp_path, book_capacity)
    rows_at_start = fast._rows_addr
    # Act
    drive(fast, 7, 1_500)
    drive(ref, 7, 1_500)
    fast.close()
    ref.close()
    # Assert
    with Journal(fast_url, read_only=True) as jf, Journal(ref_url, read_only=True) as jr:
        events_fast, events_ref = list(jf.read()), list(jr.read())
    assert events_fast == events_ref
    assert fast.state() == ref.state()
    codes = {e.code for e in events_fast if type(e) is OrderRejected}
    assert {
        RejectCode.INSUFFICIENT_MARGIN,
        RejectCode.RATE_LIMITED_PER_SECOND,
        RejectCode.PRICE_OUTSIDE_BAND,
        RejectCode.ORDER_SIZE_ABOVE_LIMIT,
    } <= codes
    assert sum(type(e) is TradeExecuted for e in events_fast) > 100
    assert ref.ledger.conservation_gap() == 0
    assert (fast._rows_addr != rows_at_start) == (book_capacity == 2)


def test_a_cut_binary_batch_is_refused(tmp_path: Path) -> None:
    fast, _ref, fast_url, _ = pipelines(tmp_path)
    fast.place(5, 0, 2_000, 3, 0)
    fast.place(4, 1, 2_000, 2, 1)
    payload_rows = int(fast.aux[X_NROWS])
    assert payload_rows > 0
    fast.close()
    with Journal(fast_url, read_only=True) as j:
        batch = list(j.read_batches_raw())[1]  # [0]: MarketCreated (JSON)
    events = decode_payload(batch.payload)
    assert [type(e).__name__ for e in events][:3] == [
        "OrderAccepted",
        "OrderRested",
        "OrderAccepted",
    ]
    with pytest.raises(ValueError, match="well-formed rows"):
        decode_payload(batch.payload[:-1])
    with pytest.raises(ValueError, match="expected b'PDXB' v1"):
        decode_payload(b"PDXB" + b"\x09" + batch.payload[5:])


def test_append_encoded_with_a_wrong_count_fails_on_read(tmp_path: Path) -> None:
    fast, _ref, fast_url, _ = pipelines(tmp_path)
    fast.place(5, 0, 2_000, 3, 0)
    fast.close()
    with Journal(fast_url) as j:
        payload = list(j.read_batches_raw())[1].payload
        j.append_encoded(payload, 5)  # the payload holds 2 events
        with pytest.raises(JournalError, match="expected 5 events"):
            list(j.read())
        with pytest.raises(JournalError, match="expected event_count >= 1"):
            j.append_encoded(payload, 0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            MarketSpec(market_id=1, symbol="X", tick_size=USD, lot_size=1_000, max_price_ticks=10),
            "lot_size: expected >= 32768",
        ),
        (
            MarketSpec(
                market_id=1, symbol="X", tick_size=USD, lot_size=10**6, max_price_ticks=10**5
            ),
            "expected max_size_lots x lot_size <= 70368744177664",
        ),
        (
            MarketSpec(market_id=1, symbol="X", tick_size=10**9, lot_size=10**6, max_size_lots=10),
            "expected max_price_ticks x tick_size <= 1099511627776",
        ),
    ],
)
def test_markets_beyond_the_compiled_bounds_are_refused(
    tmp_path: Path, spec: MarketSpec, message: str
) -> None:
    with pytest.raises(FastPathError, match=message):
        FastPipeline(spec, journal_url=f"sqlite:///{tmp_path / 'x.db'}", max_orders=10, **CONFIG)
