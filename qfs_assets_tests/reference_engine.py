"""The per-event reference replay engine: FROZEN; not part of the runtime.

Nothing in ``qfs_assets`` imports this module and it is not shipped (``qfs_assets_tests`` is left
out of the package). It was the drill's engine ("today's engine") until the columnar engine
(``qfs_assets/replay/columnar.py``) replaced it and matched it on every test; issue #16: "Keep
today's engine as the test oracle until the new one matches it everywhere, then retire it." It
is kept, unchanged in behaviour, for two uses only:

* the differential tests' oracle: ``test_replay_engine`` runs every engine test on both engines,
  ``test_replay_columnar`` compares both field by field on fuzzed, broken and hypothesis-generated
  logs, ``test_replay_drill_small`` takes its true checkpoint roots from it;
* the benchmark's "today's engine" row, side by side with the columnar engine in the same run
  (``bench/alternatives.py`` ``engine_replay`` with engine "reference", run by ``bench/run.py``).

Do not fix or speed it up here: a change to it changes the oracle. The semantics it implements
(every choice: input, limits, chain rules, invalid events, roots, checkpoints, options) are
documented once, in the package: the docstring of ``qfs_assets/replay/__init__.py``. Helpers
only this engine used moved out of the package with it: ``reference_hashworker.py`` (the
SHA-256 helper process), ``reference_fastparser.py`` (the DuckDB payload parser) and, at the end
of this module, the chain, row and digest helpers. Plain Python (pyarrow, numpy, DuckDB as a
parsing kernel); no Dagster.

How it works (as measured when it was the drill's engine)
---------------------------------------------------------
Input: the engine re-chunks the stream into steps of ``batch_rows`` rows and keeps no more than
one such step of the log in memory (two with the helper, below).

Roots: each component root's ``SetHash`` (``acc``) gets row-hash integers added and subtracted.
To stay fast the engine does not hash every intermediate version of a row: a row that changes
is marked dirty with the value it had at the last flush, and a flush (at every checkpoint and
at the end) subtracts the hashes of those old rows and adds the hashes of the current ones (for
nodes and ledger the old hashes are cached, so a ledger row paid a thousand fees between two
checkpoints is hashed once). A row inserted fresh by node_registered, object_written or
shard_placed is added with its hash computed before the apply loop (the shard row's canonical
text *is* the canonical shard_placed payload).

Row texts are formatted without ``json.dumps`` (``qfs_assets/replay/rows.py``; identical to
``canonical_json``, proved by tests). The cyclic GC is paused while batches are processed (the
state is millions of acyclic tuples).

Memory: the log is held one step of ``batch_rows`` (to 2 x) rows at a time (two steps with the
helper, below); the state is Python dicts of tuples (node, account and object ids interned),
plus the sets of applied tx_ids and reward_ids.

Performance (bench/bench_replay.py, CPython 3.11): about 160-190k events per CPU second end to
end from Parquet, all in one thread. Each event costs at least one SHA-256 for the chain, most
also one for their new row; with OpenSSL's SHA-NI code the digest itself is ~0.15 us, the rest
of hashlib's ~0.75 us per call is Python overhead, and hashlib keeps the GIL below 2 KiB, so
hashing is ~1.3 us per event of the ~5.5; the rest is the DuckDB parse (~0.9), the apply loop
(~1), the root flushes (~0.6) and reading. DuckDB's own sha256 (no SHA-NI) is slower per hash.

The second core (``reference_hashworker.py``, ``_process``): from the first step of at least
``_WORKER_MIN_ROWS`` rows, when ``_parallel_allowed()`` (two usable CPUs and a 1-minute load
average of at most CPUs - 0.5, or ``QFS_REPLAY_HELPER=1``), (1) the chain digests and the
shard_placed row digests are computed in a helper process (``python -I -S``, hashlib over a
1 MiB pipe, ~20 ms to start) and (2) a step's payloads are parsed by DuckDB in a thread (DuckDB
releases the GIL) while the previous step is applied here, so each step is applied one step
later (``roots``/``table``/``rows``/``finish`` first complete the pending step). This takes
~1.4 us of hashing and ~0.9 us of parsing per event off the calling thread for ~0.1 us of pipe
copies, and costs one more step of the log in memory. It only helps when a second core is
actually idle: it costs ~15% more CPU in total than one thread (hence the load rule).
``QFS_REPLAY_HELPER=0`` turns it off. The helper cannot change a result: its digests are
compared as before (chain) or added as before (rows), and if it fails the same digests are
computed in process; steps are applied strictly in log order either way.
"""

from __future__ import annotations

import binascii
import datetime as dt
import gc
import hashlib
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qfs_assets.contract.hashing import COMPONENTS, SetHash, state_root
from qfs_assets.contract.schema import NODE_STATUSES

from qfs_assets.replay import payloads as P
from qfs_assets.replay.chain import ChainCursor, _string_parts, ts_to_datetime, verify_batch
from qfs_assets.replay.compare import CheckpointComparison, compare_checkpoints, diff_roots, expected_roots
from qfs_assets.replay.rows import COMPONENT_FIELDS, COMPONENT_SCHEMAS, ROW_TEXT
from qfs_assets_tests import reference_fastparser as F
from qfs_assets_tests.reference_hashworker import HashWorker, later

__all__ = [
    "ReplayEngine",
    "replay",
    "ReplayResult",
    "Roots",
    "ChainBreak",
    "InvalidEvent",
    "ReplayInputError",
    "EQM_COLUMNS",
]

from qfs_assets.replay.result import (  # noqa: E402 - shared with the columnar engine
    EQM_COLUMNS, _TS, ChainBreak, InvalidEvent, ReplayInputError, ReplayResult, Roots, _no_gc, _to_us, normalise,
)
_EVENT_TYPE_SET = pa.array(P.EVENT_TYPES, type=pa.string())
# event codes: the index of the event type in EVENT_TYPES (P.BAD_EVENT: unknown or unparsable)
(NODE_REGISTERED, NODE_STATUS_CHANGED, OBJECT_WRITTEN, OBJECT_DELETED,
 SHARD_PLACED, SHARD_MOVED, FEE_CHARGED, REWARD_PAID) = range(8)
