"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The data is written to a temporary file beside the target (``.<name>.<pid>.<uuid>.tmp``: readers
of the evidence folders skip these), flushed to disk, then renamed over the target (atomic on
POSIX), and the folder is flushed so the rename survives a crash. When the write fails the
temporary file is removed and the target is left as it was: good evidence is never lost or
half overwritten.

On object storage (a universal_pathlib ``UPath`` from :mod:`qfs_assets.storage_uri`) there is no
rename, but a PUT is atomic: the data is written with one PUT to its final key (Parquet built
in memory first). Pure: no Dagster.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["write_bytes_atomic", "write_text_atomic", "write_parquet_atomic", "temporary_sibling"]


def _is_object(path) -> bool:
    return hasattr(path, "fs")  # a universal_pathlib UPath on object storage


def temporary_sibling(path: Path) -> Path:
    """The temporary name a write of ``path`` goes through: ``.<name>.<pid>.<uuid>.tmp``. The
    process id lets :func:`qfs_assets.evidence.commit.sweep_temporary` remove the files of a
    writer that died (a live writer's are left alone)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - a platform without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(target)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)
    from qfs_assets.evidence.commit import file_event

    file_event("atomic write", target.name)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parents created); returns the path."""
    if _is_object(path):  # one PUT: visible whole or not at all
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        path.write_bytes(bytes(data))
        return path
    with _replacing(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (parents created); returns the path."""
    return write_bytes_atomic(path, text.encode(encoding))


def write_parquet_atomic(path: str | os.PathLike, table: pa.Table, *, compression: str = "zstd") -> Path:
    """Write ``table`` as one Parquet file at ``path`` atomically (parents created); returns the path."""
    if _is_object(path):  # written in memory, then one PUT
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression=compression)
        path.write_bytes(sink.getvalue().to_pybytes())
        return path
    with _replacing(path) as tmp:
        pq.write_table(table, tmp, compression=compression)
    return Path(path)
