"""Fixtures every integration test may use: anyio runs on asyncio; ``clock`` is a FakeClock."""

from __future__ import annotations

import pytest
from integration_support import FakeClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