assert P.EVENT_TYPES[SHARD_PLACED] == "shard_placed" and P.EVENT_TYPES[REWARD_PAID] == "reward_paid"
_STATUSES = frozenset(NODE_STATUSES)
# A step of at least this many rows is hashed in the helper process (reference_hashworker.py),
# started at the first such step (smaller logs never pay its ~20 ms start), and parsed one step
# ahead in a thread, if ``_parallel_allowed()`` at that first big step.
_WORKER_MIN_ROWS = 50_000


def _parallel_allowed() -> bool:
    """Whether to use a second core: QFS_REPLAY_HELPER=0 never, =1 whenever the process may run
    on two CPUs, unset ("auto") when it may and the machine is not busy (1-minute load average
    at most CPUs - 0.5, this replay included): the helper adds ~15% CPU, a loss if no core idles."""
    mode = os.environ.get("QFS_REPLAY_HELPER", "auto").strip().lower()
    if mode in ("0", "off", "false", "no"):
        return False
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    if cpus < 2:
        return False
    if mode in ("1", "on", "true", "yes"):
        return True
    try:
        return os.getloadavg()[0] <= cpus - 0.5
    except (AttributeError, OSError):
        return True
_FAST_MIN_ROWS = 256  # fast_path="auto": below this many rows of a type, json.loads is cheaper
# Event types whose inserted row hash is precomputed from the payload, and their component.
_CANDIDATE_COMPONENT = {NODE_REGISTERED: "nodes", OBJECT_WRITTEN: "objects", SHARD_PLACED: "shards"}



@dataclass
class _Step:
    """One step of the log, prepared (hashing and parsing started) and waiting to be applied."""

    seq: np.ndarray
    ts: np.ndarray
    n: int
    event_type: pa.Array
    payload: pa.Array
    prev_hash: pa.Array
    event_hash: pa.Array
    codes_np: np.ndarray
    errors: dict
    groups: list
    fast: Any  # {event_type: parsed} or a Future of it
    sp_digests: Any
    chain_get: Callable[[], bytes]
    cp_positions: list
    ahead: bool  # big: may wait while the previous step is applied


