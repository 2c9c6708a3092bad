"""Typed results of the SDK's liquidation calls (``PerpdexRest.liquidate``,
``liquidation_candidates``, ``adl_ranks``): plain frozen dataclasses from the API's JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class LiquidationCandidate:
    """An account below maintenance at fresh, valid oracles (QUOTE_PRECISION)."""

    owner_id: int
    sub_account_id: int
    equity_quote: int
    maintenance_margin_quote: int
    shortfall_quote: int

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LiquidationCandidate:
        return cls(**{k: obj[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class LiquidationResult:
    """The engine's answer to a ``Liquidate``: ``LIQUIDATED`` (the fee share paid to the
    liquidator, base taken over per market, the events) or ``REJECTED`` with its code."""

    status: str
    sequence: int
    target_owner_id: int
    target_sub_account_id: int
    liquidator_fee_quote: int = 0
    base_taken: dict[int, int] = field(default_factory=dict)  # market -> BASE_PRECISION
    events: list[dict[str, Any]] = field(default_factory=list)
    reject_code: int | None = None
    reject_code_name: str | None = None
    message: str | None = None

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LiquidationResult:
        return cls(
            status=obj["status"],
            sequence=obj["sequence"],
            target_owner_id=obj["target_owner_id"],
            target_sub_account_id=obj["target_sub_account_id"],
            liquidator_fee_quote=obj.get("liquidator_fee_quote", 0),
            base_taken={int(m): b for m, b in obj.get("base_taken", {}).items()},
            events=list(obj.get("events", ())),
            reject_code=obj.get("reject_code"),
            reject_code_name=obj.get("reject_code_name"),
            message=obj.get("message"),
        )


@dataclass(frozen=True, slots=True)
class AdlRank:
    """One position's current ADL rank within its side (1 = deleveraged first)."""

    market_id: int
    base: int  # BASE_PRECISION, signed
    side: str  # LONG | SHORT
    adl_rank: int | None
    side_positions: int

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> AdlRank:
        return cls(**{k: obj[k] for k in cls.__dataclass_fields__})
