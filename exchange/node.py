"""The main job (``perpdex run``): the whole exchange in one process, asyncio at the edge.

Start-up, in order (``Node.start``):

1. the embedded Solana cluster (LiteSVM behind JSON-RPC + PubSub) with the clearing program
   preloaded at ``LOCALNET_PROGRAM_ID`` and, on a restart, the accounts saved at the last clean
   stop (``DATA_DIR/chain``);
2. the engine on its SQLite journal (``DATA_DIR/journal.sqlite``) on the runner
   ``[engine] runner`` names (``exchange.engine.runners``: by default its own process,
   ``EngineProcess``; ``inline``: execute on this event loop, commits on a writer thread;
   ``thread``: a sequencer thread here), and the API application over it,
   set up but not listening yet: its ``EnginePort`` keeps the mirror, the engine's own state
   class folded from every durable batch on this event loop. Every read of engine state in the
   node is a read of that mirror (``Node.core``), and every command goes through the port;
   BTC-PERP, ETH-PERP and SOL-PERP are listed once (``CreateMarket``, journaled);
3. on a fresh data directory: keys (``DATA_DIR/keys``), airdrops, the collateral mint and
   vaults, ``initialize``, and per market a simulated Pyth pull oracle account and
   ``create_market`` with the engine's own tick, lot, fees, margin tiers and funding cap; the
   Market's liquidation fee, liquidator share and buffer must equal the engine market's
   (checked after listing on a fresh chain: one set of liquidation parameters per market on
   both sides; later governance moves both, through the gov watcher);
4. the simulated oracle publisher (seeded random walk, continuing from the engine's last index
   price) -> ``OracleFeed`` (PubSub, guards) -> oracle port -> engine;
5. the API (set up in 2.) listening on ``api_host:api_port`` with ``/metrics``;
6. the settlement loop: deposit bridge (on-chain deposits -> engine; also the wallets'
   escape-hatch ``withdraw`` -> ``BookOnChainWithdrawal`` and ``deposit_insurance`` top-ups ->
   ``DepositInsurance``, their only source), settlement service
   (journal -> ``settle_fills`` / ``update_funding``), and every ``reconcile_interval_s`` the
   reconciler against the engine state at exactly the sequence settlement reached (a fold of
   the journal up to the service's cursor); a mismatch that is not explained by a deposit in
   flight is journaled (``ReconciliationMismatchDetected``; ``ReconciliationMismatchResolved``
   once a later run finds the market clean) and halts the markets concerned
   (``SetMarketStatus``); the withdrawal executor
   (``settlement/withdrawals.py``) runs in the same loop, in journal order with settlement:
   the engine's ``CollateralWithdrawn`` -> ``process_withdrawal`` once the fills before it
   landed; before settlement and reconciliation the liquidation scanner
   (``settlement/liquidation_scanner.py``) books the keepers' on-chain ``liquidate``
   transactions into the engine (``BookOnChainLiquidation``, exactly once; progress in
   ``DATA_DIR/liquidation-scanner.json``);
7. the liquidation sweeper and backstop (``LiquidationService`` over the mirror, an
   ``EnginePort`` listener) with its own funded liquidator account (or ``[engine]
   liquidation_backstop_owner_id``), grace period and retry from ``EngineConfig``;
   governance: on a fresh chain ``initialize_governance`` with a council of
   ``GOV_COUNCIL_SIZE`` keys (``DATA_DIR/keys/council-N.json``, threshold
   ``GOV_THRESHOLD``), a guardian (``keys/guardian.json``) and ``gov_timelock_s``; the
   ``GovWatcher`` (PubSub logs -> chain read -> ``SetRiskParams`` / ``SetMarketStatus``)
   feeds the engine and the API's ``GovernanceView``; on a restart it skips the proposals
   the journal already holds;
8. the demo traders (market makers and a taker, ``exchange.demo_bots``) through the SDK, each
   with its own wallet, funded by a real on-chain deposit that the bridge credits.

Accounts (open sign-up, docs/PROTOCOL.md, Account registry): no wallet is configured up
front. Every wallet, the node's own included (market makers, takers, the backstop
liquidator), gets its engine account the way any user does: its first on-chain deposit makes
the bridge register it (``RegisterAccount``, journaled before the credit). The settlement
``AccountMap`` is built from the engine's registry at start and grows as wallets sign up; the
API resolves keys through the same registry. On a fresh chain the node's wallets deposit
before the sweeper starts (its backstop account is the liquidator wallet's registered one).

``Node.stop`` tears down in reverse: traders, oracle, governance watcher, settlement loop, API,
engine (its last snapshot, then the runner drains and closes its journal; that snapshot
folded on with the journal's events after it is the final state, saved as the journal's
snapshot, its hash printed), then the chain's accounts are saved and the cluster stops.
A restart resumes with the same engine state (same hash) and the same chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Protocol

from aiohttp import web
from anchorpy import Program
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from spl.token.constants import TOKEN_PROGRAM_ID

from exchange.api.app import PORT_KEY, create_app
from exchange.api.config import ApiConfig
from exchange.api.engine_port import EnginePort, Runner
from exchange.api.governance import GOVERNANCE_KEY
from exchange.api.metrics import METRICS_KEY, Family
from exchange.api.withdrawals import FUNDS_KEY
from exchange.client import PerpdexRest
from exchange.core.commands import Command, CreateMarket, SetMarketStatus
from exchange.core.errors import ConfigError, ExchangeError
from exchange.core.events import Event, OrderRejected
from exchange.core.units import QUOTE_PRECISION
from exchange.demo import DEMO_MARKETS
from exchange.demo_bots import MakerParams, MarketMaker, Taker, TakerParams
from exchange.engine.config import EngineConfig
from exchange.engine.cpu_latency import CpuLatencyStatus
from exchange.engine.journal import Journal
from exchange.engine.liquidation_service import LiquidationService
from exchange.engine.oracle_port import oracle_command
from exchange.engine.runners import open_runner
from exchange.engine.sequencer import RecoveryReport, recover
from localnet.cluster import EmbeddedCluster
from localnet.server import LocalnetServer, Preload
from oracle_feeds.feed import IndexPriceUpdate, MarketOracle, OracleFeed
from oracle_feeds.guards import GuardLimits, OracleAction, OracleGuards
from oracle_feeds.layouts import PYTH_RECEIVER_PROGRAM_ID
from oracle_feeds.price import OracleSource
from oracle_feeds.publisher import RandomWalk, SimulatedFeed, SimulatedPublisher
from oracle_feeds.stream import StreamFeed
from perp.clearinghouse import Clearinghouse
from perp.risk_gate import MarketStatus
from settlement.bridge import DepositBridge
from settlement.errors import SettlementError
from settlement.gov_cli import GovClient
from settlement.gov_watcher import EngineDirect, GovWatcher, applied_proposal_ids
from settlement.governance import governance_pda, initialize_governance_ix
from settlement.liquidation_scanner import LiquidationScanner
from settlement.onchain import (
    LOCALNET_PROGRAM_ID,
    PROGRAM_SO,
    SYSTEM_PROGRAM,
    AccountMap,
    ClearingAddresses,
    ExchangeSetup,
    clearing_program,
    create_market,
    deposit_from_wallet,
    initialize_exchange,
    market_params_for,
    registry_wallets,
)
from settlement.reconciler import Reconciler, ReconcilerConfig, ReconciliationReport
from settlement.service import ServiceState, SettlementConfig, SettlementService
from settlement.withdrawals import WithdrawalExecutor, WithdrawalHalted

log = logging.getLogger(__name__)

LAMPORTS_PER_SOL: Final = 1_000_000_000
GOV_COUNCIL_SIZE: Final = 3  # council keys council-1..3 in DATA_DIR/keys
GOV_THRESHOLD: Final = 2  # approvals a proposal needs
REGISTRATION_TIMEOUT_S: Final = 60.0  # the node's own wallets registered after their deposits
ORACLE_LIMITS: Final = GuardLimits(
    max_age_slots=50, max_age_seconds=30, max_confidence_ppm=20_000, max_twap_deviation_ppm=50_000
)
ORACLE_GUARDS: Final = OracleGuards(
    trading=ORACLE_LIMITS,
    funding=ORACLE_LIMITS,
    withdrawal=ORACLE_LIMITS,
    liquidation=ORACLE_LIMITS,
)
# what `chain/` keeps at a stop: the accounts of these owners (not programs, not sysvars)
_SAVED_OWNERS: Final = (
    LOCALNET_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
    SYSTEM_PROGRAM,
    PYTH_RECEIVER_PROGRAM_ID,
)


class NodeError(ExchangeError):
    """The node cannot start or continue (bad data directory, provisioning failure)."""

    code = "NODE"


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """Everything ``perpdex run`` starts; defaults need no configuration.

    A TOML file may hold ``[engine]`` (``EngineConfig``), ``[api]`` (``ApiConfig``; ``owners`` is
    filled with the demo traders' keys) and ``[node]`` (the fields below except ``engine`` and
    ``api``); unknown tables and keys are refused.
    """

    engine: EngineConfig = field(default_factory=EngineConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    rpc_port: int = 8899
    ws_port: int | None = None  # default: rpc_port + 1 (0 with rpc_port 0)
    market_makers: int = 2
    takers: int = 1
    maker_deposit_quote: int = 2_000_000 * QUOTE_PRECISION
    taker_deposit_quote: int = 200_000 * QUOTE_PRECISION
    maker_interval_s: float = 1.0
    taker_interval_s: float = 0.7
    oracle_interval_s: float = 0.4
    oracle_step_ppm: int = 200
    settle_interval_s: float = 0.5
    reconcile_interval_s: float = 2.0
    seed: int = 7
    # governance timelock at initialization (the program's bounds: 1 hour .. 30 days)
    gov_timelock_s: int = 86_400

    def __post_init__(self) -> None:
        if not isinstance(self.engine, EngineConfig) or not isinstance(self.api, ApiConfig):
            raise ConfigError("node: expected an EngineConfig and an ApiConfig")
        for name, lo, hi in (
            ("rpc_port", 0, 65535),
            ("market_makers", 0, 8),
            ("takers", 0, 8),
            ("maker_deposit_quote", 1, 2**63 - 1),
            ("taker_deposit_quote", 1, 2**63 - 1),
            ("oracle_step_ppm", 0, 100_000),
            ("seed", 0, 2**63 - 1),
            ("gov_timelock_s", 3_600, 30 * 86_400),
        ):
            value = getattr(self, name)
            if type(value) is not int or not lo <= value <= hi:
                raise ConfigError(f"{name}: expected an int in {lo}..{hi}, got {value!r}")
        if self.ws_port is not None and (
            type(self.ws_port) is not int or not 0 <= self.ws_port <= 65535
        ):
            raise ConfigError(f"ws_port: expected an int in 0..65535 or none, got {self.ws_port!r}")
        for name in ("maker_interval_s", "taker_interval_s", "oracle_interval_s",
                     "settle_interval_s", "reconcile_interval_s"):  # fmt: skip
            value = getattr(self, name)
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not 0.01 <= value <= 3600
            ):
                raise ConfigError(f"{name}: expected seconds in 0.01..3600, got {value!r}")

    @property
    def data_dir(self) -> Path:
        return self.engine.data_dir

    @classmethod
    def from_toml(cls, path: Path, **overrides: Any) -> NodeConfig:
        """``[engine]``, ``[api]`` and ``[node]`` of a TOML file, then ``overrides``."""
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path}: expected readable TOML, got {exc}") from exc
        return cls.from_mapping(document, **overrides)

    @classmethod
    def from_mapping(cls, document: dict[str, Any], **overrides: Any) -> NodeConfig:
        unknown = sorted(set(document) - {"engine", "api", "node"})
        if unknown:
            raise ConfigError(f"config: unknown tables {unknown}, expected engine, api, node")
        node = dict(document.get("node", {}))
        known = {f.name for f in fields(cls)} - {"engine", "api"}
        bad = sorted(set(node) - known)
        if bad:
            raise ConfigError(f"node config: unknown keys {bad}, expected {sorted(known)}")
        values: dict[str, Any] = {
            "engine": EngineConfig.from_mapping(document.get("engine", {})),
            "api": ApiConfig.from_mapping(document.get("api", {})),
            **node,
        }
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Endpoints:
    api_url: str
    ws_url: str
    rpc_url: str
    rpc_ws_url: str
    metrics_url: str
    data_dir: str

    def to_json(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ---------------------------------------------------------------- data directory


class KeyStore:
    """Keypairs in ``DIR/NAME.json`` (the Solana CLI format: a JSON array of 64 bytes)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get(self, name: str) -> Keypair:
        """The stored key, or a new random one written first."""
        path = self.directory / f"{name}.json"
        if path.exists():
            try:
                return Keypair.from_bytes(bytes(json.loads(path.read_text())))
            except (OSError, ValueError) as exc:
                raise NodeError(
                    f"key {path}: expected a JSON array of 64 bytes, got {exc}"
                ) from exc
        self.directory.mkdir(parents=True, exist_ok=True)
        key = Keypair()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(list(bytes(key))))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        return key


