"""The clearing program seen from the engine's side: its addresses, an anchorpy ``Program`` over
a cluster's RPC, the on-chain ``MarketParams`` of an engine market, and the provisioning steps
(collateral mint and vaults, ``initialize``, ``create_market``, a user's SPL deposit).

Engine accounts and on-chain accounts (documented in docs/ARCHITECTURE.md, Settlement):

* one engine sub-account ``(owner_id, sub_account_id)`` is one wallet (``AccountMap``), and
  its on-chain ``User`` is the PDA ``["user", wallet]``; a wallet serves one sub-account only,
  so two sub-accounts never share a User;
* open sign-up: the first on-chain deposit of an unknown wallet makes the deposit bridge send
  ``RegisterAccount`` (journaled before the credit); the engine's registry assigns the wallet
  its account (owner ``FIRST_REGISTERED_OWNER_ID + n``, sub-account 0) and the map is fed
  from that registry (``registry_wallets``, ``AccountMap.add``), at start and as wallets sign up;
* the wallet creates its User and funds it itself: ``deposit`` (signed by the wallet) moves
  USDC from its token account into the vault and creates the User on first use. Once the
  deposit is confirmed the same amount is credited in the engine with ``Deposit(owner_id,
  sub_account_id, amount_quote)``; ``deposit_collateral`` below does both halves in that order;
* engine market ``market_id`` is on-chain market index ``market_id`` (the PDA
  ``["market", index as u16 LE]``), created with ``market_params_for`` from the engine's own
  ``MarketCreated`` spec and journaled ``PerpMarketParams``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from anchorpy import Context, Idl, Program, Provider, Wallet
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.types import TxOpts
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import CreateAccountParams, create_account
from solders.transaction import Transaction
from spl.token.constants import ACCOUNT_LEN, MINT_LEN, TOKEN_PROGRAM_ID
from spl.token.instructions import (
    InitializeAccountParams,
    InitializeMintParams,
    MintToParams,
    create_idempotent_associated_token_account,
    get_associated_token_address,
    initialize_account,
    initialize_mint,
    mint_to,
)

from exchange.core.commands import Deposit
from exchange.core.orders import SUB_ACCOUNTS_PER_OWNER
from exchange.core.units import U64_MAX
from perp.params import PerpMarketParams
from settlement.errors import SettlementConfigError, UnmappedAccount
from settlement.gen_idl import IDL_PATH
from settlement.spec import MAX_MARGIN_TIERS

ROOT = Path(__file__).resolve().parents[1]
PROGRAM_SO: Final = ROOT / "settlement" / "program" / "perpdex_clearing.so"
#: Where ``perpdex localnet`` deploys the program (seed: sha256 of a fixed phrase, so every
#: checkout agrees; a real deployment uses its own program keypair).
LOCALNET_PROGRAM_ID: Final = Pubkey.from_string("5MCGEsKshcCxpaurLNaaFfoFeWSVpyfkjjdjZZvSA5Ec")
SYSTEM_PROGRAM: Final = Pubkey.from_string("11111111111111111111111111111111")
ORACLE_SOURCE_PYTH_PULL: Final = 2
CONFIRMED_OPTS: Final = TxOpts(skip_confirmation=False, preflight_commitment=Confirmed)
#: Exchange.escape_hatch_slots of a new Exchange: ~1 hour of 400 ms slots without a
#: settle_fills / settle_liquidation / process_withdrawal before wallet withdraw opens.
DEFAULT_ESCAPE_HATCH_SLOTS: Final = 9_000


def localnet_program_keypair() -> Keypair:
    """The keypair behind ``LOCALNET_PROGRAM_ID`` (for a loader-v3 deploy on a local cluster)."""
    return Keypair.from_seed(hashlib.sha256(b"perpdex_clearing localnet program id").digest())


def check_market_ids(market_ids: object) -> None:
    """Refuse a config's ``market_ids`` unless a non-empty tuple of distinct u16 indices."""
    if (
        not isinstance(market_ids, tuple)
        or not market_ids
        or len(set(market_ids)) != len(market_ids)
        or not all(type(i) is int and 0 <= i <= 0xFFFF for i in market_ids)
    ):
        raise SettlementConfigError(
            f"market_ids: expected a non-empty tuple of distinct 0..65535, got {market_ids!r}"
        )


