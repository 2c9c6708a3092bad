"""The OpenAPI 3.1 document served at ``/openapi.json`` (built once, plain data)."""

from __future__ import annotations

import functools
from typing import Any

from exchange.api.errors import API_ERROR_CODES
from exchange.core.errors import RejectCode
from exchange.core.orders import OrderType, SelfTradePrevention, Side, TimeInForce
from exchange.core.units import U64_MAX

_U64 = {"type": "integer", "minimum": 0, "maximum": U64_MAX}
_MARKET_ID = {"type": "integer", "minimum": 0, "maximum": 65535}
_SUB = {"type": "integer", "minimum": 0, "maximum": 65535}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ref("Error"), "refused; nothing changed") for s in statuses}


_AUTH_ERRORS = (400, 401, 403, 429)


def _private_get(
    summary: str, schema: dict[str, Any], params: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "security": [{"pubkey": [], "timestamp": [], "nonce": [], "signature": []}],
            "parameters": params,
            "responses": {"200": _json(schema, "ok"), **_errors(*_AUTH_ERRORS)},
        }
    }


def _private_post(
    summary: str, body: dict[str, Any], schema: dict[str, Any], *extra: int
) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": [{"pubkey": [], "timestamp": [], "nonce": [], "signature": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": _json(schema, "processed by the engine"),
                **_errors(*_AUTH_ERRORS, *extra),
            },
        }
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_MARKET_PATH = {"name": "market_id", "in": "path", "required": True, "schema": _MARKET_ID}
_LEVELS = {
    "type": "array",
    "items": {"type": "array", "prefixItems": [_U64, _U64], "minItems": 2, "maxItems": 2},
    "description": "[price_ticks, num_base_lots], best first",
}


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The whole document (cached; treat as read-only)."""
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {
                    "type": "string",
                    "enum": [*API_ERROR_CODES, "BODY_TOO_LARGE", "METHOD_NOT_ALLOWED"],
                },
                "message": {"type": "string"},
            },
        },
        "Market": {
            "type": "object",
            "properties": {
                "market_id": _MARKET_ID,
                "symbol": {"type": "string"},
                "tick_size": {**_U64, "description": "PRICE_PRECISION (1e6) quote per base unit"},
                "lot_size": {**_U64, "description": "BASE_PRECISION (1e9) base units"},
                "min_size_lots": _U64,
                "max_size_lots": _U64,
                "max_price_ticks": _U64,
                "max_open_orders_per_account": _U64,
            },
        },
        "Book": {
            "type": "object",
            "required": ["market_id", "book_seq", "bids", "asks"],
            "properties": {
                "market_id": _MARKET_ID,
                "book_seq": {**_U64, "description": "deltas of this market so far"},
                "last_event_seq": _U64,
                "bids": _LEVELS,
                "asks": _LEVELS,
            },
        },
        "Trade": {
            "type": "object",
            "properties": {
                "seq": _U64,
                "ts_ns": _U64,
                "market_id": _MARKET_ID,
                "price_ticks": _U64,
                "num_base_lots": _U64,
                "taker_side": {"type": "string", "enum": [s.name for s in Side]},
            },
        },
        "Ticker": {"type": "object", "additionalProperties": {"type": "integer"}},
        "PlaceOrder": {
            "type": "object",
            "additionalProperties": False,
            "required": ["market_id", "side", "price", "size_base"],
            "properties": {
                "market_id": _MARKET_ID,
                "sub_account_id": _SUB,
                "side": {"type": "string", "enum": [s.name for s in Side]},
                "price": {**_U64, "description": "PRICE_PRECISION (1e6) quote per whole base unit"},
                "size_base": {**_U64, "description": "BASE_PRECISION (1e9) base units"},
                "order_type": {"type": "string", "enum": [t.name for t in OrderType]},
                "time_in_force": {"type": "string", "enum": [t.name for t in TimeInForce]},
                "client_order_id": _U64,
                "trigger_price": _U64,
                "reduce_only": {"type": "boolean"},
                "stp_mode": {"type": "string", "enum": [m.name for m in SelfTradePrevention]},
                "expire_at_ns": _U64,
            },
        },
        "CancelOrder": {
            "type": "object",
            "additionalProperties": False,
            "required": ["market_id"],
            "description": "exactly one of order_id, client_order_id (with sub_account_id)",
            "properties": {
                "market_id": _MARKET_ID,
                "sub_account_id": _SUB,
                "order_id": _U64,
                "client_order_id": _U64,
            },
        },
        "AmendOrder": {
            "type": "object",
            "additionalProperties": False,
            "required": ["market_id", "order_id", "new_price", "new_size_base"],
            "properties": {
                "market_id": _MARKET_ID,
                "order_id": _U64,
                "new_price": _U64,
                "new_size_base": _U64,
            },
        },
        "CancelAll": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"market_id": _MARKET_ID, "sub_account_id": _SUB},
        },
        "CommandResult": {
            "type": "object",
            "required": ["status", "order_id", "events"],
            "properties": {
                "status": {"type": "string", "enum": ["ACCEPTED", "REJECTED"]},
                "order_id": _U64,
                "client_order_id": _U64,
                "reject_code": {"type": "integer", "enum": [int(c) for c in RejectCode]},
                "reject_code_name": {"type": "string", "enum": [c.name for c in RejectCode]},
                "message": {"type": "string"},
                "events": {"type": "array", "items": {"type": "object"}},
            },
        },
        "BatchResult": {
            "type": "object",
            "properties": {"results": {"type": "array", "items": _ref("CommandResult")}},
        },
        "Order": {"type": "object"},
    }
    header = {"type": "apiKey", "in": "header"}
    paths: dict[str, Any] = {
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format 0.0.4)",
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/v1/markets": {
            "get": {
                "summary": "Markets and their specs",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"markets": {"type": "array", "items": _ref("Market")}},
                        },
                        "ok",
                    ),
                    **_errors(429),
                },
            }
        },
        "/v1/markets/{market_id}/book": {
            "get": {
                "summary": "L2 book snapshot",
                "parameters": [
                    _MARKET_PATH,
                    _query("depth", {"type": "integer", "minimum": 1}, "levels per side"),
                ],
                "responses": {"200": _json(_ref("Book"), "ok"), **_errors(400, 404, 429)},
            }
        },
        "/v1/markets/{market_id}/trades": {
            "get": {
                "summary": "Recent trades, newest first",
                "parameters": [
                    _MARKET_PATH,
                    _query("limit", {"type": "integer", "minimum": 1}, "how many"),
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "market_id": _MARKET_ID,
                                "trades": {"type": "array", "items": _ref("Trade")},
                            },
                        },
                        "ok",
                    ),
                    **_errors(400, 404, 429),
                },
            }
        },
        "/v1/markets/{market_id}/ticker": {
            "get": {
                "summary": "Top of book and last trade",
                "parameters": [_MARKET_PATH],
                "responses": {"200": _json(_ref("Ticker"), "ok"), **_errors(400, 404, 429)},
            }
        },
        "/v1/orders": _private_post(
            "Place an order", _ref("PlaceOrder"), _ref("CommandResult"), 404
        ),
        "/v1/orders/batch": _private_post(
            "Place up to 50 orders (all checked first: one bad item refuses the batch)",
            {
                "type": "object",
                "required": ["orders"],
                "properties": {
                    "orders": {
                        "type": "array",
                        "items": _ref("PlaceOrder"),
                        "minItems": 1,
                        "maxItems": 50,
                    }
                },
            },
            _ref("BatchResult"),
            404,
        ),
        "/v1/orders/cancel": _private_post(
            "Cancel an order", _ref("CancelOrder"), _ref("CommandResult"), 404
        ),
        "/v1/orders/cancel-batch": _private_post(
            "Cancel up to 50 orders",
            {
                "type": "object",
                "required": ["cancels"],
                "properties": {
                    "cancels": {
                        "type": "array",
                        "items": _ref("CancelOrder"),
                        "minItems": 1,
                        "maxItems": 50,
                    }
                },
            },
            _ref("BatchResult"),
            404,
        ),
        "/v1/orders/cancel-all": _private_post(
            "Cancel every open order in scope (omitted fields: all)",
            _ref("CancelAll"),
            {
                "type": "object",
                "properties": {"canceled_order_ids": {"type": "array", "items": _U64}},
            },
            404,
        ),
        "/v1/orders/amend": _private_post(
            "Amend price and/or size", _ref("AmendOrder"), _ref("CommandResult"), 404
        ),
        "/v1/orders/open": _private_get(
            "Open orders",
            {"type": "object", "properties": {"orders": {"type": "array", "items": _ref("Order")}}},
            [
                _query("market_id", _MARKET_ID, "one market"),
                _query("sub_account_id", _SUB, "one sub-account"),
            ],
        ),
        "/v1/orders/history": _private_get(
            "The owner's order events, oldest first",
            {
                "type": "object",
                "properties": {"events": {"type": "array", "items": {"type": "object"}}},
            },
            [_query("limit", {"type": "integer", "minimum": 1}, "how many")],
        ),
        "/v1/fills": _private_get(
            "The owner's fills, newest first",
            {
                "type": "object",
                "properties": {"fills": {"type": "array", "items": {"type": "object"}}},
            },
            [_query("limit", {"type": "integer", "minimum": 1}, "how many")],
        ),
        "/v1/markets/{market_id}/prices": {
            "get": {
                "summary": "Index (oracle), mark and funding of a market",
                "parameters": [_MARKET_PATH],
                "responses": {"200": _json({"type": "object"}, "ok"), **_errors(400, 404, 429)},
            }
        },
        "/v1/balances": _private_get(
            "Collateral and cumulative PnL, fees, funding per sub-account (QUOTE_PRECISION)",
            {
                "type": "object",
                "properties": {"balances": {"type": "array", "items": {"type": "object"}}},
            },
            [],
        ),
        "/v1/margin": _private_get(
            "Cross-margin summary per sub-account: equity, initial, maintenance, free collateral",
            {
                "type": "object",
                "properties": {"margin": {"type": "array", "items": {"type": "object"}}},
            },
            [],
        ),
        "/v1/funding-payments": _private_get(
            "Settled funding, newest first (payment_quote > 0 paid, < 0 received)",
            {
                "type": "object",
                "properties": {"funding_payments": {"type": "array", "items": {"type": "object"}}},
            },
            [_query("limit", {"type": "integer", "minimum": 1}, "how many")],
        ),
        "/v1/positions": _private_get(
            "Open positions (signed base at BASE_PRECISION, cost basis at QUOTE_PRECISION)",
            {
                "type": "object",
                "properties": {"positions": {"type": "array", "items": {"type": "object"}}},
            },
            [],
        ),
    }
    from exchange.api.governance import governance_paths  # it imports aiohttp; this stays light

    paths.update(governance_paths())
    from exchange.api.withdrawals import withdrawal_paths

    paths.update(withdrawal_paths())
    from exchange.api.liquidations import liquidation_paths

    paths.update(liquidation_paths())
    from exchange.api.account import account_paths

    paths.update(account_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "perpdex market-maker API",
            "version": "1",
            "description": (
                "Integers are JSON numbers; names carry units: price / trigger_price at "
                "PRICE_PRECISION (1e6), size_base at BASE_PRECISION (1e9), *_ticks and *_lots "
                "in the market's ticks and lots, *_ns nanoseconds. Private requests are signed "
                "with the owner's ed25519 (Solana) key over 'perpdex-api-v1\\n{timestamp_ms}\\n"
                "{nonce}\\n{METHOD}\\n{path?query}\\n{body}'. Business rejections are 200 with "
                "status REJECTED and the engine's reject code. WebSocket: /ws (see exchange/api/ws.py)."
            ),
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "pubkey": {**header, "name": "X-PD-Pubkey"},
                "timestamp": {**header, "name": "X-PD-Timestamp"},
                "nonce": {**header, "name": "X-PD-Nonce"},
                "signature": {**header, "name": "X-PD-Signature"},
            },
        },
    }