def save_chain(server: LocalnetServer, directory: Path) -> int:
    """Write the cluster's user accounts as ``solana account --output json`` files (what
    ``Preload.account_dirs`` loads back) plus the slot; returns the number of accounts."""
    import base64

    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        for p in tmp.iterdir():
            p.unlink()
    tmp.mkdir(parents=True, exist_ok=True)
    count = 0
    for pubkey, acct in server.cluster.indexed_accounts():
        if acct.executable or acct.owner not in _SAVED_OWNERS:
            continue
        if acct.owner == SYSTEM_PROGRAM and not acct.data and acct.lamports == 0:
            continue
        doc = {
            "pubkey": str(pubkey),
            "account": {
                "lamports": acct.lamports,
                "data": [base64.b64encode(bytes(acct.data)).decode(), "base64"],
                "owner": str(acct.owner),
                "executable": False,
                "rentEpoch": 0,
            },
        }
        (tmp / f"{pubkey}.json").write_text(json.dumps(doc))
        count += 1
    (tmp / "slot").write_text(str(server.cluster.slot))
    if directory.exists():
        old = directory.with_name(directory.name + ".old")
        os.replace(directory, old)
        os.replace(tmp, directory)
        for p in old.iterdir():
            p.unlink()
        old.rmdir()
    else:
        os.replace(tmp, directory)
    return count


