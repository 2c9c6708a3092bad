"""Liquidation rules and the margin sweeper that finds and closes under-margined accounts."""