@dataclass(frozen=True, slots=True)
class ClearingAddresses:
    """The program's PDAs (seeds: settlement/spec.py)."""

    program_id: Pubkey

    def exchange(self) -> tuple[Pubkey, int]:
        return Pubkey.find_program_address([b"exchange"], self.program_id)

    def vault_authority(self) -> tuple[Pubkey, int]:
        return Pubkey.find_program_address([b"vault"], self.program_id)

    def market(self, index: int) -> tuple[Pubkey, int]:
        if not 0 <= index <= 0xFFFF:
            raise SettlementConfigError(f"market index: expected 0..65535, got {index}")
        return Pubkey.find_program_address(
            [b"market", index.to_bytes(2, "little")], self.program_id
        )

    def user(self, wallet: Pubkey) -> tuple[Pubkey, int]:
        return Pubkey.find_program_address([b"user", bytes(wallet)], self.program_id)


class AccountMap:
    """Engine sub-account ``(owner_id, sub_account_id)`` <-> wallet <-> on-chain User PDA.

    One-to-one both ways (a wallet's User holds one cross-margin account; two sub-accounts on
    one User would net positions the engine keeps apart). PDAs are derived once, here.
    """

    def __init__(
        self, wallets: Mapping[tuple[int, int], Pubkey], addresses: ClearingAddresses
    ) -> None:
        seen: dict[Pubkey, tuple[int, int]] = {}
        for key, wallet in wallets.items():
            owner_id, sub_account_id = key
            if not (0 <= owner_id < 2**47 and 0 <= sub_account_id < SUB_ACCOUNTS_PER_OWNER):
                raise SettlementConfigError(
                    f"account map: expected (owner_id, sub_account_id) in range, got {key}"
                )
            if not isinstance(wallet, Pubkey):
                raise SettlementConfigError(f"account map {key}: expected a Pubkey, got {wallet!r}")
            if wallet in seen:
                raise SettlementConfigError(
                    f"account map: expected one sub-account per wallet, got {seen[wallet]} and "
                    f"{key} on {wallet}"
                )
            seen[wallet] = key
        self.addresses = addresses
        self._wallets = dict(wallets)
        self._users = {key: addresses.user(w)[0] for key, w in self._wallets.items()}
        self._by_user = {user: key for key, user in self._users.items()}

    def __len__(self) -> int:
        return len(self._wallets)

    def keys(self) -> list[tuple[int, int]]:
        return sorted(self._wallets)

    def wallet(self, owner_id: int, sub_account_id: int) -> Pubkey:
        try:
            return self._wallets[(owner_id, sub_account_id)]
        except KeyError:
            raise UnmappedAccount(
                f"account ({owner_id}, {sub_account_id}): expected a wallet in the account map"
            ) from None

    def user(self, owner_id: int, sub_account_id: int) -> Pubkey:
        """The User PDA of an engine sub-account."""
        try:
            return self._users[(owner_id, sub_account_id)]
        except KeyError:
            raise UnmappedAccount(
                f"account ({owner_id}, {sub_account_id}): expected a wallet in the account map"
            ) from None

    def engine_account(self, user: Pubkey) -> tuple[int, int]:
        return self._by_user[user]

    def add(self, owner_id: int, sub_account_id: int, wallet: Pubkey) -> None:
        """Map one more sub-account (a wallet registered by ``RegisterAccount``); mapping the
        same pair again is a no-op, anything that breaks one-to-one is refused."""
        key = (owner_id, sub_account_id)
        if not (0 <= owner_id < 2**47 and 0 <= sub_account_id < SUB_ACCOUNTS_PER_OWNER):
            raise SettlementConfigError(
                f"account map: expected (owner_id, sub_account_id) in range, got {key}"
            )
        if not isinstance(wallet, Pubkey):
            raise SettlementConfigError(f"account map {key}: expected a Pubkey, got {wallet!r}")
        held = self._wallets.get(key)
        user = self.addresses.user(wallet)[0]
        if held == wallet:
            return
        if held is not None or user in self._by_user:
            raise SettlementConfigError(
                f"account map: expected a new sub-account and wallet, got {key} -> {wallet} "
                f"(held: {held}, {self._by_user.get(user)})"
            )
        self._wallets[key] = wallet
        self._users[key] = user
        self._by_user[user] = key

    def account_of_wallet(self, wallet: Pubkey) -> tuple[int, int] | None:
        """The engine sub-account of a wallet, or None when it has none."""
        return self._by_user.get(self.addresses.user(wallet)[0])


