"""Prometheus ``/metrics``: the text exposition format (0.0.4), written here.

``install_metrics(app)`` (called by ``create_app``) adds the route, a middleware that times
every HTTP request per route into a latency histogram, and a listener on the engine port that
counts the durable events as the read model folds them: orders accepted, fills (count and
base volume), rejections by ``RejectCode`` name, liquidations, the last funding rate per
market. Per-market gauges (oracle age, index and mark price, status) are read from the read
model at scrape time. Other parts of a running node (settlement lag, reconciliation status)
add their own families with ``Metrics.add_collector``.

Every value is an integer count or a measured duration/age in seconds (never money maths).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from exchange.core.errors import RejectCode

#: seconds; the upper bounds of the latency histogram buckets (+Inf is implied)
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Liquidation event types, by name so this module does not depend on when they land.
LIQUIDATION_EVENTS = frozenset({"LiquidationExecuted", "AccountLiquidated"})
DELEVERAGE_EVENTS = frozenset({"PositionDeleveraged"})

Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Family:
    """One metric family: ``samples`` are ``(suffix, labels, value)``."""

    name: str
    kind: str  # counter, gauge, histogram
    help: str
    samples: list[tuple[str, Labels, float | int]] = field(default_factory=list)

    def add(self, value: float | int, labels: Labels = (), suffix: str = "") -> None:
        self.samples.append((suffix, labels, value))


Collector = Callable[[], Iterable[Family]]


class Histogram:
    """Cumulative-bucket histogram of durations in seconds."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS_S) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * len(self.bounds)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        for i, bound in enumerate(self.bounds):
            if seconds <= bound:
                self.counts[i] += 1
                break

    def into(self, family: Family, labels: Labels) -> None:
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            running += n
            family.add(running, (*labels, ("le", _float(bound))), "_bucket")
        family.add(self.count, (*labels, ("le", "+Inf")), "_bucket")
        family.add(self.total, labels, "_sum")
        family.add(self.count, labels, "_count")


def _float(value: float) -> str:
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(families: Iterable[Family]) -> str:
    """The text exposition of ``families``."""
    lines: list[str] = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {fam.help}")
        lines.append(f"# TYPE {fam.name} {fam.kind}")
        for suffix, labels, value in fam.samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            body = f"{{{label_text}}}" if labels else ""
            number = str(value) if isinstance(value, int) else _float(value)
            lines.append(f"{fam.name}{suffix}{body} {number}")
    return "\n".join(lines) + "\n"


def _reject_name(code: int) -> str:
    try:
        return RejectCode(code).name
    except ValueError:
        return f"CODE_{code}"


