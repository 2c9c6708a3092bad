"""API configuration: frozen, typed, keyword-only, and strict about unknown keys."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from exchange.core.commands import FIRST_REGISTERED_OWNER_ID
from exchange.core.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiConfig:
    """How the API listens, whom it trusts and how fast it lets each key go.

    ``owners`` binds Solana public keys to accounts: ``(pubkey_base58, owner_id)`` lets the
    key act for every sub-account of ``owner_id``; ``(pubkey_base58, owner_id,
    sub_account_id)`` for that one only (settlement's one wallet per sub-account). In a
    config file: ``[api.owners]`` with ``"<pubkey>" = owner_id`` or ``= [owner_id, sub]``.
    Static owners stay below ``FIRST_REGISTERED_OWNER_ID``: the ids from there up belong to
    the engine's account registry (open sign-up), which resolves every other key.

    Rate limits are token buckets per key (per remote address for unsigned requests):
    ``rate_limit_burst`` tokens, refilled at ``rate_limit_per_second``; one request costs one
    token, a batch one per item.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    owners: tuple[tuple[Any, ...], ...] = ()
    auth_window_ms: int = 5_000  # |server time - request timestamp| allowed
    rate_limit_burst: int = 200
    rate_limit_per_second: int = 100
    public_rate_limit_burst: int = 100
    public_rate_limit_per_second: int = 50
    max_batch_orders: int = 50
    max_body_bytes: int = 256 * 1024
    max_book_depth: int = 1_000
    recent_trades_kept: int = 1_000  # per market
    history_kept_per_owner: int = 1_000  # order events and fills per owner
    max_dead_man_ms: int = 600_000
    ws_send_queue_max: int = 10_000  # messages; a subscriber further behind is disconnected

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"host: expected a host name, got {self.host!r}")
        for name, lo, hi in (
            ("port", 0, 65535),
            ("auth_window_ms", 1, 3_600_000),
            ("rate_limit_burst", 1, 10**9),
            ("rate_limit_per_second", 1, 10**9),
            ("public_rate_limit_burst", 1, 10**9),
            ("public_rate_limit_per_second", 1, 10**9),
            ("max_batch_orders", 1, 10_000),
            ("max_body_bytes", 1024, 64 * 1024 * 1024),
            ("max_book_depth", 1, 100_000),
            ("recent_trades_kept", 1, 10**7),
            ("history_kept_per_owner", 1, 10**7),
            ("max_dead_man_ms", 1, 86_400_000),
            ("ws_send_queue_max", 1, 10**8),
        ):
            value = getattr(self, name)
            if type(value) is not int or not lo <= value <= hi:
                raise ConfigError(f"{name}: expected an int in {lo}..{hi}, got {value!r}")
        if not isinstance(self.owners, tuple):
            raise ConfigError(
                f"owners: expected a tuple of (pubkey, owner_id), got {self.owners!r}"
            )
        for entry in self.owners:
            if (
                not isinstance(entry, tuple)
                or len(entry) not in (2, 3)
                or not isinstance(entry[0], str)
                or any(type(v) is not int for v in entry[1:])
            ):
                raise ConfigError(
                    f"owners: expected (pubkey, owner_id[, sub_account_id]), got {entry!r}"
                )
            if entry[1] >= FIRST_REGISTERED_OWNER_ID:
                raise ConfigError(
                    f"owners: expected owner_id below {FIRST_REGISTERED_OWNER_ID} (the account "
                    f"registry's ids start there), got {entry!r}"
                )

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> ApiConfig:
        """Build from a parsed ``[api]`` table; ``owners`` is a table ``{pubkey = owner_id}``."""
        if not isinstance(data, dict):
            raise ConfigError(f"api config: expected a table, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"api config: unknown keys {unknown}, expected {sorted(known)}")
        values = dict(data)
        if "owners" in values:
            owners = values["owners"]
            if not isinstance(owners, dict):
                raise ConfigError(f"owners: expected a table of pubkey = owner_id, got {owners!r}")
            values["owners"] = tuple(
                (key, *value) if isinstance(value, list) else (key, value)
                for key, value in owners.items()
            )
        return cls(**values)
