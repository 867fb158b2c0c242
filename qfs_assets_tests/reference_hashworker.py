"""SHA-256 of many short byte ranges, in a helper process (the second core) or in process.

FROZEN, not part of the runtime: the per-event reference engine's helper (``reference_engine.py``
says why that engine is kept), moved out of ``qfs_assets/replay`` with it; nothing else uses it.

The reference engine hashes every event twice (the chain link, and most events' new row): with
OpenSSL's SHA-NI code the digest itself is ~0.15 us for a 250-byte event, the rest of the
~0.75 us is Python call overhead, and hashlib keeps the GIL for inputs below 2 KiB, so a thread
cannot help.
``HashWorker`` runs the same hashlib loop in a child interpreter (``python -I -S -c``: no site, no
imports but hashlib and array, ~20 ms to start) fed through a pipe, so the hashing of batch
rows runs on another core while the engine parses and applies them. The pipe costs a memcpy of
the bytes each way (~0.05 us per event); the answer is the very bytes ``hash_ranges`` would
compute (same function, same input), and any failure of the helper (it died, a short read)
makes the caller fall back to ``hash_ranges`` in process: the result never depends on it.

Protocol (native byte order, one machine): a request is ``slot, m, size`` (three int64), then
``m`` int64 starts and ``m`` int64 ends, then ``size`` bytes of data (``size == -1``: reuse the
data last sent for that slot). The helper answers with the ``m`` concatenated 32-byte digests of
``data[start:end]``. Requests are answered in order.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

_SCRIPT = r"""
import sys, hashlib
from array import array
rd = sys.stdin.buffer.read
out = sys.stdout.buffer
sha = hashlib.sha256
slots = {}
while True:
    h = rd(24)
    if len(h) < 24:
        break
    slot, m, size = array("q", h)
    se = array("q")
    se.frombytes(rd(16 * m))
    if size >= 0:
        slots[slot] = rd(size)
    data = slots[slot]
    out.write(b"".join([sha(data[a:b]).digest() for a, b in zip(se[:m].tolist(), se[m:].tolist())]))
    out.flush()
"""

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031) if fcntl is not None else None


def hash_ranges(data, starts: np.ndarray, ends: np.ndarray) -> bytes:
    """The concatenated SHA-256 digests of ``data[s:e]`` for each (start, end), in process."""
    sha = hashlib.sha256
    return b"".join([sha(data[a:b]).digest() for a, b in zip(starts.tolist(), ends.tolist())])


def _shutdown(proc: subprocess.Popen, pool: ThreadPoolExecutor) -> None:
    for f in (proc.stdin, proc.stdout):
        try:
            f.close()
        except Exception:  # noqa: BLE001 - best effort on teardown
            pass
    try:
        proc.wait(timeout=2)
    except Exception:  # noqa: BLE001
        proc.kill()
        try:
            proc.wait(timeout=2)
        except Exception:  # noqa: BLE001
            pass
    pool.shutdown(wait=False)


class HashWorker:
    """A helper process hashing byte ranges; requests go through one I/O thread, in order."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _SCRIPT], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        for f in (self._proc.stdin, self._proc.stdout):  # 1 MiB pipes: 16x fewer wake-ups (Linux)
            try:
                fcntl.fcntl(f.fileno(), _F_SETPIPE_SZ, 1 << 20)
            except (OSError, AttributeError):  # not Linux, or above /proc/sys/fs/pipe-max-size
                pass
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="qfs-replay-hash")
        self._lock = threading.Lock()
        self.broken = False
        self._finalizer = weakref.finalize(self, _shutdown, self._proc, self._pool)

    def submit(self, slot: int, starts: np.ndarray, ends: np.ndarray, data=None) -> Future:
        """Digests of ``data[starts[i]:ends[i]]`` (data None: the data last sent for ``slot``)."""
        se = np.concatenate([np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)])
        return self._pool.submit(self._job, slot, len(starts), se, data)

    def _job(self, slot: int, m: int, se: np.ndarray, data) -> bytes:
        if self.broken:
            raise RuntimeError("hash worker is closed")
        proc = self._proc
        w = proc.stdin
        size = -1 if data is None else len(data)
        w.write(np.array([slot, m, size], dtype=np.int64).tobytes())
        w.write(se.tobytes())
        if data is not None:
            w.write(data)
        w.flush()
        want = 32 * m
        out = proc.stdout.read(want)
        if out is None or len(out) != want:
            self.broken = True
            raise RuntimeError("hash worker answered short")
        return out

    def close(self) -> None:
        self.broken = True
        self._finalizer()


def later(worker: HashWorker | None, slot: int, data, starts: np.ndarray, ends: np.ndarray,
          fallback: Callable[[], bytes], send: bool = True,
          on_error: Callable[[], None] | None = None) -> Callable[[], bytes]:
    """A getter of the digests of ``data[starts[i]:ends[i]]`` from the worker (``send=False``: it
    already holds ``data`` in ``slot``). Without a worker, or if it fails, the getter returns
    ``fallback()`` (the same digests computed in process). ``data`` is not kept once sent."""
    if worker is not None and not worker.broken:
        try:
            fut = worker.submit(slot, starts, ends, data if send else None)
        except Exception:  # noqa: BLE001 - e.g. the pool was shut down
            fut = None
        if fut is not None:
            def get() -> bytes:
                try:
                    return fut.result()
                except Exception:  # noqa: BLE001 - the helper died: hash here
                    if on_error is not None:
                        on_error()
                    return fallback()
            return get
    out = fallback()
    return lambda: out
