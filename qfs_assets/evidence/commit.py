"""The evidence commit protocol: every file of a partition, then the verdict, all or nothing.

A partition's evidence is several files: its detail tables (Parquet), sidecars (the dual-write
reconciliation ``.sql``) and the JSON verdict. No file system renames several files at once,
so a publication is a small transaction with a redo journal, the same on a local folder and in
object storage:

1. **pending** - ``<root>/.commits/<txid>.pending`` lists the staged names about to be written;
2. **stage** - each file is written whole (and synced) under a hidden staged name beside its
   target, ``.<name>.<txid>.staged`` (readers skip it: it is hidden and ends neither in
   ``.parquet`` nor in ``.json``);
3. **commit point** - ``<root>/.commits/<txid>.commit`` (written atomically) lists every
   ``staged -> target`` move, the verdict last;
4. **promote** - each staged file is renamed over its target (object storage: copied, then the
   staged object deleted), **the JSON verdict last**;
5. the journal and the pending list are removed.

A process killed anywhere leaves, once :func:`recover` has run (every run and every CLI start
calls it, through :meth:`EvidenceStore.prepare`), each partition **fully old** (killed before
the commit point: staged files deleted) or **fully new** (killed after it: the moves are
replayed, the verdict last). A live writer is never disturbed: it holds a file lock named after
its transaction (``.commits/locks/<txid>.lock`` on a local disk; for object storage under
``QFS_STATE_DIR``), and recovery only touches transactions whose lock it can take (the kernel
releases the lock of a dead process). Steps 3 to 5 hold the partition's lock, so two
publications of one partition are promoted one after the other and the partition ends as one
of them, whole. One writer host per object-storage root (a lock on one machine does not stop
another).

:func:`sweep_temporary` removes the ``.tmp`` files of atomic writes whose process is gone (the
process id is in the name; see :mod:`qfs_assets.evidence.atomic`).

``QFS_CRASH_AFTER=<n>`` (tests only) kills the process with SIGKILL right after its n-th file
event (the pending list written, a staged file written, the journal written, a file promoted,
the journal removed, an atomic write renamed); ``QFS_CRASH_LOG=<file>`` appends one line per event. Pure: no Dagster.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

COMMITS_DIR = ".commits"
STAGED_SUFFIX = ".staged"
_TMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)\.[0-9a-f]{32}\.tmp$")
#: a temporary file without a process id in its name (older versions) is stale after this long
STALE_SECONDS = 3600

_events = 0


def file_event(what: str, path: Any = "") -> None:
    """Count one file event; the ``QFS_CRASH_AFTER``-th kills the process (a test hook, see above)."""
    global _events
    crash_after, log = os.environ.get("QFS_CRASH_AFTER"), os.environ.get("QFS_CRASH_LOG")
    if not crash_after and not log:
        return
    _events += 1
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{_events}\t{what}\t{path}\n")
    if crash_after and _events == int(crash_after):
        os.kill(os.getpid(), signal.SIGKILL)


def _is_object(path) -> bool:
    return hasattr(path, "fs")  # a universal_pathlib UPath on object storage


def _lock_dir(root) -> Path:
    from qfs_assets import storage_uri

    return Path(storage_uri.local_state_dir(root)) / COMMITS_DIR / "locks"


def _write_synced(path, data: bytes) -> None:
    """Write ``data`` at ``path`` whole: one PUT in object storage, write + fsync on a disk."""
    if _is_object(path):
        path.write_bytes(data)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _move(src, dst) -> None:
    """``src`` over ``dst``: an atomic rename on a disk; copy then delete in object storage."""
    if _is_object(src):
        src.fs.copy(src.path, dst.path)
        src.fs.rm(src.path)
        return
    os.replace(src, dst)
    _fsync_dir(Path(dst).parent)


def _exists(path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def _unlink(path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _write_record(path, doc: dict) -> None:
    """A journal record, atomically (temporary + rename on a disk; one PUT in object storage)."""
    data = json.dumps(doc, indent=1).encode("utf-8")
    if _is_object(path):
        path.write_bytes(data)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    _write_synced(tmp, data)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Transaction:
    """One publication: :meth:`stage` its files (the verdict last), then :meth:`commit`.

    Used as a context manager: leaving it without a commit (an error, a full disk) deletes what
    was staged, so nothing of this publication is seen; the previous evidence stays whole."""

    def __init__(self, root) -> None:
        self.root = root
        self.txid = f"{time.time_ns():x}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.moves: list[tuple[Any, Any]] = []
        self._dir = root / COMMITS_DIR
        self._pending = self._dir / f"{self.txid}.pending"
        self._journal = self._dir / f"{self.txid}.commit"
        lock_dir = _lock_dir(root)
        lock_dir.mkdir(parents=True, exist_ok=True)
        self._lock_path = lock_dir / f"{self.txid}.lock"
        self._lock = FileLock(self._lock_path)
        self._committed = False

    def __enter__(self) -> "Transaction":
        self._lock.acquire()
        return self

    def __exit__(self, *exc) -> None:
        try:
            if not self._committed:
                self.abort()
        finally:
            self._lock.release()
            _unlink(self._lock_path)

    def _rel(self, path) -> str:
        return str(path)[len(str(self.root)):].lstrip("/")

    def stage(self, items: list[tuple[Any, bytes | pa.Table]]) -> None:
        """Write the new content of every ``(target, data)`` under its staged name (not yet
        visible), after recording the staged names (so a crash mid-way leaves nothing unknown).
        The last item is the verdict."""
        self.moves = [(t.with_name(f".{t.name}.{self.txid}{STAGED_SUFFIX}"), t) for t, _ in items]
        self._dir.mkdir(parents=True, exist_ok=True)
        _write_record(self._pending, {"txid": self.txid, "staged": [self._rel(s) for s, _ in self.moves]})
        file_event("pending", self._rel(self._pending))
        for (staged, target), (_, data) in zip(self.moves, items):
            if isinstance(data, pa.Table):
                sink = pa.BufferOutputStream()
                pq.write_table(data, sink, compression="zstd")
                data = sink.getvalue().to_pybytes()
            _write_synced(staged, data)
            file_event("staged", self._rel(target))

    def commit(self) -> None:
        """The commit point (the journal), then every move in order (the verdict last), under the
        partition's lock: two publications of one partition are promoted one after the other,
        never interleaved, so the partition ends as one of them, whole."""
        with _partition_lock(self.root, self._rel(self.moves[-1][1])):
            _write_record(self._journal, {"txid": self.txid,
                                          "moves": [[self._rel(s), self._rel(t)] for s, t in self.moves]})
            file_event("journal", self._rel(self._journal))
            self._committed = True
            _replay(self.root, self.moves)
            _unlink(self._journal)
            file_event("journal removed", self._rel(self._journal))
        _unlink(self._pending)

    def abort(self) -> None:
        for staged, _ in self.moves:
            with contextlib.suppress(OSError):
                _unlink(staged)
        with contextlib.suppress(OSError):
            _unlink(self._pending)


def publish_files(root, items: list[tuple[Any, bytes | pa.Table]]) -> None:
    """Publish ``(target, content)`` pairs under ``root`` as one transaction, the last one (the
    verdict) promoted last. Raises ``OSError`` (nothing of it visible) when the root cannot take them."""
    with Transaction(root) as tx:
        tx.stage(items)
        tx.commit()


def _partition_lock(root, verdict: str) -> FileLock:
    """The lock of one partition, named after its verdict's path (kept: lock files are tiny)."""
    digest = hashlib.sha256(verdict.encode("utf-8")).hexdigest()[:24]
    return FileLock(_lock_dir(root) / f"partition-{digest}.lock")


