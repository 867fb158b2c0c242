"""The system of record (``qfs_objects``) over SQLAlchemy: PostgreSQL in production, SQLite too.

What this module guarantees to the dual-write diff:

* **URLs as operators type them.** ``postgresql://`` and ``postgres://`` map to
  ``postgresql+psycopg2://`` (SQLAlchemy 2.1 would pick psycopg 3, which is not installed);
  a bare filesystem path or ``Path`` means a SQLite file. Passwords never reach a message:
  :attr:`SystemOfRecord.redacted` and driver error text go through the shared
  :mod:`qfs_assets.redact` (password, secret query parameters such as ``sslpassword``, and the
  password's raw and URL-quoted forms hidden).
* **One-line errors.** An unreachable database, a missing SQLite file, a missing
  ``qfs_objects`` table, a missing column, a column of the wrong type, a null in a required
  column, a value that cannot be converted, or keys that are not unique raise
  :class:`SorError` (a :class:`~qfs_assets.readers.base.BadInput`, so callers treat it like any
  other input error: one line, no traceback, no evidence written), naming the database (with
  the password hidden), the table and the column.
* **An ordered stream.** :meth:`SystemOfRecord.iter_batches` yields Arrow record batches of
  the contract's ``objects`` schema (``updated_at`` as ``timestamp[us, tz=UTC]``) in
  strictly increasing *byte* order of ``object_id``, whatever the database's collation:
  PostgreSQL sorts with ``ORDER BY object_id COLLATE "C"``, SQLite with ``COLLATE BINARY``
  (memcmp on UTF-8, which is also Python's code-point order and DuckDB's VARCHAR order).
  Every batch is checked to continue the order strictly (this also catches duplicate keys),
  so a collation surprise fails loudly instead of producing a wrong diff.

PostgreSQL read paths (both stream; neither holds the table in client memory):

``copy`` (default)
    ``COPY (SELECT ... ORDER BY object_id COLLATE "C") TO STDOUT (FORMAT csv)`` written by
    psycopg2 into an OS pipe from a helper thread and parsed by ``pyarrow.csv.open_csv`` in
    blocks. Timestamps travel as integer epoch microseconds computed by the server, so no
    client time zone or text format is involved.
``cursor``
    A psycopg2 named (server-side) cursor through SQLAlchemy ``stream_results`` and
    ``yield_per``, rows converted to Arrow column by column.

Measured with ``bench/bench_dual_write.py --read-paths`` (2 cores shared with other work,
load average 3-5; PostgreSQL 15 on localhost; table in a C.UTF-8 database, so PostgreSQL
sorts for ``COLLATE "C"`` either way), reading the whole table into Arrow batches:

    rows   copy                 cursor
    1M     2.1-3.1 s, 360 MB    5.8-8.2 s, 415 MB
    10M    39 s, 400 MB         69 s, 417 MB

(peak RSS of the reading process; the imports alone are ~150 MB). ``copy`` is kept: about
twice as fast, client memory flat in the row count. Of its 10M-row time, about 21 s is
PostgreSQL's own sort and COPY (``psql -c "COPY ..." > /dev/null``). COPY BINARY was not
measured: there is no Arrow reader for PostgreSQL's binary row format, so it would need a
per-field decoder in Python.

Unordered reads (``iter_batches(ordered=False)``, for the dual-write diff's ``hash`` method,
which needs no order): on PostgreSQL the rows are streamed without ``ORDER BY``, so the server
does a plain sequential scan and no sort. With ``adbc-driver-postgresql`` installed (a
dependency of the project) they arrive as Arrow batches decoded in C++ from ``COPY ... (FORMAT
binary)``, timestamps as integers, no text formatting or parsing on either side; without it,
through the CSV ``COPY`` path above. Key uniqueness is then the caller's to check (the ordered
stream's strictly-increasing check does not apply); nulls are checked as always.

SQLite stores whatever it is given, so SQLite values are parsed robustly: timestamps as ISO
8601 text (``T`` or space, optional fraction, ``Z``/offset; naive text is UTC) or as numbers
of epoch seconds (magnitudes of 10^11 and 10^14 and above are read as milliseconds and
microseconds); booleans as 0/1 or ``true``/``false``/``t``/``f``; integers stored as text.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import math
import os
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from qfs_assets.contract.schema import OBJECTS, SOR_COLUMNS, SOR_TABLE, TS, TS_MAX, TS_MIN, TS_RANGE_TEXT
from qfs_assets.readers.base import BadInput
from qfs_assets.redact import quote_userinfo, redact_url
from qfs_assets.sqltext import SqlTextError, comment_text, quote_literal, validate_ident
from qfs_assets.redact import scrub as _scrub

#: The Arrow schema of a system-of-record batch: the contract's ``objects`` columns.
SOR_SCHEMA = pa.schema([OBJECTS.schema.field(c) for c in SOR_COLUMNS])

DEFAULT_BATCH_ROWS = 131_072
PG_READ_METHODS = ("copy", "cursor")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_INT_COLUMNS = ("version", "size_bytes", "data_shards", "total_shards")


@functools.cache
def _ts_bounds() -> tuple[pa.Scalar, pa.Scalar]:
    """The contract's timestamp range as Arrow scalars, made on first use (``pa.scalar`` imports
    pandas, which importing the definitions should not)."""
    return pa.scalar(TS_MIN, TS), pa.scalar(TS_MAX, TS)


class SorError(BadInput):
    """A system-of-record problem as one line: database (password hidden), table, column, problem."""

    def __init__(self, database: str, problem: str, table: str = SOR_TABLE, column: str | None = None):
        self.database = database
        super().__init__(table, problem, file=database, column=column)

    def __str__(self) -> str:
        parts = [f"database '{self.database}'", f"table '{self.table}'"]
        if self.column:
            parts.append(f"column '{self.column}'")
        return "system of record: " + ", ".join(parts) + f": {self.problem}"


class SorUnreachable(SorError):
    """The database did not answer: refused, timed out, stalled or cut. Retry later (CLI exit 4).

    Kind ``source_unreachable``: the data may be fine, so it is not reported as bad input."""

    kind = "source_unreachable"

    def __str__(self) -> str:
        return f"system of record unreachable: database '{self.database}', table '{self.table}': {self.problem}"


# -- time limits ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SorTimeouts:
    """How long the system of record may take, in seconds (defaults: 10 s, 180 s, 1 h).

    ``connect``    establishing a connection (libpq ``connect_timeout``; a URL's own wins);
    ``read``       waiting for the database without receiving anything, at any point of a read
                   (first row included): a stalled stream or a hung server fails after this long
                   instead of hanging the run. Must exceed the database's time to its first row
                   (the sort: about 21 s for 10M rows here);
    ``statement``  one statement on the server (PostgreSQL ``statement_timeout``): a full read
                   of 10M rows takes about 40 s.
    """

    connect: float = 10
    read: float = 180
    statement: float = 3600

    ENV = {"connect": "QFS_SOR_CONNECT_TIMEOUT", "read": "QFS_SOR_READ_TIMEOUT", "statement": "QFS_SOR_STATEMENT_TIMEOUT"}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "SorTimeouts":
        """The limits from ``QFS_SOR_*_TIMEOUT``; a wrong value is a ValueError of one line naming it."""
        env = os.environ if environ is None else environ
        values: dict[str, float] = {}
        for name, var in cls.ENV.items():
            raw = (env.get(var) or "").strip()
            if not raw:
                continue
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{var}: {raw!r} is not a number of seconds") from None
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{var}: {raw} is not a positive number of seconds")
            values[name] = value
        return cls(**values)


class _Watchdog:
    """Gives up a connection that waits for the database longer than ``seconds`` without data.

    Armed inside :meth:`waiting` (a call that waits for the database), re-armed by
    :meth:`progress` (data arrived), paused inside :meth:`paused` (the consumer is busy, not the
    database). When the limit passes it calls ``cut`` once (shut the socket down, or interrupt
    SQLite), which makes the blocked driver call fail; ``fired`` then tells the caller why.
    Neither TCP keepalives nor libpq's ``tcp_user_timeout`` notice a peer that keeps the
    connection open and sends nothing, hence a timer of our own.
    """

    def __init__(self, seconds: float, cut: Callable[[], None]) -> None:
        self.seconds = float(seconds)
        self.fired = False
        self._cut = cut
        self._lock = threading.Lock()
        self._since: float | None = None
        self._depth = 0
        self._paused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sor-watchdog", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        with self._lock:
            self._depth += 1
            if self._depth == 1:
                self._since = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._since = None

    def progress(self) -> None:
        with self._lock:
            if self._since is not None:
                self._since = time.monotonic()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        with self._lock:
            self._paused += 1
        try:
            yield
        finally:
            with self._lock:
                self._paused -= 1
                if self._since is not None:
                    self._since = time.monotonic()

    def _run(self) -> None:
        tick = max(0.05, min(1.0, self.seconds / 8))
        while not self._stop.wait(tick):
            with self._lock:
                late = self._since is not None and not self._paused and time.monotonic() - self._since > self.seconds
            if late:
                self.fired = True
                try:
                    self._cut()
                except Exception:  # noqa: BLE001 - the blocked call fails either way or returns
                    pass
                return

    def close(self) -> None:
        self._stop.set()


class _PipeWriter(io.RawIOBase):
    """The raw end of the COPY pipe under a 1 MiB buffer: called once a megabyte (not once a row),
    it reports progress to the watchdog and pauses it while the pipe is full."""

    def __init__(self, fd: int, watch: _Watchdog) -> None:
        self.fd, self.watch = fd, watch

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.watch.progress()
        with self.watch.paused():
            return os.write(self.fd, data)

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


def _shutdown_fd(fd: int) -> None:
    """Shut a connection's socket down: a recv blocked on it returns at once (a close would not)."""
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.shutdown(socket.SHUT_RDWR)
    finally:
        sock.close()


def _cut_socket(dbapi_connection) -> None:
    """Shut a libpq (psycopg2) connection's socket down."""
    _shutdown_fd(dbapi_connection.fileno())


_CONNECT_LOCK = threading.Lock()


def _socket_fds() -> set[int]:
    """This process's open socket descriptors (Linux ``/proc``; empty elsewhere)."""
    out = set()
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return out
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                out.add(int(name))
        except (OSError, ValueError):
            continue
    return out


def _peer_sockets(fds: set[int], port: int) -> list[int]:
    """The descriptors among ``fds`` connected to ``port`` (TCP) or to a Unix socket (libpq's local form)."""
    out = []
    for fd in sorted(fds):
        try:
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if sock.family == socket.AF_UNIX or (sock.family in (socket.AF_INET, socket.AF_INET6)
                                                 and sock.getpeername()[1] == port):
                out.append(fd)
        except OSError:
            pass
        finally:
            sock.close()
    return out


#: server messages at connection time that mean "not now" (retry), not "wrong settings"
_TRANSIENT_FATAL = ("starting up", "shutting down", "in recovery", "too many clients", "remaining connection slots",
                    "terminating connection")


def is_unreachable(exc: BaseException) -> bool:
    """Whether a driver error means the database did not answer (network, timeout, shutdown),
    rather than a wrong setting (authentication, a database or role that does not exist) or bad data."""
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)  # psycopg2, ADBC
    if code and code != "00000":  # SQLSTATE: connection exception, operator intervention (shutdown, timeout), resources
        return code.startswith(("08", "57", "53"))
    name, module = type(orig).__name__, type(orig).__module__ or ""
    text = str(orig)
    if module.startswith("sqlite3"):
        return name == "OperationalError" and ("locked" in text or "busy" in text or "interrupted" in text)
    if module.startswith(("psycopg2", "adbc_driver")):
        # no SQLSTATE: the server reported nothing, the client lost it (refused, timed out, closed, cut
        # mid-COPY: "no message from the libpq"); a FATAL at connection time is a wrong setting, and so
        # is a ProgrammingError ("invalid dsn: invalid connection option …")
        if name not in ("OperationalError", "InterfaceError", "DatabaseError"):
            return False
        return "FATAL:" not in text or any(t in text for t in _TRANSIENT_FATAL)
    # an I/O error reading the stream: ADBC's Arrow stream reports a lost connection as a plain
    # OSError ("[libpq] PQgetCopyData() failed: server closed the connection unexpectedly")
    return isinstance(orig, OSError)


