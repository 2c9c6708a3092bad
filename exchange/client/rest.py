"""REST client: signs private requests, raises ``ApiRequestError`` with the API's code."""

from __future__ import annotations

import itertools
import secrets
import time
from typing import Any

import aiohttp
import orjson
from solders.keypair import Keypair

from exchange.api.auth import signed_headers
from exchange.client.liquidations import AdlRank, LiquidationCandidate, LiquidationResult
from exchange.client.types import (
    AccountInfo,
    Balance,
    CommandResult,
    DepositRecord,
    L2Book,
    Market,
    MarketPrices,
    Trade,
    Withdrawal,
    WithdrawalResult,
)


class ApiRequestError(Exception):
    """The API refused a request: ``status`` (HTTP), ``code`` (stable), ``message``."""

    def __init__(
        self, status: int, code: str, message: str, retry_after_s: int | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


class Signer:
    """Signs with one key; nonces are a random session prefix plus a counter (never reused)."""

    def __init__(self, keypair: Keypair) -> None:
        self.keypair = keypair
        self._prefix = secrets.token_hex(6)
        self._counter = itertools.count(1)

    def nonce(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"

    def headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        return signed_headers(
            self.keypair, method, path, body, time.time_ns() // 1_000_000, self.nonce()
        )


class PerpdexRest:
    """``async with PerpdexRest(base_url, keypair) as api: await api.place(...)``."""

    def __init__(
        self,
        base_url: str,
        keypair: Keypair | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.signer = Signer(keypair) if keypair is not None else None
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> PerpdexRest:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self, method: str, path: str, obj: Any = None, *, private: bool = False
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        body = b"" if obj is None else orjson.dumps(obj)
        headers = {"Content-Type": "application/json"} if body else {}
        if private:
            if self.signer is None:
                raise ApiRequestError(
                    0, "AUTH_MISSING", "client: a keypair is needed for private calls"
                )
            headers.update(self.signer.headers(method, path, body))
        async with self._session.request(
            method, self.base_url + path, data=body or None, headers=headers
        ) as resp:
            data = orjson.loads(await resp.read())
            if resp.status >= 400:
                retry = resp.headers.get("Retry-After")
                raise ApiRequestError(
                    resp.status,
                    data.get("code", "?"),
                    data.get("message", ""),
                    int(retry) if retry else None,
                )
            return data

    # ------------------------------------------------------------------ public
    async def markets(self) -> list[Market]:
        data = await self._request("GET", "/v1/markets")
        return [Market.from_json(m) for m in data["markets"]]

    async def book(self, market_id: int, depth: int = 50) -> L2Book:
        data = await self._request("GET", f"/v1/markets/{market_id}/book?depth={depth}")
        book = L2Book(market_id)
        book.reset(data["book_seq"], data["bids"], data["asks"])
        return book

    async def trades(self, market_id: int, limit: int = 100) -> list[Trade]:
        data = await self._request("GET", f"/v1/markets/{market_id}/trades?limit={limit}")
        return [Trade.from_json(t) for t in data["trades"]]

    async def ticker(self, market_id: int) -> dict[str, int]:
        return await self._request("GET", f"/v1/markets/{market_id}/ticker")  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ private
    async def place(self, **order: Any) -> CommandResult:
        """Fields as the API's PlaceOrder: market_id, side, price, size_base, ..."""
        return CommandResult.from_json(
            await self._request("POST", "/v1/orders", order, private=True)
        )

    async def place_batch(self, orders: list[dict[str, Any]]) -> list[CommandResult]:
        data = await self._request("POST", "/v1/orders/batch", {"orders": orders}, private=True)
        return [CommandResult.from_json(r) for r in data["results"]]

    async def cancel(
        self, market_id: int, order_id: int = 0, client_order_id: int = 0, sub_account_id: int = 0
    ) -> CommandResult:
        body = {
            "market_id": market_id,
            "order_id": order_id,
            "client_order_id": client_order_id,
            "sub_account_id": sub_account_id,
        }
        return CommandResult.from_json(
            await self._request("POST", "/v1/orders/cancel", body, private=True)
        )

    async def cancel_batch(self, cancels: list[dict[str, Any]]) -> list[CommandResult]:
        data = await self._request(
            "POST", "/v1/orders/cancel-batch", {"cancels": cancels}, private=True
        )
        return [CommandResult.from_json(r) for r in data["results"]]

    async def cancel_all(
        self, market_id: int | None = None, sub_account_id: int | None = None
    ) -> list[int]:
        body = {
            k: v
            for k, v in (("market_id", market_id), ("sub_account_id", sub_account_id))
            if v is not None
        }
        data = await self._request("POST", "/v1/orders/cancel-all", body, private=True)
        return list(data["canceled_order_ids"])

    async def amend(
        self, market_id: int, order_id: int, new_price: int, new_size_base: int
    ) -> CommandResult:
        body = {
            "market_id": market_id,
            "order_id": order_id,
            "new_price": new_price,
            "new_size_base": new_size_base,
        }
        return CommandResult.from_json(
            await self._request("POST", "/v1/orders/amend", body, private=True)
        )

    async def open_orders(self) -> list[dict[str, Any]]:
        return list((await self._request("GET", "/v1/orders/open", private=True))["orders"])

    async def order_history(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(
            (await self._request("GET", f"/v1/orders/history?limit={limit}", private=True))[
                "events"
            ]
        )

    async def fills(self, limit: int = 100) -> list[dict[str, Any]]:
        return list((await self._request("GET", f"/v1/fills?limit={limit}", private=True))["fills"])

    async def positions(self) -> list[dict[str, Any]]:
        return list((await self._request("GET", "/v1/positions", private=True))["positions"])

    async def balances(self) -> list[Balance]:
        """Collateral and cumulative PnL, fees and funding per sub-account (QUOTE_PRECISION)."""
        data = await self._request("GET", "/v1/balances", private=True)
        return [Balance.from_json(b) for b in data["balances"]]

    async def margin(self) -> list[dict[str, Any]]:
        """Equity, initial and maintenance margin, free collateral per sub-account."""
        return list((await self._request("GET", "/v1/margin", private=True))["margin"])

    async def funding_payments(self, limit: int = 100) -> list[dict[str, Any]]:
        path = f"/v1/funding-payments?limit={limit}"
        return list((await self._request("GET", path, private=True))["funding_payments"])

    async def prices(self, market_id: int) -> MarketPrices:
        """Index (oracle), mark and funding of a market."""
        return MarketPrices.from_json(await self._request("GET", f"/v1/markets/{market_id}/prices"))

    async def withdraw(self, amount_quote: int, sub_account_id: int = 0) -> WithdrawalResult:
        """Request a withdrawal of free collateral (QUOTE_PRECISION) to the wallet's
        associated token account; executed on-chain after the engine accepted it."""
        body = {"sub_account_id": sub_account_id, "amount_quote": amount_quote}
        return WithdrawalResult.from_json(
            await self._request("POST", "/v1/withdrawals", body, private=True)
        )

    async def withdrawals(
        self, limit: int = 100, sub_account_id: int | None = None
    ) -> list[Withdrawal]:
        """The owner's withdrawals, newest first, with their on-chain outcome."""
        path = f"/v1/withdrawals?limit={limit}"
        if sub_account_id is not None:
            path += f"&sub_account_id={sub_account_id}"
        data = await self._request("GET", path, private=True)
        return [Withdrawal.from_json(w) for w in data["withdrawals"]]

    async def account(self) -> AccountInfo:
        """Who the key is (``GET /v1/account``); an unregistered wallet's key is refused with
        403 ``AUTH_UNKNOWN_KEY``: its first on-chain deposit registers it."""
        return AccountInfo.from_json(await self._request("GET", "/v1/account", private=True))

    async def deposits(
        self, limit: int = 100, sub_account_id: int | None = None
    ) -> list[DepositRecord]:
        """The owner's credited on-chain deposits, newest first."""
        path = f"/v1/deposits?limit={limit}"
        if sub_account_id is not None:
            path += f"&sub_account_id={sub_account_id}"
        data = await self._request("GET", path, private=True)
        return [DepositRecord.from_json(d) for d in data["deposits"]]

    # ------------------------------------------------------------------ liquidation (issue 6)
    async def liquidate(
        self,
        target_owner_id: int,
        target_sub_account_id: int = 0,
        *,
        market_id: int | None = None,
        sub_account_id: int | None = None,
    ) -> LiquidationResult:
        """Liquidate a target account into this key's sub-account (``market_id``: only that
        market's slices; default all). A refusal by the engine is a ``REJECTED`` result."""
        body: dict[str, Any] = {
            "target_owner_id": target_owner_id,
            "target_sub_account_id": target_sub_account_id,
        }
        if market_id is not None:
            body["market_id"] = market_id
        if sub_account_id is not None:
            body["sub_account_id"] = sub_account_id
        return LiquidationResult.from_json(
            await self._request("POST", "/v1/liquidations", body, private=True)
        )

    async def liquidation_candidates(self, limit: int = 100) -> list[LiquidationCandidate]:
        """Accounts below maintenance now, largest shortfall first (public)."""
        data = await self._request("GET", f"/v1/liquidations/candidates?limit={limit}")
        return [LiquidationCandidate.from_json(c) for c in data["candidates"]]

    async def adl_ranks(self, owner_id: int, sub_account_id: int = 0) -> list[AdlRank]:
        """The current ADL rank of each of the sub-account's positions (the owner's key)."""
        path = f"/v1/accounts/{owner_id}/{sub_account_id}/adl-rank"
        data = await self._request("GET", path, private=True)
        return [AdlRank.from_json(p) for p in data["positions"]]
