"""The main job lists each market with one set of liquidation parameters on both sides:
``chain_listable`` gives new engine markets what the program's ``create_market`` will hold."""

from __future__ import annotations

from exchange.core.units import U64_MAX
from exchange.engine.config import EngineConfig
from exchange.node import _program_lists_liquidation_params, chain_listable
from perp.params import PerpMarketParams
from settlement.spec import LIQUIDATION_BUFFER_PPM, LIQUIDATOR_SHARE_PPM


def test_new_markets_get_the_liquidation_parameters_the_program_will_hold() -> None:
    # Arrange: a default market (first maintenance 30,000) and one override (50,000)
    sol = PerpMarketParams(margin_tiers=((U64_MAX, 100_000, 50_000),), liquidation_fee_ppm=7)
    config = EngineConfig(market_overrides=(("SOL-PERP", sol),))
    # Act
    listable = chain_listable(config)
    # Assert
    [(symbol, sol_listed)] = listable.market_overrides
    assert symbol == "SOL-PERP"
    if _program_lists_liquidation_params():  # create_market takes the engine's values
        assert listable == config
        return
    for params, fee in ((listable.market_params, 15_000), (sol_listed, 25_000)):
        assert (
            params.liquidation_fee_ppm,
            params.liquidator_share_ppm,
            params.liquidation_buffer_ppm,
        ) == (fee, LIQUIDATOR_SHARE_PPM, LIQUIDATION_BUFFER_PPM)
    assert sol_listed.margin_tiers == sol.margin_tiers  # nothing else changes
    assert listable.market_params.taker_fee_ppm == config.market_params.taker_fee_ppm
