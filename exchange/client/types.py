"""Typed results of the SDK (plain frozen dataclasses built from the API's JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Market:
    market_id: int
    symbol: str
    tick_size: int  # PRICE_PRECISION quote per base unit
    lot_size: int  # BASE_PRECISION base units
    min_size_lots: int
    max_size_lots: int
    max_price_ticks: int
    max_open_orders_per_account: int

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Market:
        return cls(**{k: obj[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class Trade:
    seq: int
    ts_ns: int
    market_id: int
    price_ticks: int
    num_base_lots: int
    taker_side: str

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Trade:
        return cls(**{k: obj[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The acknowledgement of one command: ``ACCEPTED`` or ``REJECTED`` with the engine's code."""

    status: str
    order_id: int
    events: tuple[dict[str, Any], ...]
    client_order_id: int = 0
    reject_code: int = 0
    reject_code_name: str = ""
    message: str = ""

    @property
    def accepted(self) -> bool:
        return self.status == "ACCEPTED"

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> CommandResult:
        return cls(
            status=obj["status"],
            order_id=obj["order_id"],
            events=tuple(obj["events"]),
            client_order_id=obj.get("client_order_id", 0),
            reject_code=obj.get("reject_code", 0),
            reject_code_name=obj.get("reject_code_name", ""),
            message=obj.get("message", ""),
        )


@dataclass(slots=True)
class L2Book:
    """A local L2 book kept from a snapshot plus sequenced deltas."""

    market_id: int
    book_seq: int = -1  # -1: no snapshot yet
    bids: dict[int, int] = field(default_factory=dict)  # price_ticks -> num_base_lots
    asks: dict[int, int] = field(default_factory=dict)

    def reset(self, book_seq: int, bids: list[list[int]], asks: list[list[int]]) -> None:
        self.book_seq = book_seq
        self.bids = {p: q for p, q in bids}
        self.asks = {p: q for p, q in asks}

    def apply(self, book_seq: int, bids: list[list[int]], asks: list[list[int]]) -> bool:
        """Apply one delta; ``False`` (nothing applied) if it does not follow the last one."""
        if self.book_seq < 0 or book_seq != self.book_seq + 1:
            return False
        self.book_seq = book_seq
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, lots in levels:
                if lots:
                    side[price] = lots
                else:
                    side.pop(price, None)
        return True

    def levels(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """``(bids best first, asks best first)``."""
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())

    def best_bid(self) -> int:
        return max(self.bids, default=0)

    def best_ask(self) -> int:
        return min(self.asks, default=0)


def _pick(cls: Any, obj: dict[str, Any]) -> dict[str, Any]:
    """The dataclass's fields from a JSON row; fields the row lacks keep their defaults."""
    return {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}


@dataclass(frozen=True, slots=True)
class MarketPrices:
    """Index (oracle), mark and funding state of a market (prices at PRICE_PRECISION)."""

    market_id: int
    index_price: int
    index_confidence: int
    index_publish_time_s: int
    oracle_valid: bool
    mark_price: int
    cumulative_funding: int
    last_funding_rate: int  # FUNDING_RATE_PRECISION
    last_funding_ts_ns: int
    status: str
    kill_switch: bool

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> MarketPrices:
        return cls(**{k: obj[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class Balance:
    """One sub-account's collateral and cumulative statistics (QUOTE_PRECISION)."""

    sub_account_id: int
    collateral_quote: int
    realized_pnl_quote: int
    fees_paid_quote: int
    funding_paid_quote: int

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Balance:
        return cls(**{k: obj[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class WithdrawalResult:
    """The engine's answer to a withdrawal request: ``REQUESTED`` (journaled, at ``sequence``;
    executed on-chain afterwards) or ``REJECTED`` with its code (nothing changed)."""

    status: str
    sequence: int
    sub_account_id: int
    amount_quote: int
    collateral_quote: int = 0  # after the withdrawal (REQUESTED)
    reject_code: int = 0
    reject_code_name: str = ""
    message: str = ""

    @property
    def accepted(self) -> bool:
        return self.status == "REQUESTED"

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> WithdrawalResult:
        return cls(**_pick(cls, obj))


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """One withdrawal: ``requested``, ``rejected`` (engine code), ``executed`` (on-chain
    ``signature``) or ``failed`` (the program refused it: ``error_name``)."""

    sequence: int
    ts_ns: int
    sub_account_id: int
    amount_quote: int
    status: str
    signature: str | None = None
    destination: str | None = None
    error_code: int | None = None
    error_name: str | None = None
    reject_code: int = 0
    reject_code_name: str = ""
    message: str = ""

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Withdrawal:
        return cls(**_pick(cls, obj))


@dataclass(frozen=True, slots=True)
class DepositRecord:
    """One credited on-chain deposit (``sequence``: the engine's CollateralDeposited)."""

    sequence: int
    sub_account_id: int
    amount_quote: int
    status: str
    signature: str | None = None
    slot: int = 0
    ts_ns: int = 0

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DepositRecord:
        return cls(**_pick(cls, obj))


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """``GET /v1/account``: the signing key's owner and sub-account (``None``: all of the
    owner's) and where the binding comes from (``registry``: open sign-up, ``config``)."""

    pubkey: str
    owner_id: int
    sub_account_id: int | None
    sub_account_ids: tuple[int, ...]
    source: str

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> AccountInfo:
        return cls(
            obj["pubkey"],
            obj["owner_id"],
            obj["sub_account_id"],
            tuple(obj["sub_account_ids"]),
            obj["source"],
        )
