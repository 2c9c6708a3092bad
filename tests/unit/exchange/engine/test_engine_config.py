from pathlib import Path

import pytest

from exchange.core.errors import ConfigError
from exchange.engine.config import EngineConfig
from perp.params import PerpMarketParams


def test_defaults_need_no_configuration() -> None:
    config = EngineConfig()
    assert config.data_dir == Path("data")
    assert config.journal_url is None


def test_config_is_frozen_and_keyword_only() -> None:
    config = EngineConfig(data_dir=Path("x"))
    with pytest.raises(AttributeError):
        config.data_dir = Path("y")  # type: ignore[misc]
    with pytest.raises(TypeError):
        EngineConfig(Path("x"))  # type: ignore[misc]


def test_unknown_keys_are_rejected_by_name() -> None:
    with pytest.raises(ConfigError, match=r"unknown keys \['group_comit'\]"):
        EngineConfig.from_mapping({"group_comit": 5})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"group_commit_max_commands": 0}, "group_commit_max_commands: expected an int"),
        ({"group_commit_max_commands": "5"}, "group_commit_max_commands: expected an int"),
        ({"snapshot_every_events": True}, "snapshot_every_events: expected an int"),
        ({"journal_url": "not a url"}, "journal_url: expected a database URL"),
        ({"data_dir": 5}, "data_dir: expected a path string"),
    ],
)
def test_bad_values_say_what_was_expected(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EngineConfig.from_mapping(data)


def test_toml_file_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "perpdex.toml"
    path.write_text('[engine]\ndata_dir = "state"\ngroup_commit_max_commands = 64\n')
    config = EngineConfig.from_toml(path)
    assert config.data_dir == Path("state")
    assert config.group_commit_max_commands == 64


def test_toml_with_unknown_table_or_bad_syntax_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "perpdex.toml"
    path.write_text("[engin]\n")
    with pytest.raises(ConfigError, match="unknown tables"):
        EngineConfig.from_toml(path)
    path.write_text("[engine\n")
    with pytest.raises(ConfigError, match="expected readable TOML"):
        EngineConfig.from_toml(path)


def test_market_params_come_from_a_nested_toml_table(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "perpdex.toml"
    path.write_text(
        "[engine]\ntick_interval_ns = 500_000_000\n"
        "[engine.market_params]\ntaker_fee_ppm = 600\n"
        "margin_tiers = [[1_000_000_000, 100_000, 50_000], [18446744073709551615, 200_000, 100_000]]\n"
    )
    # Act
    config = EngineConfig.from_toml(path)
    # Assert
    assert config.tick_interval_ns == 500_000_000
    assert config.market_params.taker_fee_ppm == 600
    assert config.market_params.maker_fee_ppm == PerpMarketParams().maker_fee_ppm
    assert config.market_params.margin.tiers[0].initial_ppm == 100_000


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"taker_fe_ppm": 1}, r"market_params: market params: unknown keys \['taker_fe_ppm'\]"),
        ({"taker_fee_ppm": 20_000}, r"market_params: taker_ppm: expected 0..10000, got 20000"),
        ({"mark_band_ppm": "5"}, r"market_params: mark_band_ppm: expected an int, got '5'"),
        ({"margin_tiers": [[5, 10]]}, r"market_params: margin_tiers: expected \(up_to"),
        ({"funding_sample_interval_ns": 10**13}, r"funding_sample_interval_ns: expected <="),
    ],
)
def test_bad_market_params_are_config_errors(params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EngineConfig.from_mapping({"market_params": params})


def test_tick_interval_is_range_checked() -> None:
    with pytest.raises(ConfigError, match=r"tick_interval_ns: expected an int in"):
        EngineConfig(tick_interval_ns=0)


def test_per_symbol_overrides_merge_over_market_params(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "perpdex.toml"
    path.write_text(
        "[engine.market_params]\ntaker_fee_ppm = 600\n"
        '[engine.market_overrides."SOL-PERP"]\nmax_order_base = 5_000_000_000\n'
    )
    # Act
    config = EngineConfig.from_toml(path)
    # Assert
    [(symbol, sol)] = config.market_overrides
    assert symbol == "SOL-PERP"
    assert (sol.max_order_base, sol.taker_fee_ppm) == (5_000_000_000, 600)


def test_a_bad_override_names_its_symbol() -> None:
    with pytest.raises(ConfigError, match=r"market_overrides.ETH-PERP: .*unknown keys \['x'\]"):
        EngineConfig.from_mapping({"market_overrides": {"ETH-PERP": {"x": 1}}})


def test_an_engine_lists_each_symbol_with_its_parameters(tmp_path: Path) -> None:
    from exchange.core.commands import CreateMarket
    from exchange.engine.sequencer import Engine

    sol = PerpMarketParams(max_order_base=7)
    engine = Engine(EngineConfig(data_dir=tmp_path, market_overrides=(("SOL-PERP", sol),)))
    engine.process(
        [CreateMarket(0, "BTC-PERP", 100_000, 100_000), CreateMarket(2, "SOL-PERP", 1_000, 10**7)]
    )
    assert engine.core.markets[0].params == PerpMarketParams()
    assert engine.core.markets[2].params == sol
    engine.close()


def test_liquidation_settings_come_from_toml_and_reach_the_engine(tmp_path: Path) -> None:
    from exchange.engine.sequencer import Engine

    # Arrange: engine-level settings, and one market's own liquidation parameters
    path = tmp_path / "perpdex.toml"
    path.write_text(
        f'[engine]\ndata_dir = "{tmp_path}"\nliquidation_max_oracle_age_ns = 5_000_000_000\n'
        "liquidation_grace_period_ns = 0\nliquidation_retry_ns = 250_000_000\n"
        "liquidation_backstop_owner_id = 77\nliquidation_backstop_sub_account_id = 3\n"
        '[engine.market_overrides."SOL-PERP"]\nliquidation_fee_ppm = 4_000\n'
        "liquidator_share_ppm = 250_000\nliquidation_buffer_ppm = 0\n"
    )
    # Act
    config = EngineConfig.from_toml(path)
    engine = Engine(config)
    # Assert
    assert (config.liquidation_grace_period_ns, config.liquidation_retry_ns) == (0, 250_000_000)
    assert (config.liquidation_backstop_owner_id, config.liquidation_backstop_sub_account_id) == (
        77,
        3,
    )
    [(_, sol)] = config.market_overrides
    assert (sol.liquidation_fee_ppm, sol.liquidator_share_ppm, sol.liquidation_buffer_ppm) == (
        4_000,
        250_000,
        0,
    )
    assert engine.core.liquidation_max_oracle_age_ns == 5_000_000_000
    engine.close()
    # by default the main job's own liquidator wallet is the backstop account
    assert EngineConfig().liquidation_backstop_owner_id is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"liquidation_max_oracle_age_ns": 0}, "liquidation_max_oracle_age_ns: expected an int"),
        ({"liquidation_grace_period_ns": -1}, "liquidation_grace_period_ns: expected an int"),
        ({"liquidation_retry_ns": 1.5}, "liquidation_retry_ns: expected an int"),
        ({"liquidation_backstop_owner_id": 0}, "liquidation_backstop_owner_id: expected an int"),
        (
            {"liquidation_backstop_sub_account_id": 65_536},
            "liquidation_backstop_sub_account_id: expected an int in 0..65535, got 65536",
        ),
        (
            {"market_params": {"liquidation_fee_ppm": 40_000}},
            "market_params: liquidation_fee_ppm: expected < margin_tiers",
        ),
        (
            {"market_params": {"liquidator_share_ppm": 2_000_000}},
            r"market_params: liquidator_share_ppm: expected 0..1000000",
        ),
    ],
)
def test_bad_liquidation_settings_say_what_was_expected(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EngineConfig.from_mapping(data)


def test_the_runner_defaults_to_the_engine_process(tmp_path: Path) -> None:
    assert EngineConfig().runner == "process"
    assert EngineConfig.from_mapping({}).runner == "process"


@pytest.mark.parametrize("runner", ["process", "inline", "thread"])
def test_each_runner_comes_from_toml(tmp_path: Path, runner: str) -> None:
    path = tmp_path / "perpdex.toml"
    path.write_text(f'[engine]\nrunner = "{runner}"\n')
    assert EngineConfig.from_toml(path).runner == runner


@pytest.mark.parametrize("runner", ["threads", "Inline", "inline ", "", 1, None])
def test_an_unknown_runner_says_which_ones_exist(runner: object) -> None:
    with pytest.raises(
        ConfigError, match=r"runner: expected one of \['process', 'inline', 'thread'\], got"
    ):
        EngineConfig.from_mapping({"runner": runner})


def test_cpu_latency_request_is_held_at_zero_by_default() -> None:
    config = EngineConfig()
    assert config.hold_cpu_latency is True
    assert config.cpu_latency_us == 0


def test_toml_turns_the_cpu_latency_request_off_or_loosens_it(tmp_path: Path) -> None:
    path = tmp_path / "perpdex.toml"
    path.write_text("[engine]\nhold_cpu_latency = false\ncpu_latency_us = 50\n")
    config = EngineConfig.from_toml(path)
    assert config.hold_cpu_latency is False
    assert config.cpu_latency_us == 50


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"hold_cpu_latency": 0}, "hold_cpu_latency: expected a bool, got 0"),
        ({"hold_cpu_latency": "false"}, "hold_cpu_latency: expected a bool, got 'false'"),
        ({"cpu_latency_us": -1}, r"cpu_latency_us: expected an int in 0\.\.2000000000, got -1"),
        ({"cpu_latency_us": 2_000_000_001}, "cpu_latency_us: expected an int"),
        ({"cpu_latency_us": True}, "cpu_latency_us: expected an int"),
        ({"cpu_latency_us": 1.5}, "cpu_latency_us: expected an int"),
    ],
)
def test_bad_cpu_latency_settings_say_what_was_expected(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EngineConfig.from_mapping(data)
