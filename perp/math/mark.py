"""Impact prices, the book's basis EMA, and the mark price.

Prices at ``PRICE_PRECISION``; base at ``BASE_PRECISION``; time in nanoseconds; the band in
ppm (``RATIO_PRECISION``).

Mark price rule: ``median(oracle + ema_basis, impact_bid, impact_ask)`` when both impact
prices exist (that median is ``oracle + ema_basis`` clamped into ``[impact_bid,
impact_ask]``), else ``oracle + ema_basis``; the result is clamped to ``oracle x (1 +- band)``.
See ``docs/PROTOCOL.md`` section "Mark price".
"""

from __future__ import annotations

from collections.abc import Sequence

from exchange.core.units import BASE_PRECISION, RATIO_PRECISION


def impact_price(
    levels: Sequence[tuple[int, int]], impact_notional_quote: int, *, is_bid: bool
) -> int | None:
    """Average price at which ``impact_notional_quote`` would fill against one side.

    ``levels`` are ``(price, base)`` best first. ``None`` if the side is too thin. The average
    is computed exactly and rounded away from the mid (bid down, ask up), so thin books widen
    the impact spread rather than narrow it.
    """
    if impact_notional_quote <= 0:
        raise ValueError(f"impact notional: expected > 0, got {impact_notional_quote}")
    remaining = impact_notional_quote * BASE_PRECISION  # quote x BASE_PRECISION
    base_full = 0
    for price, base in levels:
        if price <= 0 or base <= 0:
            raise ValueError(f"level: expected positive price and base, got {(price, base)}")
        cost = price * base  # quote x BASE_PRECISION
        if cost < remaining:
            remaining -= cost
            base_full += base
            continue
        # The last level fills partly: base taken there is remaining / price (a fraction).
        # average = notional / (base_full + remaining / price)
        #         = notional x BASE x price / (base_full x price + remaining)
        numerator = impact_notional_quote * BASE_PRECISION * price
        denominator = base_full * price + remaining
        if is_bid:
            return numerator // denominator
        return -(-numerator // denominator)
    return None


def update_ema_basis(ema_basis: int, basis_sample: int, elapsed_ns: int, window_ns: int) -> int:
    """Move the basis EMA toward ``basis_sample`` by ``min(elapsed, window) / window``.

    Integer form of an exponential average sampled at irregular times; the step rounds
    toward zero, so the EMA never overshoots the sample.
    """
    if window_ns <= 0 or elapsed_ns < 0:
        raise ValueError(
            f"times: expected window > 0 and elapsed >= 0, got {window_ns}, {elapsed_ns}"
        )
    step_num = (basis_sample - ema_basis) * min(elapsed_ns, window_ns)
    step = abs(step_num) // window_ns
    return ema_basis + (step if step_num >= 0 else -step)


def mark_price(
    oracle_price: int,
    ema_basis: int,
    impact_bid: int | None,
    impact_ask: int | None,
    band_ppm: int,
) -> int:
    """The mark price (see module docstring), never outside ``oracle x (1 +- band)``."""
    if oracle_price <= 0:
        raise ValueError(f"oracle_price: expected > 0, got {oracle_price}")
    if not 0 <= band_ppm < RATIO_PRECISION:
        raise ValueError(f"band_ppm: expected 0..{RATIO_PRECISION - 1}, got {band_ppm}")
    mark = oracle_price + ema_basis
    if impact_bid is not None and impact_ask is not None:
        if impact_bid > impact_ask:
            raise ValueError(f"impact prices: expected bid <= ask, got {impact_bid} > {impact_ask}")
        mark = min(max(mark, impact_bid), impact_ask)
    # Band edges round toward the oracle, so the band is never wider than configured.
    low = -(-oracle_price * (RATIO_PRECISION - band_ppm) // RATIO_PRECISION)
    high = oracle_price * (RATIO_PRECISION + band_ppm) // RATIO_PRECISION
    return min(max(mark, low), high)
