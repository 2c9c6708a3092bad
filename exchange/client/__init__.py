"""Async Python SDK for the perpdex API: REST, and a websocket with resync and reconnect."""

from exchange.client.rest import ApiRequestError, PerpdexRest
from exchange.client.types import (
    AccountInfo,
    Balance,
    CommandResult,
    DepositRecord,
    L2Book,
    Market,
    MarketPrices,
    Trade,
    Withdrawal,
    WithdrawalResult,
)
from exchange.client.ws import PerpdexWs

__all__ = [
    "AccountInfo",
    "ApiRequestError",
    "Balance",
    "CommandResult",
    "DepositRecord",
    "L2Book",
    "Market",
    "MarketPrices",
    "PerpdexRest",
    "PerpdexWs",
    "Trade",
    "Withdrawal",
    "WithdrawalResult",
]
