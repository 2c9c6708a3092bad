"""One oracle reading, in our integer units, whatever format it came from.

Conversion rules (exact integer maths, no float anywhere):

* An oracle value is ``mantissa * 10**exponent`` (Pyth: ``price``/``expo``; Switchboard
  On-Demand: ``i128`` with exponent -18; Switchboard V2: ``mantissa`` with exponent
  ``-scale``). Our ``price`` is that value times ``PRICE_PRECISION`` (quote micro-units per
  whole base unit).
* **price** rounds to the nearest integer, **ties away from zero** (``0.5 -> 1``,
  ``2.5 -> 3``). A mark/oracle price is neither owed nor paid, so the nearest value is the
  least biased; the guards that use it add their own margins. A positive raw price that
  rounds to 0 (e.g. BONK, 0.0000345526 USD, is 34.5526 micro-USD -> 35, but anything below
  0.0000005 USD -> 0) is refused: markets on such assets must quote a multiple of the base
  (1M BONK) and rescale from ``raw_mantissa``/``raw_exponent``, which are kept exact.
* **confidence** rounds **up** (ceiling): it bounds how wrong the price may be, so it is
  treated like a liability and never understated. ``0.0517 -> 1``.
* The converted price must fit an ``i64`` (and be >= 1); the confidence a ``u64``; slots a
  ``u64``; timestamps an ``i64``. Anything else raises :class:`ValueOutOfRangeError`.

``publish_time_s`` per source (unix seconds):

* ``PYTH_PUSH``: the account ``timestamp`` (time of the aggregate).
* ``PYTH_PULL``: ``price_message.publish_time`` (when Pythnet published the price).
* ``SWITCHBOARD_ON_DEMAND``: the account's ``last_update_timestamp``. The feed's freshness
  is really ``result.slot``; the mainnet fixture shows ``last_update_timestamp`` can lag the
  result by months, so staleness guards must use ``slot`` for Switchboard.
* ``SWITCHBOARD_V2``: ``latest_confirmed_round.round_open_timestamp`` (round open time).

``slot`` per source: Pyth push ``agg.pub_slot``; Pyth pull ``posted_slot``; Switchboard
On-Demand ``result.slot``; Switchboard V2 ``latest_confirmed_round.round_open_slot``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from exchange.core.units import I64_MAX, I64_MIN, PRICE_PRECISION, U64_MAX, mul_div_ceil
from oracle_feeds.errors import NonPositivePriceError, OracleValueError, ValueOutOfRangeError

# Widest exponent accepted from an account: i128 values carry at most 39 digits, and
# 10**exponent must stay cheap to compute for a hostile u32 scale / i32 exponent.
MIN_EXPONENT: Final = -38
MAX_EXPONENT: Final = 38
FEED_ID_LEN: Final = 32


class OracleSource(IntEnum):
    """Which on-chain format a price was read from. Stable values: never renumber."""

    PYTH_PUSH = 1
    PYTH_PULL = 2
    SWITCHBOARD_ON_DEMAND = 3
    SWITCHBOARD_V2 = 4


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise ValueOutOfRangeError(f"{name}: expected an int in {lo}..{hi}, got {value!r}")
    return value


def _check_exponent(name: str, exponent: int) -> int:
    return _check_int(name, exponent, MIN_EXPONENT, MAX_EXPONENT)


def _pow10(exponent: int) -> int:
    result: int = 10**exponent
    return result


def div_round_half_away(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` to the nearest int, ties away from zero (denominator > 0)."""
    if denominator <= 0:
        raise ValueError(f"denominator: expected > 0, got {denominator}")
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


def scale_half_away(mantissa: int, exponent: int, precision: int = PRICE_PRECISION) -> int:
    """``mantissa * 10**exponent * precision`` rounded to nearest, ties away from zero."""
    _check_exponent("exponent", exponent)
    if exponent >= 0:
        return mantissa * precision * _pow10(exponent)
    return div_round_half_away(mantissa * precision, _pow10(-exponent))


def scale_ceil(mantissa: int, exponent: int, precision: int = PRICE_PRECISION) -> int:
    """``mantissa * 10**exponent * precision`` rounded up (toward positive infinity)."""
    _check_exponent("exponent", exponent)
    if exponent >= 0:
        return mantissa * precision * _pow10(exponent)
    return mul_div_ceil(mantissa, precision, _pow10(-exponent))


