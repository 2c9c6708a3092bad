"""`perpdex run` and `perpdex replay` as a user runs them (real processes, real files)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path


def perpdex(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exchange.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_run_then_replay_agree_and_a_restart_resumes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = perpdex("run", "--demo-only", "--data-dir", str(data), "--rounds", "20")
    assert first.returncode == 0, first.stderr
    assert "BTC-PERP book" in first.stdout and "throughput:" in first.stdout
    run_hash = first.stdout.split("state hash ")[1].split()[0]

    replay = perpdex("replay", str(data))
    assert replay.returncode == 0, replay.stderr
    assert f"state hash {run_hash}" in replay.stdout
    assert "1 snapshot hashes verified" in replay.stdout

    second = perpdex("run", "--demo-only", "--data-dir", str(data), "--rounds", "5")
    assert second.returncode == 0, second.stderr
    assert f"state {run_hash[:16]}" in second.stdout  # recovered exactly where it stopped


def test_replay_refuses_a_missing_journal(tmp_path: Path) -> None:
    result = perpdex("replay", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "expected a data directory with journal.sqlite" in result.stderr


def test_replay_detects_a_tampered_snapshot(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert perpdex("run", "--demo-only", "--data-dir", str(data), "--rounds", "3").returncode == 0
    with sqlite3.connect(data / "journal.sqlite") as db:
        db.execute("update snapshots set state_hash = ?", ("0" * 64,))
    result = perpdex("replay", str(data))
    assert result.returncode == 3
    assert "does not match" in result.stderr


def test_config_file_with_unknown_key_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "perpdex.toml"
    config.write_text("[engine]\nsnapshot_every = 5\n")
    result = perpdex("run", "--config", str(config), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 1
    assert "CONFIG_ERROR" in result.stderr and "snapshot_every" in result.stderr


def test_replay_detects_a_tampered_snapshot_of_the_empty_exchange(tmp_path: Path) -> None:
    from exchange.engine.config import EngineConfig
    from exchange.engine.sequencer import Engine

    data = tmp_path / "data"
    engine = Engine(EngineConfig(data_dir=data))
    engine.snapshot()  # seq 0: before any event
    engine.close()
    with sqlite3.connect(data / "journal.sqlite") as db:
        db.execute("update snapshots set state_hash = ? where seq = 0", ("0" * 64,))
    result = perpdex("replay", str(data))
    assert result.returncode == 3
    assert "snapshot at seq 0 does not match" in result.stderr