class ReplayEngine:
    """A replay in progress. The semantics and the options: ``qfs_assets/replay/__init__.py``.

    This engine's own: ``fast_path`` "auto" (default) parses payloads with DuckDB
    (``reference_fastparser.py``) when a batch holds at least 256 events of a type, True always,
    False never (reference parser only); same result. ``batch_rows``: memory for the log ~ 1 KB
    per row. ``feed`` buffers up to ``batch_rows`` rows before processing them; with the hash
    helper a big step may also wait prepared until the next step: ``roots()``, ``table()`` and
    ``rows()`` apply it first, while the attributes ``events_replayed``/``last_seq`` do not.
    """

    def __init__(
        self,
        *,
        checkpoint_seqs: Iterable[int] = (),
        expected_checkpoints: pa.Table | Iterable[Mapping[str, Any]] | None = None,
        snapshot_at: Mapping[int, Iterable[str]] | None = None,
        snapshot_first_mismatch: bool = True,
        on_checkpoint: Callable[[Roots, "ReplayEngine"], None] | None = None,
        through_seq: int | None = None,
        through_ts: dt.datetime | int | None = None,
        before_ts: dt.datetime | int | None = None,
        fast_path: bool | str = "auto",
        batch_rows: int = 262_144,
    ) -> None:
        self._t0 = time.perf_counter()
        # state: see rows.py for the layout
        self.nodes: dict[str, tuple] = {}
        self.objects: dict[str, tuple] = {}
        self.shards: dict[str, dict[int, tuple]] = {}
        self.ledger: dict[str, tuple] = {}
        self.tx_ids: set[str] = set()
        self.reward_ids: set[str] = set()
        self._acc = {c: SetHash() for c in COMPONENTS}
        self._dirty: dict[str, dict] = {c: {} for c in COMPONENTS}
        # hash of each row as of the last flush, for the small, often-updated components
        self._hash_cache: dict[str, dict] = {"nodes": {}, "ledger": {}}
        # candidate positions (in the current batch) of fresh inserts whose hash is precomputed
        # Fresh inserts with a precomputed row hash (a "candidate") are counted in bulk per
        # segment; the loop only lists the candidates it did not use (invalid or not fresh).
        self._unused: dict[int, list[int]] = {c: [] for c in _CANDIDATE_COMPONENT}
        self._ds_objects: set[str] = set()  # object_ids with a dirty shard key

        self._expected: dict[int, dict[str, str]] = {}
        self._expected_rows: list[Mapping[str, Any]] | None = None
        if expected_checkpoints is not None:
            rows = (expected_checkpoints.to_pylist() if isinstance(expected_checkpoints, (pa.Table, pa.RecordBatch))
                    else list(expected_checkpoints))
            self._expected_rows = rows
            self._expected = {int(r["seq"]): expected_roots(r) for r in rows}
        self._snapshot_at = {int(s): tuple(c) for s, c in (snapshot_at or {}).items()}
        for comps in self._snapshot_at.values():
            for c in comps:
                if c not in COMPONENTS:
                    raise ValueError(f"unknown component {c!r}")
        self._snapshot_first_mismatch = snapshot_first_mismatch
        self._mismatch_seen = False
        self._on_checkpoint = on_checkpoint
        cps = set(int(s) for s in checkpoint_seqs) | set(self._expected) | set(self._snapshot_at)
        self._cps = sorted(cps)
        self._cp_ptr = 0
        self.checkpoint_roots: dict[int, Roots] = {}
        self.snapshots: dict[int, dict[str, pa.Table]] = {}

        self._through_seq = through_seq
        self._through_ts = _to_us(through_ts, "through_ts")
        self._before_ts = _to_us(before_ts, "before_ts")
        self._done = False
        self._limit_reached = False
        if fast_path not in (True, False, "auto"):
            raise ValueError("fast_path must be True, False or 'auto'")
        self._fast_path = fast_path
        self._parser: F.FastParser | None = None
        self._batch_rows = max(1, int(batch_rows))
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0

        self._cursor = ChainCursor()
        self._max_seq = -(1 << 63)
        self.events_replayed = 0
        self.last_seq: int | None = None
        self._last_ts_us: int | None = None
        self.first_break: ChainBreak | None = None
        self.chain_breaks = 0
        self.invalid_events: list[InvalidEvent] = []
        self.payload_fallbacks = 0
        self._worker: HashWorker | None = None
        self._parallel: bool | None = None  # decided at the first big step
        self._worker_failed = False
        self._parse_pool: ThreadPoolExecutor | None = None
        self._pending: _Step | None = None
        # CPU seconds of the calling thread per phase, plus "parse_thread": DuckDB parsing in the
        # parse thread (big steps). The hash helper process's CPU is not counted here.
        self.phase_seconds = {"input": 0.0, "chain": 0.0, "parse": 0.0, "parse_thread": 0.0, "apply": 0.0,
                              "roots": 0.0}
        self._finished: ReplayResult | None = None

    # ----------------------------------------------------------------------------- input

    def feed(self, batch: pa.RecordBatch | pa.Table) -> bool:
        """Add a batch of log rows. Returns False once a limit was reached (stop reading)."""
        if self._finished is not None:
            raise RuntimeError("replay already finished")
        if self._done:
            return False
        t = time.thread_time()
        normalised = normalise(batch)
        self.phase_seconds["input"] += time.thread_time() - t
        for rb in normalised:
            if rb.num_rows == 0:
                continue
            self._buffer.append(rb)
            self._buffered += rb.num_rows
        if self._buffered >= self._batch_rows:
            with _no_gc():
                self._drain(final=False)
        return not self._done

    def _drain(self, final: bool) -> None:
        """Process the buffered rows in steps of batch_rows to 2 * batch_rows rows (so that input
        batches of about batch_rows rows are processed as they are, without a copy)."""
        if not self._buffer:
            return
        table = pa.Table.from_batches(self._buffer)
        self._buffer = []
        self._buffered = 0
        n = table.num_rows
        size = self._batch_rows
        off = 0
        while off < n and not self._done:
            left = n - off
            if not final and left < size:  # keep the tail for the next feed
                rest = table.slice(off)
                self._buffer = rest.to_batches()
                self._buffered = rest.num_rows
                return
            step = left if left < 2 * size else size
            self._process(table.slice(off, step), final)
            off += step
        if final:
            self._complete_pending()

    def _complete_pending(self) -> None:
        """Finish the batch prepared ahead (see ``_process``), if any."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._complete(pending)

    # ----------------------------------------------------------------------------- batch

    def _process(self, tbl: pa.Table, final: bool) -> None:
        """Verify and apply one step of the log.

        A big step (``_WORKER_MIN_ROWS`` rows or more) is *prepared* (its hashing started in the
        helper process, its payloads parsed by DuckDB in a thread, which releases the GIL) and
        kept pending while the previous pending step is applied here, then applied at the next
        step, at ``finish`` or when the state is read (``roots``/``table``/``rows``). Steps are
        always completed in log order; a small step completes the pending one and itself at once.
        """
        pending = self._prepare(tbl)
        self._complete_pending()
        if pending is not None:
            if pending.ahead and not final and not self._done:
                self._pending = pending
            else:
                self._complete(pending)

    def _prepare(self, tbl: pa.Table) -> "_Step | None":
        seq = tbl.column("seq").to_numpy()
        ts = tbl.column("ts").cast(pa.int64()).to_numpy()
        n = len(seq)
        stop = n
        if self._through_seq is not None:
            beyond = np.flatnonzero(seq > self._through_seq)
            if len(beyond):
                stop = min(stop, int(beyond[0]))
        if self._through_ts is not None:
            beyond = np.flatnonzero(ts > self._through_ts)
            if len(beyond):
                stop = min(stop, int(beyond[0]))
        if self._before_ts is not None:
            beyond = np.flatnonzero(ts >= self._before_ts)
            if len(beyond):
                stop = min(stop, int(beyond[0]))
        if stop < n:
            self._done = True
            self._limit_reached = True
            tbl = tbl.slice(0, stop)
            seq, ts, n = seq[:stop], ts[:stop], stop
        if n == 0:
            return None

        event_type = tbl.column("event_type").combine_chunks()
        payload = tbl.column("payload").combine_chunks()
        prev_hash = tbl.column("prev_hash").combine_chunks()
        event_hash = tbl.column("event_hash").combine_chunks()

        ph = self.phase_seconds
        t0 = time.thread_time()
        codes_np = pc.fill_null(pc.index_in(event_type, value_set=_EVENT_TYPE_SET), P.BAD_EVENT).to_numpy().copy()
        # 1. the hash chain: the link texts, hashed in the helper process for a big batch (the
        # verdict is taken after the apply loop; nothing in it depends on the chain) or here.
        worker = self._hash_worker(n)
        sp_digests = None
        if worker is not None:
            joined = chain_texts(seq, event_type, payload, prev_hash)
            offs, data = _string_parts(joined)
            o0 = int(offs[0])
            offs = offs.astype(np.int64) - o0
            data = data[o0: o0 + int(offs[-1])]
            # shard_placed: the row text is the payload, the tail of its link text; hashed first
            # (the apply loop needs them at the first checkpoint, the chain digests only at the end)
            sp_rows = np.flatnonzero(codes_np == SHARD_PLACED)
            poffs, _ = _string_parts(payload)
            ends = offs[sp_rows + 1]
            starts = ends - (poffs[sp_rows + 1] - poffs[sp_rows]).astype(np.int64)
            sp_digests = (sp_rows, later(worker, 0, data, starts, ends, send=True, on_error=self._drop_worker,
                                         fallback=lambda: _digests(payload, sp_rows).tobytes()))
            chain_get = later(worker, 0, data, offs[:-1], offs[1:], send=False, on_error=self._drop_worker,
                              fallback=lambda: recompute_digests(pa.array(seq, type=pa.int64()), event_type,
                                                                 payload, prev_hash))
            del joined, data  # the helper has its copy
        else:
            computed = recompute_digests(pa.array(seq, type=pa.int64()), event_type, payload, prev_hash)
            chain_get = lambda: computed  # noqa: E731

        t1 = time.thread_time()
        ph["chain"] += t1 - t0
        # 2. event types and payloads (DuckDB, in a thread for a big step)
        errors: dict[int, str] = {}
        for i in np.flatnonzero(codes_np == P.BAD_EVENT).tolist():
            errors[i] = f"unknown event_type {_text(event_type, i)!r}"
        present = np.bincount(codes_np, minlength=9)
        groups = [(code, et, np.flatnonzero(codes_np == code)) for code, et in enumerate(P.EVENT_TYPES)
                  if present[code]]
        fast_mode = self._fast_path
        fast = {et: None for code, et, rows in groups
                if fast_mode is True or (fast_mode == "auto" and len(rows) >= _FAST_MIN_ROWS)}
        ahead = n >= _WORKER_MIN_ROWS and bool(self._parallel)
        if fast:
            if self._parser is None:
                self._parser = F.FastParser()
            wanted = [(et, rows) for code, et, rows in groups if et in fast]
            if ahead:
                if self._parse_pool is None:
                    self._parse_pool = ThreadPoolExecutor(1, thread_name_prefix="qfs-replay-parse")
                # the thread gets its own copy of the codes (_parse_type marks slow rows in codes_np)
                fast = self._parse_pool.submit(self._parse_in_thread, payload, codes_np.copy(), wanted)
            else:
                fast = self._parser.parse_batch(payload, codes_np, wanted)
        ph["parse"] += time.thread_time() - t1
        return _Step(seq, ts, n, event_type, payload, prev_hash, event_hash, codes_np, errors, groups, fast,
                     sp_digests, chain_get, self._checkpoint_positions(seq), ahead)

    def _parse_in_thread(self, payload: pa.Array, codes: np.ndarray, wanted: list) -> dict:
        t = time.thread_time()
        try:
            return self._parser.query(payload, codes, wanted)
        finally:
            self.phase_seconds["parse_thread"] += time.thread_time() - t  # only this thread writes it

    def _complete(self, step: "_Step") -> None:
        (seq, ts, n, event_type, payload, prev_hash, event_hash, codes_np, errors, groups, fast, sp_digests,
         chain_get, cp_positions) = (step.seq, step.ts, step.n, step.event_type, step.payload, step.prev_hash,
                                     step.event_hash, step.codes_np, step.errors, step.groups, step.fast,
                                     step.sp_digests, step.chain_get, step.cp_positions)
        ph = self.phase_seconds
        t1 = time.thread_time()
        if isinstance(fast, Future):
            fast = self._parser.unpack(fast.result())
        iters: dict[int, Iterator] = {}
        cands: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # code -> (digests, their batch rows)
        for code, et, rows in groups:
            it, cand = self._parse_type(code, et, rows, payload, codes_np, errors, fast.get(et),
                                        sp_digests if code == SHARD_PLACED else None)
            iters[code] = it
            if cand is not None:
                cands[code] = cand
        codes = codes_np.tolist()
        ph["parse"] += time.thread_time() - t1

        # 3. apply, segment by segment between checkpoints (roots time is counted apart)
        t2 = time.thread_time()
        roots_before = ph["roots"]
        start = 0
        for pos, cp in cp_positions:
            if pos > start:
                self._apply(codes, start, pos, iters, errors, seq, event_type)
                self._add_candidates(cands, start, pos)
                self._advance(seq, ts, start, pos)
                start = pos
            self._checkpoint(cp)
        if start < n:
            self._apply(codes, start, n, iters, errors, seq, event_type)
            self._add_candidates(cands, start, n)
            self._advance(seq, ts, start, n)
        self._max_seq = max(self._max_seq, int(seq.max()))
        t3 = time.thread_time()
        ph["apply"] += t3 - t2 - (ph["roots"] - roots_before)

        # 4. the chain verdict
        verdict = verify_batch(self._cursor, seq, ts, event_hash,
                               checks=chain_checks(self._cursor, n, chain_get(), event_hash, prev_hash))
        if len(verdict.bad_rows):
            self.chain_breaks += len(verdict.bad_rows)
            if self.first_break is None:
                i = int(verdict.bad_rows[0])
                self.first_break = ChainBreak(int(seq[i]), verdict.reason(i, seq, ts))
        ph["chain"] += time.thread_time() - t3

    def _hash_worker(self, n: int) -> HashWorker | None:
        """The helper process for a batch of n rows (started at the first big batch), or None."""
        if n < _WORKER_MIN_ROWS or self._worker_failed:
            return None
        if self._parallel is None:
            self._parallel = _parallel_allowed()
        if not self._parallel:
            return None
        if self._worker is None:
            try:
                self._worker = HashWorker()
            except Exception:  # noqa: BLE001 - cannot start a process here: hash in process
                self._worker_failed = True
                return None
        return self._worker

    def _drop_worker(self) -> None:
        self._worker_failed = True
        self._close_worker()

    def _close_worker(self) -> None:
        """Stop the helper process and the parse thread (at finish, or when replay() fails)."""
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        if self._parse_pool is not None:
            self._parse_pool.shutdown(wait=True)
            self._parse_pool = None

    def _parse_type(self, code: int, et: str, rows: np.ndarray, payload: pa.Array, codes_np: np.ndarray,
                    errors: dict[int, str], parsed, sp_digests=None
                    ) -> tuple[Iterator, tuple[Any, np.ndarray] | None]:
        """The row-ordered field-tuple iterator of one type and, for the inserting types, the
        candidate row digests (uint8 (m, 32), or a getter of them) with their batch rows (ascending).
        ``parsed``: the fast parser's answer, or None for the reference parser. ``sp_digests``:
        (rows, getter of their payload digests) being computed by the helper process."""
        with_cand = code in _CANDIDATE_COMPONENT
        if parsed is not None:
            ok_rows, cols, rt, slow_rows = parsed
        else:
            ok_rows, cols, rt, slow_rows = np.empty(0, dtype=np.int64), None, None, rows
        cand = None
        if with_cand and len(ok_rows):
            # shard_placed: the (canonical) payload is the row text
            if rt is not None:
                cand = (_digests(rt), ok_rows)
            elif sp_digests is not None:
                all_rows, get = sp_digests
                if len(ok_rows) == len(all_rows):  # ok_rows is a subset of all_rows: the same rows
                    cand = (lambda: np.frombuffer(get(), dtype=np.uint8).reshape(-1, 32), ok_rows)
                else:
                    pick = np.searchsorted(all_rows, ok_rows)
                    cand = (lambda: np.frombuffer(get(), dtype=np.uint8).reshape(-1, 32)[pick], ok_rows)
            else:
                cand = (_digests(payload, ok_rows), ok_rows)
        if not len(slow_rows):
            if with_cand:
                return zip(*cols, range(len(ok_rows))), cand
            return zip(*cols), cand
        # some rows need the reference parser: merge both in row order
        self.payload_fallbacks += len(slow_rows)
        merged: dict[int, tuple] = {}
        if cols is not None and len(ok_rows):
            if with_cand:
                merged.update(zip(ok_rows.tolist(), zip(*cols, range(len(ok_rows)))))
            else:
                merged.update(zip(ok_rows.tolist(), zip(*cols)))
        slow_list = slow_rows.tolist()
        raw = payload.take(pa.array(slow_rows)).cast(pa.binary()).to_pylist()
        pick = F.APPLY_INDEX[et]
        for i, data in zip(slow_list, raw):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                errors[i] = "payload is not valid UTF-8"
                codes_np[i] = P.BAD_EVENT
                continue
            parsed = P.parse_payload(et, text)
            if isinstance(parsed, str):
                errors[i] = parsed
                codes_np[i] = P.BAD_EVENT
            else:
                parsed = tuple(parsed[k] for k in pick)
                merged[i] = parsed + (-1,) if with_cand else parsed
        return iter([merged[i] for i in sorted(merged)]), cand

    def _checkpoint_positions(self, seq: np.ndarray) -> list[tuple[int, int]]:
        """(batch position, checkpoint seq): take the checkpoint before the row at that position."""
        out: list[tuple[int, int]] = []
        cps = self._cps
        if self._cp_ptr >= len(cps):
            return out
        cm = np.maximum.accumulate(seq)
        top = int(cm[-1])
        while self._cp_ptr < len(cps) and cps[self._cp_ptr] <= top:
            cp = cps[self._cp_ptr]
            j = int(np.searchsorted(cm, cp, side="left"))
            out.append((j + 1 if int(seq[j]) == cp else j, cp))
            self._cp_ptr += 1
        return out

    def _advance(self, seq: np.ndarray, ts: np.ndarray, a: int, b: int) -> None:
        self.events_replayed += b - a
        self.last_seq = int(seq[b - 1])
        self._last_ts_us = int(ts[b - 1])

    # ----------------------------------------------------------------------------- apply loop

    def _apply(self, codes: list[int], a: int, b: int, iters: dict[int, Iterator], errors: dict[int, str],
               seq: np.ndarray, event_type: pa.Array) -> None:
        nodes, objects, shards, ledger = self.nodes, self.objects, self.shards, self.ledger
        dn, do, ds, dl = (self._dirty[c] for c in COMPONENTS)
        ds_objs = self._ds_objects
        tx_ids, reward_ids = self.tx_ids, self.reward_ids
        statuses = _STATUSES
        empty = iter(())
        nxt_nr = iters.get(NODE_REGISTERED, empty).__next__
        nxt_ns = iters.get(NODE_STATUS_CHANGED, empty).__next__
        nxt_ow = iters.get(OBJECT_WRITTEN, empty).__next__
        nxt_od = iters.get(OBJECT_DELETED, empty).__next__
        nxt_sp = iters.get(SHARD_PLACED, empty).__next__
        nxt_sm = iters.get(SHARD_MOVED, empty).__next__
        nxt_fc = iters.get(FEE_CHARGED, empty).__next__
        nxt_rp = iters.get(REWARD_PAID, empty).__next__
        unused_nr = self._unused[NODE_REGISTERED].append
        unused_ow = self._unused[OBJECT_WRITTEN].append
        unused_sp = self._unused[SHARD_PLACED].append
        bad: list[tuple[int, str]] = []
        note = bad.append
        SP, FC, RP, OW, OD, SM, NS, NR = (SHARD_PLACED, FEE_CHARGED, REWARD_PAID, OBJECT_WRITTEN,
                                          OBJECT_DELETED, SHARD_MOVED, NODE_STATUS_CHANGED, NODE_REGISTERED)
        # Dirty marks: ``dirty[key] = value at the last flush`` (None: absent then), set on the
        # first change after a flush. Nodes, objects and ledger rows are never removed, so a key
        # absent from them now was absent at the last flush too.
        for i, code in enumerate(codes[a:b], a):
            if code == SP:
                oid, idx, node, sh, sb, ci = nxt_sp()
                o = objects.get(oid)
                if o is None or o[5] or node not in nodes:
                    if o is None:
                        note((i, f"shard_placed for unknown object {oid!r}"))
                    elif o[5]:
                        note((i, f"shard_placed for deleted object {oid!r}"))
                    else:
                        note((i, f"shard_placed onto unknown node {node!r}"))
                    if ci >= 0:
                        unused_sp(ci)
                    continue
                d = shards.get(oid)
                if d is None:
                    d = shards[oid] = {}
                old = d.get(idx)
                d[idx] = (node, sh, sb)
                if old is None and oid not in ds_objs:  # a fresh shard (the common case)
                    if ci < 0:
                        ds[(oid, idx)] = None
                        ds_objs.add(oid)
                else:
                    key = (oid, idx)
                    if key not in ds:
                        ds[key] = old
                        ds_objs.add(oid)
                    if ci >= 0:
                        unused_sp(ci)
            elif code == FC:
                tx, acct, amt = nxt_fc()
                if tx in tx_ids:
                    note((i, f"duplicate tx_id {tx!r}"))
                    continue
                tx_ids.add(tx)
                old = ledger.get(acct)
                if old is None:
                    ledger[acct] = (amt, 0)
                    dl[acct] = None
                else:
                    ledger[acct] = (old[0] + amt, old[1])
                    if acct not in dl:
                        dl[acct] = old
            elif code == RP:
                rid, nid, amt = nxt_rp()
                if nid not in nodes:
                    note((i, f"reward_paid to unknown node {nid!r}"))
                    continue
                if rid in reward_ids:
                    note((i, f"duplicate reward_id {rid!r}"))
                    continue
                reward_ids.add(rid)
                old = ledger.get(nid)
                if old is None:
                    ledger[nid] = (0, amt)
                    dl[nid] = None
                else:
                    ledger[nid] = (old[0], old[1] + amt)
                    if nid not in dl:
                        dl[nid] = old
            elif code == OW:
                oid, ver, ch, sz, dsh, tsh, ci = nxt_ow()
                old = objects.get(oid)
                if old is None:
                    objects[oid] = (ver, ch, sz, dsh, tsh, False)
                    if ci < 0:
                        do[oid] = None
                    continue
                if ci >= 0:
                    unused_ow(ci)
                if ver <= old[0]:
                    note((i, f"object_written version {ver} not greater than stored version {old[0]} of {oid!r}"))
                    continue
                objects[oid] = (ver, ch, sz, dsh, tsh, False)
                if oid not in do:
                    do[oid] = old
            elif code == OD:
                oid, ver = nxt_od()
                old = objects.get(oid)
                if old is None:
                    note((i, f"object_deleted for unknown object {oid!r}"))
                    continue
                if ver <= old[0]:
                    note((i, f"object_deleted version {ver} not greater than stored version {old[0]} of {oid!r}"))
                    continue
                objects[oid] = (ver, old[1], old[2], old[3], old[4], True)
                if oid not in do:
                    do[oid] = old
                d = shards.pop(oid, None)
                if d:
                    ds_objs.add(oid)
                    for idx, v in d.items():
                        key = (oid, idx)
                        if key not in ds:
                            ds[key] = v
            elif code == SM:
                oid, idx, frm, to = nxt_sm()
                o = objects.get(oid)
                if o is None:
                    note((i, f"shard_moved for unknown object {oid!r}"))
                    continue
                if o[5]:
                    note((i, f"shard_moved for deleted object {oid!r}"))
                    continue
                d = shards.get(oid)
                v = d.get(idx) if d else None
                if v is None:
                    note((i, f"shard_moved of unknown shard ({oid!r}, {idx})"))
                elif v[0] != frm:
                    note((i, f"shard_moved from_node_id {frm!r} is not the shard's node {v[0]!r}"))
                elif to not in nodes:
                    note((i, f"shard_moved to unknown node {to!r}"))
                else:
                    d[idx] = (to, v[1], v[2])
                    key = (oid, idx)
                    if key not in ds:
                        ds[key] = v
                        ds_objs.add(oid)
            elif code == NS:
                nid, st = nxt_ns()
                old = nodes.get(nid)
                if old is None:
                    note((i, f"node_status_changed for unknown node {nid!r}"))
                elif st not in statuses:
                    note((i, f"node_status_changed to unknown status {st!r}"))
                else:
                    nodes[nid] = (old[0], old[1], old[2], st)
                    if nid not in dn:
                        dn[nid] = old
            elif code == NR:
                nid, region, cap, stake, ci = nxt_nr()
                if nid in nodes:
                    note((i, f"node_registered for existing node {nid!r}"))
                    if ci >= 0:
                        unused_nr(ci)
                else:
                    nodes[nid] = (region, cap, stake, "active")
                    if ci < 0:
                        dn[nid] = None
            else:
                note((i, errors[i]))
        if bad:
            for i, reason in bad:
                self.invalid_events.append(InvalidEvent(int(seq[i]), _text(event_type, i), reason))

    # ----------------------------------------------------------------------------- roots

    def _add_candidates(self, cands: dict[int, tuple[np.ndarray, np.ndarray]], a: int, b: int) -> None:
        """Add the precomputed hashes of the fresh inserts of batch rows [a, b) to the roots."""
        for code, (digests, rows) in list(cands.items()):
            if callable(digests):  # computed by the helper process: wait for it once
                digests = digests()
                cands[code] = (digests, rows)
            lo, hi = np.searchsorted(rows, [a, b])
            unused = self._unused[code]
            if hi > lo or unused:
                self._acc[_CANDIDATE_COMPONENT[code]].acc += sum_digests(digests[lo:hi]) - sum_digests(digests, unused)
                unused.clear()

    def _flush(self) -> None:
        """Bring every SetHash up to date with the current state."""
        sha = hashlib.sha256
        for c in COMPONENTS:
            dirty = self._dirty[c]
            if not dirty:
                continue
            text = ROW_TEXT[c]
            get = self._getter(c)
            cache = self._hash_cache.get(c)
            if cache is None:  # objects, shards: rehash the old rows
                old_texts = [text(k, v) for k, v in dirty.items() if v is not None]
                new_texts = []
                for k in dirty:
                    v = get(k)
                    if v is not None:
                        new_texts.append(text(k, v))
                self._acc[c].acc += hash_sum_texts(new_texts) - hash_sum_texts(old_texts)
            else:  # nodes, ledger: the old rows' hashes are cached; rows are never removed
                delta = 0
                for k, old in dirty.items():
                    h_old = cache.get(k)
                    if h_old is None and old is not None:
                        h_old = int.from_bytes(sha(text(k, old).encode("utf-8")).digest(), "big")
                    h = int.from_bytes(sha(text(k, get(k)).encode("utf-8")).digest(), "big")
                    cache[k] = h
                    delta += h - (h_old or 0)
                self._acc[c].acc += delta
            dirty.clear()
        self._ds_objects.clear()

    def _getter(self, component: str) -> Callable[[Any], tuple | None]:
        if component == "shards":
            shards = self.shards

            def get(key: tuple) -> tuple | None:
                d = shards.get(key[0])
                return None if d is None else d.get(key[1])

            return get
        return getattr(self, component).get

    def roots(self, seq: int | None = None) -> Roots:
        """The roots of the events replayed so far (flushes pending row hashes)."""
        self._complete_pending()
        t = time.thread_time()
        self._flush()
        self.phase_seconds["roots"] += time.thread_time() - t
        hexes = [self._acc[c].hex() for c in COMPONENTS]
        ts = None if self._last_ts_us is None else ts_to_datetime(self._last_ts_us)
        return Roots(self.last_seq if seq is None else seq, self.last_seq, ts, self.events_replayed,
                     *hexes, state_root(*hexes))

    def _checkpoint(self, cp: int) -> None:
        roots = self.roots(cp)
        self.checkpoint_roots[cp] = roots
        snap = set(self._snapshot_at.get(cp, ()))
        exp = self._expected.get(cp)
        if exp is not None and self._snapshot_first_mismatch and not self._mismatch_seen:
            mism = diff_roots(exp, roots.as_dict())
            if mism:
                self._mismatch_seen = True
                snap.update(c for c in mism if c in COMPONENTS)
        if snap:
            self.snapshots[cp] = {c: self.table(c) for c in COMPONENTS if c in snap}
        if self._on_checkpoint is not None:
            self._on_checkpoint(roots, self)

    # ----------------------------------------------------------------------------- state export

    def items(self, component: str) -> Iterator[tuple[Any, tuple]]:
        """(key, value) pairs of a component, sorted by key."""
        self._complete_pending()
        if component == "shards":
            for oid in sorted(self.shards):
                d = self.shards[oid]
                for idx in sorted(d):
                    yield (oid, idx), d[idx]
            return
        src = getattr(self, component)
        for k in sorted(src):
            yield k, src[k]

    def rows(self, component: str) -> Iterator[dict]:
        """The contract's rows (dicts) of a component, sorted by key."""
        for k, v in self.items(component):
            yield row_dict(component, k, v)

    def table(self, component: str) -> pa.Table:
        """The component's current rows as an Arrow table (contract fields and export types)."""
        if component not in COMPONENTS:
            raise ValueError(f"unknown component {component!r}")
        return component_table(component, self.items(component))

    # ----------------------------------------------------------------------------- finish

    def finish(self) -> ReplayResult:
        """Replay what is buffered, take the final roots and return the result."""
        if self._finished is not None:
            return self._finished
        with _no_gc():
            self._drain(final=True)
            self._complete_pending()
            final = self.roots()
        unreached = self._cps[self._cp_ptr:]
        elapsed = time.perf_counter() - self._t0
        comparison = None
        if self._expected_rows is not None:
            comparison = compare_checkpoints(self.checkpoint_roots, self._expected_rows)
        if self._parser is not None:
            self._parser.close()
            self._parser = None
        self._close_worker()
        self._finished = ReplayResult(
            events_replayed=self.events_replayed,
            chain_intact=self.first_break is None,
            first_broken_seq=None if self.first_break is None else self.first_break.seq,
            chain_break=self.first_break,
            chain_breaks=self.chain_breaks,
            invalid_events=self.invalid_events,
            checkpoint_roots=dict(self.checkpoint_roots),
            unreached_checkpoints=list(unreached),
            final_roots=final,
            last_seq=self.last_seq,
            last_ts=final.ts,
            elapsed_seconds=elapsed,
            events_per_second=self.events_replayed / elapsed if elapsed > 0 else 0.0,
            limit_reached=self._limit_reached,
            snapshots=self.snapshots,
            checkpoint_comparison=comparison,
            payload_fallbacks=self.payload_fallbacks,
            phase_seconds={k: round(v, 3) for k, v in self.phase_seconds.items()},
        )
        return self._finished


