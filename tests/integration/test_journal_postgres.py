"""The journal and the engine against a real PostgreSQL server started for this module."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.core.commands import CreateMarket, PlaceOrder
from exchange.core.errors import JournalError
from exchange.core.events import OrderRested
from exchange.engine.config import EngineConfig
from exchange.engine.journal import Journal
from exchange.engine.sequencer import Engine

pytestmark = pytest.mark.integration


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or (
        [shutil.which(name)] if shutil.which(name) else []
    )
    if not found:
        pytest.fail(f"PostgreSQL server binaries not found ({name}); `make install` installs them")
    return str(found[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        pytest.fail(
            f"{' '.join(cmd)}: failed ({result.returncode}): {result.stderr or result.stdout}"
        )


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    # Not under pytest's tmp tree: the server's own user must be able to reach the directory.
    root = Path(tempfile.mkdtemp(prefix="perpdex-pg-"))
    root.chmod(0o755)
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    port = _free_port()
    _run(
        [*as_user, _pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "perpdex", "--no-sync"]
    )
    _run(
        [
            *as_user,
            _pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(root / "log"),
            "-o",
            f"-k {sock} -p {port} -c listen_addresses='' -c fsync=on",
            "start",
        ]
    )
    try:
        yield f"postgresql+psycopg://perpdex@/postgres?host={sock}&port={port}"
    finally:
        subprocess.run(
            [*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def _reset(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        for table in ("event_batches", "snapshots", "journal_meta"):
            conn.execute(text(f"drop table if exists {table}"))
    engine.dispose()


def test_journal_round_trip_on_postgres(postgres_url: str) -> None:
    _reset(postgres_url)
    journal = Journal(postgres_url)
    events = [OrderRested(seq, 10 * seq, 0, seq, 100 + seq, 5) for seq in range(1, 101)]
    journal.append(events[:60])
    journal.append(events[60:])
    with pytest.raises(JournalError):
        journal.append([OrderRested(7, 0, 0, 7, 1, 1)])  # not contiguous: nothing written
    journal.close()
    again = Journal(postgres_url)
    assert again.last_seq == 100
    assert list(again.read()) == events
    assert list(again.read(after_seq=40, upto_seq=45)) == events[40:45]
    assert again.verify() == 100
    again.close()


def test_engine_recovers_identical_state_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    _reset(postgres_url)
    config = EngineConfig(data_dir=tmp_path, journal_url=postgres_url, snapshot_every_events=9)
    engine = Engine(config)
    engine.process([CreateMarket(0, "BTC-PERP", 1_000_000, 1_000_000_000)])
    for i in range(40):
        engine.process(
            [PlaceOrder(0, i % 3, 0, i % 2, (100 + i % 7) * 1_000_000, (1 + i % 4) * 1_000_000_000)]
        )
    expected = engine.core.state_hash()
    engine.close()
    restarted = Engine(config)
    assert restarted.recovery.snapshot_seq > 0
    assert restarted.core.state_hash() == expected
    restarted.close()
