"""Unit tests for the SQLAlchemy/SQLite event journal."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import exchange
import exchange.engine.journal as journal_module
from exchange.core.errors import JournalError
from exchange.core.events import (
    Event,
    MarketCreated,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderRested,
    TradeExecuted,
    decode_events,
    encode_events,
)
from exchange.engine.journal import JOURNAL_FILE_NAME, Journal, Snapshot

TS0 = 1_700_000_000_000_000_000
HASH_A = "a" * 64
HASH_B = "b" * 64


def make_events(n: int, start: int = 1) -> list[Event]:
    """``n`` events of mixed types with seqs ``start..start+n-1``."""
    out: list[Event] = []
    for seq in range(start, start + n):
        ts = TS0 + seq
        kind = seq % 6
        if kind == 0:
            out.append(MarketCreated(seq, ts, 1, "BTC-PERP", 10, 1000, 1, 10**6, 10**9, 100))
        elif kind == 1:
            out.append(
                OrderAccepted(
                    seq, ts, 1, seq, 77, 5, 0, 0, 0, 0, 100_000, 10, 0, seq % 2 == 0, 0, 0
                )
            )
        elif kind == 2:
            out.append(OrderRested(seq, ts, 1, seq - 1, 100_000, 10))
        elif kind == 3:
            out.append(OrderCanceled(seq, ts, 1, seq - 2, 5, 0, 10, 1))
        elif kind == 4:
            out.append(TradeExecuted(seq, ts, 2, 3, 4, 5, 0, 6, 1, 1, 99_990, 3, 7, 0))
        else:
            out.append(OrderAmended(seq, ts, 1, seq - 4, 100_010, 4, True))
    return out


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.for_data_dir(tmp_path)
    yield j
    j.close()


def test_append_then_read_round_trips_mixed_event_types(journal: Journal) -> None:
    # Arrange
    events = make_events(30)

    # Act
    journal.append(events[:7])
    journal.append(events[7:8])
    journal.append(events[8:])
    got = list(journal.read())

    # Assert
    assert got == events
    assert [type(e) for e in got] == [type(e) for e in events]
    assert journal.last_seq == 30
    assert journal.verify() == 30


def test_bool_fields_come_back_as_bool(journal: Journal) -> None:
    # Arrange: an int where the event declares a bool, as decode_events normalises it
    accepted = OrderAccepted(1, TS0, 1, 1, 1, 1, 0, 0, 0, 0, 100, 1, 0, 1, 0, 0)  # type: ignore[arg-type]

    # Act
    journal.append([accepted])
    (got,) = journal.read()

    # Assert
    assert got.reduce_only is True  # type: ignore[union-attr]


def test_empty_journal_reads_nothing_and_verifies_zero(journal: Journal) -> None:
    # Act / Assert
    assert journal.last_seq == 0
    assert list(journal.read()) == []
    assert journal.verify() == 0


def test_empty_append_is_a_noop(journal: Journal) -> None:
    # Act
    journal.append([])

    # Assert
    assert journal.last_seq == 0
    assert list(journal.read()) == []


def test_last_seq_persists_across_reopen(tmp_path: Path) -> None:
    # Arrange
    with Journal.for_data_dir(tmp_path) as first:
        first.append(make_events(12))

    # Act
    with Journal.for_data_dir(tmp_path) as reopened:
        last = reopened.last_seq
        reopened.append(make_events(3, start=13))
        got = list(reopened.read())

    # Assert
    assert last == 12
    assert got == make_events(15)
    assert (tmp_path / JOURNAL_FILE_NAME).is_file()


def test_url_constructor_creates_tables(tmp_path: Path) -> None:
    # Arrange
    url = f"sqlite:///{tmp_path / 'j.sqlite'}"

    # Act
    with Journal(url) as j:
        j.append(make_events(2))

    # Assert
    with sqlite3.connect(tmp_path / "j.sqlite") as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert {"event_batches", "snapshots", "journal_meta"} <= tables
    assert mode == "wal"


@pytest.mark.parametrize(
    "bad_seqs",
    [
        [2, 3],  # gap before the batch
        [1, 3],  # gap inside the batch
        [1, 1],  # duplicate
        [0, 1],  # before the start
    ],
)
def test_non_contiguous_append_is_rejected_and_writes_nothing(
    journal: Journal, bad_seqs: list[int]
) -> None:
    # Arrange
    batch = [OrderRested(s, TS0, 1, 9, 100, 1) for s in bad_seqs]

    # Act
    with pytest.raises(JournalError, match="expected seq"):
        journal.append(batch)

    # Assert
    assert journal.last_seq == 0
    assert list(journal.read()) == []


def test_append_after_existing_must_continue_from_last_seq(journal: Journal) -> None:
    # Arrange
    journal.append(make_events(5))

    # Act
    with pytest.raises(JournalError, match="expected seq 6 at batch index 0, got 5"):
        journal.append(make_events(2, start=5))

    # Assert
    assert journal.last_seq == 5
    assert list(journal.read()) == make_events(5)


def test_append_rejects_non_events(journal: Journal) -> None:
    # Act / Assert
    with pytest.raises(JournalError):
        journal.append([(1, TS0, 1)])  # type: ignore[list-item]
    assert journal.last_seq == 0


@pytest.mark.parametrize(
    ("after", "upto", "expected_seqs"),
    [
        (0, None, range(1, 21)),
        (0, 20, range(1, 21)),
        (5, None, range(6, 21)),
        (5, 12, range(6, 13)),
        (6, 7, range(7, 8)),  # inside one batch
        (4, 4, range(0)),
        (19, None, range(20, 21)),
        (20, None, range(0)),
        (25, None, range(0)),
        (0, 100, range(1, 21)),  # upto beyond the end
        (0, 1, range(1, 2)),
    ],
)
def test_read_bounds_are_after_exclusive_upto_inclusive(
    journal: Journal, after: int, upto: int | None, expected_seqs: range
) -> None:
    # Arrange: batches 1..3, 4..10, 11, 12..20
    events = make_events(20)
    for lo, hi in ((0, 3), (3, 10), (10, 11), (11, 20)):
        journal.append(events[lo:hi])

    # Act
    got = [e.seq for e in journal.read(after, upto)]

    # Assert
    assert got == list(expected_seqs)


def test_read_pages_across_many_batches(journal: Journal) -> None:
    # Arrange: force several read pages
    journal.READ_PAGE_SEQS = 4
    events = make_events(40)
    for i in range(0, 40, 3):
        journal.append(events[i : i + 3])

    # Act
    got = list(journal.read(2, 37))

    # Assert
    assert got == events[2:37]


@pytest.mark.parametrize(("after", "upto"), [(-1, None), (5, 4)])
def test_read_rejects_bad_bounds(journal: Journal, after: int, upto: int | None) -> None:
    # Act / Assert
    with pytest.raises(JournalError, match="expected"):
        journal.read(after, upto)


def test_read_batches_raw_yields_payloads_overlapping_the_range(journal: Journal) -> None:
    # Arrange
    events = make_events(10)
    journal.append(events[:4])
    journal.append(events[4:])

    # Act
    batches = list(journal.read_batches_raw(after_seq=5))

    # Assert
    assert [(b.first_seq, b.last_seq, b.event_count) for b in batches] == [(5, 10, 6)]
    assert decode_events(batches[0].payload) == events[4:]


def test_snapshot_save_and_latest_with_upto(journal: Journal) -> None:
    # Arrange
    journal.append(make_events(30))

    # Act
    journal.save_snapshot(10, HASH_A, b"state@10")
    journal.save_snapshot(25, HASH_B, b"state@25")

    # Assert
    assert journal.latest_snapshot() == Snapshot(25, HASH_B, b"state@25")
    assert journal.latest_snapshot(upto_seq=24) == Snapshot(10, HASH_A, b"state@10")
    assert journal.latest_snapshot(upto_seq=10) == Snapshot(10, HASH_A, b"state@10")
    assert journal.latest_snapshot(upto_seq=9) is None


def test_latest_snapshot_is_none_when_there_is_none(journal: Journal) -> None:
    assert journal.latest_snapshot() is None


def test_snapshot_resave_same_hash_is_noop_and_conflict_raises(journal: Journal) -> None:
    # Arrange
    journal.append(make_events(5))
    journal.save_snapshot(5, HASH_A, b"x")

    # Act
    journal.save_snapshot(5, HASH_A, b"x")
    with pytest.raises(JournalError, match=f"expected state_hash {HASH_A}, got {HASH_B}"):
        journal.save_snapshot(5, HASH_B, b"y")

    # Assert
    assert journal.latest_snapshot() == Snapshot(5, HASH_A, b"x")


@pytest.mark.parametrize(
    ("seq", "state_hash"),
    [(6, HASH_A), (-1, HASH_A), (3, "abc"), (3, "G" * 64)],
)
def test_snapshot_rejects_bad_arguments(journal: Journal, seq: int, state_hash: str) -> None:
    # Arrange
    journal.append(make_events(5))

    # Act / Assert
    with pytest.raises(JournalError, match="expected"):
        journal.save_snapshot(seq, state_hash, b"p")
    assert journal.latest_snapshot() is None


def _tamper(db_path: Path, sql: str, *params: object) -> None:
    with sqlite3.connect(db_path) as db:
        db.execute(sql, params)


def test_tampered_payload_byte_is_detected(tmp_path: Path) -> None:
    # Arrange
    with Journal.for_data_dir(tmp_path) as j:
        j.append(make_events(10))
        j.append(make_events(10, start=11))
    db_path = tmp_path / JOURNAL_FILE_NAME
    with sqlite3.connect(db_path) as db:
        payload = bytearray(
            db.execute("SELECT payload FROM event_batches WHERE first_seq = 11").fetchone()[0]
        )
    payload[20] = ord("9") if payload[20] != ord("9") else ord("8")
    _tamper(db_path, "UPDATE event_batches SET payload = ? WHERE first_seq = 11", bytes(payload))

    # Act / Assert
    with Journal.for_data_dir(tmp_path) as j:
        assert [e.seq for e in j.read(upto_seq=10)] == list(range(1, 11))
        with pytest.raises(JournalError, match="batch 11: expected checksum"):
            list(j.read())
        with pytest.raises(JournalError, match="checksum"):
            j.verify()


def test_tampered_payload_with_matching_checksum_is_detected(tmp_path: Path) -> None:
    # Arrange: rewrite a batch consistently but with a wrong seq inside
    with Journal.for_data_dir(tmp_path) as j:
        j.append(make_events(5))
    db_path = tmp_path / JOURNAL_FILE_NAME
    bad = make_events(5)
    bad[2] = bad[2]._replace(seq=99)
    payload = encode_events(bad)
    _tamper(
        db_path,
        "UPDATE event_batches SET payload = ?, checksum = ?",
        payload,
        hashlib.sha256(payload).hexdigest(),
    )

    # Act / Assert
    with (
        Journal.for_data_dir(tmp_path) as j,
        pytest.raises(JournalError, match="expected seq 3 at index 2, got 99"),
    ):
        j.verify()


def test_missing_batch_is_detected_as_a_gap(tmp_path: Path) -> None:
    # Arrange
    with Journal.for_data_dir(tmp_path) as j:
        for i in range(0, 9, 3):
            j.append(make_events(3, start=i + 1))
    _tamper(tmp_path / JOURNAL_FILE_NAME, "DELETE FROM event_batches WHERE first_seq = 4")

    # Act / Assert
    with Journal.for_data_dir(tmp_path) as j:
        with pytest.raises(JournalError, match="expected a batch starting at seq 4, got"):
            list(j.read())
        with pytest.raises(
            JournalError, match="expected a batch starting at seq 4, got first_seq 7"
        ):
            list(j.read(after_seq=4))
        with pytest.raises(JournalError, match="gap"):
            j.verify()


def test_missing_first_batch_is_detected(tmp_path: Path) -> None:
    # Arrange
    with Journal.for_data_dir(tmp_path) as j:
        j.append(make_events(3))
        j.append(make_events(3, start=4))
    _tamper(tmp_path / JOURNAL_FILE_NAME, "DELETE FROM event_batches WHERE first_seq = 1")

    # Act / Assert
    with Journal.for_data_dir(tmp_path) as j, pytest.raises(JournalError, match="seq 1"):
        j.verify()


def test_unknown_format_version_is_refused(tmp_path: Path) -> None:
    # Arrange
    Journal.for_data_dir(tmp_path).close()
    _tamper(tmp_path / JOURNAL_FILE_NAME, "UPDATE journal_meta SET value = '99'")

    # Act / Assert
    with pytest.raises(JournalError, match="expected journal format 1, got '99'"):
        Journal.for_data_dir(tmp_path)


def test_second_reader_in_same_process_sees_appended_data(tmp_path: Path) -> None:
    # Arrange
    writer = Journal.for_data_dir(tmp_path)
    writer.append(make_events(5))
    reader = Journal.for_data_dir(tmp_path, read_only=True)

    # Act
    writer.append(make_events(5, start=6))
    seen = list(reader.read())
    refreshed = reader.refresh()

    # Assert
    assert seen == make_events(10)
    assert refreshed == 10
    with pytest.raises(JournalError, match="read-only"):
        reader.append(make_events(1, start=11))
    reader.close()
    writer.close()


def test_reader_in_another_process_reads_while_writer_is_open(tmp_path: Path) -> None:
    # Arrange: the writer stays open (WAL not checkpointed) while the child reads
    writer = Journal.for_data_dir(tmp_path)
    writer.append(make_events(50))
    writer.append(make_events(25, start=51))
    script = (
        "import sys\n"
        "from exchange.engine.journal import Journal\n"
        "with Journal.for_data_dir(sys.argv[1], read_only=True) as j:\n"
        "    print(j.last_seq, sum(1 for _ in j.read()), j.verify())\n"
    )
    repo_root = Path(exchange.__file__).resolve().parent.parent

    # Act
    child = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=repo_root,
        check=False,
    )
    writer.append(make_events(5, start=76))
    writer.close()

    # Assert
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["75", "75", "75"]


def test_read_only_open_of_missing_journal_fails(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="expected an existing journal"):
        Journal.for_data_dir(tmp_path / "nope", read_only=True)


def test_second_writer_is_detected(tmp_path: Path) -> None:
    # Arrange
    a = Journal.for_data_dir(tmp_path)
    b = Journal.for_data_dir(tmp_path)
    a.append(make_events(3))

    # Act / Assert
    with pytest.raises(JournalError, match="expected stored last_seq 0, got 3"):
        b.append(make_events(2))
    assert list(a.read()) == make_events(3)
    a.close()
    b.close()


def test_closed_journal_refuses_use(tmp_path: Path) -> None:
    # Arrange
    j = Journal.for_data_dir(tmp_path)
    j.close()

    # Act / Assert
    with pytest.raises(JournalError, match="closed"):
        j.append(make_events(1))
    with pytest.raises(JournalError, match="closed"):
        list(j.read())


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=60),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=12),
    after=st.integers(min_value=0, max_value=65),
)
def test_any_batch_split_reads_back_identically(n: int, cuts: list[int], after: int) -> None:
    # Arrange
    events = make_events(n)
    bounds = sorted({0, n, *(c for c in cuts if c <= n)})
    with tempfile.TemporaryDirectory() as tmp:
        with Journal.for_data_dir(tmp) as j:
            j.READ_PAGE_SEQS = 7

            # Act
            for lo, hi in itertools.pairwise(bounds):
                j.append(events[lo:hi])
            whole = list(j.read())
            tail = list(j.read(after_seq=after))
            counted = j.verify()

    # Assert
    assert whole == events
    assert tail == events[after:]
    assert counted == n


def test_append_returns_the_stored_payload(journal: Journal) -> None:
    # Arrange
    events = make_events(4)
    # Act
    payload = journal.append(events)
    # Assert: the bytes written are the events encoded once, as a reader gets them back
    (stored,) = list(journal.read_batches_raw())
    assert payload == stored.payload == encode_events(events)
    assert journal.append([]) == b""


def test_a_refused_append_leaves_the_writer_usable(tmp_path: Path) -> None:
    # Arrange: b's append is refused inside its write transaction (a second writer)
    a = Journal.for_data_dir(tmp_path)
    b = Journal.for_data_dir(tmp_path)
    a.append(make_events(2))
    with pytest.raises(JournalError, match="second writer"):
        b.append(make_events(1))
    # Act: a goes on appending (b's transaction was rolled back, not left holding the lock)
    a.append(make_events(3, start=3))
    # Assert
    assert [e.seq for e in a.read()] == [1, 2, 3, 4, 5]
    a.close()
    b.close()


# -- WAL checkpoints off the commit path ---------------------------------------------------


def _wal_frames(path: Path) -> int:
    """Frames in the WAL now (a PASSIVE checkpoint's count; it also backfills them)."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        ((_busy, frames, _backfilled),) = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    return int(frames)


def test_commits_never_checkpoint_the_wal_themselves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: no background pass within the run
    monkeypatch.setattr(journal_module, "CHECKPOINT_EVERY_PAGES", 10**9)
    payload = encode_events(make_events(3))
    # Act: more pages than SQLite's auto-checkpoint threshold (1000)
    with Journal.for_data_dir(tmp_path) as j:
        for _ in range(1_100):
            j.append_encoded(payload, 3)
        # Assert: every frame (one page a commit) is still in the WAL: no commit checkpointed
        assert _wal_frames(tmp_path / JOURNAL_FILE_NAME) >= 1_100


def test_background_checkpoints_keep_the_wal_restarting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: a background pass every 20 estimated pages (about 10 commits)
    monkeypatch.setattr(journal_module, "CHECKPOINT_EVERY_PAGES", 20)
    wal = tmp_path / f"{JOURNAL_FILE_NAME}-wal"
    with Journal.for_data_dir(tmp_path) as j:
        # Act
        for i in range(400):
            j.append(make_events(1, start=i + 1))
        checkpointer = j._checkpointer
        assert checkpointer is not None
        passes = checkpointer.passes
        # Assert: 400 commits wrote 400+ frames; a WAL restarted after every pass stays
        # within a few passes' worth (pages of 4 KiB + a 24-byte frame header)
        assert passes >= 1
        assert wal.stat().st_size < 150 * (4096 + 24)
        assert [e[0] for e in j.read()] == list(range(1, 401))
    with Journal.for_data_dir(tmp_path, read_only=True) as reopened:
        assert reopened.verify() == 400


def test_close_stops_the_checkpoint_thread(tmp_path: Path) -> None:
    # Arrange
    j = Journal.for_data_dir(tmp_path)
    j.append(make_events(2))
    checkpointer = j._checkpointer
    assert checkpointer is not None
    thread = next(t for t in threading.enumerate() if t is checkpointer._thread)
    # Act
    j.close()
    # Assert
    assert not thread.is_alive()
    assert j._checkpointer is None


def test_new_sqlite_journal_keys_batches_by_rowid(tmp_path: Path) -> None:
    # Arrange / Act
    Journal.for_data_dir(tmp_path).close()
    # Assert: no separate index for first_seq (one b-tree page per commit, not two)
    with contextlib.closing(sqlite3.connect(tmp_path / JOURNAL_FILE_NAME)) as db:
        indexes = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'event_batches'"
        ).fetchall()
    assert indexes == []