def _replay(root, moves) -> None:
    for staged, target in moves:
        if _exists(staged):
            _move(staged, target)
            file_event("promoted", str(target)[len(str(root)):].lstrip("/"))


@contextlib.contextmanager
def _dead(root, txid: str) -> Iterator[bool]:
    """Yield True while holding the lock of ``txid`` (its writer is gone), False if it is alive."""
    lock_path = _lock_dir(root) / f"{txid}.lock"
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
        _unlink(lock_path)


def recover(root) -> dict[str, int]:
    """Finish or undo the publications of dead writers; returns what was done (for logs/tests)."""
    done = {"rolled_forward": 0, "rolled_back": 0}
    folder = root / COMMITS_DIR
    if not _exists(folder):
        return done
    records = sorted(p.name for p in folder.iterdir() if p.name.endswith((".commit", ".pending")))
    for txid in sorted({n.rsplit(".", 1)[0] for n in records}):
        journal, pending = folder / f"{txid}.commit", folder / f"{txid}.pending"
        with _dead(root, txid) as dead:
            if not dead:
                continue
            if _exists(journal):
                doc = json.loads(journal.read_text(encoding="utf-8"))
                with _partition_lock(root, doc["moves"][-1][1]):
                    _replay(root, [(root / s, root / t) for s, t in doc["moves"]])
                    _unlink(journal)
                done["rolled_forward"] += 1
            elif _exists(pending):
                doc = json.loads(pending.read_text(encoding="utf-8"))
                for staged in doc.get("staged", []):
                    _unlink(root / staged)
                done["rolled_back"] += 1
            _unlink(pending)
    return done


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_temporary(root: Path) -> int:
    """Delete the ``.tmp`` files under a local root whose writing process is gone; returns how many."""
    if _is_object(root) or not root.is_dir():
        return 0
    removed = 0
    now = time.time()
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            path = Path(folder) / name
            match = _TMP_NAME.match(name)
            try:
                stale = (not _pid_alive(int(match["pid"]))) if match else now - path.stat().st_mtime > STALE_SECONDS
                if stale:
                    path.unlink()
                    removed += 1
            except (OSError, ValueError):
                continue
    return removed
