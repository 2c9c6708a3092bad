"""IndexPriceSelector: per-market source choice, guards per action, TWAP, staleness rechecks."""

from __future__ import annotations

import pytest
from oracle_support import GUARDS, USD, reading
from solders.pubkey import Pubkey

from oracle_feeds.feed import FeedConfigError, IndexPriceSelector, MarketOracle
from oracle_feeds.guards import OracleAction, Verdict
from oracle_feeds.price import OracleSource
from oracle_feeds.stream import StreamFeed

PRIMARY = StreamFeed(Pubkey(bytes([1]) * 32), OracleSource.PYTH_PULL)
FALLBACK = StreamFeed(Pubkey(bytes([2]) * 32), OracleSource.SWITCHBOARD_ON_DEMAND)
OTHER = StreamFeed(Pubkey(bytes([3]) * 32), OracleSource.PYTH_PUSH)


def selector(*, fallback: bool = True) -> IndexPriceSelector:
    return IndexPriceSelector(
        [
            MarketOracle(
                market_id=7,
                primary=PRIMARY,
                fallback=FALLBACK if fallback else None,
                guards=GUARDS,
                twap_window_s=60,
            )
        ]
    )


def test_primary_reading_becomes_a_valid_index_update_with_all_verdicts() -> None:
    sel = selector()
    [update] = sel.observe(PRIMARY.address, reading(), now_slot=1_002, now_s=501)
    assert (update.market_id, update.price, update.confidence) == (7, 100 * USD, 100_000)
    assert update.role == "primary" and update.valid and update.address == PRIMARY.address
    assert update.verdict(OracleAction.TRADING) == Verdict.VALID
    assert update.verdict(OracleAction.LIQUIDATION) == Verdict.VALID
    assert update.command_fields() == {
        "market_id": 7,
        "price": 100 * USD,
        "confidence": 100_000,
        "slot": 1_000,
        "publish_time_s": 500,
        "valid": True,
        "liquidation_valid": True,
    }


def test_liquidation_is_stricter_than_trading_in_the_update() -> None:
    sel = selector()
    # 8 s old: fine for trading (30 s), too old for liquidation (5 s)
    [update] = sel.observe(PRIMARY.address, reading(t=500), now_slot=1_001, now_s=508)
    assert update.valid and update.verdict(OracleAction.TRADING) == Verdict.VALID
    assert update.verdict(OracleAction.LIQUIDATION) == Verdict.STALE_SECONDS


def test_switch_to_fallback_when_primary_goes_stale_and_back() -> None:
    sel = selector()
    sel.observe(PRIMARY.address, reading(slot=1_000, t=500), now_slot=1_000, now_s=500)
    # the fallback's reading is not announced while the primary is valid; the primary is
    # (40 slots old: out of liquidation's 10, inside trading's 50)
    [aged] = sel.observe(
        FALLBACK.address, reading(101 * USD, slot=1_040), now_slot=1_040, now_s=516
    )
    assert aged.role == "primary" and aged.price == 100 * USD
    assert aged.valid and not aged.liquidation_valid
    assert (
        sel.observe(FALLBACK.address, reading(101 * USD, slot=1_041), now_slot=1_041, now_s=516)
        == []
    )
    # the primary ages out (51 slots) -> a recheck switches to the fallback
    [switched] = sel.recheck(now_slot=1_051, now_s=520)
    assert switched.role == "fallback" and switched.valid and switched.price == 101 * USD
    assert sel.recheck(now_slot=1_052, now_s=520) == []  # no change, nothing new
    # fallback readings are announced while it is in use
    [again] = sel.observe(
        FALLBACK.address, reading(102 * USD, slot=1_052), now_slot=1_052, now_s=521
    )
    assert again.role == "fallback" and again.price == 102 * USD
    # a fresh primary reading takes over again
    [back] = sel.observe(
        PRIMARY.address, reading(100 * USD, slot=1_053, t=521), now_slot=1_053, now_s=521
    )
    assert back.role == "primary" and back.valid


def test_no_valid_source_sends_invalid_update_once_per_transition() -> None:
    sel = selector(fallback=False)
    sel.observe(PRIMARY.address, reading(), now_slot=1_000, now_s=500)
    [halt] = sel.recheck(now_slot=1_100, now_s=600)
    assert not halt.valid and halt.role == "primary" and halt.price == 100 * USD
    assert halt.verdict(OracleAction.TRADING) == Verdict.STALE_SLOTS
    assert sel.recheck(now_slot=1_200, now_s=700) == []
    [fresh] = sel.observe(PRIMARY.address, reading(slot=1_200, t=700), now_slot=1_200, now_s=700)
    assert fresh.valid


