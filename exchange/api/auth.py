"""Request signing: the canonical message, ed25519 verification and the replay window.

A private request carries four headers::

    X-PD-Pubkey     the owner's Solana public key (base58)
    X-PD-Timestamp  milliseconds since the Unix epoch, decimal
    X-PD-Nonce      1..64 characters of [A-Za-z0-9_-], never reused by this key
    X-PD-Signature  base58 ed25519 signature of canonical_message(...)

The signed bytes are ``perpdex-api-v1\\n{timestamp_ms}\\n{nonce}\\n{METHOD}\\n{path?query}\\n{body}``.
Every part before the body has a restricted alphabet without newlines, so the message is
unambiguous. The websocket login signs method ``WS`` and path ``/ws`` with its options as body.

Pure: time arrives as an argument.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable
from typing import Any

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from exchange.api.errors import (
    BadSignature,
    MissingAuth,
    ReplayedNonce,
    StaleTimestamp,
    UnknownKey,
)
from exchange.core.orders import SUB_ACCOUNTS_PER_OWNER

SIGNING_DOMAIN = b"perpdex-api-v1"
_NONCE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_METHOD = re.compile(r"[A-Z]{1,10}")
_TIMESTAMP = re.compile(r"[0-9]{1,16}")


def canonical_message(method: str, path: str, body: bytes, timestamp_ms: int, nonce: str) -> bytes:
    """The exact bytes a client signs for one request."""
    if not _METHOD.fullmatch(method):
        raise MissingAuth(f"method: expected upper-case letters, got {method!r}")
    if "\n" in path or "\r" in path:
        raise MissingAuth(f"path: expected no line breaks, got {path!r}")
    if not _NONCE.fullmatch(nonce):
        raise MissingAuth(f"X-PD-Nonce: expected 1..64 of [A-Za-z0-9_-], got {nonce!r}")
    return b"\n".join(
        (
            SIGNING_DOMAIN,
            str(timestamp_ms).encode(),
            nonce.encode(),
            method.encode(),
            path.encode(),
            body,
        )
    )


def parse_timestamp_ms(raw: str | None) -> int:
    """The ``X-PD-Timestamp`` header as an int, or ``MissingAuth``."""
    if raw is None or not _TIMESTAMP.fullmatch(raw):
        raise MissingAuth(f"X-PD-Timestamp: expected milliseconds since the epoch, got {raw!r}")
    return int(raw)


def verify_signature(pubkey: Pubkey, message: bytes, signature_b58: str) -> None:
    """Raise ``BadSignature`` unless ``signature_b58`` is ``pubkey``'s signature of ``message``."""
    try:
        signature = Signature.from_string(signature_b58)
    except ValueError as exc:
        raise BadSignature(f"X-PD-Signature: expected base58 of 64 bytes, got {exc}") from None
    if not signature.verify(pubkey, message):
        raise BadSignature("X-PD-Signature: expected the key's ed25519 signature of the request")