def test_journal_made_with_a_bigint_batch_key_still_appends_and_reads(tmp_path: Path) -> None:
    # Arrange: the schema journals were created with before the key became the rowid
    with contextlib.closing(sqlite3.connect(tmp_path / JOURNAL_FILE_NAME)) as db:
        db.executescript(
            "CREATE TABLE event_batches (first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL,"
            " event_count INTEGER NOT NULL, checksum CHAR(64) NOT NULL, payload BLOB NOT NULL,"
            " PRIMARY KEY (first_seq));"
            "CREATE TABLE snapshots (seq BIGINT NOT NULL, state_hash CHAR(64) NOT NULL,"
            " created_ns BIGINT NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (seq));"
            'CREATE TABLE journal_meta ("key" VARCHAR(64) NOT NULL, value VARCHAR(255) NOT NULL,'
            ' PRIMARY KEY ("key"));'
            "INSERT INTO journal_meta VALUES ('format_version', '1');"
        )
    events = make_events(6)
    # Act
    with Journal.for_data_dir(tmp_path) as j:
        j.append(events[:4])
        j.append(events[4:])
    # Assert
    with Journal.for_data_dir(tmp_path, read_only=True) as reopened:
        assert list(reopened.read()) == events
        assert reopened.verify() == 6


def test_an_append_is_one_statement_on_the_writer_connection(tmp_path: Path) -> None:
    # Arrange: a writer thread must win the GIL back after each statement it runs
    with Journal.for_data_dir(tmp_path) as j:
        j.append(make_events(1))
        con = j._raw_writer.driver_connection
        statements: list[str] = []
        con.set_trace_callback(statements.append)
        # Act
        j.append(make_events(2, start=2))
        j.append(make_events(3, start=4))
        con.set_trace_callback(None)
        # Assert: the check and the insert as one statement each time, nothing else
        assert len(statements) == 2
        assert all(s.startswith("INSERT INTO event_batches") for s in statements)
        assert [e[0] for e in j.read()] == list(range(1, 7))
