"""The websocket edge ``/ws``: market data fan-out, signed login, order entry, safety timers.

Client -> server, one JSON object per text frame, ``id`` (optional) echoed in the answer::

    {"op": "subscribe", "channel": "book" | "trades" | "ticker", "market_id": 1}
    {"op": "subscribe", "channel": "account"}                       (after login)
    {"op": "unsubscribe", ...same fields...}
    {"op": "login", "pubkey": ..., "timestamp_ms": ..., "nonce": ..., "signature": ...,
     "cancel_on_disconnect": false}
    {"op": "place" | "cancel" | "amend", "id": 7, "params": {...same body as REST...}}
    {"op": "place_batch", "params": {"orders": [...]}}  /  {"op": "cancel_batch", ...}
    {"op": "cancel_all", "params": {"market_id": 1}}
    {"op": "dead_man", "timeout_ms": 5000}      (re-send to refresh; 0 disarms)
    {"op": "ping"}

The login signs ``canonical_message("WS", "/ws", body, timestamp_ms, nonce)`` with body
``cancel_on_disconnect=1`` or ``cancel_on_disconnect=0``, so the option is signed too.

Server -> client: ``{"id", "result"}`` or ``{"id", "error": {code, message}}`` for requests;
``{"channel": "book", "type": "snapshot" | "delta", "market_id", "book_seq", "bids",
"asks"}`` where a delta lists changed levels as ``[price_ticks, num_base_lots]`` (0 = level
gone) and ``book_seq`` goes up by exactly one per delta of that market: a jump means a lost
delta, and the client resubscribes for a fresh snapshot. ``trades``, ``ticker``, ``account``
(the owner's order events and fills) and ``dead_man`` (fired) channels carry the rest.

Requests of one session reach the engine in frame order; a cancel or amend names an order
the API has acknowledged (its id comes from that answer). A key limited to one sub-account
(see ``auth.OwnerRegistry``) acts on and streams that sub-account only.

Cancel-on-disconnect (opt-in at login) and the dead-man timer cancel every open order of
the logged-in key's scope (the owner, or its one sub-account). A session that falls ``ws_send_queue_max`` messages behind is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from functools import partial
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from solders.keypair import Keypair

from exchange.api import codec
from exchange.api.app import (
    CLOCK_KEY,
    CONFIG_KEY,
    KEY_LIMITER_KEY,
    PORT_KEY,
    PUBLIC_LIMITER_KEY,
    SERVICE_KEY,
    authenticate_parts,
    spend_tokens,
)
from exchange.api.auth import canonical_message
from exchange.api.errors import ApiError, MalformedRequest, MissingAuth, UnknownMarket
from exchange.api.read_model import ReadUpdate
from exchange.api.service import Principal, public_trade_json, scoped_json
from exchange.core.errors import ExchangeError
from exchange.core.events import Event

HUB_KEY: web.AppKey[WsHub] = web.AppKey("ws_hub")
_TEXT = WSMsgType.TEXT
_MARKET_CHANNELS = ("book", "trades", "ticker")
_EMPTY_ACCOUNT = orjson.dumps({"channel": "account", "events": []})
# A server frame's header: FIN + text opcode, then the payload length in 1, 2 or 8 bytes.
_HEADER_1 = struct.Struct("!BB").pack
_HEADER_2 = struct.Struct("!BBH").pack
_HEADER_8 = struct.Struct("!BBQ").pack


class WsSession:
    """One websocket connection: its subscriptions, its login and its outgoing frames."""

    def __init__(
        self, ws: web.WebSocketResponse, request: web.Request, hub: WsHub, remote: str
    ) -> None:
        self.ws = ws
        self.app = request.app
        self.hub = hub
        self.remote = remote  # rate-limit key before login
        self.principal: Principal | None = None
        self.cancel_on_disconnect = False
        self.subscriptions: set[tuple[str, int]] = set()  # (channel, market_id or owner_id)
        self.dead_man: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Future[Any]] = set()  # dead-man cancels still running
        self.pending = 0  # order requests not answered yet
        self.answered: asyncio.Future[None] | None = None  # set when pending drops to 0
        self.overflowed = False
        # what every order request uses, looked up once (not per frame)
        self.service = self.app[SERVICE_KEY]
        self.port = self.app[PORT_KEY]
        self.key_limiter = self.app[KEY_LIMITER_KEY]
        self.clock = self.app[CLOCK_KEY]
        self._loop = asyncio.get_running_loop()
        self._transport = request.transport
        # Frames are written by this module (one transport write per loop turn) unless the
        # session negotiated permessage-deflate: then aiohttp's writer compresses each one.
        self._frames_here = ws.compress == 0
        self._max_queued = self.app[CONFIG_KEY].ws_send_queue_max
        self._out: deque[bytes] = deque()  # frames not handed to the transport yet, oldest first
        self._flush_due = False
        self._slow: asyncio.Task[None] | None = None  # aiohttp's writer is sending _out
        self._closer: asyncio.Task[Any] | None = None

    def send(self, data: bytes) -> None:
        """Queue one frame for the end of this loop turn; a consumer too far behind is
        dropped (it must resync anyway)."""
        if self.overflowed:
            return
        out = self._out
        if len(out) >= self._max_queued:
            self._overflow()
            return
        out.append(data)
        if not self._flush_due and self._slow is None:
            self._flush_due = True
            if self.port.delivering:  # answers of a hand-off: written when all are queued
                self.hub.flush_due.append(self)
            else:
                self._loop.call_soon(self.write_queued)

    def send_json(self, obj: Any) -> None:
        self.send(orjson.dumps(obj))

    def write_queued(self) -> None:
        """Write the frames queued so far (at the end of a loop turn or of a delivery)."""
        # Every frame queued in this turn (a group commit's acks, a batch's fan-out) goes
        # out in ONE transport write: one syscall and one wake-up of the reader, not one
        # per frame. Server frames are unmasked and uncompressed here, so frames are just
        # header + payload, back to back (RFC 6455 section 5.2).
        self._flush_due = False
        out = self._out
        if self._slow is not None or self.overflowed or not out:
            return
        transport = self._transport
        if transport is None or transport.is_closing() or self.ws.closed:
            out.clear()  # the connection is going: nobody will read these
            return
        if not self._frames_here or transport.get_write_buffer_size():
            # compression, or the reader is behind (asyncio holds unsent bytes): aiohttp's
            # writer sends one frame at a time with its own flow control (it waits while
            # the transport is paused); frames queue meanwhile up to ws_send_queue_max.
            self._slow = asyncio.ensure_future(self._send_slowly())
            return
        data = text_frames(out)
        out.clear()
        transport.write(data)

    async def _send_slowly(self) -> None:
        out = self._out
        try:
            while out:
                await self.ws.send_frame(out.popleft(), _TEXT)
        except ConnectionResetError:
            out.clear()  # closing: the frames have nowhere to go
        finally:
            self._slow = None

    def _overflow(self) -> None:
        self.overflowed = True
        self._out.clear()
        if self._slow is not None:
            self._slow.cancel()  # between frames or waiting for a drain: nothing half sent
        self._closer = asyncio.ensure_future(self.ws.close(code=1008, message=b"slow consumer"))

    async def close_output(self) -> None:
        """Stop sending (the handler is returning): a pending slow-consumer close finishes."""
        self.overflowed = True
        self._out.clear()
        for task in (self._slow, self._closer):
            if task is not None:
                if task is self._slow:
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
                    await task


def text_frames(payloads: Iterable[bytes]) -> bytes:
    """Server-to-client text frames (final, unmasked, uncompressed), back to back."""
    parts: list[bytes] = []
    for data in payloads:
        n = len(data)
        if n < 126:
            parts.append(_HEADER_1(0x81, n))
        elif n < 65536:
            parts.append(_HEADER_2(0x81, 126, n))
        else:
            parts.append(_HEADER_8(0x81, 127, n))
        parts.append(data)
    return b"".join(parts)


class WsHub:
    """Subscription indexes and the fan-out of every engine batch to the sessions."""

    def __init__(self) -> None:
        self.sessions: set[WsSession] = set()
        self.subscribers: dict[tuple[str, int], set[WsSession]] = {}
        self.flush_due: list[WsSession] = []  # sessions sent to during a delivery

    def flush_sessions(self) -> None:
        """Write what the answers of one engine hand-off queued: one write per session."""
        due, self.flush_due = self.flush_due, []
        for session in due:
            session.write_queued()

    def add(self, session: WsSession, key: tuple[str, int]) -> None:
        self.subscribers.setdefault(key, set()).add(session)
        session.subscriptions.add(key)

    def remove(self, session: WsSession, key: tuple[str, int]) -> None:
        subs = self.subscribers.get(key)
        if subs is not None:
            subs.discard(session)
            if not subs:
                del self.subscribers[key]
        session.subscriptions.discard(key)

    def drop(self, session: WsSession) -> None:
        for key in list(session.subscriptions):
            self.remove(session, key)
        self.sessions.discard(session)

    def on_batch(self, events: list[Event], update: ReadUpdate) -> None:
        """Serialise each message once, queue it to every subscriber (engine order kept)."""
        subscribers = self.subscribers
        for d in update.book_deltas:
            subs = subscribers.get(("book", d.market_id))
            if subs:
                data = orjson.dumps(
                    {
                        "channel": "book",
                        "type": "delta",
                        "market_id": d.market_id,
                        "book_seq": d.book_seq,
                        "bids": d.bids,
                        "asks": d.asks,
                    }
                )
                for s in subs:
                    s.send(data)
        if update.trades:
            by_market: dict[int, list[dict[str, Any]]] = {}
            for t in update.trades:
                if ("trades", t.market_id) in subscribers:
                    by_market.setdefault(t.market_id, []).append(public_trade_json(t))
            for market_id, trades in by_market.items():
                data = orjson.dumps({"channel": "trades", "market_id": market_id, "trades": trades})
                for s in subscribers[("trades", market_id)]:
                    s.send(data)
        for ticker in update.tickers:
            subs = subscribers.get(("ticker", ticker["market_id"]))
            if subs:
                data = orjson.dumps({"channel": "ticker", **ticker})
                for s in subs:
                    s.send(data)
        for owner_id, owner_events in update.owner_events.items():
            subs = subscribers.get(("account", owner_id))
            if subs:
                # one message per distinct key scope (whole owner, or one sub-account)
                frames: dict[int | None, bytes] = {}
                for s in subs:
                    assert s.principal is not None
                    scope = s.principal.sub_account_id
                    frame = frames.get(scope)
                    if frame is None:
                        body = scoped_json(s.principal, owner_events)
                        frame = orjson.dumps({"channel": "account", "events": body})
                        frames[scope] = frame
                    if frame != _EMPTY_ACCOUNT:
                        s.send(frame)


async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
    """The hub follows the engine port for the app's lifetime; sessions close on shutdown."""
    hub = WsHub()
    app[HUB_KEY] = hub
    port = app[PORT_KEY]
    remove = port.listen(hub.on_batch)
    remove_hook = port.after_delivery(hub.flush_sessions)
    yield
    remove()
    for session in list(hub.sessions):
        await session.ws.close(code=1001, message=b"server shutdown")
    remove_hook()  # last: answers delivered while the sessions close are still written


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    app = request.app
    hub = app[HUB_KEY]
    session = WsSession(ws, request, hub, request.remote or "?")
    hub.sessions.add(session)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                session.send_json(
                    {"error": {"code": "MALFORMED_REQUEST", "message": "expected text frames"}}
                )
                continue
            _dispatch(session, hub, msg.data)
    finally:
        hub.drop(session)
        if session.dead_man is not None:
            session.dead_man.cancel()
        if session.cancel_on_disconnect and session.principal is not None:
            with contextlib.suppress(ExchangeError):
                await app[SERVICE_KEY].cancel_all(session.principal, None, None)
        for task in list(session.tasks):
            with contextlib.suppress(BaseException):
                await task
        if session.pending:  # order requests in the engine: their answers come first
            session.answered = asyncio.get_running_loop().create_future()
            await session.answered
        await session.close_output()
    return ws