def price_from_raw(mantissa: int, exponent: int) -> int:
    """Our ``price`` (at ``PRICE_PRECISION``) for a raw oracle price; refuses unusable ones."""
    if type(mantissa) is not int:
        raise ValueOutOfRangeError(f"price mantissa: expected an int, got {mantissa!r}")
    if mantissa <= 0:
        raise NonPositivePriceError(f"price: expected > 0, got {mantissa} * 10^{exponent}")
    price = scale_half_away(mantissa, exponent)
    if price < 1:
        raise ValueOutOfRangeError(
            f"price: expected >= 1 unit of 1/{PRICE_PRECISION} after rounding, got "
            f"{mantissa} * 10^{exponent} which rounds to 0"
        )
    if price > I64_MAX:
        raise ValueOutOfRangeError(
            f"price: expected <= {I64_MAX} (i64) at precision {PRICE_PRECISION}, got {price} "
            f"from {mantissa} * 10^{exponent}"
        )
    return price


def confidence_from_raw(mantissa: int, exponent: int) -> int:
    """Our ``confidence`` (at ``PRICE_PRECISION``, rounded up) for a raw confidence."""
    if type(mantissa) is not int or mantissa < 0:
        raise ValueOutOfRangeError(
            f"confidence: expected an int >= 0, got {mantissa!r} * 10^{exponent}"
        )
    confidence = scale_ceil(mantissa, exponent)
    if confidence > U64_MAX:
        raise ValueOutOfRangeError(
            f"confidence: expected <= {U64_MAX} (u64) at precision {PRICE_PRECISION}, got "
            f"{confidence} from {mantissa} * 10^{exponent}"
        )
    return confidence


@dataclass(frozen=True, slots=True, kw_only=True)
class OraclePrice:
    """One validated oracle reading. See the module docstring for units and rounding.

    ``raw_mantissa * 10**raw_exponent`` is the oracle's price exactly as stored on chain and
    ``raw_confidence * 10**raw_confidence_exponent`` its confidence (Pyth ``conf``,
    Switchboard standard deviation), kept for audit and exact rescaling.

    ``status_ok`` is the format's own validity flag: Pyth push aggregate status ==
    Trading; Pyth pull verification level == Full; Switchboard On-Demand
    ``result.num_samples >= min_sample_size``; Switchboard V2 latest confirmed round
    ``num_success >= min_oracle_results``. Freshness and confidence guards are separate.

    ``feed_id`` is the Pyth pull feed id (32 bytes) and ``None`` for other sources.
    """

    price: int
    confidence: int
    slot: int
    publish_time_s: int
    source: OracleSource
    raw_mantissa: int
    raw_exponent: int
    raw_confidence: int
    raw_confidence_exponent: int
    status_ok: bool
    feed_id: bytes | None = None

    def __post_init__(self) -> None:
        _check_int("price", self.price, 1, I64_MAX)
        _check_int("confidence", self.confidence, 0, U64_MAX)
        _check_int("slot", self.slot, 0, U64_MAX)
        _check_int("publish_time_s", self.publish_time_s, I64_MIN, I64_MAX)
        _check_exponent("raw_exponent", self.raw_exponent)
        _check_exponent("raw_confidence_exponent", self.raw_confidence_exponent)
        if type(self.raw_mantissa) is not int or type(self.raw_confidence) is not int:
            raise ValueOutOfRangeError(
                f"raw fields: expected ints, got {self.raw_mantissa!r}, {self.raw_confidence!r}"
            )
        if not isinstance(self.source, OracleSource):
            raise OracleValueError(f"source: expected an OracleSource, got {self.source!r}")
        if type(self.status_ok) is not bool:
            raise OracleValueError(f"status_ok: expected a bool, got {self.status_ok!r}")
        if self.feed_id is not None and (
            type(self.feed_id) is not bytes or len(self.feed_id) != FEED_ID_LEN
        ):
            raise OracleValueError(
                f"feed_id: expected None or {FEED_ID_LEN} bytes, got {self.feed_id!r}"
            )

    @classmethod
    def from_raw(
        cls,
        *,
        source: OracleSource,
        mantissa: int,
        exponent: int,
        confidence: int,
        confidence_exponent: int,
        slot: int,
        publish_time_s: int,
        status_ok: bool,
        feed_id: bytes | None = None,
    ) -> OraclePrice:
        """Convert raw on-chain values (see module rules) and validate them."""
        _check_exponent("exponent", exponent)
        _check_exponent("confidence exponent", confidence_exponent)
        return cls(
            price=price_from_raw(mantissa, exponent),
            confidence=confidence_from_raw(confidence, confidence_exponent),
            slot=slot,
            publish_time_s=publish_time_s,
            source=source,
            raw_mantissa=mantissa,
            raw_exponent=exponent,
            raw_confidence=confidence,
            raw_confidence_exponent=confidence_exponent,
            status_ok=status_ok,
            feed_id=feed_id,
        )