def _text(arr: pa.Array, i: int) -> str:
    """Value i of a string column as text, even if the stored bytes are not valid UTF-8."""
    return arr.slice(i, 1).cast(pa.binary())[0].as_py().decode("utf-8", "replace")


def _digests(texts: pa.Array, rows: np.ndarray | None = None) -> np.ndarray:
    """SHA-256 digests of a string array (or of its rows ``rows``), as a uint8 (n, 32) array."""
    offs, data = _string_parts(texts)
    if rows is None:
        o = offs.tolist()
        starts, ends = o, o[1:]
    else:
        starts, ends = offs[rows].tolist(), offs[rows + 1].tolist()
    sha = hashlib.sha256
    blob = b"".join([sha(data[x:y]).digest() for x, y in zip(starts, ends)])
    return np.frombuffer(blob, dtype=np.uint8).reshape(-1, 32)


def replay(
    batches: Iterable[pa.RecordBatch | pa.Table],
    *,
    checkpoint_seqs: Iterable[int] = (),
    expected_checkpoints: pa.Table | Iterable[Mapping[str, Any]] | None = None,
    snapshot_at: Mapping[int, Iterable[str]] | None = None,
    snapshot_first_mismatch: bool = True,
    on_checkpoint: Callable[[Roots, ReplayEngine], None] | None = None,
    through_seq: int | None = None,
    through_ts: dt.datetime | int | None = None,
    before_ts: dt.datetime | int | None = None,
    fast_path: bool | str = "auto",
    batch_rows: int = 262_144,
) -> ReplayResult:
    """Replay a whole log (an iterable of EQM batches in seq order) from genesis.

    See ``qfs_assets/replay/__init__.py`` for the semantics and ``ReplayEngine`` for the options.
    Stops iterating ``batches`` (and closes it, if it is a generator) once a limit is reached.
    """
    engine = ReplayEngine(
        checkpoint_seqs=checkpoint_seqs, expected_checkpoints=expected_checkpoints, snapshot_at=snapshot_at,
        snapshot_first_mismatch=snapshot_first_mismatch, on_checkpoint=on_checkpoint, through_seq=through_seq,
        through_ts=through_ts, before_ts=before_ts, fast_path=fast_path, batch_rows=batch_rows,
    )
    with _no_gc():
        it = iter(batches)
        try:
            try:
                for batch in it:
                    if not engine.feed(batch):
                        break
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
            return engine.finish()
        finally:
            engine._close_worker()  # also on error (finish closes it otherwise)


