"""Engine + embedded cluster + the deployed clearing program, provisioned end to end: what the
settlement tests and ``bench.settlement`` run against (real components, nothing stood in).

``SettlementStack.start`` serves the embedded cluster with the program preloaded (as
``perpdex localnet`` does), opens an ``Engine`` on a SQLite journal, initialises the Exchange
(collateral mint, PDA-owned vaults), lists every market in the engine and on-chain with the
same tick, lot, fees, margin tiers and funding cap, gives it an index price in the engine and
a Pyth pull oracle account on-chain, then funds each account on-chain (wallet-signed SPL
deposit) and credits the same amount in the engine.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anchorpy import Program
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.account import Account
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from exchange.core.commands import CreateMarket, PlaceOrder, UpdateOraclePrice
from exchange.core.orders import Side, TimeInForce
from exchange.engine.config import EngineConfig
from exchange.engine.journal import Journal
from exchange.engine.sequencer import Engine
from localnet.server import LocalnetServer, Preload
from oracle_feeds.encoders import encode_pyth_pull_price_update_v2
from oracle_feeds.layouts import PYTH_RECEIVER_PROGRAM_ID, PythPullAccount
from perp.params import PerpMarketParams
from settlement.onchain import (
    LOCALNET_PROGRAM_ID,
    PROGRAM_SO,
    AccountMap,
    ClearingAddresses,
    ExchangeSetup,
    clearing_program,
    create_market,
    deposit_collateral,
    initialize_exchange,
    market_params_for,
)
from settlement.service import SettlementConfig, SettlementService

LAMPORTS_PER_SOL = 1_000_000_000


def seeded_keypair(label: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(label.encode()).digest())


@dataclass(frozen=True, slots=True)
class StackMarket:
    market_id: int
    symbol: str
    tick_size: int  # PRICE_PRECISION per tick
    lot_size: int  # BASE_PRECISION per lot
    index_price: int  # PRICE_PRECISION, the first oracle reading


class ManualClock:
    """The engine's clock, moved by hand (nanoseconds since the epoch)."""

    def __init__(self, start_ns: int = 1_767_225_600 * 10**9) -> None:  # 2026-01-01
        self.now_ns = start_ns

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, ns: int) -> None:
        self.now_ns += ns


