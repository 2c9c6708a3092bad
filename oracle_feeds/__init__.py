"""Pyth and Switchboard oracle account parsers and price-sanity guards.

Modules (pure: no network, no clock, no asyncio):

* :mod:`oracle_feeds.price`    ``OracleSource``, ``OraclePrice`` and the exact conversion to
  ``PRICE_PRECISION`` (price: nearest, ties away from zero; confidence: rounded up).
* :mod:`oracle_feeds.errors`   the ``OracleError`` tree with stable ``code`` strings.
* :mod:`oracle_feeds.layouts`  owner program ids, sizes, offsets and per-format records.
* :mod:`oracle_feeds.parsers`  ``parse_*`` / ``decode_*`` for Pyth push (via pythclient),
  Pyth pull ``PriceUpdateV2``, Switchboard On-Demand and V2, ``parse_oracle_account``
  dispatch, and ``load_account_json`` for ``solana account --output json`` dumps.
* :mod:`oracle_feeds.encoders` real-format writers (``encode_*``) for a simulated publisher.

At the edge (asyncio, network): :mod:`oracle_feeds.publisher` (simulated publisher on the
embedded cluster), :mod:`oracle_feeds.stream` (``OracleStream``: PubSub with reconnects) and
:mod:`oracle_feeds.feed` (``OracleFeed``: stream + guards + primary/fallback choice ->
per-market ``IndexPriceUpdate`` for the engine; its decision core ``IndexPriceSelector`` is
pure).
"""