# ------------------------------------------------------------------------------------- helpers
# Moved here from qfs_assets/replay (chain.py, rows.py) with this engine: nothing else uses them.


def chain_texts(seq: pa.Array | np.ndarray, event_type: pa.Array, payload: pa.Array, prev_hash: pa.Array) -> pa.Array:
    """The hashed text of every row, ``prev_hash|seq|event_type|payload`` (a string array)."""
    if not isinstance(seq, (pa.Array, pa.ChunkedArray)):
        seq = pa.array(seq, type=pa.int64())
    return pc.binary_join_element_wise(prev_hash, pc.cast(seq, pa.string()), event_type, payload, "|")


def recompute_digests(seq: pa.Array, event_type: pa.Array, payload: pa.Array, prev_hash: pa.Array) -> bytes:
    """The n recomputed event hashes as raw digests, concatenated (32 bytes each)."""
    offs, data = _string_parts(chain_texts(seq, event_type, payload, prev_hash))
    o = offs.tolist()
    sha = hashlib.sha256
    return b"".join([sha(data[a:b]).digest() for a, b in zip(o, o[1:])])


def _hex_rows(arr: pa.Array) -> np.ndarray | None:
    """The values of a string column as an (n, 8) uint64 view (no copy) when every value is
    64 bytes long; else None."""
    offs, data = _string_parts(arr)
    n = len(offs) - 1
    if n and (int(offs[-1]) - int(offs[0]) != 64 * n or not np.all(np.diff(offs) == 64)):
        return None
    if not n:
        return np.empty((0, 8), dtype=np.uint64)
    return np.frombuffer(data, dtype=np.uint8, count=64 * n, offset=int(offs[0])).view(np.uint64).reshape(n, 8)