# -- URLs -----------------------------------------------------------------------------------

def normalise_url(url: Any):
    """A SQLAlchemy ``URL`` for what an operator typed (URL string, ``URL``, or a SQLite path)."""
    if isinstance(url, URL):
        parsed = url
    else:
        text = os.fspath(url) if isinstance(url, os.PathLike) else str(url)
        if "://" not in text:  # a bare path: a SQLite file
            if text in ("", ":memory:"):
                return URL.create("sqlite", database=":memory:")
            return URL.create("sqlite", database=str(Path(text).expanduser().resolve()))
        try:
            parsed = make_url(quote_userinfo(text))  # make_url would split "u:p@ss@h" at the first '@'
        except (sa.exc.ArgumentError, ValueError) as exc:
            raise SorError(redact_url(text), f"not a valid database URL ({scrub(str(exc))})") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        # Plain postgresql:// means psycopg 3 to SQLAlchemy 2.1; only psycopg2 is installed.
        parsed = parsed.set(drivername="postgresql+" + (driver or "psycopg2"))
    return parsed


def redact(url: Any) -> str:
    """The URL for messages and evidence: password and secret query parameters shown as ``***``."""
    try:
        return redact_url(normalise_url(url).render_as_string(hide_password=False))
    except SorError as exc:
        return exc.database


