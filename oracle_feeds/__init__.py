"""Pyth and Switchboard oracle account parsers and price-sanity guards."""