def chain_checks(cursor: ChainCursor, n: int, digests: bytes, event_hash: pa.Array, prev_hash: pa.Array):
    """(hash_ok, link_ok) of a batch of n rows from its recomputed raw digests, for
    ``chain.verify_batch`` (call it before: row 0 is linked to ``cursor.event_hash``). Whole-batch
    comparisons when every hash is 64 bytes long, Python bytes otherwise (a broken log only)."""
    computed = binascii.hexlify(digests)
    ev = _hex_rows(event_hash)
    pv = _hex_rows(prev_hash)
    last = cursor.event_hash
    if ev is not None and pv is not None and len(last) == 64:
        # (n, 8) uint64 views of the hex texts, no copy: a row is equal iff its 8 words are
        hash_ok = (np.frombuffer(computed, dtype=np.uint64).reshape(n, 8) == ev).all(axis=1)
        link_ok = np.empty(n, dtype=bool)
        link_ok[0] = pv[0].tobytes() == last
        link_ok[1:] = (pv[1:] == ev[:-1]).all(axis=1)
    else:  # some hash is not 64 bytes long: compare as Python bytes (a broken log only)
        evl = event_hash.cast(pa.binary()).to_pylist()
        pvl = prev_hash.cast(pa.binary()).to_pylist()
        comp = [computed[64 * i: 64 * i + 64] for i in range(n)]
        hash_ok = np.array([a == b for a, b in zip(evl, comp)], dtype=bool)
        link_ok = np.array([a == b for a, b in zip(pvl, [cursor.event_hash] + evl[:-1])], dtype=bool)
    return hash_ok, link_ok