def _dispatch(session: WsSession, hub: WsHub, text: str) -> None:
    request_id: Any = None
    try:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise MalformedRequest(f"frame: expected JSON, got {exc}") from None
        if not isinstance(msg, dict):
            raise MalformedRequest(f"frame: expected a JSON object, got {type(msg).__name__}")
        request_id = msg.get("id")
        op = msg.get("op")
        if op == "ping":
            session.send_json({"id": request_id, "result": "pong"})
        elif op in ("subscribe", "unsubscribe"):
            _subscribe(session, hub, msg, request_id)
        elif op == "login":
            _login(session, msg, request_id)
        elif op == "dead_man":
            _dead_man(session, msg, request_id)
        elif op in _ORDER_OPS:
            _order_op(session, op, msg, request_id)
        else:
            raise MalformedRequest(
                f"op: expected one of {sorted(('ping', 'subscribe', 'unsubscribe', 'login', 'dead_man', *_ORDER_OPS))}, got {op!r}"
            )
    except ApiError as err:
        session.send_json({"id": request_id, "error": err.to_json()})


def _subscribe(session: WsSession, hub: WsHub, msg: dict[str, Any], request_id: Any) -> None:
    # a book subscription sends a whole snapshot: charged like a public REST request
    spend_tokens(session.app[PUBLIC_LIMITER_KEY], session.remote, 1, session.app[CLOCK_KEY]())
    channel = msg.get("channel")
    fields = set(msg) - {"op", "id", "channel", "market_id"}
    if fields:
        raise MalformedRequest(f"{msg['op']}: unknown fields {sorted(fields)}")
    port = session.app[PORT_KEY]
    if channel == "account":
        if session.principal is None:
            raise MissingAuth("account channel: expected a login first")
        key = ("account", session.principal.owner_id)
    elif channel in _MARKET_CHANNELS:
        market_id = codec.int_field("market_id", msg.get("market_id"), 0, 65535)
        if not port.has_market(market_id):
            raise UnknownMarket(f"market_id: expected a listed market, got {market_id}")
        key = (channel, market_id)
    else:
        raise MalformedRequest(
            f"channel: expected one of {[*_MARKET_CHANNELS, 'account']}, got {channel!r}"
        )
    if msg["op"] == "unsubscribe":
        hub.remove(session, key)
        session.send_json({"id": request_id, "result": {"unsubscribed": channel}})
        return
    hub.add(session, key)
    session.send_json({"id": request_id, "result": {"subscribed": channel}})
    model = port.model
    # Snapshot and subscription happen in one synchronous step on the loop: no batch can
    # be folded in between, so the first delta after it has book_seq = snapshot's + 1.
    if channel == "book":
        snap = model.book(key[1], 1 << 62)
        assert snap is not None
        session.send_json(
            {
                "channel": "book",
                "type": "snapshot",
                "market_id": snap.market_id,
                "book_seq": snap.book_seq,
                "bids": snap.bids,
                "asks": snap.asks,
            }
        )
    elif channel == "ticker":
        session.send_json({"channel": "ticker", **model.ticker(key[1])})


