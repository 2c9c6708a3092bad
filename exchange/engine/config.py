"""Engine configuration: frozen, typed, keyword-only, and strict about unknown keys."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from exchange.core.errors import ConfigError
from exchange.core.orders import SUB_ACCOUNTS_PER_OWNER
from exchange.core.units import NANOS_PER_SECOND
from exchange.engine.cpu_latency import MAX_CPU_LATENCY_US
from perp.params import ParamsError, PerpMarketParams

#: how ``perpdex run`` runs the engine (``exchange.engine.runners``): ``process`` (its own
#: process, ``EngineProcess``, the default and what docs/PERFORMANCE.md's targets are measured
#: on), ``inline`` (execute on the node's event loop, journal commits on a writer thread,
#: ``InlineEngine``) or ``thread`` (a sequencer thread in the node's process, ``EngineThread``:
#: one process to debug)
ENGINE_RUNNERS = ("process", "inline", "thread")


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """Where the engine keeps its state and how it commits.

    ``journal_url`` overrides the default SQLite file in ``data_dir`` (for example a
    ``postgresql+psycopg://`` URL). A group commit closes at ``group_commit_max_commands``
    commands; a snapshot is written at most every ``snapshot_every_events`` events. The
    engine issues a ``Tick`` (funding samples and intervals, expiry) when ``tick_interval_ns``
    has passed on its clock, idle or not. ``market_params`` (the ``[engine.market_params]``
    table, keys of ``perp.params.PerpMarketParams``) are the fees, margin tiers, limits,
    breaker, funding and mark parameters a new market is listed with, and
    ``market_overrides`` (``[engine.market_overrides.SYMBOL]`` tables) the keys that differ for
    one symbol. They are journaled with the market, so changing them later does not change
    markets that already exist (the liquidation fee, liquidator share and buffer are market
    parameters too).

    Engine-level liquidation settings: an oracle reading older than
    ``liquidation_max_oracle_age_ns`` (engine time) is stale for liquidation; the sweeper's
    backstop liquidates an account keepers left below maintenance for
    ``liquidation_grace_period_ns``, at most once per ``liquidation_retry_ns``, from the
    operator-funded sub-account ``liquidation_backstop_owner_id`` /
    ``liquidation_backstop_sub_account_id`` (none: the main job's own ``liquidator`` wallet,
    registered by its deposit).

    ``runner`` (one of ``ENGINE_RUNNERS``) is where ``perpdex run`` runs the engine; the API
    reaches it the same way whichever it is (``exchange.api.engine_port.Runner``).

    While it serves, the engine holds a Linux PM QoS CPU-latency request of
    ``cpu_latency_us`` microseconds (``/dev/cpu_dma_latency``, ``exchange.engine.cpu_latency``)
    when ``hold_cpu_latency`` is true, the default: idle CPUs poll instead of halting, so
    waking the engine or the API costs microseconds, not an IPI and a VM exit (single-order
    latency), at the price of idle CPUs spinning (power, a VM host's CPU). Without root the
    request is not held and the runner's ``cpu_latency`` status says why; ``[engine]
    hold_cpu_latency = false`` turns it off.
    """

    data_dir: Path = Path("data")
    journal_url: str | None = None
    group_commit_max_commands: int = 2048
    snapshot_every_events: int = 250_000
    tick_interval_ns: int = 1_000_000_000
    market_params: PerpMarketParams = field(default_factory=PerpMarketParams)
    market_overrides: tuple[tuple[str, PerpMarketParams], ...] = ()
    liquidation_max_oracle_age_ns: int = 30 * NANOS_PER_SECOND
    liquidation_grace_period_ns: int = 2 * NANOS_PER_SECOND
    liquidation_retry_ns: int = 1 * NANOS_PER_SECOND
    liquidation_backstop_owner_id: int | None = None
    liquidation_backstop_sub_account_id: int = 0
    runner: str = "process"
    hold_cpu_latency: bool = True
    cpu_latency_us: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.data_dir, Path):
            raise ConfigError(f"data_dir: expected a path, got {self.data_dir!r}")
        if self.journal_url is not None and (
            not isinstance(self.journal_url, str) or "://" not in self.journal_url
        ):
            raise ConfigError(f"journal_url: expected a database URL, got {self.journal_url!r}")
        for name, lo, hi in (
            ("group_commit_max_commands", 1, 1_000_000),
            ("snapshot_every_events", 1, 10**12),
            ("tick_interval_ns", 1_000_000, 3_600_000_000_000),
            ("liquidation_max_oracle_age_ns", 1_000_000, 3_600 * NANOS_PER_SECOND),
            ("liquidation_grace_period_ns", 0, 3_600 * NANOS_PER_SECOND),
            ("liquidation_retry_ns", 1_000_000, 3_600 * NANOS_PER_SECOND),
            ("liquidation_backstop_owner_id", 1, 2**47 - 1),
            ("liquidation_backstop_sub_account_id", 0, SUB_ACCOUNTS_PER_OWNER - 1),
            ("cpu_latency_us", 0, MAX_CPU_LATENCY_US),
        ):
            value = getattr(self, name)
            if name == "liquidation_backstop_owner_id" and value is None:
                continue
            if type(value) is not int or not lo <= value <= hi:
                raise ConfigError(f"{name}: expected an int in {lo}..{hi}, got {value!r}")
        if type(self.hold_cpu_latency) is not bool:
            raise ConfigError(f"hold_cpu_latency: expected a bool, got {self.hold_cpu_latency!r}")
        if self.runner not in ENGINE_RUNNERS:
            raise ConfigError(
                f"runner: expected one of {list(ENGINE_RUNNERS)}, got {self.runner!r}"
            )
        if not isinstance(self.market_params, PerpMarketParams):
            raise ConfigError(
                f"market_params: expected PerpMarketParams, got {self.market_params!r}"
            )
        overrides = self.market_overrides
        if not isinstance(overrides, tuple) or not all(
            isinstance(o, tuple)
            and len(o) == 2
            and isinstance(o[0], str)
            and isinstance(o[1], PerpMarketParams)
            for o in overrides
        ):
            raise ConfigError(
                f"market_overrides: expected (symbol, PerpMarketParams) pairs, got {overrides!r}"
            )
        symbols = [symbol for symbol, _ in overrides]
        if len(set(symbols)) != len(symbols):
            raise ConfigError(f"market_overrides: expected distinct symbols, got {symbols}")

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> EngineConfig:
        """Build from a plain mapping (a parsed config file); unknown keys are an error."""
        if not isinstance(data, dict):
            raise ConfigError(f"engine config: expected a table, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"engine config: unknown keys {unknown}, expected {sorted(known)}")
        values = dict(data)
        if "data_dir" in values:
            if not isinstance(values["data_dir"], str):
                raise ConfigError(f"data_dir: expected a path string, got {values['data_dir']!r}")
            values["data_dir"] = Path(values["data_dir"])
        if "market_params" in values:
            try:
                values["market_params"] = PerpMarketParams.from_mapping(values["market_params"])
            except ParamsError as exc:
                raise ConfigError(f"market_params: {exc}") from exc
        if "market_overrides" in values:
            table = values["market_overrides"]
            if not isinstance(table, dict):
                raise ConfigError(
                    f"market_overrides: expected a table of symbols, got {type(table).__name__}"
                )
            base = values.get("market_params", PerpMarketParams())
            pairs = []
            for symbol, keys in sorted(table.items()):
                try:
                    pairs.append((symbol, PerpMarketParams.from_mapping(keys, base=base)))
                except ParamsError as exc:
                    raise ConfigError(f"market_overrides.{symbol}: {exc}") from exc
            values["market_overrides"] = tuple(pairs)
        return cls(**values)

    @classmethod
    def from_toml(cls, path: Path) -> EngineConfig:
        """Read the ``[engine]`` table of a TOML file."""
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path}: expected readable TOML, got {exc}") from exc
        unknown = sorted(set(document) - {"engine"})
        if unknown:
            raise ConfigError(f"config file {path}: unknown tables {unknown}, expected ['engine']")
        return cls.from_mapping(document.get("engine", {}))
