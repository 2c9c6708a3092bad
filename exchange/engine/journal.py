"""Append-only event journal on SQLAlchemy 2.x Core: SQLite by default, PostgreSQL by URL.

Storage: one ``event_batches`` row per group commit (``first_seq``..``last_seq``, the event
count, the sha256 hex of the payload and the payload itself, ``encode_events(batch)``), a
``snapshots`` table and a ``journal_meta`` table holding the format version.

Durability: :meth:`Journal.append` is one transaction; when it returns the batch survives a
process crash and a power loss (SQLite runs with ``journal_mode=WAL`` and
``synchronous=FULL``, so the WAL is fsynced on every commit).

WAL checkpoints (SQLite): the appending connection never checkpoints inside a commit
(``wal_autocheckpoint=0``): SQLite's auto-checkpoint copied the WAL back into the database,
with two more fsyncs, inside whichever commit crossed 1000 pages, a multi-millisecond commit
every few hundred. A ``_Checkpointer`` thread with its own connection runs a PASSIVE
checkpoint every ``CHECKPOINT_EVERY_PAGES`` appended pages (sqlite3 releases the GIL while it
runs); frames the writer added meanwhile are copied by a short PASSIVE checkpoint on the
writer right after its next commit, so the WAL is fully backfilled and the next write
restarts it from the beginning (a reused WAL is cheaper to fsync than a growing one).

Concurrency: a journal has ONE writer, one process and one thread, that owns ``last_seq``.
A second writer is detected (the append checks the stored last seq inside its write
transaction and fails with :class:`JournalError`) but is not supported. Any number of
readers, in this process or in others (e.g. a ``replay`` command while the engine runs),
may open the same journal with ``read_only=True``; WAL lets them read without blocking
the writer. A :class:`Journal` object is not thread-safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from sqlalchemy import (
    CHAR,
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from exchange.core.errors import JournalError
from exchange.core.events import Event, decode_events, encode_events

FORMAT_VERSION = "1"
JOURNAL_FILE_NAME = "journal.sqlite"
SQLITE_BUSY_TIMEOUT_MS = 10_000

#: Estimated WAL pages appended between two background checkpoints (SQLite's own
#: auto-checkpoint threshold).
CHECKPOINT_EVERY_PAGES = 1000
_PAGE_BYTES_SHIFT = 12  # pages estimated per commit: 1 (the b-tree leaf) + payload / 4 KiB

_HASH_RE = re.compile(r"[0-9a-f]{64}")
BINARY_MAGIC = b"PDXB"  # a binary batch (exchange.engine.fastpath); JSON starts with "["

_metadata = MetaData()

event_batches = Table(
    "event_batches",
    _metadata,
    # SQLite: INTEGER, so first_seq is the rowid and a commit dirties one b-tree page, not
    # two (a BIGINT key is a separate index). Journals made with BIGINT keep it: same SQL.
    Column(
        "first_seq",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("last_seq", BigInteger, nullable=False),
    Column("event_count", Integer, nullable=False),
    Column("checksum", CHAR(64), nullable=False),
    Column("payload", LargeBinary, nullable=False),
)

snapshots = Table(
    "snapshots",
    _metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("state_hash", CHAR(64), nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("payload", LargeBinary, nullable=False),
)

journal_meta = Table(
    "journal_meta",
    _metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

_TABLE_NAMES = ("event_batches", "snapshots", "journal_meta")
_SQLITE_LAST_SEQ = "SELECT last_seq FROM event_batches ORDER BY first_seq DESC LIMIT 1"
# One statement, one transaction (autocommit): the batch goes in only if the stored last
# seq is the one this writer holds (else nothing is written and the append is refused).
# In WAL mode a writer whose read snapshot went stale cannot write (SQLITE_BUSY_SNAPSHOT),
# so the check and the insert are atomic without an explicit BEGIN IMMEDIATE ... COMMIT.
_SQLITE_INSERT_BATCH_IF_LAST = (
    "INSERT INTO event_batches (first_seq, last_seq, event_count, checksum, payload)"
    " SELECT ?, ?, ?, ?, ? WHERE COALESCE((" + _SQLITE_LAST_SEQ + "), 0) = ?"
)


class Snapshot(NamedTuple):
    seq: int
    state_hash: str
    payload: bytes


class RawBatch(NamedTuple):
    """One stored group commit, checksum and contiguity already validated."""

    first_seq: int
    last_seq: int
    event_count: int
    payload: bytes


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" hook emit BEGIN itself (pysqlite's implicit BEGIN is only
    # issued before DML, which would leave a read-then-write append outside its lock).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # Writers take the write lock up front (BEGIN IMMEDIATE waits up to busy_timeout);
    # readers use a deferred BEGIN: a consistent WAL snapshot that never blocks the writer.
    if conn.get_execution_options().get("journal_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


class _Checkpointer:
    """A thread with its own connection running PASSIVE WAL checkpoints when asked.

    PASSIVE never waits for a lock and never blocks the writer: it copies the frames that
    are in the WAL when it starts. ``backfill_pending`` tells the writer a pass ended: it
    copies the frames added meanwhile (see ``Journal._after_commit``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._wake = threading.Event()
        self._stopping = False
        self.backfill_pending = False
        self.passes = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="journal-checkpoint", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Run one checkpoint pass soon (at most one is queued)."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the running pass, if any, and end the thread."""
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            connection = self._engine.raw_connection()  # opened on this thread, pragmas set
        except BaseException as exc:  # the writer's auto-fallback covers it: see _after_commit
            self.error = exc
            return
        try:
            con = connection.driver_connection
            assert con is not None  # a live pooled connection
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                # fetchall: a statement left unfinished would hold a read lock, and the
                # writer cannot restart the WAL while anyone holds one.
                con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.passes += 1
                # Frames the writer added during this pass (its result counts only those
                # there when it began) are left for the writer to copy.
                self.backfill_pending = True
        except BaseException as exc:
            self.error = exc
        finally:
            with contextlib.suppress(sqlite3.Error):
                connection.close()


class Journal:
    """Append-only, checksummed, group-committed event journal. See the module docstring."""

    #: How many seqs one read query spans: bounds the memory a read holds at once.
    READ_PAGE_SEQS = 65_536

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self._url = url
        self._read_only = read_only
        self._closed = False
        try:
            self._engine: Engine = create_engine(url)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise JournalError(f"expected a usable database URL, got {url!r}: {exc}") from exc
        self._sqlite = self._engine.dialect.name == "sqlite"
        self._raw_writer: Any = None  # SQLite: the pooled DBAPI connection appends use
        self._checkpointer: _Checkpointer | None = None  # SQLite in WAL mode, once appending
        self._wal_pages = 0  # pages appended (estimated) since the last checkpoint request
        if self._sqlite:
            event.listen(self._engine, "connect", _sqlite_on_connect)
            event.listen(self._engine, "begin", _sqlite_on_begin)
        try:
            self._open_schema()
            self._last_seq = self._load_last_seq()
        except JournalError:
            self._engine.dispose()
            raise
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise JournalError(f"expected a readable journal at {url!r}, got {exc}") from exc

    @classmethod
    def for_data_dir(cls, data_dir: str | Path, *, read_only: bool = False) -> Journal:
        """The SQLite journal ``data_dir/journal.sqlite``, creating ``data_dir`` if missing."""
        path = Path(data_dir).resolve()
        if read_only:
            if not (path / JOURNAL_FILE_NAME).is_file():
                raise JournalError(
                    f"expected an existing journal file, got none at {path / JOURNAL_FILE_NAME}"
                )
        else:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise JournalError(f"expected a writable data dir, got {exc}") from exc
        return cls(f"sqlite:///{path / JOURNAL_FILE_NAME}", read_only=read_only)

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._checkpointer is not None:
                self._checkpointer.stop()
                self._checkpointer = None
            if self._raw_writer is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._raw_writer.close()  # back to the pool, then disposed with it
                self._raw_writer = None
            self._engine.dispose()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({self._engine.url!r}, last_seq={self._last_seq})"

    # -- writing -------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """Seq of the newest event, 0 when empty. Cached: read-only handles see
        appends made elsewhere after :meth:`refresh`."""
        return self._last_seq

    def refresh(self) -> int:
        """Reload ``last_seq`` from the database (for read-only handles) and return it."""
        self._check_open()
        try:
            self._last_seq = self._load_last_seq()
        except SQLAlchemyError as exc:
            raise JournalError(f"expected a readable journal, got {exc}") from exc
        return self._last_seq

    def append(self, events: Sequence[Event]) -> bytes:
        """Write ``events`` as one durable transaction (group commit); returns the stored
        payload, ``encode_events(events)`` (so a caller that ships the batch on needs no
        second encoding).

        Their seqs must be contiguous from ``last_seq + 1``; otherwise nothing is written.
        An empty sequence is a no-op (returns ``b""``).
        """
        self._check_writable()
        if not events:
            return b""
        batch = events if isinstance(events, list) else list(events)
        first = self._last_seq + 1
        last = first + len(batch) - 1
        try:
            seqs = [e[0] for e in batch]
        except (TypeError, IndexError):
            raise JournalError("expected a sequence of events, got a non-tuple item") from None
        if seqs != list(range(first, last + 1)):
            for i, seq in enumerate(seqs):
                if seq != first + i:
                    raise JournalError(
                        f"append: expected seq {first + i} at batch index {i}, got {seq!r}"
                    )
        try:
            payload = encode_events(batch)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise JournalError(f"expected encodable events, got {exc}") from exc
        self._insert_batch(first, last, payload)
        return payload

    def append_encoded(self, payload: bytes, event_count: int) -> None:
        """Write one already-encoded batch of ``event_count`` events, seqs ``last_seq + 1``
        onwards, as one durable transaction (group commit). The payload must decode (see
        ``_decode_batch``) to exactly those events; the binary format of
        ``exchange.engine.fastpath`` is written this way."""
        self._check_writable()
        if type(event_count) is not int or event_count < 1:
            raise JournalError(f"append_encoded: expected event_count >= 1, got {event_count!r}")
        if not isinstance(payload, bytes) or not payload:
            raise JournalError("append_encoded: expected a non-empty bytes payload")
        first = self._last_seq + 1
        self._insert_batch(first, first + event_count - 1, payload)

    def _insert_batch(self, first: int, last: int, payload: bytes) -> None:
        """One durable transaction: check no one else appended, insert the batch's row."""
        checksum = hashlib.sha256(payload).hexdigest()
        if self._sqlite:
            self._insert_batch_sqlite(first, last, checksum, payload)
        else:
            row = {
                "first_seq": first,
                "last_seq": last,
                "event_count": last - first + 1,
                "checksum": checksum,
                "payload": payload,
            }
            try:
                with self._write_connection() as conn, conn.begin():
                    self._check_stored_last(self._query_last_seq(conn))
                    conn.execute(event_batches.insert(), row)
            except SQLAlchemyError as exc:
                raise JournalError(
                    f"append of seqs {first}..{last}: expected a commit, got {exc}"
                ) from exc
        self._last_seq = last

    def _check_stored_last(self, stored_last: int) -> None:
        if stored_last != self._last_seq:
            raise JournalError(
                f"append: expected stored last_seq {self._last_seq}, got {stored_last}"
                " (a second writer?)"
            )

    def _insert_batch_sqlite(self, first: int, last: int, checksum: str, payload: bytes) -> None:
        # The same check and insert as the SQLAlchemy path, as ONE statement on one DBAPI
        # connection kept for appends: SQLAlchemy's per-statement work (connection checkout,
        # compiled-statement lookup, result objects, the begin hook) cost ~0.3-0.5 ms per
        # group commit, and each of BEGIN / check / INSERT / COMMIT as its own call is one
        # more time a writer thread must win the GIL back before the commit is done.
        try:
            if self._raw_writer is None:
                self._open_raw_writer()
            con = self._raw_writer.driver_connection
            inserted = con.execute(
                _SQLITE_INSERT_BATCH_IF_LAST,
                (first, last, last - first + 1, checksum, payload, self._last_seq),
            ).rowcount
            if inserted != 1:  # refused: say what is stored instead
                row = con.execute(_SQLITE_LAST_SEQ).fetchall()
                self._check_stored_last(int(row[0][0]) if row else 0)
                raise JournalError(  # the stored last seq matched after all: a bug here
                    f"append: expected one row inserted, got {inserted}"
                )
        except (sqlite3.Error, SQLAlchemyError) as exc:
            raise JournalError(
                f"append of seqs {first}..{last}: expected a commit, got {exc}"
            ) from exc
        if self._checkpointer is not None:
            self._after_commit(con, len(payload))

    def _open_raw_writer(self) -> None:
        self._raw_writer = self._engine.raw_connection()  # pragmas set on connect
        con = self._raw_writer.driver_connection
        mode = con.execute("PRAGMA journal_mode").fetchone()
        if mode is not None and str(mode[0]).lower() == "wal":
            con.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints: see the module docstring
            self._checkpointer = _Checkpointer(self._engine)

    def _after_commit(self, con: sqlite3.Connection, payload_len: int) -> None:
        """Checkpoint bookkeeping after a durable commit (its failures never fail the
        append: the batch is already durable)."""
        checkpointer = self._checkpointer
        assert checkpointer is not None
        if checkpointer.backfill_pending:
            # The background pass copied the bulk; copy what came since, so the WAL is
            # fully backfilled and the next write restarts it.
            checkpointer.backfill_pending = False
            with contextlib.suppress(sqlite3.Error):
                con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self._wal_pages += 1 + (payload_len >> _PAGE_BYTES_SHIFT)
        if self._wal_pages >= CHECKPOINT_EVERY_PAGES:
            self._wal_pages = 0
            if checkpointer.error is None:
                checkpointer.request()
            else:  # no checkpoint thread: checkpoint here, as SQLite's auto-checkpoint did
                with contextlib.suppress(sqlite3.Error):
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def save_snapshot(self, seq: int, state_hash: str, payload: bytes) -> None:
        """Store a state snapshot taken after event ``seq``; durable like :meth:`append`.

        Saving the same ``(seq, state_hash)`` again is a no-op; a different hash for an
        already-snapshotted seq raises (replay must be deterministic).
        """
        self._check_writable()
        if type(seq) is not int or not 0 <= seq <= self._last_seq:
            raise JournalError(f"snapshot: expected seq in [0, {self._last_seq}], got {seq!r}")
        if not isinstance(state_hash, str) or not _HASH_RE.fullmatch(state_hash):
            raise JournalError(
                f"snapshot: expected state_hash of 64 lowercase hex digits, got {state_hash!r}"
            )
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise JournalError(f"snapshot: expected bytes payload, got {type(payload).__name__}")
        try:
            with self._write_connection() as conn, conn.begin():
                stored = conn.execute(
                    select(snapshots.c.state_hash).where(snapshots.c.seq == seq)
                ).scalar_one_or_none()
                if stored is not None:
                    if stored != state_hash:
                        raise JournalError(
                            f"snapshot at seq {seq}: expected state_hash {stored}, got {state_hash}"
                        )
                    return
                conn.execute(
                    snapshots.insert(),
                    {
                        "seq": seq,
                        "state_hash": state_hash,
                        "created_ns": time.time_ns(),
                        "payload": bytes(payload),
                    },
                )
        except SQLAlchemyError as exc:
            raise JournalError(f"snapshot at seq {seq}: expected a commit, got {exc}") from exc

    # -- reading -------------------------------------------------------------------------

    def read(self, after_seq: int = 0, upto_seq: int | None = None) -> Iterator[Event]:
        """Events with ``after_seq < seq <= upto_seq`` (to the end if ``upto_seq`` is None),
        in seq order. Checksums and contiguity are validated as batches are read; bad
        bounds raise at once, corruption when the iteration reaches it."""
        return self._iter_events(
            self.read_batches_raw(after_seq, upto_seq), after_seq + 1, upto_seq
        )

    def _iter_events(
        self, batches: Iterator[RawBatch], start: int, upto_seq: int | None
    ) -> Iterator[Event]:
        for batch in batches:
            events = self._decode_batch(batch)
            lo = start - batch.first_seq if batch.first_seq < start else 0
            if upto_seq is not None and batch.last_seq > upto_seq:
                events = events[lo : upto_seq - batch.first_seq + 1]
            elif lo:
                events = events[lo:]
            yield from events

    def read_batches_raw(
        self, after_seq: int = 0, upto_seq: int | None = None
    ) -> Iterator[RawBatch]:
        """The stored batches overlapping ``(after_seq, upto_seq]``, undecoded, in order.

        The first and last batches may extend beyond the range (callers trim). Each batch's
        checksum is checked and each must start right after the previous one ends.
        """
        self._check_range(after_seq, upto_seq)
        self._check_open()
        return self._iter_batches(after_seq + 1, upto_seq)

    def _iter_batches(self, start: int, upto_seq: int | None) -> Iterator[RawBatch]:
        if upto_seq is not None and upto_seq < start:
            return
        cols = event_batches.c
        page_stmt = (
            select(cols.first_seq, cols.last_seq, cols.event_count, cols.checksum, cols.payload)
            .where(
                cols.first_seq >= bindparam("lo", type_=BigInteger),
                cols.first_seq < bindparam("hi", type_=BigInteger),
            )
            .order_by(cols.first_seq)
        )
        try:
            with self._engine.connect() as conn, conn.begin():
                found = conn.execute(
                    select(cols.first_seq, cols.last_seq)
                    .where(cols.first_seq <= start)
                    .order_by(cols.first_seq.desc())
                    .limit(1)
                ).first()
        except SQLAlchemyError as exc:
            raise JournalError(f"read: expected a readable journal, got {exc}") from exc
        # ``expected``: the seq the next batch must start at; None while the first batch
        # read must be the one holding ``start``.
        expected: int | None = None
        lo: int = start
        if found is not None:
            if found.last_seq >= start:
                lo = int(found.first_seq)
            else:  # the journal ends before ``start``, or a gap follows that batch
                expected = int(found.last_seq) + 1
        while upto_seq is None or lo <= upto_seq:
            hi = lo + self.READ_PAGE_SEQS
            if upto_seq is not None:
                hi = min(hi, upto_seq + 1)
            try:
                with self._engine.connect() as conn, conn.begin():
                    rows = conn.execute(page_stmt, {"lo": lo, "hi": hi}).all()
                    if not rows:
                        beyond = conn.execute(
                            select(func.min(cols.first_seq)).where(cols.first_seq >= lo)
                        ).scalar()
            except SQLAlchemyError as exc:
                raise JournalError(f"read: expected a readable journal, got {exc}") from exc
            if not rows:
                if beyond is not None:
                    raise JournalError(
                        f"journal gap: expected a batch starting at seq {expected or start}, "
                        f"got next batch at first_seq {beyond}"
                    )
                return
            for first_seq, last_seq, count, checksum, payload in rows:
                if expected is None:
                    if not first_seq <= start <= last_seq:
                        raise JournalError(
                            f"journal gap: expected a batch holding seq {start}, "
                            f"got first_seq {first_seq}..{last_seq}"
                        )
                elif first_seq != expected:
                    raise JournalError(
                        f"journal gap: expected a batch starting at seq {expected}, "
                        f"got first_seq {first_seq}"
                    )
                if last_seq - first_seq + 1 != count or count < 1:
                    raise JournalError(
                        f"batch {first_seq}: expected event_count {last_seq - first_seq + 1}, "
                        f"got {count}"
                    )
                if not isinstance(payload, bytes):
                    payload = bytes(payload)
                digest = hashlib.sha256(payload).hexdigest()
                if digest != checksum:
                    raise JournalError(
                        f"batch {first_seq}: expected checksum {checksum}, got {digest}"
                    )
                expected = last_seq + 1
                yield RawBatch(first_seq, last_seq, count, payload)
                if upto_seq is not None and last_seq >= upto_seq:
                    return
            lo = last_seq + 1

    @staticmethod
    def _decode_batch(batch: RawBatch) -> list[Event]:
        try:
            if batch.payload[:4] == BINARY_MAGIC:  # exchange.engine.fastpath groups
                from exchange.engine.fastpath import decode_payload

                events = decode_payload(batch.payload)
            else:
                events = decode_events(batch.payload)
        except (ValueError, TypeError) as exc:
            raise JournalError(
                f"batch {batch.first_seq}: expected decodable events, got {exc}"
            ) from exc
        if (
            len(events) != batch.event_count
            or events[0][0] != batch.first_seq
            or events[-1][0] != batch.last_seq
        ):
            got = f"{len(events)} events" + (
                f" with seqs {events[0][0]}..{events[-1][0]}" if events else ""
            )
            raise JournalError(
                f"batch {batch.first_seq}: expected {batch.event_count} events with seqs "
                f"{batch.first_seq}..{batch.last_seq}, got {got}"
            )
        return events

    def latest_snapshot(self, upto_seq: int | None = None) -> Snapshot | None:
        """The newest snapshot with ``seq <= upto_seq`` (any seq if None), or None."""
        self._check_open()
        if upto_seq is not None and upto_seq < 0:
            raise JournalError(f"latest_snapshot: expected upto_seq >= 0, got {upto_seq}")
        stmt = select(snapshots.c.seq, snapshots.c.state_hash, snapshots.c.payload)
        if upto_seq is not None:
            stmt = stmt.where(snapshots.c.seq <= upto_seq)
        stmt = stmt.order_by(snapshots.c.seq.desc()).limit(1)
        try:
            with self._engine.connect() as conn, conn.begin():
                row = conn.execute(stmt).first()
        except SQLAlchemyError as exc:
            raise JournalError(f"latest_snapshot: expected a readable journal, got {exc}") from exc
        if row is None:
            return None
        seq, state_hash, payload = row
        return Snapshot(int(seq), str(state_hash).strip(), bytes(payload))

    def snapshot_hashes(self, upto_seq: int | None = None) -> dict[int, str]:
        """``seq -> state_hash`` of every snapshot with ``seq <= upto_seq`` (one query, no
        payloads): what a verifying replay compares against."""
        self._check_open()
        stmt = select(snapshots.c.seq, snapshots.c.state_hash)
        if upto_seq is not None:
            stmt = stmt.where(snapshots.c.seq <= upto_seq)
        try:
            with self._engine.connect() as conn, conn.begin():
                rows = conn.execute(stmt).all()
        except SQLAlchemyError as exc:
            raise JournalError(f"snapshot_hashes: expected a readable journal, got {exc}") from exc
        return {int(seq): str(state_hash).strip() for seq, state_hash in rows}

    def verify(self) -> int:
        """Full scan: format version, every checksum, every event's seq from 1 with no gap,
        snapshots not beyond the last event. Returns the number of events."""
        self._check_open()
        try:
            with self._engine.connect() as conn, conn.begin():
                self._check_format(conn)
        except SQLAlchemyError as exc:
            raise JournalError(f"verify: expected a readable journal, got {exc}") from exc
        count = 0
        for batch in self._iter_batches(1, None):
            events = self._decode_batch(batch)
            seqs = [e[0] for e in events]
            if seqs != list(range(batch.first_seq, batch.last_seq + 1)):
                bad = next(i for i, s in enumerate(seqs) if s != batch.first_seq + i)
                raise JournalError(
                    f"batch {batch.first_seq}: expected seq {batch.first_seq + bad} at index "
                    f"{bad}, got {seqs[bad]}"
                )
            count += len(events)
        try:
            with self._engine.connect() as conn, conn.begin():
                snap_rows = conn.execute(select(snapshots.c.seq, snapshots.c.state_hash)).all()
        except SQLAlchemyError as exc:
            raise JournalError(f"verify: expected readable snapshots, got {exc}") from exc
        for seq, state_hash in snap_rows:
            if not 0 <= seq <= count:
                raise JournalError(f"snapshot: expected seq in [0, {count}], got {seq}")
            if not _HASH_RE.fullmatch(str(state_hash).strip()):
                raise JournalError(
                    f"snapshot {seq}: expected a 64-hex state_hash, got {state_hash!r}"
                )
        return count

    # -- internals -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError("expected an open journal, got a closed one")

    def _check_writable(self) -> None:
        self._check_open()
        if self._read_only:
            raise JournalError("expected a writable journal, got a read-only one")

    @staticmethod
    def _check_range(after_seq: int, upto_seq: int | None) -> None:
        if type(after_seq) is not int or after_seq < 0:
            raise JournalError(f"read: expected after_seq >= 0, got {after_seq!r}")
        if upto_seq is not None and (type(upto_seq) is not int or upto_seq < after_seq):
            raise JournalError(
                f"read: expected upto_seq >= after_seq ({after_seq}), got {upto_seq!r}"
            )

    def _write_connection(self) -> Connection:
        return self._engine.connect().execution_options(journal_write=True)

    @staticmethod
    def _query_last_seq(conn: Connection) -> int:
        value = conn.execute(
            select(event_batches.c.last_seq).order_by(event_batches.c.first_seq.desc()).limit(1)
        ).scalar()
        return 0 if value is None else int(value)

    def _load_last_seq(self) -> int:
        with self._engine.connect() as conn, conn.begin():
            return self._query_last_seq(conn)

    def _open_schema(self) -> None:
        with self._engine.connect() as conn:
            existing = set(inspect(conn).get_table_names())
            conn.rollback()
        missing = [name for name in _TABLE_NAMES if name not in existing]
        if missing:
            if self._read_only:
                raise JournalError(
                    f"expected an existing journal at {self._url!r}, got missing tables "
                    f"{', '.join(missing)}"
                )
            with self._write_connection() as conn, conn.begin():
                _metadata.create_all(conn, checkfirst=True)
                version = conn.execute(
                    select(journal_meta.c.value).where(journal_meta.c.key == "format_version")
                ).scalar()
                if version is None:
                    conn.execute(
                        journal_meta.insert(), {"key": "format_version", "value": FORMAT_VERSION}
                    )
        with self._engine.connect() as conn, conn.begin():
            self._check_format(conn)

    @staticmethod
    def _check_format(conn: Connection) -> None:
        version = conn.execute(
            select(journal_meta.c.value).where(journal_meta.c.key == "format_version")
        ).scalar()
        if version != FORMAT_VERSION:
            raise JournalError(f"expected journal format {FORMAT_VERSION}, got {version!r}")