def wallet_hex(wallet: Pubkey) -> str:
    """A wallet as the account registry writes it (``RegisterAccount.wallet_pubkey_hex``)."""
    return bytes(wallet).hex()


def wallet_from_hex(wallet_pubkey_hex: str) -> Pubkey:
    """The inverse of ``wallet_hex``."""
    return Pubkey.from_bytes(bytes.fromhex(wallet_pubkey_hex))


def registry_wallets(registry: Mapping[str, tuple[int, int]]) -> dict[tuple[int, int], Pubkey]:
    """The clearinghouse's registry (``Clearinghouse.registry``: wallet hex -> account) as
    ``AccountMap`` entries."""
    return {account: wallet_from_hex(wallet) for wallet, account in registry.items()}


def load_idl() -> Idl:
    return Idl.from_json(IDL_PATH.read_text())


def clearing_program(client: AsyncClient, payer: Keypair, program_id: Pubkey) -> Program:
    """An unmodified anchorpy ``Program`` paid for by ``payer``, confirming at ``confirmed``."""
    return Program(load_idl(), program_id, Provider(client, Wallet(payer), CONFIRMED_OPTS))


def market_params_for(
    *,
    index: int,
    tick_size: int,
    lot_size: int,
    params: PerpMarketParams,
    oracle_feed_id: bytes,
    oracle_max_age_slots: int = 50,
    oracle_max_age_seconds: int = 60,
    oracle_max_confidence_ppm: int = 20_000,
) -> dict[str, Any]:
    """The ``create_market`` argument for an engine market: the same tick, lot, fees, margin
    tiers, funding cap and liquidation fee, share and buffer, so the program's maths matches
    the engine's to the unit."""
    tiers = params.margin_tiers
    if len(tiers) > MAX_MARGIN_TIERS:
        raise SettlementConfigError(
            f"margin tiers: expected at most {MAX_MARGIN_TIERS} on-chain, got {len(tiers)}"
        )
    if len(oracle_feed_id) != 32:
        raise SettlementConfigError(f"oracle_feed_id: expected 32 bytes, got {len(oracle_feed_id)}")
    rows = [
        {"up_to_notional_quote": bound, "initial_ppm": im, "maintenance_ppm": mm}
        for bound, im, mm in tiers
    ]
    rows += [{"up_to_notional_quote": 0, "initial_ppm": 0, "maintenance_ppm": 0}] * (
        MAX_MARGIN_TIERS - len(rows)
    )
    return {
        "tick_size": tick_size,
        "lot_size": lot_size,
        "funding_cap_rate": params.funding_cap_rate,
        "oracle_max_age_slots": oracle_max_age_slots,
        "oracle_max_age_seconds": oracle_max_age_seconds,
        "maker_fee_ppm": params.maker_fee_ppm,
        "taker_fee_ppm": params.taker_fee_ppm,
        "insurance_share_ppm": params.insurance_share_ppm,
        "oracle_max_confidence_ppm": oracle_max_confidence_ppm,
        "oracle_feed_id": list(oracle_feed_id),
        "index": index,
        "oracle_source": ORACLE_SOURCE_PYTH_PULL,
        "num_margin_tiers": len(tiers),
        "margin_tiers": rows,
        "liquidation_fee_ppm": params.liquidation_fee_ppm,
        "liquidator_share_ppm": params.liquidator_share_ppm,
        "liquidation_buffer_ppm": params.liquidation_buffer_ppm,
    }


# ---------------------------------------------------------------- transaction history

SIGNATURE_PAGE_LIMIT: Final = 1000  # getSignaturesForAddress page


async def unscanned_signatures(
    client: AsyncClient, address: Pubkey, scanned: Container[str]
) -> list[tuple[str, int, bool]]:
    """``address``'s confirmed transactions newer than the newest one in ``scanned``, oldest
    first: (signature, slot, failed). Pages back (newest first) until a scanned one or the
    end of the history."""
    found: list[tuple[str, int, bool]] = []
    before: Signature | None = None
    while True:
        resp = await client.get_signatures_for_address(
            address, before=before, limit=SIGNATURE_PAGE_LIMIT, commitment=Confirmed
        )
        page = resp.value
        for info in page:
            signature = str(info.signature)
            if signature in scanned:
                found.reverse()
                return found
            found.append((signature, info.slot, info.err is not None))
        if len(page) < SIGNATURE_PAGE_LIMIT:
            found.reverse()
            return found
        before = page[-1].signature


