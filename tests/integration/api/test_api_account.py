"""Open sign-up at the API edge: a key without a static binding is resolved through the
engine's account registry (``RegisterAccount`` -> ``AccountRegistered``), ``GET /v1/account``
says who a key is, and an unregistered key is refused with 403 AUTH_UNKNOWN_KEY and a hint.
A real engine (SQLite journal), a real aiohttp server and the SDK."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_support import (
    BTC,
    MAKER_KEY,
    MAKER_OWNER,
    TAKER_KEY,
    TAKER_OWNER,
    Api,
    api_config,
    keypair,
    order,
)

from exchange.api.app import create_app
from exchange.api.config import ApiConfig
from exchange.client import ApiRequestError, PerpdexRest
from exchange.core.commands import FIRST_REGISTERED_OWNER_ID, Deposit, RegisterAccount
from exchange.core.errors import ConfigError
from exchange.core.events import AccountRegistered
from exchange.engine.sequencer import EngineRunner

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

NEWCOMER = keypair(77)


async def submit(runner: EngineRunner, cmd: object) -> list[object]:
    return await asyncio.wrap_future(runner.submit(cmd))  # type: ignore[arg-type]


async def test_a_registered_wallet_signs_and_an_unregistered_one_is_refused(
    runner: EngineRunner,
) -> None:
    app = create_app(api_config(), runner)
    async with TestClient(TestServer(app)) as client:
        api = Api(client)
        # Arrange: the newcomer is unknown; then the engine registers it and credits it
        refused_status, refused = await api.get(NEWCOMER, "/v1/account")
        [registered] = await submit(runner, RegisterAccount(bytes(NEWCOMER.pubkey()).hex()))
        assert type(registered) is AccountRegistered
        owner = registered.owner_id
        await submit(runner, Deposit(owner, 0, 10**12))
        # Act
        status, me = await api.get(NEWCOMER, "/v1/account")
        placed_status, placed, _ = await api.post(NEWCOMER, "/v1/orders", order("BID", 99, 1))
        wrong_status, wrong, _ = await api.post(
            NEWCOMER, "/v1/orders", order("BID", 99, 1, sub_account_id=1)
        )
        _, maker = await api.get(MAKER_KEY, "/v1/account")
        _, taker = await api.get(TAKER_KEY, "/v1/account")
        _, balances = await api.get(NEWCOMER, "/v1/balances")
    # Assert
    assert refused_status == 403 and refused["code"] == "AUTH_UNKNOWN_KEY"
    assert "deposit collateral on-chain" in refused["message"]
    assert owner == FIRST_REGISTERED_OWNER_ID
    assert status == 200
    assert me == {
        "pubkey": str(NEWCOMER.pubkey()), "owner_id": owner, "sub_account_id": 0,
        "sub_account_ids": [0], "source": "registry",
    }  # fmt: skip
    assert placed_status == 200 and placed["status"] == "ACCEPTED", placed
    assert wrong_status == 403 and wrong["code"] == "AUTH_WRONG_SUB_ACCOUNT"
    assert maker == {
        "pubkey": str(MAKER_KEY.pubkey()), "owner_id": MAKER_OWNER, "sub_account_id": None,
        "sub_account_ids": [0, 3], "source": "config",
    }  # fmt: skip
    assert (taker["owner_id"], taker["sub_account_id"]) == (TAKER_OWNER, 0)
    assert [(b["sub_account_id"], b["collateral_quote"]) for b in balances["balances"]] == [
        (0, 10**12)
    ]


async def test_the_sdk_tells_a_key_who_it_is(runner: EngineRunner) -> None:
    app = create_app(api_config(), runner)
    async with TestClient(TestServer(app)) as client:
        base = str(client.make_url("/"))
        async with PerpdexRest(base, NEWCOMER) as newcomer:
            with pytest.raises(ApiRequestError) as unknown:
                await newcomer.account()
            await submit(runner, RegisterAccount(bytes(NEWCOMER.pubkey()).hex()))
            me = await newcomer.account()
    assert (unknown.value.status, unknown.value.code) == (403, "AUTH_UNKNOWN_KEY")
    assert (me.owner_id, me.sub_account_id, me.sub_account_ids, me.source) == (
        FIRST_REGISTERED_OWNER_ID, 0, (0,), "registry",
    )  # fmt: skip


def test_static_owners_stay_below_the_registry_range() -> None:
    with pytest.raises(ConfigError, match="below 1000000"):
        ApiConfig(owners=((str(NEWCOMER.pubkey()), FIRST_REGISTERED_OWNER_ID),))
    assert BTC  # the fixtures' market exists (imported for the order helper)
