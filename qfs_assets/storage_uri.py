"""Where the export and the evidence live: a local folder or an ``s3://bucket/prefix`` URL.

``QFS_EXPORT_ROOT`` and ``QFS_EVIDENCE_ROOT`` accept either. Local folders stay plain paths
(``pathlib``, POSIX renames); object storage goes through fsspec (s3fs). Credentials, region and
endpoint come only from the standard AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``/``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL`` for an S3-compatible server, or a profile/instance role): never from the
URL, and never written to a log, an error message, run config or evidence. A URL carrying
``user:secret@`` is refused for that reason.

No Dagster here.
"""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import urlsplit

REMOTE_SCHEMES = ("s3", "s3a")


class StorageURIError(ValueError):
    """A root that cannot be used (unsupported scheme, credentials in the URL, no bucket)."""


def scheme(root: str | os.PathLike) -> str:
    text = os.fspath(root)
    if "://" not in text:
        return ""
    return text.split("://", 1)[0].lower()


def is_remote(root: str | os.PathLike | None) -> bool:
    return root is not None and scheme(root) != ""


def check_root(root: str | os.PathLike) -> str:
    """The root as text, refusing what we cannot (or must not) use; never echoes a secret."""
    text = os.fspath(root)
    sch = scheme(text)
    if not sch:
        return text
    if sch not in REMOTE_SCHEMES:
        raise StorageURIError(f"unsupported storage URL scheme {sch}:// (a local folder or s3://bucket/prefix)")
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None or "@" in (parts.netloc or ""):
        raise StorageURIError("credentials in a storage URL are refused: give them in the AWS_* environment variables")
    if not parts.netloc:
        raise StorageURIError(f"storage URL {sch}:// names no bucket (s3://bucket/prefix)")
    return f"s3://{parts.netloc}{parts.path}".rstrip("/")


def s3_options(env: dict[str, str] | None = None) -> dict[str, Any]:
    """s3fs options from the standard AWS variables (botocore reads the keys itself)."""
    env = os.environ if env is None else env
    opts: dict[str, Any] = {}
    client: dict[str, Any] = {}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["endpoint_url"] = endpoint
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        client["region_name"] = region
    if client:
        opts["client_kwargs"] = client
    return opts


_FS_LOCK = threading.Lock()
_FS_CACHE: dict[tuple, Any] = {}


def filesystem(root: str | os.PathLike):
    """``(fs, path)``: the fsspec filesystem and the root's path within it (no scheme for S3).

    One S3 filesystem per (endpoint, region) is kept, so listings reuse connections.
    """
    text = check_root(root)
    if not is_remote(text):
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem(), os.path.abspath(text)
    import s3fs

    opts = s3_options()
    key = (opts.get("endpoint_url"), (opts.get("client_kwargs") or {}).get("region_name"),
           os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_PROFILE"))
    with _FS_LOCK:
        fs = _FS_CACHE.get(key)
        if fs is None:
            # fsspec's own instance cache is keyed on the options; ours adds the credential
            # variables, so a changed key pair in the environment gives a fresh client.
            fs = s3fs.S3FileSystem(skip_instance_cache=True, **opts)
            _FS_CACHE[key] = fs
    return fs, text.split("://", 1)[1]


def join(root: str, *parts: str) -> str:
    """Join path parts onto a root (local path or URL) with forward slashes for URLs."""
    if is_remote(root):
        return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts]])
    return os.path.join(root, *parts)


def url(fs, path: str) -> str:
    """A path within ``fs`` as the user-facing location (s3://... or a local path)."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return path
    return f"s3://{path}" if not path.startswith("s3://") else path


def upath(root: str | os.PathLike):
    """A pathlib-like path for the root: ``pathlib.Path`` for a local folder, a universal_pathlib
    ``UPath`` (fsspec underneath) for ``s3://``; ``is_dir``, ``iterdir``, ``glob``, ``open`` and
    ``/`` work the same on both, and ``str()`` gives the user-facing location."""
    from pathlib import Path

    if not isinstance(root, (str, os.PathLike)) and hasattr(root, "fs"):  # already a UPath
        return root
    text = check_root(root)
    if not is_remote(text):
        return Path(text)
    from upath import UPath

    return UPath(text, **s3_options())


def register_with_duckdb(con, path) -> None:
    """Let DuckDB read ``s3://`` paths through the path's fsspec filesystem (DuckDB's own httpfs
    extension is downloaded at run time, which a closed network cannot do); a no-op locally."""
    fs = getattr(path, "fs", None)
    if fs is None:
        return
    name = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    try:
        registered = con.filesystem_is_registered(name)
    except Exception:  # noqa: BLE001 - older DuckDB: try and ignore a duplicate
        registered = False
    if not registered:
        try:
            con.register_filesystem(fs)
        except Exception as exc:  # noqa: BLE001
            if "already" not in str(exc).lower():
                raise


def local_state_dir(root) -> "os.PathLike":
    """Where state that needs a local file system (an exclusive lock, an atomic rename) lives for
    an evidence root: the root itself when it is a local folder; for ``s3://bucket/prefix``,
    ``$QFS_STATE_DIR/bucket/prefix`` (default ``qfs_state`` in the working directory). Object
    storage has neither locks nor renames, so the diff ledger and the alert ledgers stay there."""
    from pathlib import Path

    text = str(root) if hasattr(root, "fs") else os.fspath(root)
    if not is_remote(text):
        return Path(text)
    return Path(os.environ.get("QFS_STATE_DIR") or "qfs_state") / check_root(text).split("://", 1)[1]