class OwnerRegistry:
    """Which account each public key acts for.

    A key binds to an owner id and either every sub-account of it (``sub_account_id`` None)
    or exactly one, the settlement model's one wallet per sub-account
    (``settlement.onchain.AccountMap``). A key is bound once; an owner has either one
    all-sub-accounts key or keys for distinct sub-accounts.

    A key bound here (``[api.owners]``) wins; any other key is looked up in the engine's
    account registry (``attach_registry``: wallet hex -> ``(owner_id, sub_account_id)``),
    limited to that one sub-account: open sign-up, a wallet that deposited on-chain signs.
    """

    def __init__(self, entries: tuple[tuple[Any, ...], ...] = ()) -> None:
        self._by_key: dict[str, tuple[int, int | None]] = {}
        self._subs_by_owner: dict[int, set[int | None]] = {}
        self._registered: Callable[[str], tuple[int, int] | None] | None = None
        for entry in entries:
            self.bind(*entry)

    def attach_registry(self, lookup: Callable[[str], tuple[int, int] | None]) -> None:
        """Resolve keys without a static binding through ``lookup`` (wallet hex -> account)."""
        self._registered = lookup

    def source_of(self, pubkey_b58: str) -> str:
        """``config`` for a statically bound key, else ``registry``."""
        return "config" if pubkey_b58 in self._by_key else "registry"

    def bind(self, pubkey_b58: str, owner_id: int, sub_account_id: int | None = None) -> None:
        """Bind a key; a key bound twice or an owner's scope bound twice is refused."""
        Pubkey.from_string(pubkey_b58)  # raises ValueError if malformed
        if not 0 <= owner_id < 2**47:
            raise ValueError(f"owner_id: expected 0..{2**47 - 1}, got {owner_id}")
        if sub_account_id is not None and not 0 <= sub_account_id < SUB_ACCOUNTS_PER_OWNER:
            raise ValueError(
                f"sub_account_id: expected 0..{SUB_ACCOUNTS_PER_OWNER - 1}, got {sub_account_id}"
            )
        subs = self._subs_by_owner.setdefault(owner_id, set())
        clash = sub_account_id in subs or None in subs or (sub_account_id is None and subs)
        if pubkey_b58 in self._by_key or clash:
            raise ValueError(
                f"owner binding: expected a new key and scope, got {pubkey_b58} for "
                f"{owner_id}/{sub_account_id}"
            )
        subs.add(sub_account_id)
        self._by_key[pubkey_b58] = (owner_id, sub_account_id)

    def owner_of(self, pubkey_b58: str) -> tuple[Pubkey, int, int | None]:
        """The parsed key, its owner id and its sub-account limit (None: all)."""
        try:
            pubkey = Pubkey.from_string(pubkey_b58)
        except ValueError:
            raise MissingAuth(
                f"X-PD-Pubkey: expected a base58 public key, got {pubkey_b58!r}"
            ) from None
        bound = self._by_key.get(pubkey_b58)
        if bound is None and self._registered is not None:
            bound = self._registered(bytes(pubkey).hex())
        if bound is None:
            raise UnknownKey(
                f"X-PD-Pubkey: expected the key of a registered wallet (deposit collateral "
                f"on-chain from it first: the first deposit registers it) or one bound in "
                f"[api.owners], got {pubkey_b58}"
            )
        return pubkey, bound[0], bound[1]


class ReplayGuard:
    """Refuses timestamps outside ``window_ms`` of now and nonces a key already used.

    A nonce is remembered only as long as its timestamp is inside the window: older requests
    are refused as stale anyway, so memory stays bounded by the request rate.
    """

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._seen: dict[str, set[str]] = {}
        self._expiry: list[tuple[int, str, str]] = []  # (timestamp_ms, key, nonce)

    def check(self, key: str, timestamp_ms: int, nonce: str, now_ms: int) -> None:
        """Accept (and remember) one request, or raise ``StaleTimestamp`` / ``ReplayedNonce``."""
        if abs(now_ms - timestamp_ms) > self.window_ms:
            raise StaleTimestamp(
                f"X-PD-Timestamp: expected within {self.window_ms} ms of {now_ms}, got {timestamp_ms}"
            )
        self._forget_before(now_ms - self.window_ms)
        seen = self._seen.setdefault(key, set())
        if nonce in seen:
            raise ReplayedNonce(f"X-PD-Nonce: expected a nonce not used by this key, got {nonce!r}")
        seen.add(nonce)
        heapq.heappush(self._expiry, (timestamp_ms, key, nonce))

    def _forget_before(self, oldest_ms: int) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] < oldest_ms:
            _, key, nonce = heapq.heappop(expiry)
            seen = self._seen[key]
            seen.discard(nonce)
            if not seen:
                del self._seen[key]

    def remembered(self) -> int:
        """How many nonces are held (for tests and metrics)."""
        return len(self._expiry)


def signed_headers(
    keypair: Keypair, method: str, path: str, body: bytes, timestamp_ms: int, nonce: str
) -> dict[str, str]:
    """Client side: the four auth headers for one request."""
    message = canonical_message(method, path, body, timestamp_ms, nonce)
    return {
        "X-PD-Pubkey": str(keypair.pubkey()),
        "X-PD-Timestamp": str(timestamp_ms),
        "X-PD-Nonce": nonce,
        "X-PD-Signature": str(keypair.sign_message(message)),
    }