async def confirmed_logs(client: AsyncClient, signature: str) -> list[str] | None:
    """A confirmed transaction's log lines ([] when it failed; None: not readable yet)."""
    resp = await client.get_transaction(
        Signature.from_string(signature),
        encoding="json",
        commitment=Confirmed,
        max_supported_transaction_version=0,
    )
    if resp.value is None or resp.value.transaction.meta is None:
        return None
    meta = resp.value.transaction.meta
    if meta.err is not None:
        return []
    return list(meta.log_messages or [])


# ---------------------------------------------------------------- provisioning


async def send_instructions(
    client: AsyncClient, instructions: list[Instruction], signers: list[Keypair]
) -> None:
    """One legacy transaction paid by ``signers[0]``, confirmed."""
    blockhash = (await client.get_latest_blockhash(Confirmed)).value.blockhash
    tx = Transaction(signers, Message(instructions, signers[0].pubkey()), blockhash)
    sig = (await client.send_transaction(tx, opts=CONFIRMED_OPTS)).value
    await client.confirm_transaction(sig, Confirmed)


async def create_mint(client: AsyncClient, authority: Keypair, mint: Keypair) -> Pubkey:
    """A 6-decimal SPL mint (the collateral) with ``authority`` as mint authority."""
    rent = (await client.get_minimum_balance_for_rent_exemption(MINT_LEN)).value
    await send_instructions(client, [
        create_account(CreateAccountParams(from_pubkey=authority.pubkey(), to_pubkey=mint.pubkey(),
                                           lamports=rent, space=MINT_LEN, owner=TOKEN_PROGRAM_ID)),
        initialize_mint(InitializeMintParams(decimals=6, program_id=TOKEN_PROGRAM_ID,
                                             mint=mint.pubkey(), mint_authority=authority.pubkey())),
    ], [authority, mint])  # fmt: skip
    return mint.pubkey()


async def create_token_account(
    client: AsyncClient, payer: Keypair, mint: Pubkey, owner: Pubkey
) -> Pubkey:
    """A fresh SPL token account of ``mint`` whose token owner is ``owner``."""
    account = Keypair()
    rent = (await client.get_minimum_balance_for_rent_exemption(ACCOUNT_LEN)).value
    await send_instructions(client, [
        create_account(CreateAccountParams(from_pubkey=payer.pubkey(), to_pubkey=account.pubkey(),
                                           lamports=rent, space=ACCOUNT_LEN, owner=TOKEN_PROGRAM_ID)),
        initialize_account(InitializeAccountParams(program_id=TOKEN_PROGRAM_ID,
                                                   account=account.pubkey(), mint=mint, owner=owner)),
    ], [payer, account])  # fmt: skip
    return account.pubkey()


@dataclass(frozen=True, slots=True)
class ExchangeSetup:
    """What ``initialize_exchange`` created."""

    addresses: ClearingAddresses
    mint: Pubkey
    vault: Pubkey
    insurance_vault: Pubkey


async def initialize_exchange(
    program: Program,
    *,
    authority: Keypair,
    operator: Pubkey,
    mint_keypair: Keypair,
    escape_hatch_slots: int = DEFAULT_ESCAPE_HATCH_SLOTS,
) -> ExchangeSetup:
    """Collateral mint, the two PDA-owned vaults and ``initialize`` (``authority`` pays and
    must be the program's provider wallet). ``escape_hatch_slots``: the operator inactivity
    after which a wallet may ``withdraw`` by itself (docs/PROTOCOL.md, Withdrawals)."""
    client = program.provider.connection
    addresses = ClearingAddresses(program.program_id)
    vault_authority, vault_bump = addresses.vault_authority()
    exchange, exchange_bump = addresses.exchange()
    mint = await create_mint(client, authority, mint_keypair)
    vault = await create_token_account(client, authority, mint, vault_authority)
    insurance_vault = await create_token_account(client, authority, mint, vault_authority)
    await program.rpc["initialize"](operator, exchange_bump, vault_bump, escape_hatch_slots, ctx=Context(accounts={
        "exchange": exchange, "authority": authority.pubkey(), "collateral_mint": mint,
        "vault": vault, "insurance_vault": insurance_vault, "vault_authority": vault_authority,
        "system_program": SYSTEM_PROGRAM}, signers=[authority]))  # fmt: skip
    return ExchangeSetup(addresses, mint, vault, insurance_vault)


