"""Helpers the integration tests share (their fixtures are in ``conftest.py`` here)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from solders.pubkey import Pubkey


class FakeClock:
    """An injectable time source (seconds): advances only when told."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def key(n: int) -> Pubkey:
    """A recognisable test pubkey: 32 bytes of ``n``."""
    return Pubkey(bytes([n]) * 32)


async def wait_for(check: Callable[[], Awaitable[Any]], timeout_s: float, what: str) -> Any:
    """Poll ``check`` every 0.2 s until it returns something truthy (returned), or fail after
    ``timeout_s`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)