def scrub(text: str, password: str | None = None) -> str:
    """Remove a password (raw and URL-quoted forms) and every URL's secrets from driver text."""
    return _scrub(text, [password])


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    text = lines[0] if lines else type(orig).__name__
    # psycopg2 puts the useful reason on the second line for some connection errors
    if len(lines) > 1 and text.endswith("failed:") and not text.endswith(lines[1]):
        text = f"{text} {lines[1]}"
    return text


# -- value conversion (SQLite and the generic path) ----------------------------------------------

def _epoch_us_from_number(v: float | int) -> int:
    mag = abs(v)
    if mag >= 1e14:
        return int(v)
    if mag >= 1e11:
        return int(round(v * 1_000))
    return int(round(v * 1_000_000))


def to_epoch_us(value: Any) -> int:
    """UTC epoch microseconds of a stored timestamp (datetime, ISO text or epoch number)."""
    if isinstance(value, dt.datetime):
        ts = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        delta = ts - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, bool):
        raise ValueError("boolean is not a timestamp")
    if isinstance(value, (int, float)):
        return _epoch_us_from_number(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        text = value.strip()
        try:
            return _epoch_us_from_number(float(text)) if re.fullmatch(r"[+-]?\d+(\.\d*)?", text) else to_epoch_us(
                dt.datetime.fromisoformat(text)
            )
        except ValueError:
            pass
        if text.endswith(("+00", "-00")) or re.search(r"[+-]\d\d$", text):  # PostgreSQL-style '+02'
            return to_epoch_us(dt.datetime.fromisoformat(text + ":00"))
        raise ValueError(f"not a timestamp: {value!r}")
    raise ValueError(f"not a timestamp: {value!r}")


_TRUE = {"1", "t", "true", "y", "yes"}
_FALSE = {"0", "f", "false", "n", "no"}


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, (str, bytes)):
        text = (value.decode() if isinstance(value, bytes) else value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError(f"not a boolean: {value!r}")


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (str, bytes)):
        text = (value.decode() if isinstance(value, bytes) else value).strip()
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
    raise ValueError(f"not an integer: {value!r}")


_CONVERTERS = {"updated_at": to_epoch_us, "deleted": to_bool, **{c: to_int for c in _INT_COLUMNS}}


def check_strictly_increasing(keys: pa.Array, previous_last: str | None) -> int:
    """Index of the first key not strictly greater (bytes) than the one before it, or -1."""
    n = len(keys)
    if n == 0:
        return -1
    if previous_last is not None and not keys[0].as_py() > previous_last:
        return 0
    if n > 1:
        ok = pc.less(keys.slice(0, n - 1), keys.slice(1))
        if not pc.all(ok).as_py():
            return int(pc.index(ok, False).as_py()) + 1
    return -1


# -- the system of record -------------------------------------------------------------------

