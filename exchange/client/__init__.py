"""Async Python SDK for the perpdex API: REST, and a websocket with resync and reconnect."""

from exchange.client.rest import ApiRequestError, PerpdexRest
from exchange.client.types import CommandResult, L2Book, Market, Trade
from exchange.client.ws import PerpdexWs

__all__ = [
    "ApiRequestError",
    "CommandResult",
    "L2Book",
    "Market",
    "PerpdexRest",
    "PerpdexWs",
    "Trade",
]