def row_dict(component: str, key: Any, value: tuple) -> dict:
    """The contract's row (a dict with exactly the component's fields) of a (key, value) pair
    of this engine's state (layout in ``qfs_assets/replay/rows.py``)."""
    if component == "nodes":
        return {"node_id": key, "region": value[0], "capacity_bytes": value[1], "stake_nod": value[2],
                "status": value[3]}
    if component == "objects":
        return {"object_id": key, "version": value[0], "content_hash": value[1], "size_bytes": value[2],
                "data_shards": value[3], "total_shards": value[4], "deleted": value[5]}
    if component == "shards":
        return {"object_id": key[0], "shard_index": key[1], "node_id": value[0], "shard_hash": value[1],
                "shard_bytes": value[2]}
    if component == "ledger":
        return {"party_id": key, "atr_paid": value[0], "nod_earned": value[1]}
    raise KeyError(component)


def hash_sum_texts(texts: Iterable[str]) -> int:
    """Sum of the row hashes of canonical row texts (not reduced mod 2**256)."""
    sha = hashlib.sha256
    return sum_digests(b"".join([sha(t.encode("utf-8")).digest() for t in texts]))


def sum_digests(digests: bytes | np.ndarray, select: np.ndarray | list[int] | None = None) -> int:
    """Sum of SHA-256 digests read as big-endian 256-bit integers, vectorised.

    ``digests`` holds n digests back to back (bytes) or as a uint8 ``(n, 32)`` array; ``select``
    optionally picks rows (repeats allowed). The sum is not reduced mod 2**256.
    """
    arr = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 32) if isinstance(digests, bytes) else digests
    if select is not None:
        arr = arr[np.asarray(select, dtype=np.int64)]
    if arr.shape[0] == 0:
        return 0
    limbs = np.ascontiguousarray(arr).view(">u4").astype(np.uint64)  # (k, 8) 32-bit limbs
    # Each limb is < 2**32, so a uint64 column sum is exact for fewer than 2**32 rows.
    total = 0
    for s in limbs.sum(axis=0, dtype=np.uint64).tolist():
        total = (total << 32) + int(s)
    return total


def component_table(component: str, items: Iterator[tuple[Any, tuple]]) -> pa.Table:
    """Arrow table (contract row fields, export types) of (key, value) pairs, in the given order."""
    fields = COMPONENT_FIELDS[component]
    cols: list[list] = [[] for _ in fields]
    if component == "shards":
        a, b, c, d, e = cols
        for (oid, idx), v in items:
            a.append(oid); b.append(idx); c.append(v[0]); d.append(v[1]); e.append(v[2])  # noqa: E702
    else:
        head, rest = cols[0], cols[1:]
        for k, v in items:
            head.append(k)
            for col, x in zip(rest, v):
                col.append(x)
    schema = COMPONENT_SCHEMAS[component]
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, schema)], schema=schema)
