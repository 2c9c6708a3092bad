"""Child process for the crash test: runs the engine on seeded flow until it is killed.

After each group commit returns (the events are durable) it prints ``ACK <last_seq>``; every
few commits also ``HASH <seq> <state_hash>``. The parent SIGKILLs it at an arbitrary point.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from exchange.demo import account_setup_commands, demo_round, market_setup_commands
from exchange.engine.config import EngineConfig
from exchange.engine.sequencer import Engine


def main() -> None:
    data_dir = Path(sys.argv[1])
    seed = int(sys.argv[2])
    engine = Engine(EngineConfig(data_dir=data_dir, snapshot_every_events=5_000))
    existing = set(engine.core.books)
    setup = [c for c in market_setup_commands() if c.market_id not in existing]
    engine.process(setup + (account_setup_commands() if not existing else []))
    rng = random.Random(seed)
    mids = {0: 950_000, 1: 350_000, 2: 180_000}
    batch_no = 0
    print(f"START {engine.core.next_seq - 1} {engine.core.state_hash()}", flush=True)
    while True:
        commands = demo_round(rng, mids)
        for start in range(0, len(commands), 64):
            engine.process(commands[start : start + 64])
            batch_no += 1
            line = f"ACK {engine.core.next_seq - 1}"
            if batch_no % 7 == 0:
                line += f"\nHASH {engine.core.next_seq - 1} {engine.core.state_hash()}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
