"""Helpers shared by the engine's unit tests."""

from __future__ import annotations


class StepClock:
    """An engine clock (ns) that moves 1 ns forward on every reading, from 1,001."""

    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        self.now += 1
        return self.now