def test_unparseable_account_drops_to_fallback() -> None:
    sel = selector()
    sel.observe(PRIMARY.address, reading(), now_slot=1_000, now_s=500)
    sel.observe(FALLBACK.address, reading(99 * USD), now_slot=1_000, now_s=500)
    [update] = sel.observe(PRIMARY.address, None, now_slot=1_001, now_s=500)
    assert update.role == "fallback" and update.valid and update.price == 99 * USD


def test_twap_deviation_guard_uses_the_history_before_the_new_reading() -> None:
    sel = selector(fallback=False)
    for i in range(5):
        sel.observe(
            PRIMARY.address, reading(slot=1_000 + i, t=500 + i), now_slot=1_000 + i, now_s=500 + i
        )
    # +3 %: inside trading's 5 %, outside liquidation's 1 %
    [update] = sel.observe(
        PRIMARY.address, reading(103 * USD, slot=1_005, t=505), now_slot=1_005, now_s=505
    )
    assert update.twap == 100 * USD
    assert update.valid and update.verdict(OracleAction.LIQUIDATION) == Verdict.TWAP_DEVIATION
    # +10 %: not valid for trading either
    [jump] = sel.observe(
        PRIMARY.address, reading(111 * USD, slot=1_006, t=506), now_slot=1_006, now_s=506
    )
    assert not jump.valid and jump.verdict(OracleAction.TRADING) == Verdict.TWAP_DEVIATION


def test_status_not_ok_is_invalid() -> None:
    sel = selector(fallback=False)
    [update] = sel.observe(PRIMARY.address, reading(ok=False), now_slot=1_000, now_s=500)
    assert not update.valid and update.verdict(OracleAction.FUNDING) == Verdict.STATUS_NOT_OK


def test_unknown_account_is_ignored() -> None:
    assert selector().observe(OTHER.address, reading(), now_slot=1, now_s=1) == []


def test_config_refusals() -> None:
    with pytest.raises(FeedConfigError, match="at least one"):
        IndexPriceSelector([])
    with pytest.raises(FeedConfigError, match="another account"):
        MarketOracle(market_id=1, primary=PRIMARY, fallback=PRIMARY, guards=GUARDS)
    with pytest.raises(FeedConfigError, match="twap_window_s"):
        MarketOracle(market_id=1, primary=PRIMARY, guards=GUARDS, twap_window_s=0)
    with pytest.raises(FeedConfigError, match="market_id"):
        MarketOracle(market_id=-1, primary=PRIMARY, guards=GUARDS)
    with pytest.raises(FeedConfigError, match="configured twice"):
        IndexPriceSelector(
            [
                MarketOracle(market_id=1, primary=PRIMARY, guards=GUARDS),
                MarketOracle(market_id=1, primary=OTHER, guards=GUARDS),
            ]
        )
    with pytest.raises(FeedConfigError, match="one market only"):
        IndexPriceSelector(
            [
                MarketOracle(market_id=1, primary=PRIMARY, guards=GUARDS),
                MarketOracle(market_id=2, primary=OTHER, fallback=PRIMARY, guards=GUARDS),
            ]
        )


def test_twap_covers_only_the_window_and_old_samples_are_dropped() -> None:
    sel = selector(fallback=False)
    for t in range(0, 100):  # 100 USD for 100 s
        sel.observe(PRIMARY.address, reading(slot=1_000 + t, t=t), now_slot=1_000 + t, now_s=t)
    for t in range(100, 300, 2):  # then 101 USD, small steps so every reading stays valid
        sel.observe(
            PRIMARY.address, reading(101 * USD, slot=1_000 + t, t=t), now_slot=1_000 + t, now_s=t
        )
    [update] = sel.observe(
        PRIMARY.address, reading(101 * USD, slot=1_300, t=300), now_slot=1_300, now_s=300
    )
    assert update.twap == 101 * USD  # the 100 USD era is outside the last 60 s
    assert len(sel._by_address[PRIMARY.address][0].primary.samples) <= 32


def test_recheck_announces_a_reading_aging_out_of_the_liquidation_guard_only() -> None:
    # Arrange
    sel = selector(fallback=False)
    [fresh] = sel.observe(PRIMARY.address, reading(slot=1_000, t=500), now_slot=1_000, now_s=500)
    assert fresh.valid and fresh.liquidation_valid
    assert sel.recheck(now_slot=1_005, now_s=505) == []  # 5 s: liquidation's bound, still in
    # Act: 6 s old, past liquidation's 5 s, well inside trading's 30 s
    [aged] = sel.recheck(now_slot=1_006, now_s=506)
    # Assert
    assert aged.valid and not aged.liquidation_valid
    assert aged.verdict(OracleAction.LIQUIDATION) == Verdict.STALE_SECONDS
    assert aged.command_fields()["liquidation_valid"] is False
    assert sel.recheck(now_slot=1_007, now_s=507) == []  # once per transition
