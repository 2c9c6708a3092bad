"""The on-chain keeper's reads and sends (``perpdex keeper liquidator --rpc URL``): what a
keeper needs to liquidate through the clearing program while the engine is down.

Reads, one snapshot per round: every ``User`` (``getProgramAccounts`` with the account
discriminator as a memcmp filter), every ``Market``, the ``Exchange`` (the insurance fund the
plan may draw on) and, in one ``getMultipleAccounts``, the Clock sysvar together with each
Market's oracle account (so the oracles' age is judged at that slot and time). Oracles are
parsed with ``oracle_feeds.parsers`` as the Market's source, pinned to its Pyth feed id; one
that does not parse is no reading (never acted on). The decisions are pure
(``liquidation.keeper.chain_candidates``); this module only converts accounts to their plain
records and sends.

Send: the permissionless ``liquidate`` through anchorpy, signed and paid by the keeper's
wallet, whose own ``User`` is the liquidator; one (Market, oracle) pair per market either User
holds, ascending. A program refusal comes back as its IDL error name (``NotLiquidatable`` for
the loser of a race); a success as the slices the transaction logged (``PositionLiquidated``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from anchorpy import Context, Program
from anchorpy.error import ProgramError
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.instruction import AccountMeta
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.sysvar import CLOCK

from liquidation.errors import LiquidationError
from liquidation.keeper import ChainCandidate, ChainMarket, ChainPosition, ChainUser, chain_limits
from liquidation.rules import LiquidationConfig
from oracle_feeds.errors import OracleError
from oracle_feeds.parsers import parse_pyth_pull_price_update_v2, parse_switchboard_on_demand
from oracle_feeds.price import OraclePrice
from perp.math.margin import MarginConfigError, MarginSchedule, MarginTier
from settlement.errors import SettlementError
from settlement.onchain import ORACLE_SOURCE_PYTH_PULL, ClearingAddresses, clearing_program
from settlement.reconciler import position_liquidated_events

ORACLE_SOURCE_SWITCHBOARD_ON_DEMAND: Final = 3
_CLOCK_LAYOUT: Final = struct.Struct("<QqQQq")  # slot, epoch start, epoch, leader epoch, unix


class KeeperChainError(SettlementError):
    """The chain did not answer as a clearing-program deployment must."""

    code = "KEEPER_CHAIN"


@dataclass(frozen=True, slots=True)
class ChainSnapshot:
    """One round's view of the program's accounts."""

    users: list[ChainUser]
    markets: dict[int, ChainMarket]
    oracle_prices: dict[int, OraclePrice | None]  # None: the account does not parse as its feed
    slot: int  # the Clock sysvar read with the oracles
    unix_timestamp: int
    insurance_fund_quote: int
    me: ChainUser | None  # the keeper's own User (None: it has not deposited)
    unusable_markets: dict[int, str] = field(default_factory=dict)  # index -> why


@dataclass(frozen=True, slots=True)
class ChainOutcome:
    """What one ``liquidate`` did: LIQUIDATED with its slices, or REJECTED by the program."""

    status: str  # "LIQUIDATED" | "REJECTED"
    signature: str | None
    code: str | None = None  # the IDL error name of a refusal
    message: str = ""
    liquidator_fee_quote: int = 0  # from the logged slices
    base_taken: dict[int, int] = field(default_factory=dict)  # market -> base the keeper took
    slices: int = 0


def chain_user(address: Pubkey, account: Any) -> ChainUser:
    """A decoded ``User`` as its plain record (slots in use only)."""
    return ChainUser(
        address=bytes(address),
        owner=bytes(account.owner),
        collateral_quote=int(account.collateral_quote),
        positions=tuple(
            ChainPosition(
                int(p.market_index),
                int(p.base),
                int(p.entry_quote),
                int(p.funding_snapshot),
                int(p.funding_carry_numerator),
            )
            for p in account.positions
            if p.in_use
        ),
    )


def chain_market(account: Any) -> ChainMarket:
    """A decoded ``Market`` as its plain record; ``MarginConfigError`` /
    ``LiquidationError`` if its schedule or liquidation parameters are unusable."""
    tiers = tuple(
        MarginTier(
            up_to_notional_quote=int(t.up_to_notional_quote),
            initial_ppm=int(t.initial_ppm),
            maintenance_ppm=int(t.maintenance_ppm),
        )
        for t in account.margin_tiers[: int(account.num_margin_tiers)]
    )
    return ChainMarket(
        market_index=int(account.index),
        oracle=bytes(account.oracle),
        lot_size=int(account.lot_size),
        schedule=MarginSchedule(tiers=tiers),
        liquidation=LiquidationConfig(
            liquidation_fee_ppm=int(account.liquidation_fee_ppm),
            liquidator_share_ppm=int(account.liquidator_share_ppm),
            buffer_ppm=int(account.liquidation_buffer_ppm),
        ),
        cumulative_funding=int(account.cumulative_funding),
        oracle_limits=chain_limits(
            max_age_slots=int(account.oracle_max_age_slots),
            max_age_seconds=int(account.oracle_max_age_seconds),
            max_confidence_ppm=int(account.oracle_max_confidence_ppm),
        ),
    )


def oracle_price(account: Any, owner: Pubkey, data: bytes) -> OraclePrice | None:
    """The Market's oracle account parsed as its source (Pyth pinned to the Market's feed
    id), or None when the program would refuse its layout, owner, feed or value."""
    try:
        if account.oracle_source == ORACLE_SOURCE_PYTH_PULL:
            return parse_pyth_pull_price_update_v2(
                data, owner, expected_feed_id=bytes(account.oracle_feed_id)
            )
        if account.oracle_source == ORACLE_SOURCE_SWITCHBOARD_ON_DEMAND:
            return parse_switchboard_on_demand(data, owner)
    except OracleError:
        return None
    return None


def position_liquidated(logs: Sequence[str]) -> list[tuple[int, bytes, bytes, int, int]]:
    """The ``PositionLiquidated`` events of a transaction's logs: (market, owner wallet,
    liquidator wallet, base_delta, liquidator_fee_quote)."""
    return [
        (market, owner, liquidator, base, to_liquidator)
        for market, owner, liquidator, base, _, _, _, to_liquidator, _, _ in (
            position_liquidated_events(logs)
        )
    ]


class KeeperChain:
    """A keeper's reads and ``liquidate`` sends over one RPC endpoint."""

    def __init__(self, client: AsyncClient, keypair: Keypair, program_id: Pubkey) -> None:
        self.client = client
        self.keypair = keypair
        self.program: Program = clearing_program(client, keypair, program_id)
        self.addresses = ClearingAddresses(program_id)
        self.exchange = self.addresses.exchange()[0]
        self.user = self.addresses.user(keypair.pubkey())[0]
        self._errors = {e.code: (e.name, e.msg or "") for e in (self.program.idl.errors or [])}
        self._oracles: dict[int, Pubkey] = {}

    async def snapshot(self) -> ChainSnapshot:
        """Users, Markets, the Exchange, then the Clock with every Market's oracle."""
        users = [
            chain_user(u.public_key, u.account) for u in await self.program.account["User"].all()
        ]
        raw_markets = [m.account for m in await self.program.account["Market"].all()]
        exchange = await self.program.account["Exchange"].fetch(self.exchange, Confirmed)
        oracle_keys = [m.oracle for m in raw_markets]
        infos = (
            await self.client.get_multiple_accounts([CLOCK, *oracle_keys], commitment=Confirmed)
        ).value
        clock = infos[0]
        if clock is None or len(clock.data) != _CLOCK_LAYOUT.size:
            raise KeeperChainError(f"Clock sysvar: expected {_CLOCK_LAYOUT.size} bytes, got none")
        slot, _, _, _, unix_timestamp = _CLOCK_LAYOUT.unpack(bytes(clock.data))
        markets: dict[int, ChainMarket] = {}
        prices: dict[int, OraclePrice | None] = {}
        unusable: dict[int, str] = {}
        for raw, info in zip(raw_markets, infos[1:], strict=True):
            index = int(raw.index)
            try:
                markets[index] = chain_market(raw)
            except (MarginConfigError, LiquidationError) as exc:
                unusable[index] = str(exc)  # its Users are passed over (unknown market)
                continue
            self._oracles[index] = raw.oracle
            prices[index] = (
                None if info is None else oracle_price(raw, info.owner, bytes(info.data))
            )
        me = next((u for u in users if u.address == bytes(self.user)), None)
        return ChainSnapshot(
            users=users,
            markets=markets,
            oracle_prices=prices,
            slot=slot,
            unix_timestamp=unix_timestamp,
            insurance_fund_quote=int(exchange.insurance_fund_quote),
            me=me,
            unusable_markets=unusable,
        )

    async def own_collateral(self) -> int | None:
        """The keeper's own User's collateral (None: it has no User yet)."""
        info = (await self.client.get_account_info(self.user, commitment=Confirmed)).value
        if info is None:
            return None
        return int(self.program.coder.accounts.decode(bytes(info.data)).collateral_quote)

    async def liquidate(self, target: ChainCandidate) -> ChainOutcome:
        """One ``liquidate`` of ``target`` by the keeper's User, confirmed; a program refusal
        is a REJECTED outcome with its IDL error name (transport errors propagate)."""
        remaining = []
        for index in target.market_indices:
            remaining += [
                AccountMeta(self.addresses.market(index)[0], False, True),
                AccountMeta(self._oracles[index], False, False),
            ]
        ctx = Context(
            accounts={
                "exchange": self.exchange,
                "user": Pubkey.from_bytes(target.user),
                "liquidator_user": self.user,
                "liquidator": self.keypair.pubkey(),
            },
            remaining_accounts=remaining,
            signers=[self.keypair],
        )
        try:
            signature = await self.program.rpc["liquidate"](ctx=ctx)
        except ProgramError as exc:
            name, message = self._errors.get(exc.code, (str(exc.code), exc.msg or ""))
            return ChainOutcome("REJECTED", None, code=name, message=message)
        return await self._outcome(signature, target)

    async def _outcome(self, signature: Signature, target: ChainCandidate) -> ChainOutcome:
        resp = await self.client.get_transaction(
            signature, encoding="json", commitment=Confirmed, max_supported_transaction_version=0
        )
        if resp.value is None or resp.value.transaction.meta is None:
            raise KeeperChainError(f"transaction {signature}: expected it confirmed, got none")
        logs = list(resp.value.transaction.meta.log_messages or [])
        me = bytes(self.keypair.pubkey())
        fee = count = 0
        taken: dict[int, int] = {}
        for market, owner, liquidator, base_delta, to_liquidator in position_liquidated(logs):
            if owner != target.owner or liquidator != me:
                continue
            count += 1
            fee += to_liquidator
            taken[market] = taken.get(market, 0) - base_delta
        return ChainOutcome(
            "LIQUIDATED",
            str(signature),
            liquidator_fee_quote=fee,
            base_taken=taken,
            slices=count,
        )
