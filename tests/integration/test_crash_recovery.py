"""SIGKILL an engine process mid-stream; nothing acknowledged may be lost, hashes must match."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from exchange.engine.config import EngineConfig
from exchange.engine.journal import Journal
from exchange.engine.sequencer import Engine, recover
from perp.clearinghouse import Clearinghouse

CHILD = Path(__file__).with_name("crash_child.py")


def _run_and_kill(
    data_dir: Path, seed: int, acks_before_kill: int
) -> tuple[int, list[tuple[int, str]], str]:
    """Start the child, let it acknowledge some batches, SIGKILL it; return what it saw."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(data_dir), str(seed)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert proc.stdout is not None
    acked = 0
    hashes: list[tuple[int, str]] = []
    start_hash = ""
    seen = 0
    try:
        for line in proc.stdout:
            parts = line.split()
            if parts[0] == "START":
                start_hash = parts[2]
            elif parts[0] == "ACK":
                acked = int(parts[1])
                seen += 1
                if seen >= acks_before_kill:
                    break
            elif parts[0] == "HASH":
                hashes.append((int(parts[1]), parts[2]))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert seen >= acks_before_kill, "child died before being killed"
    return acked, hashes, start_hash


def test_sigkill_mid_stream_loses_no_acknowledged_event(tmp_path: Path) -> None:
    # Arrange
    data_dir = tmp_path / "data"
    previous_last_seq = 0
    for round_no, acks in enumerate((60, 95, 130)):
        # Act: run the engine and kill it hard while it is writing.
        acked, hashes, start_hash = _run_and_kill(data_dir, seed=round_no, acks_before_kill=acks)

        # Assert: every acknowledged event is durable, and states at recorded points match.
        journal = Journal.for_data_dir(data_dir)
        assert journal.last_seq >= acked > previous_last_seq
        assert journal.verify() == journal.last_seq
        assert hashes, "the child should have reported state hashes"
        for seq, expected in hashes[-2:]:
            core, _ = recover(journal, upto_seq=seq)
            assert core.state_hash() == expected
        # The fold from zero (no snapshot) agrees with the hash the engine reported.
        seq, expected = hashes[-1]
        scratch = Clearinghouse()
        for event in journal.read(after_seq=0, upto_seq=seq):
            scratch.apply(event)
        assert scratch.state_hash() == expected
        journal.close()

        # A restarted engine resumes exactly where the journal ends and keeps working.
        engine = Engine(EngineConfig(data_dir=data_dir))
        assert engine.core.next_seq - 1 == engine.recovery.last_seq
        full = Clearinghouse()
        for event in engine.journal.read():
            full.apply(event)
        assert engine.core.state_hash() == full.state_hash()
        if round_no:
            assert start_hash  # the child itself recovered before continuing
        previous_last_seq = engine.recovery.last_seq
        engine.close()
