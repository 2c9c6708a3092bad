"""Token buckets per key. Pure: time arrives as an argument (nanoseconds).

Tokens are counted in nano-tokens: a bucket refilling at ``per_second`` tokens per second
gains exactly ``per_second`` nano-tokens per elapsed nanosecond, so refills never round.
"""

from __future__ import annotations

_NANO = 1_000_000_000  # nano-tokens per token


class TokenBucket:
    """``burst`` tokens at most, refilled at ``per_second`` tokens per second."""

    __slots__ = ("_last_ns", "_nano_tokens", "burst", "per_second")

    def __init__(self, burst: int, per_second: int, now_ns: int) -> None:
        if burst < 1 or per_second < 1:
            raise ValueError(f"token bucket: expected burst, rate >= 1, got {burst}, {per_second}")
        self.burst = burst
        self.per_second = per_second
        self._nano_tokens = burst * _NANO
        self._last_ns = now_ns

    def _refill(self, now_ns: int) -> None:
        elapsed_ns = now_ns - self._last_ns
        if elapsed_ns > 0:  # a clock that steps back refills nothing
            self._nano_tokens = min(
                self.burst * _NANO, self._nano_tokens + elapsed_ns * self.per_second
            )
            self._last_ns = now_ns

    def take(self, cost: int, now_ns: int) -> int:
        """Spend ``cost`` tokens: 0 if done, else the nanoseconds to wait (nothing spent).

        A cost above the burst is charged as the whole burst, so it can ever pass.
        """
        self._refill(now_ns)
        need = min(cost, self.burst) * _NANO
        if self._nano_tokens >= need:
            self._nano_tokens -= need
            return 0
        missing = need - self._nano_tokens
        return -(-missing // self.per_second)  # round the wait up

    def tokens(self, now_ns: int) -> int:
        """Whole tokens available at ``now_ns``."""
        self._refill(now_ns)
        return self._nano_tokens // _NANO


class RateLimiter:
    """One bucket per key, made on first use; full buckets are dropped past ``max_keys``."""

    def __init__(self, burst: int, per_second: int, max_keys: int = 100_000) -> None:
        self.burst = burst
        self.per_second = per_second
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, cost: int, now_ns: int) -> int:
        """0 if allowed, else nanoseconds until ``cost`` tokens are available."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._drop_full(now_ns)
            bucket = self._buckets[key] = TokenBucket(self.burst, self.per_second, now_ns)
        return bucket.take(cost, now_ns)

    def _drop_full(self, now_ns: int) -> None:
        # a full bucket is indistinguishable from a new one: dropping it changes nothing
        for key in [k for k, b in self._buckets.items() if b.tokens(now_ns) >= b.burst]:
            del self._buckets[key]