class SettlementStack:
    """Use ``async with SettlementStack(data_dir, markets, deposits) as stack:``."""

    def __init__(
        self,
        data_dir: Path,
        markets: Sequence[StackMarket],
        deposits: Sequence[tuple[int, int, int]],  # (owner_id, sub_account_id, amount_quote)
        *,
        params: PerpMarketParams | None = None,
        program_id: Pubkey = LOCALNET_PROGRAM_ID,
        clock: ManualClock | None = None,
    ) -> None:
        self.clock = clock if clock is not None else ManualClock()
        self.data_dir = data_dir
        self.markets = tuple(markets)
        self.deposits = tuple(deposits)
        self.params = params if params is not None else PerpMarketParams()
        self.program_id = program_id
        self.server = LocalnetServer(
            rpc_port=0, ws_port=0, preload=Preload(programs=[(program_id, PROGRAM_SO)])
        )
        self.authority = seeded_keypair("perpdex authority")
        self.operator = seeded_keypair("perpdex operator")
        self.wallets = {
            (o, s): seeded_keypair(f"perpdex wallet {o}/{s}") for o, s, _ in self.deposits
        }
        self.accounts = AccountMap(
            {k: kp.pubkey() for k, kp in self.wallets.items()}, ClearingAddresses(program_id)
        )
        self.engine: Engine | None = None
        self.clients: list[AsyncClient] = []
        self.journals: list[Journal] = []
        self.setup: ExchangeSetup | None = None

    async def __aenter__(self) -> SettlementStack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def client(self) -> AsyncClient:
        client = AsyncClient(self.server.rpc_url, commitment=Confirmed)
        self.clients.append(client)
        return client

    def program(self, payer: Keypair) -> Program:
        return clearing_program(self.client(), payer, self.program_id)

    def process(self, commands: Sequence[Any]) -> list[list[Any]]:
        assert self.engine is not None
        return self.engine.process(list(commands))

    def process_one(self, command: Any) -> list[Any]:
        """One command through the engine; its events once durable."""
        return self.process([command])[0]

    async def start(self) -> None:
        await self.server.start()
        # One Tick per hour of the engine clock: funding intervals come when a test or the
        # bench moves the clock, not from the wall clock.
        self.engine = Engine(
            EngineConfig(data_dir=self.data_dir, market_params=self.params,
                         tick_interval_ns=3_600_000_000_000),
            clock=self.clock,
        )  # fmt: skip
        client = self.client()
        for who in (self.authority, self.operator, *self.wallets.values()):
            self.server.cluster.airdrop(who.pubkey(), 10 * LAMPORTS_PER_SOL)
        admin = clearing_program(client, self.authority, self.program_id)
        self.setup = await initialize_exchange(
            admin, authority=self.authority, operator=self.operator.pubkey(),
            mint_keypair=seeded_keypair("perpdex usdc mint"),
        )  # fmt: skip
        for m in self.markets:
            self.process([CreateMarket(m.market_id, m.symbol, m.tick_size, m.lot_size)])
            self.process([UpdateOraclePrice(m.market_id, m.index_price, m.tick_size, 0, 0, True)])
            feed_id = hashlib.sha256(m.symbol.encode()).digest()
            oracle = seeded_keypair(f"oracle {m.symbol}").pubkey()
            raw = encode_pyth_pull_price_update_v2(PythPullAccount(
                feed_id=feed_id, price=m.index_price, conf=m.tick_size, exponent=-6,
                publish_time=0, posted_slot=0))  # fmt: skip
            self.server.cluster.set_account(
                oracle, Account(LAMPORTS_PER_SOL, raw, PYTH_RECEIVER_PROGRAM_ID, False, 0)
            )
            params = market_params_for(
                index=m.market_id, tick_size=m.tick_size, lot_size=m.lot_size,
                params=self.params, oracle_feed_id=feed_id,
            )  # fmt: skip
            await create_market(admin, authority=self.authority, oracle=oracle, params=params)
        for owner_id, sub_account_id, amount in self.deposits:
            await deposit_collateral(
                admin, self.setup, mint_authority=self.authority,
                wallet=self.wallets[(owner_id, sub_account_id)], owner_id=owner_id,
                sub_account_id=sub_account_id, amount_quote=amount,
                credit_engine=lambda cmd: self.process([cmd]),
            )  # fmt: skip

    def journal_url(self) -> str:
        return f"sqlite:///{(self.data_dir / 'journal.sqlite').resolve()}"

    def service(self, config: SettlementConfig | None = None, **kwargs: Any) -> SettlementService:
        """A fresh settlement service (its own client and read-only journal handle)."""
        config = config or SettlementConfig(
            market_ids=tuple(m.market_id for m in self.markets), **kwargs
        )
        journal = Journal(self.journal_url(), read_only=True)
        self.journals.append(journal)
        return SettlementService(
            journal=journal,
            program=self.program(self.operator),
            operator=self.operator,
            accounts=self.accounts,
            config=config,
        )

    async def stop(self) -> None:
        for client in self.clients:
            await client.close()
        self.clients.clear()
        for journal in self.journals:
            journal.close()
        self.journals.clear()
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        await self.server.stop()


def crossing_flow(
    rng: random.Random,
    markets: Sequence[StackMarket],
    accounts: Sequence[tuple[int, int]],
    num_fills: int,
    *,
    max_lots: int = 20,
    max_offset_ticks: int = 50,
) -> list[PlaceOrder]:
    """``num_fills`` fills that leave the books empty: per fill a GTC limit from a random
    account and an IOC of the same size and price from another, near the index price."""
    commands: list[PlaceOrder] = []
    for _ in range(num_fills):
        m = rng.choice(markets)
        maker, taker = rng.sample(list(accounts), 2)
        maker_side = rng.choice((Side.BID, Side.ASK))
        taker_side = Side.ASK if maker_side == Side.BID else Side.BID
        price = m.index_price + rng.randint(-max_offset_ticks, max_offset_ticks) * m.tick_size
        size = rng.randint(1, max_lots) * m.lot_size
        commands.append(PlaceOrder(m.market_id, *maker, maker_side, price, size))
        commands.append(PlaceOrder(m.market_id, *taker, taker_side, price, size,
                                   time_in_force=TimeInForce.IOC))  # fmt: skip
    return commands
