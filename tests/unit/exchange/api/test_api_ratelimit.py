"""Token buckets: exact integer refills, waits rounded up, per-key isolation."""

from __future__ import annotations

import pytest

from exchange.api.ratelimit import RateLimiter, TokenBucket

S = 1_000_000_000


def test_bucket_spends_burst_then_reports_exact_wait() -> None:
    bucket = TokenBucket(burst=3, per_second=2, now_ns=0)
    assert [bucket.take(1, 0) for _ in range(3)] == [0, 0, 0]
    assert bucket.take(1, 0) == S // 2  # half a second to one token
    assert bucket.take(1, S // 2 - 1) == 1  # one nanosecond short
    assert bucket.take(1, S // 2) == 0


def test_bucket_refill_caps_at_burst_and_ignores_clock_going_back() -> None:
    bucket = TokenBucket(burst=2, per_second=1, now_ns=0)
    bucket.take(2, 0)
    assert bucket.tokens(100 * S) == 2
    assert bucket.tokens(50 * S) == 2  # clock stepped back: no refill, no loss


def test_cost_above_burst_waits_for_a_full_bucket() -> None:
    bucket = TokenBucket(burst=5, per_second=5, now_ns=0)
    bucket.take(1, 0)
    assert bucket.take(50, 0) == S // 5
    assert bucket.take(50, S // 5) == 0
    assert bucket.tokens(S // 5) == 0


def test_refused_take_spends_nothing() -> None:
    bucket = TokenBucket(burst=2, per_second=1, now_ns=0)
    bucket.take(1, 0)
    assert bucket.take(2, 0) > 0
    assert bucket.take(1, 0) == 0


def test_limiter_keys_are_independent_and_full_buckets_are_dropped() -> None:
    limiter = RateLimiter(burst=1, per_second=1, max_keys=2)
    assert limiter.take("a", 1, 0) == 0
    assert limiter.take("a", 1, 0) > 0
    assert limiter.take("b", 1, 0) == 0
    limiter.take("c", 1, 10 * S)  # over max_keys: a and b are full again and dropped
    assert set(limiter._buckets) == {"c"}


def test_bucket_rejects_nonsense_parameters() -> None:
    with pytest.raises(ValueError):
        TokenBucket(burst=0, per_second=1, now_ns=0)