def _login(session: WsSession, msg: dict[str, Any], request_id: Any) -> None:
    if session.principal is not None:
        raise MalformedRequest("login: expected one login per session, got a second")
    unknown = set(msg) - {
        "op",
        "id",
        "pubkey",
        "timestamp_ms",
        "nonce",
        "signature",
        "cancel_on_disconnect",
    }
    if unknown:
        raise MalformedRequest(f"login: unknown fields {sorted(unknown)}")
    cod = msg.get("cancel_on_disconnect", False)
    if not isinstance(cod, bool):
        raise MalformedRequest(f"login.cancel_on_disconnect: expected true or false, got {cod!r}")
    timestamp = msg.get("timestamp_ms")
    principal = authenticate_parts(
        session.app,
        pubkey_b58=msg.get("pubkey") if isinstance(msg.get("pubkey"), str) else None,
        timestamp=str(timestamp) if type(timestamp) is int else None,
        nonce=msg.get("nonce") if isinstance(msg.get("nonce"), str) else None,
        signature=msg.get("signature") if isinstance(msg.get("signature"), str) else None,
        method="WS",
        path="/ws",
        body=login_body(cod),
    )
    session.principal = principal
    session.cancel_on_disconnect = cod
    session.send_json(
        {"id": request_id, "result": {"owner_id": principal.owner_id, "cancel_on_disconnect": cod}}
    )


