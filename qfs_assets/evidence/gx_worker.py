"""The Great Expectations helper process (see :mod:`qfs_assets.evidence.gx_suite`).

Started by :func:`gx_suite.prefetch` as ``python -m qfs_assets.evidence.gx_worker``. It builds
the GX context at once (the import is the slow part), then answers requests read from stdin,
each a length-prefixed pickle ``("validate", suite_name, judge_table_ipc, specs, metrics)``,
with ``(True, [Criterion, ...])`` or ``(False, message)`` on stdout. It ends when stdin closes
(its parent ended or no longer needs it), at once (``os._exit``: it holds nothing to save, and
tearing GX's interpreter down took ~0.6 s that the CLI waited for). Anything GX prints goes to
stderr, never into the protocol stream.

GX's optional integrations that judging a pandas table never uses (SQL through SQLAlchemy,
PostgreSQL, AWS) are hidden from it here (:data:`NOT_FOR_GX`): GX then takes them as not
installed, a configuration GX supports (they are not among its requirements), and its import
costs ~0.7 s of CPU less (2.6 s to 1.9 s). Two heavy libraries that GX imports at module level
but uses only in expectations and renderers QFS Assure never runs (``scipy.stats`` for the
distribution tests, ``altair`` for charts; :data:`DEFERRED_FOR_GX`) are given stand-ins that
import the real module on first use (:class:`Deferred`): measured 2026-12-06 on this project's
2-core machine, GX's import and a first judgement 4.3-4.9 s wall, 4.0-4.5 s CPU before, 2.8-3.0 s
wall, 2.6-2.9 s CPU after; the verdicts are the same (the tests judge through the helper). The
parent process is not affected.
"""

from __future__ import annotations

import gc
import importlib
import os
import pickle
import struct
import sys
import types

#: installed for QFS Assure's own use (the system of record, s3:// roots), optional for GX and
#: never used by its pandas data source: hidden from GX in this process only
NOT_FOR_GX = ("sqlalchemy", "psycopg2", "boto3", "botocore")


#: imported by GX at module level, used only by expectations and renderers QFS Assure never runs:
#: deferred in this process until first use
DEFERRED_FOR_GX = ("scipy.stats", "altair")


class Deferred(types.ModuleType):
    """A stand-in in ``sys.modules`` that imports the real module when one of its attributes is
    first read, and from then on reads them from it."""

    def __getattr__(self, attr: str):
        if attr.startswith("__"):  # the import system's own probes (__spec__, __path__, ...)
            raise AttributeError(attr)
        real = sys.modules.get(self.__name__)
        if real is self:
            del sys.modules[self.__name__]
            real = importlib.import_module(self.__name__)
        return getattr(real, attr)


def defer_unused_imports() -> None:
    """Put :class:`Deferred` stand-ins for :data:`DEFERRED_FOR_GX` in ``sys.modules``. Only before
    anything imported them."""
    for name in DEFERRED_FOR_GX:
        if name not in sys.modules:
            sys.modules[name] = Deferred(name)


def hide_optional_integrations() -> None:
    """Make ``import`` of :data:`NOT_FOR_GX` fail in this process (GX's compatibility layer then
    uses its not-installed stand-ins). Only before anything imported them."""
    for name in NOT_FOR_GX:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # ImportError on import (PEP 451)


def main() -> int:
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints (progress bars, warnings) cannot corrupt the protocol
    sys.stdout = sys.stderr

    # the collector is off while GX loads (thousands of classes and pydantic models: its passes
    # over them were ~0.15-0.2 s of the helper's ~1.3 s of CPU), then what was loaded is frozen
    # (never collected, never scanned again) and the collector is back for the requests
    gc.disable()
    hide_optional_integrations()
    defer_unused_imports()
    from qfs_assets.evidence import gx_suite

    try:
        gx_suite._context()
    except Exception:  # noqa: BLE001 - reported on the first request instead
        pass
    gc.freeze()
    gc.enable()
    import pyarrow as pa

    def read_exact(n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = proto_in.read(n - len(buf))
            if not chunk:
                return b""
            buf += chunk
        return bytes(buf)

    while True:
        head = read_exact(8)
        if len(head) != 8:  # the parent closed stdin: nothing to save, skip the interpreter's teardown
            sys.stderr.flush()
            os._exit(0)
        (n,) = struct.unpack("<Q", head)
        request = pickle.loads(read_exact(n))
        try:
            kind, suite_name, ipc, specs, metrics = request
            if kind != "validate":
                raise ValueError(f"unknown request {kind!r}")
            table = pa.ipc.open_stream(ipc).read_all()
            reply = (True, gx_suite.validate_local(suite_name, table, specs, metrics))
        except Exception as exc:  # noqa: BLE001 - the parent judges in-process instead
            reply = (False, f"{type(exc).__name__}: {exc}")
        data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        proto_out.write(struct.pack("<Q", len(data)) + data)
        proto_out.flush()


if __name__ == "__main__":
    sys.exit(main())
