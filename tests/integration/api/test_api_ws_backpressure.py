"""Websocket frames to a client that stops reading, on the real aiohttp server.

The server writes a loop turn's frames to the transport itself while the transport holds
nothing unsent; once the client falls behind (asyncio buffers what the socket refused),
aiohttp's writer sends them with its flow control. The client here is a raw socket with a
small receive buffer that reads nothing until told, so the server's transport really does
hold unsent bytes (no mock of either side).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestServer
from api_support import api_config

from exchange.api.app import create_app
from exchange.api.ws import HUB_KEY, WsSession
from exchange.engine.sequencer import EngineRunner

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

_SMALL_SOCKET_BUFFER = 4096  # bytes (the kernel doubles it): a few hundred frames at most


class RawWsClient:
    """A websocket client on a plain socket: masked text frames out, frames read on demand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int) -> RawWsClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SMALL_SOCKET_BUFFER)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        # a small stream limit: the stream stops reading the socket after ~2 KiB unread
        reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send_json(self, obj: Any) -> None:
        payload = orjson.dumps(obj)
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)

    async def frame(self) -> tuple[int, bytes]:
        """The next server frame: (opcode, payload)."""
        first, second = await self.reader.readexactly(2)
        assert not second & 0x80, "server frames are unmasked"
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(n)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def server_and_client(
    runner: EngineRunner, **config: Any
) -> AsyncIterator[tuple[RawWsClient, WsSession]]:
    """A real API server, a raw client connected to ``/ws`` and the server's session of it,
    with a small send buffer on the server's socket too."""
    app = create_app(api_config(**config), runner)
    async with TestServer(app) as server:
        assert server.port is not None
        client = await RawWsClient.connect(server.host, server.port)
        try:
            hub = app[HUB_KEY]
            async with asyncio.timeout(5):
                while not hub.sessions:
                    await asyncio.sleep(0.01)
            (session,) = hub.sessions
            assert session._transport is not None
            sock = session._transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SMALL_SOCKET_BUFFER)
            yield client, session
        finally:
            await client.close()


async def _until_transport_holds_unsent_bytes(session: WsSession) -> None:
    transport = session._transport
    assert transport is not None
    async with asyncio.timeout(10):
        while not transport.get_write_buffer_size():
            await asyncio.sleep(0.01)


async def test_frames_to_a_reader_behind_all_arrive_whole_and_in_order(
    runner: EngineRunner,
) -> None:
    async with server_and_client(runner) as (client, session):
        # Arrange: pings answered while the client reads nothing, far more bytes than the
        # two socket buffers hold, so the server's transport keeps unsent bytes
        pings = 4_000
        for i in range(pings):
            client.send_json({"op": "ping", "id": i})
        await _until_transport_holds_unsent_bytes(session)
        # Act: the client catches up, then sends one more request
        answers = [await asyncio.wait_for(client.frame(), 5) for _ in range(pings)]
        client.send_json({"op": "ping", "id": "after"})
        after = await asyncio.wait_for(client.frame(), 5)
        # Assert: every answer once, whole, in request order; the session still serves
        assert all(opcode == 0x1 for opcode, _ in answers)
        assert [orjson.loads(data) for _, data in answers] == [
            {"id": i, "result": "pong"} for i in range(pings)
        ]
        assert after == (0x1, orjson.dumps({"id": "after", "result": "pong"}))
        assert not session.overflowed


async def test_a_reader_behind_past_the_queue_limit_is_closed_as_slow(
    runner: EngineRunner,
) -> None:
    async with server_and_client(runner, ws_send_queue_max=200) as (client, session):
        # Arrange / Act: pings 10 at a time, each lot read and answered on its own (a lot
        # never fills the queue in one loop turn), until the unread answers exceed the
        # socket buffers, the transport's buffer before aiohttp's writer waits for a
        # drain, and 200 queued frames
        sent = 0
        async with asyncio.timeout(20):
            while not session.overflowed:
                for _ in range(10):
                    client.send_json({"op": "ping", "id": sent})
                    sent += 1
                await asyncio.sleep(0.002)
        # Assert: the client reads pongs in order up to a close frame "slow consumer" (1008)
        answered = 0
        while True:
            opcode, data = await asyncio.wait_for(client.frame(), 5)
            if opcode != 0x1:
                break
            assert orjson.loads(data) == {"id": answered, "result": "pong"}
            answered += 1
        assert opcode == 0x8
        assert data == struct.pack("!H", 1008) + b"slow consumer"
        assert 0 < answered < sent