def login_body(cancel_on_disconnect: bool) -> bytes:
    """The signed body of a websocket login."""
    return b"cancel_on_disconnect=1" if cancel_on_disconnect else b"cancel_on_disconnect=0"


def signed_login(
    keypair: Keypair, timestamp_ms: int, nonce: str, cancel_on_disconnect: bool
) -> dict[str, Any]:
    """Client side: a websocket login request signed with ``keypair`` (add its ``id``)."""
    message = canonical_message("WS", "/ws", login_body(cancel_on_disconnect), timestamp_ms, nonce)
    return {
        "op": "login",
        "pubkey": str(keypair.pubkey()),
        "timestamp_ms": timestamp_ms,
        "nonce": nonce,
        "signature": str(keypair.sign_message(message)),
        "cancel_on_disconnect": cancel_on_disconnect,
    }


def _need_login(session: WsSession) -> Principal:
    if session.principal is None:
        raise MissingAuth("op: expected a login first")
    return session.principal


def _dead_man(session: WsSession, msg: dict[str, Any], request_id: Any) -> None:
    principal = _need_login(session)
    cfg = session.app[CONFIG_KEY]
    timeout_ms = codec.int_field("timeout_ms", msg.get("timeout_ms"), 0, cfg.max_dead_man_ms)
    if session.dead_man is not None:
        session.dead_man.cancel()
        session.dead_man = None
    if timeout_ms:
        loop = asyncio.get_running_loop()
        session.dead_man = loop.call_later(timeout_ms / 1000, _fire_dead_man, session, principal)
    session.send_json({"id": request_id, "result": {"timeout_ms": timeout_ms}})


