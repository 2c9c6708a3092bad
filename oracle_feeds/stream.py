"""`OracleStream`: oracle prices from a Solana PubSub websocket, with reconnects.

The stream subscribes (``accountSubscribe``, base64) to every configured oracle account over
one websocket (aiohttp), parses each ``accountNotification`` with the parser for that
account's format (:func:`oracle_feeds.parsers.parse_oracle_account`) and delivers an
:class:`OracleUpdate` (or, for data that does not parse, an :class:`OracleStreamError`:
never an exception) to an optional callback and to the async iterator.

After every (re)connect, once all subscriptions are confirmed, the accounts are re-read
once over JSON-RPC ``getMultipleAccounts`` (``origin == "snapshot"``) so that an update
written while the connection was down is not missed silently. An account whose data equals
the last data delivered for it is not delivered again (so a snapshot that saw nothing new
adds nothing). On any disconnect or failure the stream reconnects with exponential backoff
(``initial_backoff_s`` doubling up to ``max_backoff_s``, reset after a successful
subscribe) and resubscribes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from solders.pubkey import Pubkey

from oracle_feeds.errors import OracleError
from oracle_feeds.layouts import PYTH_PUSH_PROGRAM_ID
from oracle_feeds.parsers import parse_oracle_account
from oracle_feeds.price import OraclePrice, OracleSource

log = logging.getLogger(__name__)

Origin = Literal["notification", "snapshot"]


@dataclass(frozen=True, slots=True)
class StreamFeed:
    """One account to follow and how to parse it."""

    address: Pubkey
    source: OracleSource
    expected_feed_id: bytes | None = None  # Pyth pull only
    pyth_push_program_id: Pubkey = PYTH_PUSH_PROGRAM_ID


@dataclass(frozen=True, slots=True)
class OracleUpdate:
    address: Pubkey
    source: OracleSource
    price: OraclePrice
    context_slot: int
    origin: Origin


@dataclass(frozen=True, slots=True)
class OracleStreamError:
    """An account update that could not be parsed (``code``: the OracleError code)."""

    address: Pubkey
    source: OracleSource
    code: str
    message: str
    context_slot: int
    origin: Origin


StreamEvent = OracleUpdate | OracleStreamError
Callback = Callable[[StreamEvent], Awaitable[None] | None]


class _Disconnected(Exception):
    pass


class OracleStream:
    """Follow oracle accounts over PubSub. ``async with OracleStream(...) as s: async for ev in s``."""

    def __init__(
        self,
        ws_url: str,
        rpc_url: str,
        feeds: Sequence[StreamFeed],
        *,
        on_event: Callback | None = None,
        initial_backoff_s: float = 0.05,
        max_backoff_s: float = 2.0,
        subscribe_timeout_s: float = 5.0,
        heartbeat_s: float | None = 10.0,
        queue_size: int = 10_000,
    ) -> None:
        if not feeds:
            raise ValueError("feeds: expected at least one account")
        if not 0 < initial_backoff_s <= max_backoff_s:
            raise ValueError("expected 0 < initial_backoff_s <= max_backoff_s")
        self.ws_url = ws_url
        self.rpc_url = rpc_url
        self.feeds = {f.address: f for f in feeds}
        self.on_event = on_event
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.subscribe_timeout_s = subscribe_timeout_s
        self.heartbeat_s = heartbeat_s
        self.connects = 0  # successful subscribe rounds
        self.reconnects = 0  # successful subscribe rounds after the first
        self.failures = 0  # failed or lost connections
        self.subscribed = asyncio.Event()  # set while subscribed, cleared on disconnect
        self._queue: asyncio.Queue[StreamEvent] = asyncio.Queue(queue_size)
        self._last_data: dict[Pubkey, bytes] = {}
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._next_id = 0
        self._had_subscribed = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("stream already started")
        self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run(), name="oracle-stream")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.subscribed.clear()

    async def __aenter__(self) -> OracleStream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StreamEvent]:
        while True:
            yield await self._queue.get()

    async def next_event(self, timeout_s: float | None = None) -> StreamEvent:
        """The next delivered event (``TimeoutError`` after ``timeout_s``)."""
        return await asyncio.wait_for(self._queue.get(), timeout_s)

    # ------------------------------------------------------------------ delivery
    async def _deliver(self, event: StreamEvent) -> None:
        if self.on_event is not None:
            try:
                result = self.on_event(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("oracle stream: callback failed for %r", event)
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("oracle stream: queue full, dropping the oldest event")
            self._queue.get_nowait()
            self._queue.put_nowait(event)

    def _parse(self, address: Pubkey, value: Any, slot: int, origin: Origin) -> StreamEvent | None:
        feed = self.feeds[address]
        try:
            if not isinstance(value, dict):
                raise ValueError(f"account: expected an object, got {value!r}")
            blob, encoding = value["data"]
            if encoding != "base64":
                raise ValueError(f"data encoding: expected base64, got {encoding!r}")
            data = base64.b64decode(blob, validate=True)
            owner = Pubkey.from_string(value["owner"])
        except (ValueError, KeyError, TypeError) as exc:
            return OracleStreamError(
                address, feed.source, "ORACLE_STREAM_BAD_MESSAGE", str(exc), slot, origin
            )
        if self._last_data.get(address) == data:
            return None
        self._last_data[address] = data
        try:
            price = parse_oracle_account(
                feed.source,
                data,
                owner,
                pyth_push_program_id=feed.pyth_push_program_id,
                expected_feed_id=feed.expected_feed_id,
            )
        except OracleError as exc:
            return OracleStreamError(address, feed.source, exc.code, str(exc), slot, origin)
        except Exception as exc:  # a parser bug must not kill the stream
            return OracleStreamError(
                address, feed.source, "ORACLE_STREAM_PARSE_FAILED", repr(exc), slot, origin
            )
        return OracleUpdate(address, feed.source, price, slot, origin)

    # ------------------------------------------------------------------ connection
    def _request(self, method: str, params: list[Any]) -> tuple[int, dict[str, Any]]:
        self._next_id += 1
        return self._next_id, {
            "jsonrpc": "2.0",
            "id": self._next_id,
            "method": method,
            "params": params,
        }

    async def _run(self) -> None:
        backoff = self.initial_backoff_s
        while True:
            try:
                await self._connect_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("oracle stream: connection lost (%r); retrying in %.2fs", exc, backoff)
            self.subscribed.clear()
            self.failures += 1
            if self._had_subscribed:
                backoff = self.initial_backoff_s
            await asyncio.sleep(backoff)
            backoff = min(self.max_backoff_s, backoff * 2)

    async def _connect_once(self) -> None:
        self._had_subscribed = False
        assert self._session is not None
        async with self._session.ws_connect(
            self.ws_url, heartbeat=self.heartbeat_s, autoping=True
        ) as ws:
            subs = await self._subscribe(ws)
            self._had_subscribed = True
            self.connects += 1
            if self.connects > 1:
                self.reconnects += 1
            pending = await self._snapshot_while_buffering(ws)
            self.subscribed.set()
            for message in pending:
                await self._handle_message(message, subs)
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await self._handle_message(msg.data, subs)
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    raise _Disconnected(f"websocket error: {ws.exception()!r}")
            raise _Disconnected("websocket closed")

    async def _subscribe(self, ws: aiohttp.ClientWebSocketResponse) -> dict[int, Pubkey]:
        want: dict[int, Pubkey] = {}
        for address in self.feeds:
            req_id, req = self._request(
                "accountSubscribe",
                [str(address), {"encoding": "base64", "commitment": "confirmed"}],
            )
            want[req_id] = address
            await ws.send_str(json.dumps(req))
        subs: dict[int, Pubkey] = {}
        async with asyncio.timeout(self.subscribe_timeout_s):
            while len(subs) < len(want):
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise _Disconnected(f"websocket closed while subscribing ({msg.type!r})")
                body = json.loads(msg.data)
                if isinstance(body, dict) and body.get("id") in want:
                    if "error" in body:
                        raise _Disconnected(f"accountSubscribe refused: {body['error']}")
                    subs[int(body["result"])] = want[body["id"]]
        return subs

    async def _snapshot_while_buffering(self, ws: aiohttp.ClientWebSocketResponse) -> list[str]:
        """Read every account once via getMultipleAccounts; notifications arriving meanwhile
        are buffered and returned (delivered after the snapshot)."""
        pending: list[str] = []

        async def drain() -> None:
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise _Disconnected(f"websocket closed during snapshot ({msg.type!r})")
                pending.append(msg.data)

        drainer = asyncio.create_task(drain())
        try:
            await self._snapshot()
        finally:
            if not drainer.done():
                drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drainer  # re-raises _Disconnected if the socket closed meanwhile
        return pending

    async def _snapshot(self) -> None:
        assert self._session is not None
        addresses = list(self.feeds)
        _, req = self._request(
            "getMultipleAccounts",
            [[str(a) for a in addresses], {"encoding": "base64", "commitment": "confirmed"}],
        )
        async with self._session.post(
            self.rpc_url, json=req, timeout=aiohttp.ClientTimeout(total=self.subscribe_timeout_s)
        ) as resp:
            body = await resp.json(content_type=None)
        if "error" in body:
            raise _Disconnected(f"getMultipleAccounts failed: {body['error']}")
        slot = int(body["result"]["context"]["slot"])
        for address, value in zip(addresses, body["result"]["value"], strict=True):
            if value is None:
                continue
            event = self._parse(address, value, slot, "snapshot")
            if event is not None:
                await self._deliver(event)

    async def _handle_message(self, raw: str, subs: dict[int, Pubkey]) -> None:
        try:
            body = json.loads(raw)
        except ValueError:
            log.warning("oracle stream: undecodable message %r", raw[:200])
            return
        if not isinstance(body, dict) or body.get("method") != "accountNotification":
            return
        params = body.get("params") or {}
        sub_id = params.get("subscription")
        address = subs.get(sub_id) if isinstance(sub_id, int) else None
        if address is None:
            return
        result = params.get("result") or {}
        slot = int((result.get("context") or {}).get("slot", 0))
        event = self._parse(address, result.get("value"), slot, "notification")
        if event is not None:
            await self._deliver(event)
