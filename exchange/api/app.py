"""The aiohttp application: ``create_app(config, engine_runner)``.

Typed ``AppKey``s hold the shared parts; the engine port, the websocket hub and their
teardown live in one ``cleanup_ctx``. Handlers are thin: parse, authenticate, rate-limit,
call the ``OrderService`` or read the read model, answer JSON.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from exchange.api import codec
from exchange.api.account import install_account
from exchange.api.auth import (
    OwnerRegistry,
    ReplayGuard,
    canonical_message,
    parse_timestamp_ms,
    verify_signature,
)
from exchange.api.config import ApiConfig
from exchange.api.engine_port import EnginePort
from exchange.api.errors import (
    ApiError,
    EngineUnavailable,
    MalformedRequest,
    MissingAuth,
    NotFound,
    RateLimited,
    UnknownMarket,
)
from exchange.api.governance import install_governance
from exchange.api.liquidations import install_liquidations
from exchange.api.metrics import install_metrics
from exchange.api.openapi import openapi_document
from exchange.api.ratelimit import RateLimiter
from exchange.api.service import OrderService, Principal, public_trade_json, scoped_json
from exchange.api.signed_routes import json_response
from exchange.api.withdrawals import install_withdrawals
from exchange.core.errors import ExchangeError
from exchange.engine.inline import InlineEngine
from exchange.engine.process import EngineProcess
from exchange.engine.sequencer import EngineRunner

Clock = Callable[[], int]  # nanoseconds since the epoch


CONFIG_KEY = web.AppKey("config", ApiConfig)
PORT_KEY = web.AppKey("engine_port", EnginePort)
SERVICE_KEY = web.AppKey("order_service", OrderService)
REGISTRY_KEY = web.AppKey("owner_registry", OwnerRegistry)
REPLAY_KEY = web.AppKey("replay_guard", ReplayGuard)
KEY_LIMITER_KEY = web.AppKey("key_rate_limiter", RateLimiter)
PUBLIC_LIMITER_KEY = web.AppKey("public_rate_limiter", RateLimiter)
CLOCK_KEY: web.AppKey[Clock] = web.AppKey("clock_ns")


def error_response(err: ApiError) -> web.Response:
    headers = None
    if err.retry_after_seconds is not None:
        headers = {"Retry-After": str(err.retry_after_seconds)}
    return json_response(err.to_json(), err.status, headers)


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every refusal is JSON ``{code, message}``; unexpected failures are 500 INTERNAL."""
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err)
    except web.HTTPRequestEntityTooLarge as exc:
        return json_response({"code": "BODY_TOO_LARGE", "message": exc.text or ""}, 413)
    except web.HTTPNotFound:
        return error_response(NotFound(f"path: expected a known route, got {request.path}"))
    except web.HTTPMethodNotAllowed as exc:
        return json_response(
            {
                "code": "METHOD_NOT_ALLOWED",
                "message": f"method: expected one of {sorted(exc.allowed_methods)}, got {request.method}",
            },
            405,
        )
    except ExchangeError as exc:  # the engine stopped (journal failure) or similar
        return error_response(EngineUnavailable(f"engine: expected to accept work, got {exc}"))


def _now_ns(request: web.Request) -> int:
    now: int = request.app[CLOCK_KEY]()
    return now