def _fire_dead_man(session: WsSession, principal: Principal) -> None:
    session.dead_man = None

    async def cancel() -> None:
        result = await session.app[SERVICE_KEY].cancel_all(principal, None, None)
        session.send_json({"channel": "dead_man", "type": "fired", **result})

    _spawn(session, cancel())


_ORDER_OPS = ("place", "cancel", "amend", "place_batch", "cancel_batch", "cancel_all")


def _order_op(session: WsSession, op: str, msg: dict[str, Any], request_id: Any) -> None:
    principal = _need_login(session)
    params = msg.get("params")
    service = session.service
    cost = 1
    if op in ("place_batch", "cancel_batch") and isinstance(params, dict):
        items = params.get("orders" if op == "place_batch" else "cancels")
        cost = max(1, len(items)) if isinstance(items, list) else 1
    spend_tokens(session.key_limiter, principal.pubkey, cost, session.clock())
    # Checked and queued for the engine now, so requests of a session reach the engine in
    # frame order; answered by _answer when the engine port delivers their events.
    if op == "place":
        request = service.place_request(principal, params)
    elif op == "place_batch":
        request = service.place_batch_request(principal, params)
    elif op == "cancel":
        request = service.cancel_request(principal, params)
    elif op == "cancel_batch":
        request = service.cancel_batch_request(principal, params)
    elif op == "amend":
        request = service.amend_request(principal, params)
    else:
        market_id, sub = codec.cancel_all_scope(params if params is not None else {})
        request = service.cancel_all_request(principal, market_id, sub)
    cmds, build = request
    if not cmds:  # nothing to cancel
        session.send_json({"id": request_id, "result": build([])})
        return
    batch = op == "place_batch" or op == "cancel_batch"
    session.pending += 1
    service.port.submit_then(cmds, partial(_answer, session, request_id, build, batch))


def _answer(
    session: WsSession,
    request_id: Any,
    build: Callable[[list[list[Event]]], Any],
    batch: bool,
    outcome: list[list[Event]] | BaseException,
) -> None:
    """Answer one order request once its commands are durable (on the loop, straight from
    the engine port's delivery: no Future or task per request)."""
    session.pending -= 1
    if not session.pending and session.answered is not None:
        session.answered.set_result(None)
    if isinstance(outcome, BaseException):
        if not isinstance(outcome, ExchangeError):
            raise outcome
        session.send_json(
            {"id": request_id, "error": {"code": "ENGINE_UNAVAILABLE", "message": str(outcome)}}
        )
        return
    result = build(outcome)
    session.send_json({"id": request_id, "result": {"results": result} if batch else result})


def _spawn(session: WsSession, coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    session.tasks.add(task)
    task.add_done_callback(session.tasks.discard)