class Metrics:
    """Counters fed from the engine's events, request latencies, and pluggable collectors."""

    def __init__(self, *, clock_s: Callable[[], float] = time.time) -> None:
        self._clock_s = clock_s
        self.orders_accepted: dict[int, int] = {}  # market_id -> count
        self.fills: dict[int, int] = {}
        self.fill_lots: dict[int, int] = {}  # market_id -> num_base_lots traded
        self.rejections: dict[str, int] = {}  # RejectCode name -> count
        self.liquidations: dict[int, int] = {}
        self.deleverages: dict[int, int] = {}
        self.funding_rate: dict[int, int] = {}  # market_id -> last FUNDING_RATE_PRECISION rate
        self.funding_intervals: dict[int, int] = {}
        self.events_total = 0
        self.last_event_seq = 0
        self.latency: dict[tuple[str, str], Histogram] = {}  # (method, route) -> histogram
        self.collectors: list[Collector] = []

    def add_collector(self, collector: Collector) -> None:
        """Call ``collector()`` on every scrape; it returns finished families."""
        self.collectors.append(collector)

    def observe_events(self, events: Sequence[Any]) -> None:
        """Count one durable batch (engine-port listener)."""
        self.events_total += len(events)
        if events:
            self.last_event_seq = events[-1].seq
        for e in events:
            name = type(e).__name__
            if name == "OrderAccepted":
                self.orders_accepted[e.market_id] = self.orders_accepted.get(e.market_id, 0) + 1
            elif name == "TradeExecuted":
                m = e.market_id
                self.fills[m] = self.fills.get(m, 0) + 1
                self.fill_lots[m] = self.fill_lots.get(m, 0) + e.num_base_lots
            elif name == "OrderRejected":
                code = _reject_name(e.code)
                self.rejections[code] = self.rejections.get(code, 0) + 1
            elif name == "FundingRateApplied":
                self.funding_rate[e.market_id] = e.funding_rate
                self.funding_intervals[e.market_id] = self.funding_intervals.get(e.market_id, 0) + 1
            elif name in LIQUIDATION_EVENTS:
                self.liquidations[e.market_id] = self.liquidations.get(e.market_id, 0) + 1
            elif name in DELEVERAGE_EVENTS:
                self.deleverages[e.market_id] = self.deleverages.get(e.market_id, 0) + 1

    def observe_request(self, method: str, route: str, seconds: float) -> None:
        key = (method, route)
        hist = self.latency.get(key)
        if hist is None:
            hist = self.latency[key] = Histogram()
        hist.observe(seconds)

    # ------------------------------------------------------------------ exposition
    def families(self, port: Any | None = None) -> list[Family]:
        """Every family: event counters, latencies, market gauges (from ``port``), collectors."""
        out: list[Family] = []

        def per_market(name: str, kind: str, help_text: str, values: dict[int, int]) -> None:
            fam = Family(name, kind, help_text)
            for market_id, value in sorted(values.items()):
                fam.add(value, (("market_id", str(market_id)),))
            out.append(fam)

        per_market("perpdex_orders_accepted_total", "counter", "orders the engine accepted",
                   self.orders_accepted)  # fmt: skip
        per_market("perpdex_fills_total", "counter", "trades executed", self.fills)
        per_market("perpdex_fill_base_lots_total", "counter", "base lots traded", self.fill_lots)
        rej = Family("perpdex_rejections_total", "counter", "commands refused, by reject code")
        for code, n in sorted(self.rejections.items()):
            rej.add(n, (("code", code),))
        out.append(rej)
        per_market("perpdex_liquidations_total", "counter", "liquidation events",
                   self.liquidations)  # fmt: skip
        per_market("perpdex_deleverages_total", "counter", "ADL events", self.deleverages)
        per_market("perpdex_funding_rate", "gauge",
                   "last applied funding rate (FUNDING_RATE_PRECISION units)", self.funding_rate)  # fmt: skip
        per_market("perpdex_funding_intervals_total", "counter", "funding intervals applied",
                   self.funding_intervals)  # fmt: skip
        events = Family("perpdex_engine_events_total", "counter", "durable events folded")
        events.add(self.events_total)
        out.append(events)
        seq = Family("perpdex_engine_last_seq", "gauge", "sequence number of the last event")
        seq.add(self.last_event_seq)
        out.append(seq)
        hist = Family("perpdex_api_request_seconds", "histogram", "HTTP request latency by route")
        for (method, route), h in sorted(self.latency.items()):
            h.into(hist, (("method", method), ("route", route)))
        out.append(hist)
        if port is not None:
            out.extend(self._market_gauges(port))
        for collector in self.collectors:
            out.extend(collector())
        return out

    def _market_gauges(self, port: Any) -> list[Family]:
        age = Family("perpdex_oracle_age_seconds", "gauge",
                     "now minus the index price's publish time, per market")  # fmt: skip
        index = Family("perpdex_index_price", "gauge", "index price (PRICE_PRECISION units)")
        mark = Family("perpdex_mark_price", "gauge", "mark price (PRICE_PRECISION units)")
        valid = Family("perpdex_oracle_valid", "gauge", "1 when the index may be traded on")
        status = Family("perpdex_market_halted", "gauge", "1 unless the market is ACTIVE")
        now_s = self._clock_s()
        for info in port.markets():
            market_id = info["market_id"]
            prices = port.market_prices(market_id)
            if prices is None:
                continue
            labels = (("market_id", str(market_id)), ("symbol", info["symbol"]))
            published = prices["index_publish_time_s"]
            if published:
                age.add(max(0.0, now_s - published), labels)
            index.add(prices["index_price"], labels)
            mark.add(prices["mark_price"], labels)
            valid.add(int(bool(prices["oracle_valid"])), labels)
            status.add(int(prices["status"] != "ACTIVE"), labels)
        return [age, index, mark, valid, status]

    def render(self, port: Any | None = None) -> str:
        return render(self.families(port))


METRICS_KEY = web.AppKey("metrics", Metrics)


def install_metrics(app: web.Application, port: Any) -> Metrics:
    """Add ``GET /metrics``, the latency middleware and the event listener to ``app``."""
    metrics = Metrics()
    app[METRICS_KEY] = metrics

    @web.middleware
    async def timing(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            return await handler(request)
        finally:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            if route != "/ws":  # a websocket's lifetime is not a latency
                metrics.observe_request(request.method, route, time.perf_counter() - started)

    app.middlewares.append(timing)

    async def listen_ctx(app: web.Application) -> AsyncIterator[None]:
        # After the engine port's own context: the read model exists.
        remove = port.listen(lambda events, _update: metrics.observe_events(events))
        yield
        remove()

    app.cleanup_ctx.append(listen_ctx)

    async def get_metrics(request: web.Request) -> web.Response:
        text = metrics.render(port)
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/metrics", get_metrics)
    return metrics