class SystemOfRecord:
    """The ``qfs_objects`` table behind a SQLAlchemy URL.

    ``schema`` qualifies the table (PostgreSQL schema); ``method`` picks the PostgreSQL read
    path (``copy`` or ``cursor``); ``batch_rows`` is the target size of a yielded batch.
    The engine is created lazily and uses no pool: the diff holds one connection per read.
    """

    def __init__(
        self,
        url: Any,
        *,
        table: str = SOR_TABLE,
        schema: str | None = None,
        method: str = "copy",
        batch_rows: int = DEFAULT_BATCH_ROWS,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        statement_timeout: float | None = None,
    ) -> None:
        if method not in PG_READ_METHODS:
            raise ValueError(f"method must be one of {PG_READ_METHODS}, not {method!r}")
        self.url = normalise_url(url)
        self.redacted = redact(self.url)
        self.table = table
        self.schema = schema
        for name, what in ((table, "table"), (schema, "schema")):  # they are written into SQL and its files
            if name is not None:
                try:
                    validate_ident(name, what)
                except SqlTextError as exc:
                    raise SorError(self.redacted, str(exc), table=comment_text(str(table))) from None
        self.method = method
        self.batch_rows = int(batch_rows)
        limits = SorTimeouts.from_env()  # QFS_SOR_*_TIMEOUT; explicit arguments win
        self.timeouts = SorTimeouts(connect=connect_timeout or limits.connect, read=read_timeout or limits.read,
                                    statement=statement_timeout or limits.statement)
        self.rows_read: int | None = None
        self._engine = None
        self._checked = False

    # -- plumbing --------------------------------------------------------------------------
    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @property
    def engine(self):
        if self._engine is None:
            connect_args: dict[str, Any] = {}
            if self.dialect == "postgresql" and "connect_timeout" not in self.url.query:
                connect_args["connect_timeout"] = max(2, math.ceil(self.timeouts.connect))  # libpq: whole seconds, >= 2
            if self.dialect == "sqlite":
                connect_args["timeout"] = self.timeouts.connect  # waiting for a lock held by a writer
                connect_args["check_same_thread"] = False  # the watchdog interrupts from its own thread
            try:
                self._engine = sa.create_engine(self.url, poolclass=NullPool, connect_args=connect_args)
            except Exception as exc:  # unknown dialect, driver not installed
                raise self.error(f"cannot use this database URL ({scrub(_first_line(exc), self.url.password)})") from None
            if self.dialect == "postgresql":
                ms = int(self.timeouts.statement * 1000)

                @sa.event.listens_for(self._engine, "connect")
                def _statement_timeout(dbapi_connection, _record) -> None:
                    # a plain SET, committed (a rolled-back SET is undone); poolers may refuse startup options
                    with dbapi_connection.cursor() as cur:
                        cur.execute(f"SET statement_timeout = {ms}")
                    dbapi_connection.commit()
        return self._engine

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> "SystemOfRecord":
        return self

    def __exit__(self, *exc) -> None:
        self.dispose()

    def error(self, problem: str, column: str | None = None) -> SorError:
        return SorError(self.redacted, scrub(problem, self.url.password), table=self.table, column=column)

    def _driver_error(self, exc: BaseException, what: str, watch: "_Watchdog | None" = None) -> SorError:
        """The one-line error of a driver exception: :class:`SorUnreachable` when the database did
        not answer (the watchdog fired, or a network / timeout / shutdown error), else :class:`SorError`."""
        if watch is not None and watch.fired:
            return self.unreachable(f"no data from the database for {watch.seconds:g} s (read timeout, "
                                    f"{SorTimeouts.ENV['read']}): connection given up")
        reason = scrub(_first_line(exc), self.url.password)
        if is_unreachable(exc):
            code = getattr(getattr(exc, "orig", None) or exc, "pgcode", None)
            if code == "57014":
                return self.unreachable(f"{what}: statement ran longer than {self.timeouts.statement:g} s "
                                        f"({SorTimeouts.ENV['statement']}) ({reason})")
            return self.unreachable(f"{what} ({reason})")
        return self.error(f"{what} ({reason})")

    def unreachable(self, problem: str) -> SorUnreachable:
        return SorUnreachable(self.redacted, scrub(problem, self.url.password), table=self.table)

    @property
    def qualified_table(self) -> str:
        """The table name quoted for this dialect, schema-qualified when a schema is set."""
        prep = self.engine.dialect.identifier_preparer
        name = prep.quote(self.table)
        return f"{prep.quote_schema(self.schema)}.{name}" if self.schema else name

    def connect(self):
        """A SQLAlchemy connection (statement timeout set), or :class:`SorError` naming why not:
        :class:`SorUnreachable` when the database did not answer within the connect timeout."""
        if self.dialect == "sqlite":
            db = self.url.database
            if db and db != ":memory:" and not db.startswith("file:") and not Path(db).is_file():
                raise self.error("database file does not exist (SQLite would create an empty one)")
        try:
            return self.engine.connect()
        except SorError:
            raise
        except Exception as exc:
            what = "database unreachable" if is_unreachable(exc) else "cannot connect"
            raise self._driver_error(exc, what) from None

    @contextlib.contextmanager
    def session(self) -> Iterator[tuple[Any, _Watchdog]]:
        """``(connection, watchdog)``: wrap every call that waits for the database in
        ``watchdog.waiting()``. On an error the connection is discarded, not rolled back (a dead
        socket's rollback would log a traceback), and the error is one line."""
        conn = self.connect()
        dbapi = conn.connection.driver_connection
        cut = dbapi.interrupt if self.dialect == "sqlite" else (lambda: _cut_socket(dbapi))
        watch = _Watchdog(self.timeouts.read, cut)
        ok = False
        try:
            yield conn, watch
            ok = True
        finally:
            watch.close()
            if not ok:
                with contextlib.suppress(Exception):
                    conn.invalidate()
            with contextlib.suppress(Exception):
                conn.close()

    # -- checks ----------------------------------------------------------------------------
    def check(self) -> dict[str, str]:
        """Connect and check that the table and every contract column exist (types on PostgreSQL).

        Returns ``{column: database type}``. Raises :class:`SorError`.
        """
        with self.session() as (conn, watch):
            try:
                with watch.waiting():
                    cols = sa.inspect(conn).get_columns(self.table, schema=self.schema)
            except sa.exc.NoSuchTableError:
                cols = []
            except Exception as exc:
                raise self._driver_error(exc, "cannot read the table definition", watch) from None
        if not cols:
            where = f" in schema '{self.schema}'" if self.schema else ""
            raise self.error(f"table does not exist{where}")
        types = {c["name"]: c["type"] for c in cols}
        for name in SOR_COLUMNS:
            if name not in types:
                raise self.error("missing required column", column=name)
        if self.dialect != "sqlite":  # SQLite is dynamically typed: its values are parsed instead
            for name in SOR_COLUMNS:
                want = _SA_FAMILY[name]
                if not isinstance(types[name], want):
                    raise self.error(f"wrong type {types[name]}, expected {SOR_SCHEMA.field(name).type}", column=name)
        self._checked = True
        return {k: str(v) for k, v in types.items()}

    def count(self) -> int:
        """Rows in the table (a plain ``count(*)``)."""
        if not self._checked:
            self.check()
        with self.session() as (conn, watch):
            try:
                with watch.waiting():
                    return int(conn.execute(sa.text(f"SELECT count(*) FROM {self.qualified_table}")).scalar_one())
            except Exception as exc:
                raise self._driver_error(exc, "count failed", watch) from None

    def as_evidence(self) -> dict[str, Any]:
        return {
            "database": self.redacted,
            "dialect": self.dialect,
            "table": f"{self.schema}.{self.table}" if self.schema else self.table,
            "rows": self.rows_read,
            "order": "object_id, byte order",
        }

    # -- the ordered stream ----------------------------------------------------------------
    def iter_batches(self, batch_rows: int | None = None, ordered: bool = True) -> Iterator[pa.RecordBatch]:
        """Every row of the table as :data:`SOR_SCHEMA` batches, strictly increasing in object_id bytes
        (``ordered=False``: in the database's storage order, keys not checked for uniqueness)."""
        if not self._checked:
            self.check()
        rows = 0
        last: str | None = None
        if self.dialect == "postgresql":
            if not ordered and self.method == "copy":
                source = self._pg_unordered_batches()
            elif self.method == "copy":
                source = self._pg_copy_batches()
            else:
                source = self._cursor_batches(batch_rows, pg=True, ordered=ordered)
        else:
            source = self._cursor_batches(batch_rows, pg=False)
        try:
            for batch in source:
                batch = self._validated(batch, last, ordered)
                if batch.num_rows:
                    rows += batch.num_rows
                    last = batch.column(0)[-1].as_py()
                    yield batch
        finally:
            # Release the connection now: a raised error's traceback would keep a suspended
            # source (and its open transaction) alive for as long as the error is referenced.
            source.close()
        self.rows_read = rows

    def iter_batch_parts(self, parts: int = 2, batch_rows: int | None = None) -> list[Iterator[pa.RecordBatch]]:
        """The table in storage order as ``parts`` streams read at the same time, all of one snapshot.

        On PostgreSQL 14+ with ADBC, a plain table of at least ``_MIN_SPLIT_BLOCKS`` pages is split
        into ranges of its pages (``ctid`` range scans), each read by its own connection and server
        process; the connections share one exported snapshot (``REPEATABLE READ`` and ``SET
        TRANSACTION SNAPSHOT``, as ``pg_dump --jobs`` does), so together they see exactly what one
        query would. Anywhere else: one stream, ``iter_batches(ordered=False)``. ``rows_read`` is
        set when every stream has ended.
        """
        if not self._checked:
            self.check()
        plan = self._page_ranges(parts) if self.dialect == "postgresql" and self.method == "copy" and parts > 1 else None
        if not plan:
            return [self.iter_batches(batch_rows, ordered=False)]
        conns: list[tuple[Any, _Watchdog]] = []
        watch = None
        try:
            for i in range(len(plan)):
                conns.append(self._adbc_connect())
            conn, watch = conns[0]
            with watch.waiting():
                cur = conn.cursor()
                cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                cur.execute("SELECT pg_export_snapshot()")
                snapshot = cur.fetchone()[0]
                cur.close()
            for conn, watch in conns[1:]:
                with watch.waiting():
                    cur = conn.cursor()
                    cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    cur.execute(f"SET TRANSACTION SNAPSHOT {quote_literal(snapshot, 'postgresql')}")
                    cur.close()
        except Exception as exc:  # noqa: BLE001
            for c, w in conns:
                w.close()
                with contextlib.suppress(Exception):
                    c.close()
            if isinstance(exc, SorError):
                raise
            raise self._driver_error(exc, "read failed", watch) from None
        cols = ", ".join(SOR_COLUMNS)
        counts = [None] * len(plan)

        def part(i: int, conn_watch, lo: int, hi: int | None) -> Iterator[pa.RecordBatch]:
            where = f"ctid >= '({int(lo)},0)'::tid" + (f" AND ctid < '({int(hi)},0)'::tid" if hi is not None else "")
            source = self._adbc_batches(*conn_watch, f"SELECT {cols} FROM {self.qualified_table} WHERE {where}")
            rows = 0
            try:
                for batch in source:
                    batch = self._validated(batch, None, ordered=False)
                    rows += batch.num_rows
                    yield batch
            finally:
                source.close()
            counts[i] = rows
            if all(c is not None for c in counts):
                self.rows_read = sum(counts)

        return [part(i, c, lo, hi) for i, (c, (lo, hi)) in enumerate(zip(conns, plan))]

    # -- server-side row hashes (the dual-write diff's ``pg_hash`` method) ----------------------
    #: column types the row hash SQL reads exactly as the client does (else: no server-side hashing)
    _HASHABLE = {
        "object_id": ("text", "character varying"), "content_hash": ("text", "character varying"),
        "version": ("bigint", "integer", "smallint"), "size_bytes": ("bigint", "integer", "smallint"),
        "data_shards": ("smallint",), "total_shards": ("smallint",),
        "updated_at": ("timestamp with time zone",), "deleted": ("boolean",),
    }

    def row_hash_support(self) -> tuple[set[str] | None, int, str]:
        """``(nullable columns, estimated rows, "")`` when PostgreSQL can hash the rows as the client does, else
        ``(None, why not)``: PostgreSQL 14+ in UTF8 through ADBC, a plain table whose ``object_id``
        has a unique index (so a row's key is unique and equal hashes pair rows one to one), and the
        contract's column types (``varchar`` for text and narrower integers allowed). Else ``(None,
        0, why not)``."""
        if self.dialect != "postgresql" or self.method != "copy":
            return None, 0, "not PostgreSQL through COPY"
        try:
            import adbc_driver_postgresql.dbapi  # noqa: F401
        except ImportError:
            return None, 0, "adbc-driver-postgresql not installed"
        if not self._checked:
            self.check()
        sql = sa.text("""
            SELECT current_setting('server_version_num')::int, current_setting('server_encoding'), c.relkind,
                   (SELECT json_object_agg(a.attname, json_build_array(format_type(a.atttypid, NULL), a.attnotnull))
                      FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
                   EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'object_id'
                           WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
                             AND i.indexprs IS NULL AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum),
                   c.reltuples::bigint
            FROM pg_class c WHERE c.oid = to_regclass(:t)""")
        try:
            with self.session() as (conn, watch), watch.waiting():
                row = conn.execute(sql, {"t": self.qualified_table}).fetchone()
        except SorError:
            raise
        except Exception as exc:  # noqa: BLE001 - no catalogue: the plain read will say what is wrong
            return None, 0, f"catalogue not readable ({_first_line(exc)})"
        if row is None or row[2] != "r":
            return None, 0, "not a plain table"
        version, encoding, _kind, cols, unique, estimate = row
        if int(version) < 140000 or encoding != "UTF8":
            return None, 0, f"PostgreSQL {version} in {encoding} (needs 14+ in UTF8)"
        if not unique:
            return None, 0, "no unique index on object_id"
        cols = cols if isinstance(cols, dict) else __import__("json").loads(cols)
        for name, allowed in self._HASHABLE.items():
            if cols.get(name, [None])[0] not in allowed:
                return None, 0, f"column {name} is {cols.get(name, ['missing'])[0]}"
        return {n for n in SOR_COLUMNS if not cols[n][1]}, max(int(estimate or 0), 0), ""

    @contextlib.contextmanager
    def snapshot_reader(self, parts: int = 2) -> Iterator["SnapshotReader"]:
        """A :class:`SnapshotReader`: ``parts`` ADBC connections in one ``REPEATABLE READ`` snapshot
        (exported, as :meth:`iter_batch_parts` does), open until the block ends."""
        plan = (self._page_ranges(parts) if parts > 1 else None) or [(0, None)]
        conns: list[tuple[Any, _Watchdog]] = []
        try:
            for _ in plan:
                conns.append(self._adbc_connect())
            snapshot = None
            for i, (conn, watch) in enumerate(conns):
                with watch.waiting():
                    cur = conn.cursor()
                    try:
                        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                        if i == 0:
                            cur.execute("SELECT pg_export_snapshot()")
                            snapshot = cur.fetchone()[0]
                        else:
                            cur.execute(f"SET TRANSACTION SNAPSHOT {quote_literal(snapshot, 'postgresql')}")
                    finally:
                        cur.close()
        except BaseException as exc:
            self._close_all(conns)
            if isinstance(exc, SorError) or not isinstance(exc, Exception):
                raise
            raise self._driver_error(exc, "read failed", conns[-1][1] if conns else None) from None
        try:
            yield SnapshotReader(self, conns, plan if len(plan) > 1 else [None])
        finally:
            self._close_all(conns)

    @staticmethod
    def _close_all(conns: list) -> None:
        for conn, watch in conns:
            watch.close()
            with contextlib.suppress(Exception):
                conn.close()

    _MIN_SPLIT_BLOCKS = 4096  # 32 MB of pages: below that one stream is as fast

    def _page_ranges(self, parts: int) -> list[tuple[int, int | None]] | None:
        """Page ranges splitting the table for :meth:`iter_batch_parts`, or None (one stream)."""
        try:
            import adbc_driver_postgresql.dbapi  # noqa: F401
        except ImportError:
            return None
        try:
            with self.session() as (conn, watch), watch.waiting():
                row = conn.execute(sa.text(
                    "SELECT c.relkind, pg_relation_size(c.oid) / current_setting('block_size')::int, "
                    "current_setting('server_version_num')::int FROM pg_class c WHERE c.oid = to_regclass(:t)"
                ), {"t": self.qualified_table}).fetchone()
        except Exception:  # noqa: BLE001 - no statistics: read it as one stream
            return None
        if row is None or row[0] != "r" or int(row[2]) < 140000 or int(row[1]) < self._MIN_SPLIT_BLOCKS:
            return None
        blocks = int(row[1])
        bounds = [blocks * k // parts for k in range(parts)] + [None]
        return [(bounds[k], bounds[k + 1]) for k in range(parts)]

    def _adbc_uri(self) -> str:
        uri = self.url.set(drivername="postgresql")
        if "connect_timeout" not in uri.query:
            uri = uri.update_query_dict({"connect_timeout": str(max(2, math.ceil(self.timeouts.connect)))})
        return uri.render_as_string(hide_password=False)

    def _adbc_connect(self) -> tuple[Any, _Watchdog]:
        """An ADBC connection (statement timeout set) and the watchdog that can cut its socket.

        ADBC does not expose its libpq socket: it is the socket that appeared while connecting
        (``/proc/self/fd``, under a lock, its peer on the database's port). Where that cannot be
        found, a stall ends with a cancel request instead (best effort)."""
        import adbc_driver_postgresql.dbapi as adbc

        with _CONNECT_LOCK:
            before = _socket_fds()
            try:
                conn = adbc.connect(self._adbc_uri(), autocommit=True)
            except Exception as exc:  # noqa: BLE001 - any driver error: one line, password scrubbed
                what = "database unreachable" if is_unreachable(exc) else "cannot connect"
                raise self._driver_error(exc, what) from None
            fds = _peer_sockets(_socket_fds() - before, self.url.port or 5432)

        def cut() -> None:
            if fds:
                for fd in fds:
                    _shutdown_fd(fd)
            else:
                conn.adbc_cancel()

        watch = _Watchdog(self.timeouts.read, cut)
        try:
            with watch.waiting():
                cur = conn.cursor()
                cur.execute(f"SET statement_timeout = {int(self.timeouts.statement * 1000)}")
                cur.close()
        except Exception as exc:  # noqa: BLE001
            watch.close()
            with contextlib.suppress(Exception):
                conn.close()
            raise self._driver_error(exc, "cannot connect", watch) from None
        return conn, watch

    def _adbc_batches(self, conn, watch: _Watchdog, sql: str) -> Iterator[pa.RecordBatch]:
        """Arrow batches of ``sql`` on an ADBC connection (closed at the end), every wait for the
        database under the connection's watchdog."""
        finished = False
        cur = None
        try:
            cur = conn.cursor()
            try:
                with watch.waiting():
                    cur.execute(sql)
                    batches = iter(cur.fetch_record_batch())
                while True:
                    with watch.waiting():
                        batch = next(batches, None)
                    if batch is None:
                        break
                    yield self._adbc_batch(batch)
            except SorError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise self._driver_error(exc, "read failed", watch) from None
            finished = True
        finally:
            watch.close()
            if not finished and cur is not None and not watch.fired:  # consumer stopped early: stop the server
                with contextlib.suppress(Exception):
                    cur.adbc_cancel()
            with contextlib.suppress(Exception):
                conn.close()

    def read_all(self) -> pa.Table:
        """The whole table (small tables and tests only)."""
        return pa.Table.from_batches(list(self.iter_batches()), schema=SOR_SCHEMA)

    def _select_sql(self, pg: bool, ordered: bool = True) -> str:
        if pg:
            ts = "(extract(epoch FROM updated_at) * 1000000)::bigint"
            order = 'object_id COLLATE "C"'
        else:
            ts = "updated_at"
            order = "object_id COLLATE BINARY"
        cols = ", ".join(ts if c == "updated_at" else c for c in SOR_COLUMNS)
        return f"SELECT {cols} FROM {self.qualified_table}" + (f" ORDER BY {order}" if ordered else "")

    def _validated(self, batch: pa.RecordBatch, last: str | None, ordered: bool = True) -> pa.RecordBatch:
        for i, name in enumerate(SOR_COLUMNS):
            col = batch.column(i)
            if col.null_count:
                idx = int(pc.index(pc.is_null(col), True).as_py())
                example = batch.column(0)[idx].as_py() if name != "object_id" else None
                shown = f" (object_id {example!r})" if example is not None else ""
                raise self.error(f"null in required column{shown}", column=name)
        ts = batch.column(SOR_COLUMNS.index("updated_at"))
        low, high = _ts_bounds()
        outside = pc.invert(pc.and_(pc.greater_equal(ts, low), pc.less(ts, high)))
        if pc.any(outside).as_py():
            idx = int(pc.index(outside, True).as_py())
            raise self.error(f"timestamp outside {TS_RANGE_TEXT} (object_id {batch.column(0)[idx].as_py()!r}, "
                             f"{ts.slice(idx, 1).cast(pa.string())[0].as_py()})", column="updated_at")
        if not ordered:
            return batch
        bad = check_strictly_increasing(batch.column(0), last)
        if bad >= 0:
            key = batch.column(0)[bad].as_py()
            prev = last if bad == 0 else batch.column(0)[bad - 1].as_py()
            problem = "duplicate object_id" if key == prev else "rows not in byte order of object_id"
            raise self.error(f"{problem} ({prev!r} then {key!r})", column="object_id")
        return batch

    def _to_batch(self, columns: Sequence[list], convert: bool) -> pa.RecordBatch:
        arrays = []
        for name, values in zip(SOR_COLUMNS, columns):
            field = SOR_SCHEMA.field(name)
            if convert and name in _CONVERTERS:
                fn = _CONVERTERS[name]
                try:
                    values = [None if v is None else fn(v) for v in values]
                except ValueError as exc:
                    raise self.error(f"value cannot be converted: {exc}", column=name) from None
            try:
                if name == "updated_at":
                    arr = pa.array(values, pa.int64()).cast(TS)
                elif name == "object_id":
                    arr = pa.array([v.decode("utf-8") if isinstance(v, bytes) else v for v in values], pa.string())
                else:
                    arr = pa.array(values, type=pa.int64() if pa.types.is_integer(field.type) else field.type)
                    arr = arr.cast(field.type)  # safe cast: int16 overflow is an error
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:
                raise self.error(f"value cannot be converted to {field.type} ({str(exc).splitlines()[0]})", column=name) from None
            arrays.append(arr)
        return pa.RecordBatch.from_arrays(arrays, schema=SOR_SCHEMA)

    def _cursor_batches(self, batch_rows: int | None, pg: bool, ordered: bool = True) -> Iterator[pa.RecordBatch]:
        size = int(batch_rows or self.batch_rows)
        with self.session() as (conn, watch):
            try:
                with watch.waiting():
                    result = conn.execution_options(stream_results=True, yield_per=size).execute(
                        sa.text(self._select_sql(pg, ordered)))
                parts = result.partitions(size)
                while True:
                    with watch.waiting():  # the consumer's time between batches is not the database's
                        part = next(parts, None)
                    if part is None:
                        break
                    yield self._to_batch(list(zip(*part)), convert=not pg)
            except SorError:
                raise
            except sa.exc.SQLAlchemyError as exc:
                raise self._driver_error(exc, "read failed", watch) from None

    def _pg_unordered_batches(self) -> Iterator[pa.RecordBatch]:
        """The table in storage order: Arrow batches from ADBC (COPY BINARY), else the CSV COPY."""
        try:
            import adbc_driver_postgresql.dbapi  # noqa: F401
        except ImportError:
            yield from self._pg_copy_batches(ordered=False)
            return
        conn, watch = self._adbc_connect()
        yield from self._adbc_batches(conn, watch, f"SELECT {', '.join(SOR_COLUMNS)} FROM {self.qualified_table}")

    def _adbc_batch(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        arrays = []
        for name in SOR_COLUMNS:
            col = batch.column(name)
            field = SOR_SCHEMA.field(name)
            try:
                if pa.types.is_timestamp(col.type):
                    col = col.cast(pa.timestamp("us", tz=col.type.tz or "UTC")).cast(TS)
                arrays.append(col.cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise self.error(f"value cannot be converted to {field.type} ({str(exc).splitlines()[0]})", column=name) from None
        return pa.RecordBatch.from_arrays(arrays, schema=SOR_SCHEMA)

    def _pg_copy_batches(self, ordered: bool = True) -> Iterator[pa.RecordBatch]:
        """COPY ... TO STDOUT (CSV) into a pipe, parsed in blocks by pyarrow on this thread.

        The COPY runs on a helper thread inside the watchdog's ``waiting``; each megabyte it
        hands to the pipe counts as progress, and its time blocked on a full pipe (the consumer
        busy) is paused, so only the database's silence can reach the read timeout."""
        sql = f"COPY ({self._select_sql(pg=True, ordered=ordered)}) TO STDOUT WITH (FORMAT csv)"
        with self.session() as (conn, watch):
            dbapi = conn.connection.driver_connection
            rfd, wfd = os.pipe()
            failure: list[BaseException] = []

            def produce() -> None:
                try:
                    with io.BufferedWriter(_PipeWriter(wfd, watch), buffer_size=1 << 20) as sink:
                        with dbapi.cursor() as cur, watch.waiting():
                            cur.copy_expert(sql, sink, size=1 << 20)
                except BaseException as exc:  # reported by the consumer
                    failure.append(exc)

            worker = threading.Thread(target=produce, name="sor-copy", daemon=True)
            block = max(1 << 20, self.batch_rows * 150)  # ~150 bytes a row: a block near batch_rows rows
            # buffered: a read returns a whole block, not whatever the pipe holds (64 KiB batches)
            source = os.fdopen(rfd, "rb", buffering=block)
            worker.start()
            names = list(SOR_COLUMNS)
            types = {n: SOR_SCHEMA.field(n).type for n in names}
            types.update({"version": pa.int64(), "size_bytes": pa.int64(), "data_shards": pa.int64(),
                          "total_shards": pa.int64(), "updated_at": pa.int64()})
            read_opts = pacsv.ReadOptions(column_names=names, block_size=block, use_threads=True)
            parse_opts = pacsv.ParseOptions(newlines_in_values=True)
            conv_opts = pacsv.ConvertOptions(
                column_types=types, true_values=["t"], false_values=["f"], null_values=[""],
                strings_can_be_null=True, quoted_strings_can_be_null=False,
            )
            finished = False
            try:
                try:
                    reader = pacsv.open_csv(source, read_options=read_opts, parse_options=parse_opts,
                                            convert_options=conv_opts)
                    for batch in reader:
                        yield self._pg_batch(batch)
                except pa.ArrowInvalid as exc:
                    worker.join(timeout=30)
                    if failure:
                        raise self._driver_error(failure[0], "read failed", watch) from None
                    if "Empty CSV file" in str(exc):
                        pass  # an empty table
                    else:
                        raise self.error(f"unreadable COPY output ({str(exc).splitlines()[0]})") from None
                worker.join()
                if failure:
                    raise self._driver_error(failure[0], "read failed", watch) from None
                finished = True
            finally:
                if not finished and not failure and not watch.fired:
                    # the consumer stopped early or failed: stop the server (the connection works)
                    with contextlib.suppress(Exception):
                        dbapi.cancel()
                source.close()
                worker.join(timeout=30)

    def _pg_batch(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        arrays = []
        for name in SOR_COLUMNS:
            col = batch.column(name)
            field = SOR_SCHEMA.field(name)
            try:
                arrays.append(col.cast(TS) if name == "updated_at" else col.cast(field.type))
            except pa.ArrowInvalid as exc:
                raise self.error(f"value cannot be converted to {field.type} ({str(exc).splitlines()[0]})", column=name) from None
        return pa.RecordBatch.from_arrays(arrays, schema=SOR_SCHEMA)


_SA_FAMILY: dict[str, type] = {
    "object_id": sa.String,
    "version": sa.Integer,
    "content_hash": sa.String,
    "size_bytes": sa.Integer,
    "data_shards": sa.Integer,
    "total_shards": sa.Integer,
    "updated_at": sa.DateTime,
    "deleted": sa.Boolean,
}


class SnapshotReader:
    """Queries on a :class:`SystemOfRecord`'s connections that share one snapshot (see
    :meth:`SystemOfRecord.snapshot_reader`); every wait for the database is under the watchdog."""

    def __init__(self, sor: SystemOfRecord, conns: list, ranges: list) -> None:
        self.sor, self.conns, self.ranges = sor, conns, ranges

    def _query(self, i: int, sql: str, on_batch: Callable[[int, pa.RecordBatch], None] | None = None) -> pa.Table | None:
        conn, watch = self.conns[i]
        cur = conn.cursor()
        try:
            with watch.waiting():
                cur.execute(sql)
                if on_batch is None:
                    return cur.fetch_arrow_table()
                batches = iter(cur.fetch_record_batch())
            while True:
                with watch.waiting():
                    batch = next(batches, None)
                if batch is None:
                    return None
                with watch.paused():
                    on_batch(i, batch)
        except Exception as exc:  # noqa: BLE001
            if not isinstance(exc, (pa.ArrowException, OSError)) and not type(exc).__module__.startswith("adbc"):
                raise  # the consumer's own
            raise self.sor._driver_error(exc, "read failed", watch) from None
        finally:
            with contextlib.suppress(Exception):
                cur.close()

    def scan(self, select_list: str, on_batch: Callable[[int, pa.RecordBatch], None]) -> None:
        """``SELECT <select_list> FROM <table>``, every row once: one query per page range, run side
        by side (one thread and connection each), every batch handed to ``on_batch(range, batch)``
        on its range's thread as it arrives."""
        table = self.sor.qualified_table
        sqls = []
        for rng in self.ranges:
            where = ""
            if rng is not None:
                lo, hi = rng
                where = f" WHERE ctid >= '({int(lo)},0)'::tid" + (f" AND ctid < '({int(hi)},0)'::tid" if hi is not None else "")
            sqls.append(f"SELECT {select_list} FROM {table}{where}")
        if len(sqls) == 1:
            self._query(0, sqls[0], on_batch)
            return
        with ThreadPoolExecutor(max_workers=len(sqls), thread_name_prefix="sor-scan") as pool:
            futures = [pool.submit(self._query, i, sql, on_batch) for i, sql in enumerate(sqls)]
            try:
                for f in futures:
                    f.result()
            except BaseException:
                for conn, _watch in self.conns:  # stop the other ranges' queries
                    with contextlib.suppress(Exception):
                        conn.adbc_cancel()
                raise

    def rows_for_keys(self, keys: pa.Array) -> pa.Table:
        """The rows (:data:`SOR_SCHEMA`, validated) whose object_id is one of ``keys`` (through the
        key's index), in no particular order."""
        if len(keys) == 0:
            return SOR_SCHEMA.empty_table()
        cols = ", ".join(SOR_COLUMNS)
        literal = quote_literal("{" + ",".join('"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"'
                                               for k in keys.to_pylist()) + "}", "postgresql")
        got = self._query(0, f"SELECT {cols} FROM {self.sor.qualified_table} WHERE object_id = ANY({literal}::text[])")
        batches = [self.sor._validated(self.sor._adbc_batch(b), None, ordered=False) for b in got.to_batches()]
        return pa.Table.from_batches(batches, schema=SOR_SCHEMA)
