"""Shared helpers of the API tests: keys, a real engine (SQLite journal in tmp_path), the app
behind a real aiohttp test server, signed requests. A module of its own name (not conftest)
so test modules import it unambiguously; conftest.py re-exports its fixtures."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from solders.keypair import Keypair

from exchange.api.app import create_app
from exchange.api.auth import signed_headers
from exchange.api.config import ApiConfig
from exchange.api.ws import signed_login
from exchange.core import commands
from exchange.core.commands import CreateMarket
from exchange.engine.config import EngineConfig
from exchange.engine.sequencer import Engine, EngineRunner

TICK = 1_000_000  # 1.0 quote per base unit (PRICE_PRECISION)
LOT = 1_000_000_000  # 1 base unit (BASE_PRECISION)
BTC, ETH = 1, 2
MAKER_OWNER, TAKER_OWNER = 11, 22


def keypair(n: int) -> Keypair:
    return Keypair.from_seed(bytes([n]) * 32)


MAKER_KEY, TAKER_KEY, STRANGER_KEY = keypair(1), keypair(2), keypair(3)
SUB3_KEY = keypair(4)  # the taker's second key, limited to its sub-account 3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def clearinghouse_setup() -> list[Any]:
    """An oracle price for each market and collateral for both owners (sub-accounts 0 and
    3), so the clearinghouse lets their orders reach the book."""
    now_s = time.time_ns() // 1_000_000_000
    return [
        *(commands.UpdateOraclePrice(m, 100 * TICK, 0, 1, now_s, True) for m in (BTC, ETH)),
        *(
            commands.Deposit(owner, sub, 10**12)
            for owner in (MAKER_OWNER, TAKER_OWNER)
            for sub in (0, 3)
        ),
    ]


def set_up_journal(data_dir: Path) -> EngineConfig:
    """A journal in ``data_dir`` with BTC-PERP and ETH-PERP listed and the funded accounts of
    ``clearinghouse_setup``; the config to open an engine (of any runner kind) over it."""
    config = EngineConfig(data_dir=data_dir)
    engine = Engine(config)
    engine.process(
        [CreateMarket(BTC, "BTC-PERP", TICK, LOT), CreateMarket(ETH, "ETH-PERP", TICK, LOT)]
    )
    engine.process(clearinghouse_setup())
    engine.close()
    return config


async def ws_login(ws: Any, nonce: str) -> None:
    """Log ``ws`` in as the maker (``MAKER_KEY``), read-write, and check the answer."""
    ts = time.time_ns() // 1_000_000
    login = {"id": 1, **signed_login(MAKER_KEY, ts, nonce, False)}
    await ws.send_str(orjson.dumps(login).decode())
    assert "result" in orjson.loads(await asyncio.wait_for(ws.receive_str(), 10))


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[EngineRunner]:
    engine = Engine(set_up_journal(tmp_path))
    run = EngineRunner(engine)
    yield run
    run.close()
    engine.close()


def api_config(**overrides: Any) -> ApiConfig:
    base: dict[str, Any] = {
        "owners": (
            (str(MAKER_KEY.pubkey()), MAKER_OWNER),
            (str(TAKER_KEY.pubkey()), TAKER_OWNER, 0),
            (str(SUB3_KEY.pubkey()), TAKER_OWNER, 3),
        ),
        "rate_limit_burst": 10_000,
        "rate_limit_per_second": 10_000,
        "public_rate_limit_burst": 10_000,
        "public_rate_limit_per_second": 10_000,
    }
    base.update(overrides)
    return ApiConfig(**base)


class Api:
    """A test client that signs private requests with a given key."""

    _nonces = itertools.count(1)

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client

    def headers(
        self, key: Keypair, method: str, path: str, body: bytes, **tweak: Any
    ) -> dict[str, str]:
        ts = tweak.pop("timestamp_ms", time.time_ns() // 1_000_000)
        nonce = tweak.pop("nonce", f"n{next(self._nonces)}")
        return signed_headers(key, method, path, body, ts, nonce)

    async def post(self, key: Keypair, path: str, obj: Any, **tweak: Any) -> tuple[int, Any, Any]:
        body = tweak.pop("raw_body", None)
        if body is None:
            body = orjson.dumps(obj)
        headers = self.headers(key, "POST", path, body, **tweak)
        headers.update(tweak.pop("override_headers", {}))
        resp = await self.client.post(
            path, data=body, headers={**headers, "Content-Type": "application/json"}
        )
        return resp.status, await resp.json(), resp.headers

    async def get(self, key: Keypair | None, path: str) -> tuple[int, Any]:
        headers = self.headers(key, "GET", path, b"") if key is not None else {}
        resp = await self.client.get(path, headers=headers)
        return resp.status, await resp.json()


@pytest.fixture
async def api(runner: EngineRunner) -> AsyncIterator[Api]:
    app = create_app(api_config(), runner)
    async with TestClient(TestServer(app)) as client:
        yield Api(client)


def order(
    side: str, price_units: int, size_units: int, market_id: int = BTC, **extra: Any
) -> dict[str, Any]:
    return {
        "market_id": market_id,
        "side": side,
        "price": price_units * TICK,
        "size_base": size_units * LOT,
        **extra,
    }


async def engine_levels(runner: EngineRunner, market_id: int) -> tuple[list[Any], list[Any]]:
    """The engine's own book levels, read once the runner is idle."""
    import asyncio

    from exchange.core.commands import ExpireOrders

    # A no-op command's ack means the runner finished every earlier batch.
    await asyncio.wrap_future(runner.submit(ExpireOrders()))
    book = runner.engine.core.books[market_id]
    return [tuple(x) for x in book.depth(0, 10**9)], [tuple(x) for x in book.depth(1, 10**9)]
