"""A simulated oracle publisher: real-format Pyth / Switchboard accounts on an embedded cluster.

:class:`SimulatedPublisher` writes oracle accounts in their exact on-chain formats (via
:mod:`oracle_feeds.encoders`), owned by the real program ids, onto a
:class:`localnet.cluster.EmbeddedCluster`. Writes go through ``EmbeddedCluster.set_account``,
which emits the same account-change event the PubSub server turns into
``accountNotification`` messages, so websocket subscribers see every update.

Prices come from a :class:`PricePath`:

* :class:`RandomWalk`: ``random.Random(seed)``, integer maths only. Price at
  ``PRICE_PRECISION``; each step moves it by a uniform integer in ``[-step_ppm, +step_ppm]``
  ppm of the price (never below 1); confidence is ``confidence_ppm`` of the price, rounded
  up.
* :class:`CsvPricePath`: rows ``ts_s,price`` (optional header ``ts_s,price[,confidence]``);
  the price (and optional confidence) are decimal strings converted exactly with
  :class:`decimal.Decimal` (at most 6 decimals, i.e. exact at ``PRICE_PRECISION``); any bad
  row is refused with :class:`CsvPathError` naming its line number.

Every update stamps the cluster's current slot (after ``tick()``) and unix time, so
staleness guards measure real ages against the cluster clock. (At cluster slot 0 the
Switchboard formats read as "no result yet": start the cluster at a later slot.) ``publish_once`` does one
step for every feed; :meth:`SimulatedPublisher.run` / :meth:`start` / :meth:`stop` drive it
from an asyncio task (random walks every ``interval_s``; CSV paths paced by their ``ts_s``
differences divided by ``speed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final, Protocol

from solders.account import Account
from solders.pubkey import Pubkey

from exchange.core.units import I64_MAX, PRICE_PRECISION, RATIO_PRECISION
from localnet.cluster import EmbeddedCluster
from oracle_feeds.encoders import (
    encode_pyth_pull_price_update_v2,
    encode_pyth_push,
    encode_switchboard_on_demand,
    encode_switchboard_v2,
)
from oracle_feeds.errors import OracleValueError
from oracle_feeds.layouts import (
    PYTH_PUSH_PROGRAM_ID,
    PYTH_RECEIVER_PROGRAM_ID,
    SB_ON_DEMAND_DECIMALS,
    SWITCHBOARD_ON_DEMAND_PROGRAM_ID,
    SWITCHBOARD_V2_PROGRAM_ID,
    PythPriceInfo,
    PythPullAccount,
    PythPushAccount,
    PythStatus,
    SwitchboardOnDemandAccount,
    SwitchboardV2Account,
)
from oracle_feeds.price import OracleSource

PRICE_DECIMALS: Final = 6  # PRICE_PRECISION == 10**6
assert 10**PRICE_DECIMALS == PRICE_PRECISION


class CsvPathError(ValueError):
    """A CSV price path could not be used; the message names the file and line."""

    code = "ORACLE_CSV_PATH"


@dataclass(frozen=True, slots=True)
class PricePoint:
    """One step of a price path, at ``PRICE_PRECISION`` (``ts_s``: CSV time, else None)."""

    price: int
    confidence: int
    ts_s: int | None = None


class PricePath(Protocol):
    def next_point(self) -> PricePoint | None:
        """The next point, or None when the path is exhausted."""

    def delay_before_next_s(self) -> float | None:
        """Seconds of path time until the next point (None: use the runner's interval)."""


def _ceil_ppm(value: int, ppm: int) -> int:
    return -((-value * ppm) // RATIO_PRECISION)


class RandomWalk:
    """A seeded integer random walk (see the module docstring)."""

    def __init__(self, *, seed: int, start_price: int, step_ppm: int, confidence_ppm: int) -> None:
        for name, value, lo in (
            ("start_price", start_price, 1),
            ("step_ppm", step_ppm, 0),
            ("confidence_ppm", confidence_ppm, 0),
        ):
            if type(value) is not int or value < lo:
                raise OracleValueError(f"{name}: expected an int >= {lo}, got {value!r}")
        if step_ppm >= RATIO_PRECISION:
            raise OracleValueError(f"step_ppm: expected < {RATIO_PRECISION}, got {step_ppm}")
        self._rng = random.Random(seed)
        self._price = start_price
        self._started = False
        self.step_ppm = step_ppm
        self.confidence_ppm = confidence_ppm

    def next_point(self) -> PricePoint:
        if self._started:
            move_ppm = self._rng.randint(-self.step_ppm, self.step_ppm)
            delta = self._price * move_ppm // RATIO_PRECISION  # floor: deterministic
            self._price = min(I64_MAX, max(1, self._price + delta))
        self._started = True
        return PricePoint(self._price, _ceil_ppm(self._price, self.confidence_ppm))

    def delay_before_next_s(self) -> float | None:
        return None


def parse_decimal_price(text: str, what: str) -> int:
    """A decimal string as an exact int at ``PRICE_PRECISION`` (refuses inexact/invalid)."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{what}: expected a decimal number, got {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"{what}: expected a finite decimal, got {text!r}")
    scaled = value.scaleb(PRICE_DECIMALS)
    if scaled != scaled.to_integral_value():
        raise ValueError(
            f"{what}: expected at most {PRICE_DECIMALS} decimals (exact at precision "
            f"{PRICE_PRECISION}), got {text!r}"
        )
    return int(scaled)


class CsvPricePath:
    """A recorded path of ``ts_s,price[,confidence]`` rows, replayed exactly in order."""

    def __init__(self, points: Sequence[PricePoint]) -> None:
        self.points: tuple[PricePoint, ...] = tuple(points)
        self._i = 0

    @classmethod
    def from_file(cls, path: str | Path, *, default_confidence_ppm: int = 0) -> CsvPricePath:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise CsvPathError(f"{path}: cannot read price path: {exc}") from exc
        return cls.from_lines(
            text.splitlines(), name=str(path), default_confidence_ppm=default_confidence_ppm
        )

    @classmethod
    def from_lines(
        cls, lines: Iterable[str], *, name: str = "<csv>", default_confidence_ppm: int = 0
    ) -> CsvPricePath:
        points: list[PricePoint] = []
        last_ts: int | None = None
        for lineno, row in enumerate(csv.reader(lines), start=1):
            where = f"{name}: line {lineno}"
            if not row or all(not cell.strip() for cell in row):
                continue
            if lineno == 1 and row[0].strip() == "ts_s":
                continue
            if len(row) not in (2, 3):
                raise CsvPathError(
                    f"{where}: expected 'ts_s,price[,confidence]', got {len(row)} fields {row!r}"
                )
            try:
                ts_text = row[0].strip()
                if not ts_text.lstrip("-").isdigit():
                    raise ValueError(f"ts_s: expected an integer, got {row[0]!r}")
                ts = int(ts_text)
                price = parse_decimal_price(row[1], "price")
                if price < 1:
                    raise ValueError(f"price: expected > 0, got {row[1]!r}")
                if len(row) == 3:
                    confidence = parse_decimal_price(row[2], "confidence")
                    if confidence < 0:
                        raise ValueError(f"confidence: expected >= 0, got {row[2]!r}")
                else:
                    confidence = _ceil_ppm(price, default_confidence_ppm)
            except ValueError as exc:
                raise CsvPathError(f"{where}: {exc}") from None
            if last_ts is not None and ts < last_ts:
                raise CsvPathError(
                    f"{where}: ts_s: expected >= the previous row's {last_ts}, got {ts}"
                )
            last_ts = ts
            points.append(PricePoint(price, confidence, ts))
        if not points:
            raise CsvPathError(f"{name}: expected at least one 'ts_s,price' row, got none")
        return cls(points)

    @property
    def remaining(self) -> int:
        return len(self.points) - self._i

    def next_point(self) -> PricePoint | None:
        if self._i >= len(self.points):
            return None
        point = self.points[self._i]
        self._i += 1
        return point

    def delay_before_next_s(self) -> float | None:
        if not 0 < self._i < len(self.points):
            return None
        prev, nxt = self.points[self._i - 1].ts_s, self.points[self._i].ts_s
        return float((nxt or 0) - (prev or 0))


OWNERS: Final = {
    OracleSource.PYTH_PUSH: PYTH_PUSH_PROGRAM_ID,
    OracleSource.PYTH_PULL: PYTH_RECEIVER_PROGRAM_ID,
    OracleSource.SWITCHBOARD_ON_DEMAND: SWITCHBOARD_ON_DEMAND_PROGRAM_ID,
    OracleSource.SWITCHBOARD_V2: SWITCHBOARD_V2_PROGRAM_ID,
}


@dataclass
class SimulatedFeed:
    """One account to publish: its address, format, price path and format parameters.

    ``exponent`` is the Pyth exponent (<= -6 so that our integers convert exactly); the
    Switchboard On-Demand scale is fixed at 18 decimals; Switchboard V2 uses scale 6.
    """

    address: Pubkey
    source: OracleSource
    path: PricePath
    exponent: int = -8
    feed_id: bytes = bytes(32)
    owner: Pubkey | None = None  # default: the real program id for ``source``
    _prev: tuple[int, int, int, int] | None = field(default=None, repr=False)  # slot,px,cf,ts

    def __post_init__(self) -> None:
        if not isinstance(self.source, OracleSource):
            raise OracleValueError(f"source: expected an OracleSource, got {self.source!r}")
        if type(self.exponent) is not int or not -18 <= self.exponent <= -PRICE_DECIMALS:
            raise OracleValueError(
                f"exponent: expected an int in -18..-{PRICE_DECIMALS}, got {self.exponent!r}"
            )

    @property
    def account_owner(self) -> Pubkey:
        return self.owner if self.owner is not None else OWNERS[self.source]


@dataclass(frozen=True, slots=True)
class Published:
    """What one write put on chain, in our units (what a parser must read back)."""

    address: Pubkey
    source: OracleSource
    price: int
    confidence: int
    slot: int
    publish_time_s: int
    ts_s: int | None  # the CSV row time, if any


def encode_feed_account(feed: SimulatedFeed, point: PricePoint, *, slot: int, now_s: int) -> bytes:
    """The account bytes for ``point`` in ``feed``'s format, stamped ``slot``/``now_s``."""
    prev_slot, prev_price, prev_conf, prev_ts = feed._prev or (0, 0, 0, 0)
    if feed.source is OracleSource.PYTH_PUSH or feed.source is OracleSource.PYTH_PULL:
        mult = 10 ** (-feed.exponent - PRICE_DECIMALS)
        price, conf = point.price * mult, point.confidence * mult
        if feed.source is OracleSource.PYTH_PUSH:
            return encode_pyth_push(
                PythPushAccount(
                    exponent=feed.exponent,
                    agg=PythPriceInfo(
                        price=price, conf=conf, status=PythStatus.TRADING, pub_slot=slot
                    ),
                    timestamp=now_s,
                    last_slot=slot,
                    valid_slot=slot,
                    ema_price=(price, price, 1),
                    ema_conf=(conf, conf, 1),
                    min_pub=1,
                    prev_slot=prev_slot,
                    prev_price=prev_price * mult,
                    prev_conf=prev_conf * mult,
                    prev_timestamp=prev_ts,
                )
            )
        return encode_pyth_pull_price_update_v2(
            PythPullAccount(
                feed_id=feed.feed_id,
                price=price,
                conf=conf,
                exponent=feed.exponent,
                publish_time=now_s,
                prev_publish_time=prev_ts,
                posted_slot=slot,
                ema_price=price,
                ema_conf=conf,
            )
        )
    if feed.source is OracleSource.SWITCHBOARD_ON_DEMAND:
        mult = 10 ** (SB_ON_DEMAND_DECIMALS - PRICE_DECIMALS)
        value, std = point.price * mult, point.confidence * mult
        return encode_switchboard_on_demand(
            SwitchboardOnDemandAccount(
                value=value,
                std_dev=std,
                slot=slot,
                mean=value,
                min_value=value,
                max_value=value,
                num_samples=1,
                min_slot=slot,
                max_slot=slot,
                last_update_timestamp=now_s,
                name=b"simulated",
            )
        )
    return encode_switchboard_v2(
        SwitchboardV2Account(
            result_mantissa=point.price,
            result_scale=PRICE_DECIMALS,
            round_open_slot=slot,
            round_open_timestamp=now_s,
            std_mantissa=point.confidence,
            std_scale=PRICE_DECIMALS,
            name=b"simulated",
        )
    )


class SimulatedPublisher:
    """Publishes each feed's next price onto ``cluster`` (see the module docstring)."""

    def __init__(self, cluster: EmbeddedCluster, feeds: Sequence[SimulatedFeed]) -> None:
        addresses = [f.address for f in feeds]
        if len(set(addresses)) != len(addresses):
            raise OracleValueError("feeds: expected distinct addresses")
        self.cluster = cluster
        self.feeds = list(feeds)
        self.history: list[Published] = []
        self._task: asyncio.Task[None] | None = None
        self._stop_event: asyncio.Event | None = None

    @property
    def exhausted(self) -> bool:
        return all(isinstance(f.path, CsvPricePath) and f.path.remaining == 0 for f in self.feeds)

    def publish_once(self, now: int | None = None) -> list[Published]:
        """Write every feed's next point; stamps the cluster slot and ``now`` (default: the
        cluster's unix time). Returns what was written (empty once every path is exhausted)."""
        slot = self.cluster.tick()
        now_s = self.cluster.unix_timestamp if now is None else now
        out: list[Published] = []
        for feed in self.feeds:
            point = feed.path.next_point()
            if point is None:
                continue
            data = encode_feed_account(feed, point, slot=slot, now_s=now_s)
            lamports = self.cluster.minimum_balance_for_rent_exemption(len(data))
            self.cluster.set_account(
                feed.address,
                Account(lamports=lamports, data=data, owner=feed.account_owner),
            )
            feed._prev = (slot, point.price, point.confidence, now_s)
            out.append(
                Published(
                    feed.address,
                    feed.source,
                    point.price,
                    point.confidence,
                    slot,
                    now_s,
                    point.ts_s,
                )
            )
        self.history.extend(out)
        return out

    def _delay(self, interval_s: float, speed: float) -> float:
        delays = [d for f in self.feeds if (d := f.path.delay_before_next_s()) is not None]
        if delays:
            return max(0.0, min(delays) / speed)
        return interval_s

    async def run(
        self,
        *,
        interval_s: float = 0.4,
        speed: float = 1.0,
        max_updates: int | None = None,
        stop: asyncio.Event | None = None,
    ) -> int:
        """Publish until ``stop`` is set, ``max_updates`` steps are done or every path is
        exhausted; returns the number of steps."""
        if interval_s < 0 or speed <= 0:
            raise ValueError("interval_s must be >= 0 and speed > 0")
        stop = stop or asyncio.Event()
        steps = 0
        while not stop.is_set() and (max_updates is None or steps < max_updates):
            if not self.publish_once():
                break
            steps += 1
            if self.exhausted:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._delay(interval_s, speed))
        return steps

    def start(self, *, interval_s: float = 0.4, speed: float = 1.0) -> asyncio.Task[None]:
        """Run :meth:`run` as a background task (stop it with :meth:`stop`)."""
        if self._task is not None and not self._task.done():
            raise RuntimeError("publisher already running")
        stop = self._stop_event = asyncio.Event()

        async def runner() -> None:
            await self.run(interval_s=interval_s, speed=speed, stop=stop)

        self._task = asyncio.create_task(runner(), name="oracle-publisher")
        return self._task

    async def stop(self) -> None:
        if self._task is None:
            return
        if self._stop_event is not None:
            self._stop_event.set()
        try:
            await self._task
        finally:
            self._task = None