async def create_market(
    program: Program, *, authority: Keypair, oracle: Pubkey, params: dict[str, Any]
) -> Pubkey:
    """``create_market`` with ``params`` (see ``market_params_for``); returns the Market PDA."""
    market, bump = ClearingAddresses(program.program_id).market(params["index"])
    exchange = ClearingAddresses(program.program_id).exchange()[0]
    await program.rpc["create_market"](params, bump, ctx=Context(accounts={
        "exchange": exchange, "market": market, "authority": authority.pubkey(),
        "oracle": oracle, "system_program": SYSTEM_PROGRAM}, signers=[authority]))  # fmt: skip
    return market


async def deposit_collateral(
    program: Program,
    setup: ExchangeSetup,
    *,
    mint_authority: Keypair,
    wallet: Keypair,
    owner_id: int,
    sub_account_id: int,
    amount_quote: int,
    credit_engine: Callable[[Deposit], Any],
) -> Pubkey:
    """Fund a wallet's User: mint USDC to a token account of the wallet, ``deposit`` it
    (signed by the wallet; creates the User), then, once confirmed, credit the engine.
    Returns the User PDA."""
    if amount_quote <= 0 or amount_quote > U64_MAX:
        raise SettlementConfigError(f"deposit: expected 1..u64 max quote, got {amount_quote}")
    client = program.provider.connection
    token = await create_token_account(client, mint_authority, setup.mint, wallet.pubkey())
    await send_instructions(client, [mint_to(MintToParams(
        program_id=TOKEN_PROGRAM_ID, mint=setup.mint, dest=token,
        mint_authority=mint_authority.pubkey(), amount=amount_quote))], [mint_authority])  # fmt: skip
    user, bump = setup.addresses.user(wallet.pubkey())
    await program.rpc["deposit"](amount_quote, bump, ctx=Context(accounts={
        "exchange": setup.addresses.exchange()[0], "user": user, "owner": wallet.pubkey(),
        "owner_token": token, "vault": setup.vault, "token_program": TOKEN_PROGRAM_ID,
        "system_program": SYSTEM_PROGRAM}, signers=[wallet]))  # fmt: skip
    credit_engine(Deposit(owner_id, sub_account_id, amount_quote))
    return user


async def read_exchange_setup(program: Program) -> ExchangeSetup:
    """The mint and vaults of an initialised exchange, read from its Exchange account."""
    addresses = ClearingAddresses(program.program_id)
    exchange = await program.account["Exchange"].fetch(addresses.exchange()[0], Confirmed)
    return ExchangeSetup(
        addresses, exchange.collateral_mint, exchange.vault, exchange.insurance_vault
    )


async def deposit_from_wallet(
    program: Program,
    setup: ExchangeSetup,
    *,
    wallet: Keypair,
    amount_quote: int,
    mint_authority: Keypair | None = None,
) -> Pubkey:
    """A wallet's own ``deposit`` from its associated token account of the collateral mint
    (the User is created on first use; the deposit bridge then registers the wallet and
    credits the engine). ``mint_authority`` (a local cluster's faucet) first mints
    ``amount_quote`` into that token account, created if missing. Returns the User PDA."""
    if amount_quote <= 0 or amount_quote > U64_MAX:
        raise SettlementConfigError(f"deposit: expected 1..u64 max quote, got {amount_quote}")
    client = program.provider.connection
    token = get_associated_token_address(wallet.pubkey(), setup.mint)
    if mint_authority is not None:
        await send_instructions(client, [
            create_idempotent_associated_token_account(wallet.pubkey(), wallet.pubkey(), setup.mint),
            mint_to(MintToParams(program_id=TOKEN_PROGRAM_ID, mint=setup.mint, dest=token,
                                 mint_authority=mint_authority.pubkey(), amount=amount_quote)),
        ], [wallet, mint_authority])  # fmt: skip
    user, bump = setup.addresses.user(wallet.pubkey())
    await program.rpc["deposit"](amount_quote, bump, ctx=Context(accounts={
        "exchange": setup.addresses.exchange()[0], "user": user, "owner": wallet.pubkey(),
        "owner_token": token, "vault": setup.vault, "token_program": TOKEN_PROGRAM_ID,
        "system_program": SYSTEM_PROGRAM}, signers=[wallet]))  # fmt: skip
    return user