def spend_tokens(limiter: RateLimiter, key: str, cost: int, now_ns: int) -> None:
    wait_ns = limiter.take(key, cost, now_ns)
    if wait_ns:
        seconds = -(-wait_ns // 1_000_000_000)
        raise RateLimited(
            f"rate: expected at most {limiter.per_second}/s (burst {limiter.burst}), "
            f"retry in {wait_ns / 1e9:.3f} s",
            retry_after_seconds=seconds,
        )


def public_limit(request: web.Request) -> None:
    """Unsigned requests: one token from the remote address's bucket."""
    spend_tokens(request.app[PUBLIC_LIMITER_KEY], request.remote or "?", 1, _now_ns(request))


def authenticate_parts(
    app: web.Application,
    *,
    pubkey_b58: str | None,
    timestamp: str | None,
    nonce: str | None,
    signature: str | None,
    method: str,
    path: str,
    body: bytes,
) -> Principal:
    """Check one signed message (REST headers or websocket login); record its nonce."""
    if not pubkey_b58 or nonce is None or not signature:
        raise MissingAuth(
            "headers: expected X-PD-Pubkey, X-PD-Timestamp, X-PD-Nonce and X-PD-Signature"
        )
    pubkey, owner_id, sub_account_id = app[REGISTRY_KEY].owner_of(pubkey_b58)
    timestamp_ms = parse_timestamp_ms(timestamp)
    message = canonical_message(method, path, body, timestamp_ms, nonce)
    verify_signature(pubkey, message, signature)
    now_ns = app[CLOCK_KEY]()
    app[REPLAY_KEY].check(pubkey_b58, timestamp_ms, nonce, now_ns // 1_000_000)
    return Principal(pubkey_b58, owner_id, sub_account_id)


async def authenticate(request: web.Request, cost: int = 1) -> tuple[Principal, bytes]:
    """Verify the request's signature and spend ``cost`` tokens of its key; the raw body."""
    body = await request.read()
    h = request.headers
    principal = authenticate_parts(
        request.app,
        pubkey_b58=h.get("X-PD-Pubkey"),
        timestamp=h.get("X-PD-Timestamp"),
        nonce=h.get("X-PD-Nonce"),
        signature=h.get("X-PD-Signature"),
        method=request.method,
        path=request.raw_path,
        body=body,
    )
    spend_tokens(request.app[KEY_LIMITER_KEY], principal.pubkey, cost, _now_ns(request))
    return principal, body


def _market_id(request: web.Request) -> int:
    raw = request.match_info["market_id"]
    if not raw.isdigit() or int(raw) > 65535:
        raise MalformedRequest(f"market_id: expected an integer in 0..65535, got {raw!r}")
    market_id = int(raw)
    if not request.app[PORT_KEY].has_market(market_id):
        raise UnknownMarket(
            f"market_id: expected one of {[m['market_id'] for m in request.app[PORT_KEY].markets()]}, got {market_id}"
        )
    return market_id


# ---------------------------------------------------------------------- public
async def get_openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


async def get_markets(request: web.Request) -> web.Response:
    public_limit(request)
    return json_response({"markets": request.app[PORT_KEY].markets()})


async def get_book(request: web.Request) -> web.Response:
    public_limit(request)
    market_id = _market_id(request)
    depth = codec.int_query(request.query, "depth", 50, 1, request.app[CONFIG_KEY].max_book_depth)
    snap = request.app[PORT_KEY].model.book(market_id, depth)
    assert snap is not None
    return json_response(
        {
            "market_id": market_id,
            "book_seq": snap.book_seq,
            "last_event_seq": request.app[PORT_KEY].model.last_seq,
            "bids": snap.bids,
            "asks": snap.asks,
        }
    )


async def get_trades(request: web.Request) -> web.Response:
    public_limit(request)
    market_id = _market_id(request)
    limit = codec.int_query(
        request.query, "limit", 100, 1, request.app[CONFIG_KEY].recent_trades_kept
    )
    trades = list(request.app[PORT_KEY].model.trades[market_id])[-limit:]
    return json_response(
        {"market_id": market_id, "trades": [public_trade_json(t) for t in reversed(trades)]}
    )


async def get_ticker(request: web.Request) -> web.Response:
    public_limit(request)
    return json_response(request.app[PORT_KEY].model.ticker(_market_id(request)))


# ---------------------------------------------------------------------- private
async def post_order(request: web.Request) -> web.Response:
    principal, body = await authenticate(request)
    result = await request.app[SERVICE_KEY].place(principal, codec.parse_json(body))
    return json_response(result)


async def _authenticate_batch(request: web.Request) -> tuple[Principal, Any]:
    """Authenticate a batch request at one token per item; its body, decoded once."""
    body = await request.read()
    try:
        obj = codec.parse_json(body)
    except MalformedRequest:
        await authenticate(request)  # a malformed body costs one token, then is refused
        raise
    # Charged before the items are checked, so a flood of big batches is throttled by size.
    items = next(iter(obj.values())) if isinstance(obj, dict) and len(obj) == 1 else None
    principal, _ = await authenticate(request, max(1, len(items)) if isinstance(items, list) else 1)
    return principal, obj


async def post_order_batch(request: web.Request) -> web.Response:
    principal, obj = await _authenticate_batch(request)
    results = await request.app[SERVICE_KEY].place_batch(principal, obj)
    return json_response({"results": results})


async def post_cancel(request: web.Request) -> web.Response:
    principal, body = await authenticate(request)
    return json_response(await request.app[SERVICE_KEY].cancel(principal, codec.parse_json(body)))


async def post_cancel_batch(request: web.Request) -> web.Response:
    principal, obj = await _authenticate_batch(request)
    results = await request.app[SERVICE_KEY].cancel_batch(principal, obj)
    return json_response({"results": results})


async def post_cancel_all(request: web.Request) -> web.Response:
    principal, body = await authenticate(request)
    market_id, sub = codec.cancel_all_scope(codec.parse_json(body) if body else {})
    return json_response(await request.app[SERVICE_KEY].cancel_all(principal, market_id, sub))


async def post_amend(request: web.Request) -> web.Response:
    principal, body = await authenticate(request)
    return json_response(await request.app[SERVICE_KEY].amend(principal, codec.parse_json(body)))


def _optional_int_query(request: web.Request, name: str, hi: int) -> int | None:
    if name not in request.query:
        return None
    return codec.int_query(request.query, name, 0, 0, hi)


def _mine(principal: Principal, rows: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    # rows of the principal's owner, cut to its sub-account when the key is limited to one
    if rows is None or principal.sub_account_id is None:
        return rows
    return [r for r in rows if r["sub_account_id"] == principal.sub_account_id]


async def get_open_orders(request: web.Request) -> web.Response:
    principal, _ = await authenticate(request)
    market_id = _optional_int_query(request, "market_id", 65535)
    sub = _optional_int_query(request, "sub_account_id", 65535)
    orders = request.app[PORT_KEY].model.open_orders(principal.owner_id, market_id, sub)
    return json_response({"orders": _mine(principal, orders)})


async def get_order_history(request: web.Request) -> web.Response:
    principal, _ = await authenticate(request)
    cfg = request.app[CONFIG_KEY]
    limit = codec.int_query(request.query, "limit", 100, 1, cfg.history_kept_per_owner)
    history = list(request.app[PORT_KEY].model.owner_history.get(principal.owner_id, ()))
    return json_response({"events": scoped_json(principal, history[-limit:])})


async def get_fills(request: web.Request) -> web.Response:
    principal, _ = await authenticate(request)
    cfg = request.app[CONFIG_KEY]
    limit = codec.int_query(request.query, "limit", 100, 1, cfg.history_kept_per_owner)
    fills = _mine(
        principal, list(request.app[PORT_KEY].model.owner_fills.get(principal.owner_id, ()))
    )
    assert fills is not None
    return json_response({"fills": list(reversed(fills[-limit:]))})


async def get_positions(request: web.Request) -> web.Response:
    principal, _ = await authenticate(request)
    positions = _mine(principal, request.app[PORT_KEY].positions(principal.owner_id))
    return json_response({"positions": positions})


def _needs_clearinghouse(value: Any, what: str) -> Any:
    if value is None:
        raise NotFound(f"{what}: expected an engine running the perp clearinghouse, got none")
    return value


async def get_balances(request: web.Request) -> web.Response:
    principal, _ = await authenticate(request)
    balances = _needs_clearinghouse(
        _mine(principal, request.app[PORT_KEY].balances(principal.owner_id)), "balances"
    )
    return json_response({"balances": balances})


async def get_margin(request: web.Request) -> web.Response:
    principal, _ = await authenticate(request)
    port = request.app[PORT_KEY]
    summaries = _needs_clearinghouse(
        _mine(principal, port.margin_summaries(principal.owner_id)), "margin"
    )
    return json_response({"margin": summaries})


async def get_funding_payments(request: web.Request) -> web.Response:
    principal, _ = await authenticate(request)
    cfg = request.app[CONFIG_KEY]
    limit = codec.int_query(request.query, "limit", 100, 1, cfg.history_kept_per_owner)
    payments = _mine(principal, request.app[PORT_KEY].funding_payments(principal.owner_id))
    assert payments is not None
    return json_response({"funding_payments": list(reversed(payments[-limit:]))})


async def get_prices(request: web.Request) -> web.Response:
    public_limit(request)
    market_id = _market_id(request)
    prices = request.app[PORT_KEY].market_prices(market_id)
    return json_response(_needs_clearinghouse(prices, "prices"))


# ---------------------------------------------------------------------- factory
def _engine_settings(engine_runner: EngineRunner | EngineProcess | InlineEngine) -> Any:
    # liquidation_max_oracle_age_ns: the in-process core's, or the engine's config
    if isinstance(engine_runner, EngineRunner):
        return engine_runner.engine.core
    return engine_runner.config


def create_app(
    config: ApiConfig,
    engine_runner: EngineRunner | EngineProcess | InlineEngine,
    *,
    clock_ns: Clock = time.time_ns,
) -> web.Application:
    """The API application over a running engine (the caller owns and closes the runner)."""
    from exchange.api import ws  # the websocket edge uses the keys defined above

    app = web.Application(middlewares=[errors_middleware], client_max_size=config.max_body_bytes)
    port = EnginePort(
        engine_runner,
        recent_trades_kept=config.recent_trades_kept,
        history_kept_per_owner=config.history_kept_per_owner,
    )
    app[CONFIG_KEY] = config
    app[PORT_KEY] = port
    app[SERVICE_KEY] = OrderService(port, max_batch_orders=config.max_batch_orders)
    app[REGISTRY_KEY] = OwnerRegistry(config.owners)
    app[REPLAY_KEY] = ReplayGuard(config.auth_window_ms)
    app[KEY_LIMITER_KEY] = RateLimiter(config.rate_limit_burst, config.rate_limit_per_second)
    app[PUBLIC_LIMITER_KEY] = RateLimiter(
        config.public_rate_limit_burst, config.public_rate_limit_per_second
    )
    app[CLOCK_KEY] = clock_ns

    async def engine_port_ctx(app: web.Application) -> AsyncIterator[None]:
        await port.start()
        yield
        port.close()

    app.cleanup_ctx.append(engine_port_ctx)
    app.cleanup_ctx.append(ws.hub_ctx)
    install_metrics(app, port)  # GET /metrics, request latencies, event counters
    install_governance(app, port, public_limit)  # GET risk params, proposals (issue 8)
    # POST/GET withdrawals, GET deposits (issue 7)
    install_withdrawals(app, port, authenticate, kept_per_owner=config.history_kept_per_owner)
    # POST liquidations, GET candidates, GET an account's ADL ranks (issue 6)
    install_liquidations(
        app, port, authenticate, public_limit, engine_core=_engine_settings(engine_runner),
        clock_ns=clock_ns,
    )  # fmt: skip
    # keys of registered wallets (open sign-up) and GET /v1/account
    install_account(app, port, authenticate, app[REGISTRY_KEY])
    r = app.router
    r.add_get("/openapi.json", get_openapi)
    r.add_get("/v1/markets", get_markets)
    r.add_get("/v1/markets/{market_id}/book", get_book)
    r.add_get("/v1/markets/{market_id}/trades", get_trades)
    r.add_get("/v1/markets/{market_id}/ticker", get_ticker)
    r.add_post("/v1/orders", post_order)
    r.add_post("/v1/orders/batch", post_order_batch)
    r.add_post("/v1/orders/cancel", post_cancel)
    r.add_post("/v1/orders/cancel-batch", post_cancel_batch)
    r.add_post("/v1/orders/cancel-all", post_cancel_all)
    r.add_post("/v1/orders/amend", post_amend)
    r.add_get("/v1/orders/open", get_open_orders)
    r.add_get("/v1/orders/history", get_order_history)
    r.add_get("/v1/fills", get_fills)
    r.add_get("/v1/positions", get_positions)
    r.add_get("/v1/balances", get_balances)
    r.add_get("/v1/margin", get_margin)
    r.add_get("/v1/funding-payments", get_funding_payments)
    r.add_get("/v1/markets/{market_id}/prices", get_prices)
    r.add_get("/ws", ws.websocket_handler)
    return app