# ---------------------------------------------------------------- the engine at a sequence


class SettledView:
    """The clearinghouse as of a journal sequence (what settlement has reached): the
    journal folded forward on demand, so the reconciler compares like with like."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.core: Clearinghouse | None = None
        self.seq = 0

    def advance(self, upto_seq: int) -> Clearinghouse:
        if self.core is None:
            self.core, _ = recover(self.journal, upto_seq)
        elif upto_seq > self.seq:
            apply = self.core.apply
            for event in self.journal.read(after_seq=self.seq, upto_seq=upto_seq):
                apply(event)
        self.seq = max(self.seq, upto_seq)
        return self.core


# ---------------------------------------------------------------- the node


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("engine: a queued command failed: %r", future.exception())


class NodeRunner(Runner, Protocol):
    """An engine runner as the node drives it (``exchange.engine.runners.open_runner``): the
    API's ``Runner`` plus the recovery it started from, the PM QoS CPU-latency request it
    holds (``exchange.engine.cpu_latency``) and ``close`` (drain, close the journal)."""

    @property
    def recovery(self) -> RecoveryReport: ...

    @property
    def cpu_latency(self) -> CpuLatencyStatus: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class NodeStatus:
    started_s: float = 0.0
    oracle_updates: dict[int, int] = field(default_factory=dict)
    settlement_caught_up_s: float = 0.0  # wall time the settled cursor last reached the engine
    reconcile_runs: int = 0
    reconcile_deferred: int = 0  # runs discarded because a deposit landed meanwhile
    last_reconcile: ReconciliationReport | None = None
    last_reconcile_s: float = 0.0
    halted_markets: tuple[int, ...] = ()
    loop_errors: int = 0
    settlement_error: str = ""


class Node:
    """``async with Node(config) as node:`` runs everything; see the module docstring."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self.keys = KeyStore(self.data_dir / "keys")
        self.chain_dir = self.data_dir / "chain"
        self.status = NodeStatus()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._clients: list[AsyncClient] = []
        self._journals: list[Journal] = []
        self.server: LocalnetServer | None = None
        self.runner: NodeRunner | None = None
        self.port: EnginePort | None = None  # the API's door to the runner, and the mirror
        self._core: Clearinghouse | None = None  # the port's mirror (``core``)
        self.api_runner: web.AppRunner | None = None
        self.app: web.Application | None = None
        self.publisher: SimulatedPublisher | None = None
        self.feed: OracleFeed | None = None
        self.service: SettlementService | None = None
        self.bridge: DepositBridge | None = None
        self.withdrawals: WithdrawalExecutor | None = None
        self.reconciler: Reconciler | None = None
        self.settled: SettledView | None = None
        self.bots: list[Any] = []
        self.liquidation: LiquidationService | None = None
        self.scanner: LiquidationScanner | None = None
        self.gov_watcher: GovWatcher | None = None
        self._bot_sessions: list[PerpdexRest] = []
        self.endpoints: Endpoints | None = None
        self.final_hash = ""
        self.final_seq = 0
        self.recovered_hash = ""
        self.recovered_seq = 0

    async def __aenter__(self) -> Node:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ helpers
    def client(self) -> AsyncClient:
        assert self.server is not None
        client = AsyncClient(self.server.rpc_url, commitment=Confirmed)
        self._clients.append(client)
        return client

    def program(self, payer: Keypair) -> Program:
        return clearing_program(self.client(), payer, LOCALNET_PROGRAM_ID)

    def journal_url(self) -> str:
        url = self.config.engine.journal_url
        return url or f"sqlite:///{(self.data_dir / 'journal.sqlite').resolve()}"

    def read_journal(self) -> Journal:
        journal = Journal(self.journal_url(), read_only=True)
        self._journals.append(journal)
        return journal

    @property
    def core(self) -> Clearinghouse:
        """The engine's state as of the last durable batch folded here: the API's mirror
        (``EnginePort.model.core``, the engine's own state class), read on the event loop.
        After ``submit`` returned, it holds that command's events."""
        assert self._core is not None, "the engine's mirror: expected Node.start first"
        return self._core

    async def submit(self, command: Command) -> list[Event]:
        """Run ``command`` through the port; its events once durable and folded."""
        assert self.port is not None
        return await self.port.submit(command)

    def send(self, command: Command) -> None:
        """Queue ``command`` without waiting (a callback's submit); a failure is logged."""
        assert self.port is not None
        self.port.submit_nowait((command,)).add_done_callback(_log_failure)

    def engine_last_seq(self) -> int:
        return self.core.next_seq - 1

    def key_names(self) -> list[str]:
        """Key names (``DATA_DIR/keys/NAME.json``) of the node's own wallets: the demo traders
        and the backstop liquidator."""
        makers = [f"maker-{i + 1}" for i in range(self.config.market_makers)]
        takers = [f"taker-{i + 1}" for i in range(self.config.takers)]
        return [*makers, *takers, "liquidator"]

    def wallet_names(self) -> list[tuple[str, int]]:
        """(key name, owner_id) of the node's wallets registered so far (all of them once
        started); sub-account 0 each."""
        out = []
        for name in self.key_names():
            account = self.accounts.account_of_wallet(self.keys.get(name).pubkey())
            if account is not None:
                out.append((name, account[0]))
        return out

    # ------------------------------------------------------------------ start
    async def start(self) -> None:
        self.status.started_s = time.time()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fresh_chain = not self.chain_dir.is_dir()
        await self._open_engine(fresh_chain)
        await self._start_cluster(fresh_chain)
        wallets = {name: self.keys.get(name) for name in self.key_names()}
        # every wallet the engine registered (open sign-up), the node's own included
        self.accounts = AccountMap(
            registry_wallets(self.core.registry), ClearingAddresses(LOCALNET_PROGRAM_ID)
        )
        self.authority = self.keys.get("authority")
        self.operator = self.keys.get("operator")
        await self._list_markets()
        self.setup = await self._provision(fresh_chain, wallets)
        if fresh_chain:
            await self._check_liquidation_params()
        await self._start_oracle()
        await self._start_api()
        self._start_settlement()
        if fresh_chain:  # the node's wallets sign up like anyone: an on-chain deposit
            await self._fund_wallets(wallets)
        await self._await_registered(wallets)
        self._start_liquidation(wallets["liquidator"])
        await self._start_governance()
        await self._start_bots(wallets)
        if fresh_chain:  # the provisioned chain with the deposits: a crash restarts from here
            assert self.server is not None
            save_chain(self.server, self.chain_dir)
        self._write_endpoints()

    async def _open_engine(self, fresh_chain: bool) -> None:
        """The runner (recovered from the journal) and the API application over it, set up
        but not listening: its port's mirror serves every read from here on."""
        self.runner = open_runner(self.config.engine)
        rec = self.runner.recovery
        self.recovered_hash, self.recovered_seq = rec.state_hash, rec.last_seq
        self.app = create_app(self.config.api, self.runner)
        self.app[METRICS_KEY].add_collector(self._collect_metrics)
        self.port = self.app[PORT_KEY]
        self.api_runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self.api_runner.setup()  # starts the port: the mirror, from the runner's snapshot
        mirror = self.port.model.core
        if not isinstance(mirror, Clearinghouse):
            raise NodeError(f"engine: expected a Clearinghouse, got {type(mirror).__name__}")
        self._core = mirror
        # A mirror rebuilt from a snapshot has the default setting (not state): the engine's.
        self.core.liquidation_max_oracle_age_ns = self.config.engine.liquidation_max_oracle_age_ns
        # Without a saved chain the chain is provisioned anew; that is only consistent with a
        # journal in which no account holds collateral yet (markets and prices are re-listed).
        if not fresh_chain and self.core.accounts and not self.core.registry:
            raise NodeError(
                f"data dir {self.data_dir}: expected a journal with the account registry, got "
                f"accounts without registrations (a data directory from before open sign-up); "
                "use a new data directory"
            )
        if fresh_chain and self.core.accounts:
            raise NodeError(
                f"data dir {self.data_dir}: expected the chain state ({self.chain_dir}) next to a "
                f"journal with accounts ({rec.last_seq} events), got none; use a new data directory (the "
                "journal alone can be checked with `perpdex replay`)"
            )

    async def _start_cluster(self, fresh_chain: bool) -> None:
        preload = Preload(programs=[(LOCALNET_PROGRAM_ID, PROGRAM_SO)])
        start_slot = 0
        if not fresh_chain:
            preload.account_dirs.append(self.chain_dir)
            with contextlib.suppress(OSError, ValueError):
                start_slot = int((self.chain_dir / "slot").read_text()) + 1
        cluster = EmbeddedCluster(start_slot=start_slot)
        self.server = LocalnetServer(
            cluster,
            rpc_port=self.config.rpc_port,
            ws_port=self.config.ws_port,
            preload=preload,
            shutdown_timeout=1.0,
        )
        await self.server.start()

    async def _list_markets(self) -> None:
        for m in DEMO_MARKETS:
            if m.market_id in self.core.books:
                continue
            events = await self.submit(CreateMarket(m.market_id, m.symbol, m.tick_size, m.lot_size))
            refused = [e for e in events if type(e) is OrderRejected]
            if refused:
                raise NodeError(f"{m.symbol}: expected the market listed, got {refused[0].message}")

    async def _check_liquidation_params(self) -> None:
        """Engine = chain at listing: every Market ``create_market`` just made holds the engine
        market's liquidation fee, liquidator share and buffer (a difference is a NodeError:
        liquidations would differ by venue). Later both move only by governance: the gov
        watcher maps an executed change into the engine, also one executed while the node was
        down, so a restarted node is not checked here."""
        assert self.admin is not None
        addresses = ClearingAddresses(LOCALNET_PROGRAM_ID)
        for m in DEMO_MARKETS:
            market = await self.admin.account["Market"].fetch(
                addresses.market(m.market_id)[0], Confirmed
            )
            chain = (
                int(market.liquidation_fee_ppm),
                int(market.liquidator_share_ppm),
                int(market.liquidation_buffer_ppm),
            )
            params = self.core.markets[m.market_id].params
            engine = (
                params.liquidation_fee_ppm,
                params.liquidator_share_ppm,
                params.liquidation_buffer_ppm,
            )
            if chain != engine:
                raise NodeError(
                    f"{m.symbol}: expected the Market's liquidation fee, share and buffer "
                    f"(ppm) equal to the engine's {engine}, got {chain}"
                )

    def _oracle_address(self, symbol: str) -> Pubkey:
        seed = hashlib.sha256(f"perpdex oracle {symbol}".encode()).digest()
        return Keypair.from_seed(seed).pubkey()

    @staticmethod
    def _feed_id(symbol: str) -> bytes:
        return hashlib.sha256(symbol.encode()).digest()

    async def _provision(self, fresh_chain: bool, wallets: dict[str, Keypair]) -> ExchangeSetup:
        """Fresh: airdrops, mint, vaults, ``initialize``, oracle accounts, ``create_market``.
        Restart: read the Exchange account back."""
        assert self.server is not None
        cluster = self.server.cluster
        self.admin = self.program(self.authority)
        self.mint_keypair = self.keys.get("collateral-mint")
        self._make_publisher()
        if not fresh_chain:
            exchange = await self.admin.account["Exchange"].fetch(
                ClearingAddresses(LOCALNET_PROGRAM_ID).exchange()[0], Confirmed
            )
            return ExchangeSetup(
                ClearingAddresses(LOCALNET_PROGRAM_ID),
                exchange.collateral_mint,
                exchange.vault,
                exchange.insurance_vault,
            )
        for who in (self.authority, self.operator, *wallets.values()):
            cluster.airdrop(who.pubkey(), 100 * LAMPORTS_PER_SOL)
        setup = await initialize_exchange(
            self.admin, authority=self.authority, operator=self.operator.pubkey(),
            mint_keypair=self.mint_keypair,
        )  # fmt: skip
        assert self.publisher is not None
        self.publisher.publish_once()
        for m in DEMO_MARKETS:
            spec = self.core.books[m.market_id].spec
            params = market_params_for(
                index=m.market_id, tick_size=spec.tick_size, lot_size=spec.lot_size,
                params=self.core.markets[m.market_id].params,
                oracle_feed_id=self._feed_id(m.symbol),
            )  # fmt: skip
            await create_market(
                self.admin, authority=self.authority, oracle=self._oracle_address(m.symbol),
                params=params,
            )  # fmt: skip
        return setup

    def _make_publisher(self) -> None:
        assert self.server is not None
        feeds = []
        for m in DEMO_MARKETS:
            pm = self.core.markets.get(m.market_id)
            start = pm.index_price if pm is not None and pm.index_price > 0 else m.start_price
            walk = RandomWalk(
                seed=self.config.seed * 1_000 + m.market_id + self.recovered_seq,
                start_price=start, step_ppm=self.config.oracle_step_ppm, confidence_ppm=100,
            )  # fmt: skip
            feeds.append(
                SimulatedFeed(
                    self._oracle_address(m.symbol),
                    OracleSource.PYTH_PULL,
                    walk,
                    feed_id=self._feed_id(m.symbol),
                )
            )
        self.publisher = SimulatedPublisher(self.server.cluster, feeds)

    async def _start_oracle(self) -> None:
        assert self.server is not None and self.publisher is not None
        self.publisher.start(interval_s=self.config.oracle_interval_s)
        markets = [
            MarketOracle(
                market_id=m.market_id,
                primary=StreamFeed(
                    self._oracle_address(m.symbol),
                    OracleSource.PYTH_PULL,
                    expected_feed_id=self._feed_id(m.symbol),
                ),
                guards=ORACLE_GUARDS,
            )
            for m in DEMO_MARKETS
        ]
        self.feed = OracleFeed(
            self.server.ws_url, self.server.rpc_url, markets, on_update=self._on_oracle
        )
        await self.feed.start()
        # Ready when every market has an index price from this run's feed.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while any(self.status.oracle_updates.get(m.market_id, 0) == 0 for m in DEMO_MARKETS):
            if loop.time() > deadline:
                raise NodeError("oracle: expected a price for every market within 30 s, got none")
            await asyncio.sleep(0.05)

    def _on_oracle(self, update: IndexPriceUpdate) -> None:
        assert self.port is not None
        command = oracle_command(
            update.market_id,
            update.reading,
            update.verdict(OracleAction.TRADING),
            update.verdict(OracleAction.LIQUIDATION),
        )
        future = self.port.submit_nowait((command,))
        market_id = update.market_id

        def done(f: asyncio.Future[list[list[Event]]]) -> None:
            if f.cancelled() or f.exception() is not None:
                _log_failure(f)
                return
            self.status.oracle_updates[market_id] = self.status.oracle_updates.get(market_id, 0) + 1

        future.add_done_callback(done)

    async def _start_api(self) -> None:
        """The API (set up with the engine) starts listening; keys resolve through the
        engine's account registry (plus ``[api.owners]``)."""
        assert self.api_runner is not None
        api_config = self.config.api
        site = web.TCPSite(self.api_runner, api_config.host, api_config.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        port = int(sockets[0].getsockname()[1]) if sockets else api_config.port
        assert self.server is not None
        api_url = f"http://{api_config.host}:{port}"
        self.endpoints = Endpoints(
            api_url=api_url,
            ws_url=f"ws://{api_config.host}:{port}/ws",
            rpc_url=self.server.rpc_url,
            rpc_ws_url=self.server.ws_url,
            metrics_url=f"{api_url}/metrics",
            data_dir=str(self.data_dir.resolve()),
        )

    def _start_settlement(self) -> None:
        markets = tuple(m.market_id for m in DEMO_MARKETS)
        self.service = SettlementService(
            journal=self.read_journal(),
            program=self.program(self.operator),
            operator=self.operator,
            accounts=self.accounts,
            config=SettlementConfig(market_ids=markets),
        )
        self.bridge = DepositBridge(
            program=self.program(self.operator),
            vault=self.setup.vault,
            accounts=self.accounts,
            credit=self.submit,
            engine_last_seq=self.engine_last_seq,
            journal=self.read_journal(),
            state_path=self.data_dir / "bridge.json",
            register=self.submit,  # open sign-up: a new wallet's first deposit registers it
            # escape-hatch withdrawals and insurance top-ups: on-chain facts into the engine
            book=self.submit,
        )
        self.bridge.recover()
        self.scanner = LiquidationScanner(
            client=self.client(),
            exchange=self.setup.addresses.exchange()[0],
            accounts=self.accounts,
            submit=self.submit,
            state_path=self.data_dir / "liquidation-scanner.json",
            # the mirror's set: the engine adds to it, never removes
            booked=lambda sig, i: f"{sig}:{i}" in self.core.onchain_liquidations,
        )
        # the engine's CollateralWithdrawn -> process_withdrawal, in journal order with the fills
        self.withdrawals = WithdrawalExecutor(
            journal=self.read_journal(),
            program=self.program(self.operator),
            operator=self.operator,
            accounts=self.accounts,
            mint=self.setup.mint,
            vault=self.setup.vault,
            state_path=self.data_dir / "withdrawals.json",
        )
        if self.app is not None:  # GET /v1/withdrawals and /v1/deposits show the chain's view
            self.app[FUNDS_KEY].attach(withdrawals=self.withdrawals, deposits=self.bridge)
        self.reconciler = Reconciler(
            program=self.program(self.operator),
            accounts=self.accounts,
            # the node halts the markets itself (reconcile_once); the reconciler journals
            config=ReconcilerConfig(market_ids=markets, halt_on_mismatch=False),
            submit=self.submit,
        )
        self.settled = SettledView(self.read_journal())
        self.status.settlement_caught_up_s = time.time()
        self._tasks.append(asyncio.create_task(self._settlement_loop(), name="settlement"))

    def _start_liquidation(self, liquidator: Keypair) -> None:
        """The sweeper and backstop (``LiquidationService`` over the mirror, called after each
        batch the port folds); its backstop account is the ``liquidator`` wallet's, registered
        and funded by an on-chain deposit like the traders'."""
        assert self.port is not None
        engine_config = self.config.engine
        if engine_config.liquidation_backstop_owner_id is not None:
            account = (
                engine_config.liquidation_backstop_owner_id,
                engine_config.liquidation_backstop_sub_account_id,
            )
        else:
            registered = self.accounts.account_of_wallet(liquidator.pubkey())
            assert registered is not None  # _await_registered
            account = registered
        service = LiquidationService(
            self.core, self.send, liquidator_owner_id=account[0],
            liquidator_sub_account_id=account[1],
            grace_period_ns=engine_config.liquidation_grace_period_ns,
            retry_ns=engine_config.liquidation_retry_ns,
        )  # fmt: skip
        self.port.listen(lambda events, _update: service.on_batch(events))
        self.liquidation = service

    async def _fund_wallets(self, wallets: dict[str, Keypair]) -> None:
        """Each of the node's wallets deposits on-chain (the local mint authority mints its
        USDC first); the bridge, not this call, registers and credits them."""
        for name, wallet in wallets.items():
            amount = (
                self.config.taker_deposit_quote
                if name.startswith("taker")
                else self.config.maker_deposit_quote
            )
            await deposit_from_wallet(
                self.admin, self.setup, wallet=wallet, amount_quote=amount,
                mint_authority=self.authority,
            )  # fmt: skip

    async def _await_registered(self, wallets: dict[str, Keypair]) -> None:
        """Wait until the bridge registered every wallet of the node (at once on a restart)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REGISTRATION_TIMEOUT_S
        missing = list(wallets)
        while missing:
            missing = [
                n for n in wallets if self.accounts.account_of_wallet(wallets[n].pubkey()) is None
            ]
            if not missing:
                return
            if loop.time() > deadline:
                raise NodeError(
                    f"accounts: expected the node's wallets registered within "
                    f"{REGISTRATION_TIMEOUT_S:.0f} s of their deposits, got none for {missing} "
                    f"({self.status.settlement_error or 'no settlement error'})"
                )
            await asyncio.sleep(0.05)

    def council(self) -> list[Keypair]:
        """The governance council's keys (``keys/council-N.json``, created when missing)."""
        return [self.keys.get(f"council-{i + 1}") for i in range(GOV_COUNCIL_SIZE)]

    async def _start_governance(self) -> None:
        """``initialize_governance`` when the chain has none (a fresh chain), then the watcher:
        executed proposals -> engine, every chain read -> the API's ``GovernanceView``."""
        assert self.server is not None and self.port is not None
        admin = GovClient(self.client(), self.authority, LOCALNET_PROGRAM_ID)
        governance = governance_pda(LOCALNET_PROGRAM_ID)[0]
        info = await admin.client.get_account_info(governance, Confirmed)
        if info.value is None:
            guardian = self.keys.get("guardian")
            # the cap on every market's max_leverage: what the listed markets allow now
            leverage = [
                (await admin.market_risk(m.market_id))["max_leverage"] for m in DEMO_MARKETS
            ]
            for who in (*self.council(), guardian):
                self.server.cluster.airdrop(who.pubkey(), 10 * LAMPORTS_PER_SOL)
            await admin.send([initialize_governance_ix(
                admin.program, exchange=self.setup.addresses.exchange()[0],
                authority=self.authority.pubkey(), council=[k.pubkey() for k in self.council()],
                threshold=GOV_THRESHOLD, guardian=guardian.pubkey(),
                timelock_seconds=self.config.gov_timelock_s, max_leverage_cap=max(leverage),
            )])  # fmt: skip
        # reads the mirror (``model.core``), submits through the port
        port = EngineDirect(self.port.model, submit=self.submit)
        # proposals the journal holds were applied before a restart: never again
        applied = applied_proposal_ids(self.read_journal().read())
        view = self.app[GOVERNANCE_KEY] if self.app is not None else None
        self.gov_watcher = GovWatcher(
            program=self.program(self.operator),
            ws_url=self.server.ws_url,
            market_ids=[m.market_id for m in DEMO_MARKETS],
            engine=port,
            applied=applied,
            on_snapshot=view.update if view is not None else None,
        )
        await self.gov_watcher.start()

    async def _start_bots(self, wallets: dict[str, Keypair]) -> None:
        assert self.endpoints is not None
        names = dict(self.wallet_names())
        rest_markets = None
        for name, _owner in self.wallet_names():
            if name == "liquidator":
                continue  # not a trader: the engine's LiquidationService uses its account
            rest = PerpdexRest(self.endpoints.api_url, wallets[name])
            self._bot_sessions.append(rest)
            if rest_markets is None:
                rest_markets = await rest.markets()
            bot: MarketMaker | Taker
            if name.startswith("maker"):
                params = MakerParams(interval_s=self.config.maker_interval_s)
                bot = MarketMaker(rest, rest_markets, params, name=name)
            else:
                seed = self.config.seed + names[name] + self.recovered_seq
                bot = Taker(rest, rest_markets,
                            TakerParams(interval_s=self.config.taker_interval_s, seed=seed),
                            name=name)  # fmt: skip
            self.bots.append(bot)
            self._tasks.append(asyncio.create_task(bot.run(self._stop), name=name))

    def _write_endpoints(self) -> None:
        assert self.endpoints is not None
        body = {**self.endpoints.to_json(), "pid": os.getpid()}
        tmp = self.data_dir / "node.json.tmp"
        tmp.write_text(json.dumps(body, indent=2))
        os.replace(tmp, self.data_dir / "node.json")

    # ------------------------------------------------------------------ settlement loop
    async def _settlement_loop(self) -> None:
        assert self.service is not None and self.bridge is not None
        assert self.withdrawals is not None
        next_reconcile = 0.0
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            try:
                credited = await self.bridge.poll()
                assert self.scanner is not None
                await self.scanner.poll()  # keepers' on-chain liquidations, before settling
                await self._withdraw_and_settle()
                if self.service.cursor >= self.engine_last_seq():
                    self.status.settlement_caught_up_s = time.time()
                if credited == 0 and loop.time() >= next_reconcile:
                    next_reconcile = loop.time() + self.config.reconcile_interval_s
                    await self.reconcile_once()
            except SettlementError as exc:
                self.status.loop_errors += 1
                self.status.settlement_error = f"{exc.code}: {exc}"
                if self.service.state is ServiceState.HALTED:
                    log.error("settlement halted; the loop stops: %s", exc)
                    return
                log.error("settlement loop: %s", exc)
            except (TimeoutError, OSError) as exc:
                self.status.loop_errors += 1
                log.warning("settlement loop: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.config.settle_interval_s)

    async def _withdraw_and_settle(self) -> None:
        """Withdrawals and settlement in journal order (docs/PROTOCOL.md, Withdrawals): the
        fills before a withdrawal land first. A withdrawal the program refused halts the
        executor (an incident, logged at ERROR); fills keep settling and the reconciler then
        reports the difference and halts the markets."""
        assert self.service is not None and self.withdrawals is not None
        if self.withdrawals.halt is None:
            try:
                await self.withdrawals.run_once(
                    lambda seq: self.service.settle_available(upto_seq=seq)  # type: ignore[union-attr]
                )
            except WithdrawalHalted as exc:
                self.status.loop_errors += 1
                self.status.settlement_error = f"{exc.code}: {exc}"
        await self.service.settle_available()

    async def reconcile_once(self) -> ReconciliationReport | None:
        """Compare the chain with the engine at the settled sequence; ``None`` when a deposit
        landed meanwhile (the comparison would be of two different moments)."""
        assert self.service is not None and self.reconciler is not None
        assert self.settled is not None and self.bridge is not None
        core = self.settled.advance(self.service.cursor)
        comparison = await self.reconciler.compare(core)
        if comparison.mismatches and await self.bridge.poll():
            self.status.reconcile_deferred += 1
            return None
        report = await self.reconciler.answer(comparison)  # journals mismatches / resolutions
        self.status.reconcile_runs += 1
        self.status.last_reconcile = report
        self.status.last_reconcile_s = time.time()
        if report.mismatches:
            markets = sorted(
                {m.market_id for m in report.mismatches if m.market_id in self.service.markets}
                or set(self.service.markets)
            )
            for market_id in markets:
                await self.submit(SetMarketStatus(market_id, int(MarketStatus.HALTED)))
            self.status.halted_markets = tuple(markets)
            log.error("reconciliation: halted markets %s", markets)
        return report

    def _collect_metrics(self) -> Iterable[Family]:
        now = time.time()
        out = []
        svc, rec, bridge = self.service, self.reconciler, self.bridge
        if svc is not None:
            lag = Family("perpdex_settlement_lag_events", "gauge",
                         "engine events not yet read by settlement")  # fmt: skip
            lag.add(max(0, self.engine_last_seq() - svc.cursor))
            lag_s = Family("perpdex_settlement_lag_seconds", "gauge",
                           "seconds since settlement last caught up with the engine")  # fmt: skip
            caught_up = svc.cursor >= self.engine_last_seq()
            lag_s.add(0.0 if caught_up else max(0.0, now - self.status.settlement_caught_up_s))
            state = Family("perpdex_settlement_state", "gauge", "1 for the current state")
            for s in ServiceState:
                state.add(int(svc.state is s), (("state", s.value),))
            m = svc.metrics
            counts = Family("perpdex_settlement_total", "counter", "settlement work done")
            for what, value in (("batches", m.batches_posted), ("fills", m.fills_settled),
                                ("funding_updates", m.funding_updates),
                                ("rpc_retries", m.rpc_retries)):  # fmt: skip
                counts.add(value, (("what", what),))
            out += [lag, lag_s, state, counts]
        if rec is not None:
            report = self.status.last_reconcile
            ok = Family("perpdex_reconciliation_ok", "gauge",
                        "1 when the last reconciliation found no mismatch (-1: none yet)")  # fmt: skip
            ok.add(-1 if report is None else int(report.ok))
            runs = Family("perpdex_reconciliation_runs_total", "counter", "reconciliations")
            runs.add(self.status.reconcile_runs)
            mism = Family(
                "perpdex_reconciliation_mismatches_total", "counter", "values that differed"
            )
            mism.add(rec.metrics.mismatches)
            last = Family("perpdex_reconciliation_last_run_timestamp_seconds", "gauge",
                          "wall time of the last reconciliation")  # fmt: skip
            last.add(self.status.last_reconcile_s)
            journaled = Family("perpdex_reconciliation_journaled_total", "counter",
                               "reconciliation incident events journaled")  # fmt: skip
            journaled.add(rec.metrics.mismatches_recorded, (("event", "mismatch_detected"),))
            journaled.add(rec.metrics.incidents_resolved, (("event", "mismatch_resolved"),))
            out += [ok, runs, mism, last, journaled]
        if bridge is not None:
            dep = Family("perpdex_bridge_deposits_total", "counter", "on-chain deposits credited")
            dep.add(bridge.metrics.deposits_credited)
            unm = Family("perpdex_bridge_unmapped_deposits_total", "counter",
                         "deposits of wallets without an engine account")  # fmt: skip
            unm.add(bridge.metrics.unmapped)
            out += [dep, unm]
        wd = self.withdrawals
        if wd is not None:
            done = Family("perpdex_withdrawals_total", "counter", "withdrawal executor work")
            for what, value in (("executed", wd.metrics.executed), ("attempts", wd.metrics.attempts),
                                ("found_landed", wd.metrics.found_landed),
                                ("incidents", wd.metrics.incidents)):  # fmt: skip
                done.add(value, (("what", what),))
            pending = Family("perpdex_withdrawals_pending", "gauge",
                             "journaled withdrawals not yet executed on-chain")  # fmt: skip
            pending.add(len(wd.pending()))
            halted = Family("perpdex_withdrawals_halted", "gauge",
                            "1 when the program refused a withdrawal (an incident)")  # fmt: skip
            halted.add(int(wd.halt is not None))
            out += [done, pending, halted]
        liq = self.liquidation
        if liq is not None:
            screens = Family("perpdex_liquidation_screens_total", "counter", "sweeper screens")
            screens.add(liq.screens)
            cands = Family("perpdex_liquidation_candidates", "gauge",
                           "accounts below maintenance not yet liquidated")  # fmt: skip
            cands.add(len(liq.candidates))
            sent = Family("perpdex_liquidation_backstop_sent_total", "counter",
                          "backstop Liquidate commands sent")  # fmt: skip
            sent.add(liq.sent)
            out += [screens, cands, sent]
        scan = self.scanner
        if scan is not None:
            onchain = Family("perpdex_onchain_liquidations_total", "counter",
                             "liquidation scanner work (keepers' on-chain liquidate)")  # fmt: skip
            for what, value in (("transactions_read", scan.metrics.transactions_read),
                                ("liquidations", scan.metrics.liquidation_transactions),
                                ("slices_booked", scan.metrics.slices_booked),
                                ("duplicates", scan.metrics.duplicates),
                                ("incidents", scan.metrics.incidents)):  # fmt: skip
                onchain.add(value, (("what", what),))
            out.append(onchain)
        gw = self.gov_watcher
        if gw is not None:
            gov = Family("perpdex_governance_total", "counter", "governance watcher work")
            for what, value in (("syncs", gw.metrics.syncs), ("params_applied", gw.metrics.params_applied),
                                ("statuses_applied", gw.metrics.statuses_applied),
                                ("refused", gw.metrics.refused)):  # fmt: skip
                gov.add(value, (("what", what),))
            out.append(gov)
        upd = Family("perpdex_oracle_updates_total", "counter", "oracle readings into the engine")
        for market_id, n in sorted(self.status.oracle_updates.items()):
            upd.add(n, (("market_id", str(market_id)),))
        out.append(upd)
        return out

    # ------------------------------------------------------------------ run / stop
    @staticmethod
    async def _engine_snapshot(runner: NodeRunner) -> tuple[bytes, int] | None:
        """The engine's own snapshot and its seq (``None`` if the engine is gone)."""
        try:
            return await asyncio.wait_for(asyncio.wrap_future(runner.snapshot()), 60)
        except (ExchangeError, TimeoutError) as exc:
            log.error("engine: no snapshot at the stop (%r); the journal is folded instead", exc)
            return None

    def _seal_journal(self, core_type: Any, snapshot: tuple[bytes, int] | None) -> None:
        """After the engine stopped: its final state is its last snapshot (taken just before
        the close) folded on with the journal's events after it (the last batches, an idle
        tick), as recovery folds; without one, a recovery. That state's snapshot is saved to
        the journal (a restart replays nothing) and its hash and seq are ``final_hash`` /
        ``final_seq``: what ``perpdex replay`` and the next start give."""
        journal = Journal(self.journal_url())
        try:
            if snapshot is None:
                core, _ = recover(journal)
            else:
                core = core_type.from_snapshot(snapshot[0])
                apply = core.apply
                for event in journal.read(after_seq=snapshot[1]):
                    apply(event)
            seq = core.next_seq - 1
            self.final_hash, self.final_seq = core.state_hash(), seq
            if seq > 0:  # a no-op if the engine saved this one (a different hash raises)
                journal.save_snapshot(seq, self.final_hash, core.snapshot())
        finally:
            journal.close()

    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        """Ordered teardown (see the module docstring); safe after a partial start."""
        self._stop.set()
        for task in self._tasks:  # bots and the settlement loop see the stop event
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5.0)
        self._tasks.clear()
        for rest in self._bot_sessions:
            await rest.close()
        self._bot_sessions.clear()
        if self.feed is not None:
            await self.feed.stop()
            self.feed = None
        if self.publisher is not None:
            await self.publisher.stop()
        if self.gov_watcher is not None:  # it submits into the runner: before the engine stops
            await self.gov_watcher.stop()
            self.gov_watcher = None
        if self.api_runner is not None:
            await self.api_runner.cleanup()  # closes the port
            self.api_runner = None
        self.port = None
        if self.runner is not None:
            runner, self.runner = self.runner, None
            snapshot = await self._engine_snapshot(runner)
            runner.close()  # drains what is queued, closes the journal
            try:
                self._seal_journal(runner.core_type, snapshot)
            except ExchangeError as exc:  # the teardown goes on; the journal is the truth
                log.error("engine: no final state at the stop: %s", exc)
        for journal in self._journals:
            journal.close()
        self._journals.clear()
        for client in self._clients:
            with contextlib.suppress(Exception):
                await client.close()
        self._clients.clear()
        if self.server is not None:
            if self.endpoints is not None:  # fully started: the chain is worth keeping
                save_chain(self.server, self.chain_dir)
            await self.server.stop()
            self.server = None
