"""WebSocket client: local L2 books with gap detection and resync, reconnect with capped
backoff (login and every subscription restored), order entry with request/answer matching.

Messages other than book updates and answers (trades, ticker, account, dead_man) are put on
``messages`` (an ``asyncio.Queue``) for the application to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

import aiohttp
import orjson
from solders.keypair import Keypair

from exchange.api.ws import signed_login
from exchange.client.rest import ApiRequestError, Signer
from exchange.client.types import CommandResult, L2Book

DEFAULT_BACKOFF_S = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class PerpdexWs:
    """``ws = PerpdexWs(url, keypair); await ws.connect(); book = await ws.subscribe_book(1)``."""

    def __init__(
        self,
        url: str,
        keypair: Keypair | None = None,
        *,
        cancel_on_disconnect: bool = False,
        backoff_s: tuple[float, ...] = DEFAULT_BACKOFF_S,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = url
        self.signer = Signer(keypair) if keypair is not None else None
        self.cancel_on_disconnect = cancel_on_disconnect
        self.backoff_s = backoff_s
        self.books: dict[int, L2Book] = {}
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.resyncs = 0
        self.reconnects = 0
        self._subscriptions: set[tuple[str, int | None]] = set()
        self._session = session
        self._own_session = session is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._snapshot_waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._connected = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._reader: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # resyncs in flight (kept referenced)
        self._closing = False

    # ------------------------------------------------------------------ lifecycle
    async def connect(self) -> None:
        """Connect (and log in when a key was given); keeps reconnecting until ``close``."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        await self._open()
        self._runner = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._own_session and self._session is not None:
            await self._session.close()

    async def _open(self) -> None:
        assert self._session is not None
        self._ws = await self._session.ws_connect(self.url)
        self._connected.set()
        reader = asyncio.ensure_future(self._read(self._ws))
        try:
            if self.signer is not None:
                await self._login()
            for channel, market_id in sorted(self._subscriptions, key=str):
                if channel == "book" and market_id is not None:
                    self.books[market_id].book_seq = -1
                await self._send_subscribe("subscribe", channel, market_id)
        finally:
            self._reader = reader

    async def _run(self) -> None:
        while not self._closing:
            assert self._reader is not None
            await self._reader  # returns when the connection drops
            self._connected.clear()
            self._fail_pending(ConnectionError("websocket closed"))
            if self._closing:
                return
            for attempt in itertools.count():
                await asyncio.sleep(self.backoff_s[min(attempt, len(self.backoff_s) - 1)])
                try:
                    await self._open()
                except (aiohttp.ClientError, OSError, ConnectionError):
                    continue
                self.reconnects += 1
                break

    def _fail_pending(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)

    # ------------------------------------------------------------------ requests
    async def request(self, msg: dict[str, Any]) -> Any:
        """Send one request and wait for its answer (``ApiRequestError`` on a refusal)."""
        ws = self._ws
        if ws is None or ws.closed:
            raise ConnectionError("websocket: expected an open connection, got none")
        request_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        await ws.send_str(orjson.dumps({**msg, "id": request_id}).decode())
        return await fut

    async def _login(self) -> None:
        assert self.signer is not None
        ts = time.time_ns() // 1_000_000
        await self.request(
            signed_login(self.signer.keypair, ts, self.signer.nonce(), self.cancel_on_disconnect)
        )

    async def _send_subscribe(self, op: str, channel: str, market_id: int | None) -> None:
        msg: dict[str, Any] = {"op": op, "channel": channel}
        if market_id is not None:
            msg["market_id"] = market_id
        await self.request(msg)

    async def subscribe(self, channel: str, market_id: int | None = None) -> None:
        """Follow ``trades`` / ``ticker`` (per market) or ``account``; kept across reconnects."""
        await self._send_subscribe("subscribe", channel, market_id)
        self._subscriptions.add((channel, market_id))

    async def subscribe_book(self, market_id: int) -> L2Book:
        """Follow a market's book; returns the local book once its snapshot arrived."""
        book = self.books.setdefault(market_id, L2Book(market_id))
        book.book_seq = -1
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._snapshot_waiters.setdefault(market_id, []).append(waiter)
        self._subscriptions.add(("book", market_id))
        await self._send_subscribe("subscribe", "book", market_id)
        await waiter
        return book

    async def place(self, **order: Any) -> CommandResult:
        return CommandResult.from_json(await self.request({"op": "place", "params": order}))

    async def place_batch(self, orders: list[dict[str, Any]]) -> list[CommandResult]:
        data = await self.request({"op": "place_batch", "params": {"orders": orders}})
        return [CommandResult.from_json(r) for r in data["results"]]

    async def cancel(self, market_id: int, order_id: int) -> CommandResult:
        params = {"market_id": market_id, "order_id": order_id}
        return CommandResult.from_json(await self.request({"op": "cancel", "params": params}))

    async def cancel_all(self, market_id: int | None = None) -> list[int]:
        params = {} if market_id is None else {"market_id": market_id}
        data = await self.request({"op": "cancel_all", "params": params})
        return list(data["canceled_order_ids"])

    async def dead_man(self, timeout_ms: int) -> None:
        """Arm or refresh the dead-man timer (0 disarms)."""
        await self.request({"op": "dead_man", "timeout_ms": timeout_ms})

    # ------------------------------------------------------------------ incoming
    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            if frame.type == aiohttp.WSMsgType.TEXT:
                self.on_message(orjson.loads(frame.data))

    def on_message(self, msg: dict[str, Any]) -> None:
        """Handle one server message (book updates, answers, everything else queued)."""
        channel = msg.get("channel")
        if channel == "book":
            self._on_book(msg)
            return
        request_id = msg.get("id")
        if channel is None and request_id is not None:
            fut = self._pending.pop(request_id, None)
            if fut is not None and not fut.done():
                if "error" in msg:
                    err = msg["error"]
                    fut.set_exception(ApiRequestError(0, err["code"], err["message"]))
                else:
                    fut.set_result(msg["result"])
            return
        self.messages.put_nowait(msg)

    def _on_book(self, msg: dict[str, Any]) -> None:
        market_id = msg["market_id"]
        book = self.books.get(market_id)
        if book is None:
            return
        if msg["type"] == "snapshot":
            book.reset(msg["book_seq"], msg["bids"], msg["asks"])
            for waiter in self._snapshot_waiters.pop(market_id, []):
                if not waiter.done():
                    waiter.set_result(None)
            return
        if book.book_seq < 0:
            return  # resyncing: deltas before the new snapshot are already in it
        if not book.apply(msg["book_seq"], msg["bids"], msg["asks"]):
            self._resync(book)

    def _resync(self, book: L2Book) -> None:
        """A delta is missing: drop the book and ask for a fresh snapshot."""
        self.resyncs += 1
        book.book_seq = -1

        async def again() -> None:
            with contextlib.suppress(ConnectionError, ApiRequestError):
                await self._send_subscribe("unsubscribe", "book", book.market_id)
                await self._send_subscribe("subscribe", "book", book.market_id)

        task = asyncio.ensure_future(again())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
