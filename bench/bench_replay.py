#!/usr/bin/env python
"""Benchmark of the replay engine (not a test).

Generates a realistic N-event EQM log (default 1M; ``--10m`` for 10M) column-wise with numpy and
Arrow, writes it as ``eqm/date=YYYY-MM-DD/part-0.parquet`` to a temporary folder, then replays it
streaming from Parquet in a fresh child process (so the figures cover the replay alone) with a
checkpoint at every day's last event, and prints events/s and the peak RSS.

Mix per day (~100k events): 1,000 nodes registered on day one; new objects (object_written,
6 shard_placed on distinct nodes, a `put` fee), 5% rewritten (new version, 6 shards re-placed,
a fee), 8% with one shard moved, 3% deleted (plus a `delete` fee), one `get` fee per object,
12 reward epochs for every node, and a few node status changes. Every event is valid, so the
replay must report an intact chain and no invalid event.

Printed: wall-clock events/s (Parquet reading included), events per CPU-second of the replay
process (the figure to compare on a shared machine), peak RSS (``ru_maxrss``), the load average
(the machine is shared), and the CPU seconds of each engine phase (chain, parse, apply, roots;
the rest is reading). ``QFS_REPLAY_THREADS=0`` replays in one thread.

    .venv/bin/python bench/bench_replay.py            # 1M events
    .venv/bin/python bench/bench_replay.py --10m      # 10M events
    .venv/bin/python bench/bench_replay.py --data-dir /tmp/eqm10m --keep   # reuse a log
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from qfs_assets.contract.hashing import GENESIS_PREV_HASH  # noqa: E402
from qfs_assets.contract.schema import EQM  # noqa: E402

N_NODES = 1000
EPOCHS_PER_DAY = 12
EVENTS_PER_DAY = 100_000
SHARDS = 6
DAY_US = 86_400_000_000
START = dt.date(2025, 1, 1)


# --------------------------------------------------------------------------------- generation


def _s(values) -> pa.Array:
    """Integers as decimal strings."""
    return pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())


def _pad(values, width: int) -> pa.Array:
    return pc.utf8_lpad(_s(values), width, "0")


def _join(*parts) -> pa.Array:
    """Element-wise concatenation; str parts are constants."""
    n = next(len(p) for p in parts if not isinstance(p, str))
    arrays = [pa.array([p] * n, pa.string()) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*arrays, "")


class Day:
    def __init__(self):
        self.t: list[np.ndarray] = []
        self.et: list[pa.Array] = []
        self.pl: list[pa.Array] = []

    def add(self, t, event_type: str, payload: pa.Array) -> None:
        t = np.asarray(t, dtype=np.int64)
        self.t.append(t)
        self.et.append(pa.array([event_type] * len(t), pa.string()))
        self.pl.append(payload)

    def table(self) -> tuple[np.ndarray, pa.Array, pa.Array]:
        t = np.concatenate(self.t)
        order = np.argsort(t, kind="stable")
        et = pa.concat_arrays(self.et).take(pa.array(order))
        pl = pa.concat_arrays(self.pl).take(pa.array(order))
        return t[order], et, pl


def node_ids(idx) -> pa.Array:
    return _join("node-", _pad(idx, 4))


def gen_day(d: int, rng: np.random.Generator, n_events: int) -> Day:
    day = Day()
    pre = 0
    if d == 0:  # register every node first
        i = np.arange(N_NODES)
        regions = pa.array(np.array(["eu-west", "us-east", "ap-south", "sa-east"])[i % 4])
        day.add(i, "node_registered", _join(
            '{"capacity_bytes":', _s(rng.integers(4, 16, N_NODES) * 10**12), ',"node_id":"', node_ids(i),
            '","region":"', regions, '","stake_nod":', _s(rng.integers(1000, 5000, N_NODES) * 10**8), "}"))
        pre = N_NODES
    base_t = 10_000  # after the registrations
    span = DAY_US - base_t
    fixed = N_NODES * EPOCHS_PER_DAY + 20 + pre
    per_obj = 1 + SHARDS + 1 + 1 + 0.05 * (SHARDS + 2) + 0.08 + 0.03 * 2
    w = max(10, int((n_events - fixed) / per_obj))

    j = np.arange(w)
    oid = _join("obj-", _pad(np.full(w, d), 4), "-", _pad(j, 7))
    tw = base_t + rng.integers(0, int(span * 0.70), w) * 1  # write times
    tw -= tw % 16  # leave room for the 8 follow-up events at +1..+8 us
    size = rng.integers(1_000, 64_000_000, w)
    node0 = rng.integers(0, N_NODES, w)
    uid = np.int64(d) * 10_000_000 + j
    chash = _pad(uid * 7919 + 1, 64)
    day.add(tw, "object_written", _join(
        '{"content_hash":"', chash, '","data_shards":4,"object_id":"', oid, '","size_bytes":', _s(size),
        ',"total_shards":6,"version":1}'))
    shard_bytes = _s(size // 4 + 1)
    for k in range(SHARDS):
        day.add(tw + 1 + k, "shard_placed", _join(
            '{"node_id":"', node_ids((node0 + 7 * k) % N_NODES), '","object_id":"', oid, '","shard_bytes":',
            shard_bytes, ',"shard_hash":"', _pad(uid * 6 + k, 64), '","shard_index":', str(k), "}"))
    acct = _join("acct-", _pad(rng.integers(0, 20_000, w), 5))
    txn = np.int64(d) * 100_000_000 + j * 4
    day.add(tw + 7, "fee_charged", _join(
        '{"account_id":"', acct, '","amount_atr":', _s(size // 1000 + 1), ',"object_id":"', oid,
        '","operation":"put","tx_id":"tx-', _pad(txn, 12), '"}'))

    # disjoint follow-up subsets: rewrite (5%), move (8%), delete (3%)
    perm = rng.permutation(w)
    a, b, c = perm[: w * 5 // 100], perm[w * 5 // 100: w * 13 // 100], perm[w * 13 // 100: w * 16 // 100]
    if len(a):
        ta = tw[a] + rng.integers(60_000_000, int(span * 0.2), len(a))
        ta -= ta % 16
        oa = oid.take(pa.array(a))
        day.add(ta, "object_written", _join(
            '{"content_hash":"', _pad(uid[a] * 7919 + 2, 64), '","data_shards":4,"object_id":"', oa,
            '","size_bytes":', _s(size[a]), ',"total_shards":6,"version":2}'))
        for k in range(SHARDS):
            day.add(ta + 1 + k, "shard_placed", _join(
                '{"node_id":"', node_ids((node0[a] + 7 * k) % N_NODES), '","object_id":"', oa, '","shard_bytes":',
                shard_bytes.take(pa.array(a)), ',"shard_hash":"', _pad(uid[a] * 6 + k + 3, 64),
                '","shard_index":', str(k), "}"))
        day.add(ta + 7, "fee_charged", _join(
            '{"account_id":"', acct.take(pa.array(a)), '","amount_atr":5,"object_id":"', oa,
            '","operation":"put","tx_id":"tx-', _pad(txn[a] + 1, 12), '"}'))
    if len(b):
        k = rng.integers(0, SHARDS, len(b))
        frm = (node0[b] + 7 * k) % N_NODES
        day.add(tw[b] + rng.integers(60_000_000, int(span * 0.25), len(b)), "shard_moved", _join(
            '{"from_node_id":"', node_ids(frm), '","object_id":"', oid.take(pa.array(b)), '","shard_index":', _s(k),
            ',"to_node_id":"', node_ids((frm + 500) % N_NODES), '"}'))
    if len(c):
        tc = tw[c] + rng.integers(int(span * 0.1), int(span * 0.29), len(c))
        tc -= tc % 16
        oc = oid.take(pa.array(c))
        day.add(tc, "object_deleted", _join('{"object_id":"', oc, '","version":2}'))
        day.add(tc + 1, "fee_charged", _join(
            '{"account_id":"', acct.take(pa.array(c)), '","amount_atr":1,"object_id":"', oc,
            '","operation":"delete","tx_id":"tx-', _pad(txn[c] + 2, 12), '"}'))
    # one get per object, any time of the day
    g = rng.integers(0, w, w)
    day.add(base_t + rng.integers(0, span, w), "fee_charged", _join(
        '{"account_id":"', _join("acct-", _pad(rng.integers(0, 20_000, w), 5)), '","amount_atr":',
        _s(rng.integers(1, 50, w)), ',"object_id":"', oid.take(pa.array(g)), '","operation":"get","tx_id":"tx-',
        _pad(txn + 3, 12), '"}'))
    # rewards: every node, every epoch
    e = np.repeat(np.arange(EPOCHS_PER_DAY), N_NODES)
    nn = np.tile(np.arange(N_NODES), EPOCHS_PER_DAY)
    epoch = d * EPOCHS_PER_DAY + e
    kinds = pa.array(np.array(["storage", "proof", "storage", "adjustment"])[nn % 4])
    day.add(base_t + e * (DAY_US // EPOCHS_PER_DAY) + nn, "reward_paid", _join(
        '{"amount_nod":', _s(rng.integers(1, 10**8, len(e))), ',"epoch":', _s(epoch), ',"kind":"', kinds,
        '","node_id":"', node_ids(nn), '","reward_id":"rw-', _pad(epoch, 6), "-", _pad(nn, 4), '"}'))
    # status changes
    s = rng.integers(0, N_NODES, 20)
    st = pa.array(np.array(["degraded", "active"])[np.arange(20) % 2])
    day.add(base_t + np.sort(rng.integers(0, span, 20)), "node_status_changed",
            _join('{"node_id":"', node_ids(s), '","status":"', st, '"}'))
    return day


def generate(out: Path, n_events: int, seed: int = 7) -> int:
    rng = np.random.default_rng(seed)
    days = max(1, round(n_events / EVENTS_PER_DAY))
    seq0, prev = 0, GENESIS_PREV_HASH.encode()
    sha = hashlib.sha256
    schema = EQM.schema
    for d in range(days):
        target = (n_events - seq0) // (days - d)
        t, et, pl = gen_day(d, rng, target).table()
        n = len(t)
        seq = np.arange(seq0, seq0 + n, dtype=np.int64)
        # hash chain: sha256(prev + "|" + seq + "|" + type + "|" + payload), sequential by nature
        suffix = pc.binary_join_element_wise(pa.array([""] * n), _s(seq), et, pl, "|")
        offs = np.frombuffer(suffix.buffers()[1], dtype=np.int32)[suffix.offset: suffix.offset + n + 1].tolist()
        data = suffix.buffers()[2].to_pybytes()
        hashes = []
        append = hashes.append
        for x, y in zip(offs, offs[1:]):
            prev = sha(prev + data[x:y]).hexdigest().encode()
            append(prev)
        ev = pa.array(hashes, pa.binary()).cast(pa.string())
        prev_hash = pa.concat_arrays([pa.array([(GENESIS_PREV_HASH if seq0 == 0 else last).encode()], pa.binary())
                                      .cast(pa.string()), ev.slice(0, n - 1)])
        last = hashes[-1].decode()
        day0 = dt.datetime.combine(START + dt.timedelta(days=d), dt.time(), tzinfo=dt.timezone.utc)
        ts_us = int(day0.timestamp()) * 1_000_000 + t
        ts_arr = pa.array(ts_us, pa.timestamp("us", tz="UTC"))
        tbl = pa.Table.from_arrays([pa.array(seq), ts_arr, et, pl, prev_hash, ev], schema=schema)
        folder = out / "eqm" / f"date={START + dt.timedelta(days=d):%Y-%m-%d}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(tbl, folder / "part-0.parquet")
        seq0 += n
    return seq0


# --------------------------------------------------------------------------------- replay


def stream(folder: Path, batch_rows: int = 262_144):
    """EQM batches from the Parquet folder, partition by partition, in seq order."""
    cols = [c.name for c in EQM.columns]
    for part in sorted((folder / "eqm").iterdir()):
        for f in sorted(part.glob("*.parquet")):
            yield from pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=cols, use_threads=False)


def day_checkpoints(folder: Path) -> list[int]:
    """The last seq of every day (where the demo generator publishes a checkpoint)."""
    out, total = [], 0
    for part in sorted((folder / "eqm").iterdir()):
        for f in sorted(part.glob("*.parquet")):
            total += pq.ParquetFile(f).metadata.num_rows
        out.append(total - 1)
    return out


def run_replay(folder: Path, profile: bool) -> dict:
    from qfs_assets.replay import replay  # the columnar engine (same results as the reference engine)

    cps = day_checkpoints(folder)
    t0 = time.perf_counter()
    c0 = time.process_time()
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        res = prof.runcall(replay, stream(folder), checkpoint_seqs=cps)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    else:
        res = replay(stream(folder), checkpoint_seqs=cps)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "events": res.events_replayed,
        "wall_s": round(wall, 2),
        "events_per_s": round(res.events_replayed / wall),
        "cpu_s": round(cpu, 2),
        "load": os.getloadavg()[0],
        "events_per_cpu_s": round(res.events_replayed / cpu),
        "peak_rss_mb": round(ru.ru_maxrss / 1024),
        "chain_intact": res.chain_intact,
        "invalid_events": len(res.invalid_events),
        "checkpoints": len(res.checkpoint_roots),
        "payload_fallbacks": res.payload_fallbacks,
        "phase_seconds": res.phase_seconds,
        "final_state_root": res.final_roots.state,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--10m", dest="ten_m", action="store_true", help="10,000,000 events")
    ap.add_argument("--data-dir", type=Path, help="where to write the log (reused if it already holds one)")
    ap.add_argument("--keep", action="store_true", help="keep the generated log")
    ap.add_argument("--profile", action="store_true", help="cProfile the replay (slower)")
    ap.add_argument("--replay-only", type=Path, help=argparse.SUPPRESS)  # child process
    args = ap.parse_args()

    if args.replay_only:
        print(json.dumps(run_replay(args.replay_only, args.profile)))
        return

    n = 10_000_000 if args.ten_m else args.events
    folder = args.data_dir or Path(tempfile.mkdtemp(prefix="qfs_bench_eqm_"))
    try:
        if not (folder / "eqm").exists():
            t0 = time.perf_counter()
            written = generate(folder, n)
            print(f"generated {written:,} events in {time.perf_counter() - t0:.1f}s -> {folder}", flush=True)
        else:
            print(f"reusing the log in {folder}", flush=True)
        size = sum(f.stat().st_size for f in (folder / "eqm").rglob("*.parquet"))
        print(f"parquet: {size / 2**20:.0f} MiB in {len(list((folder / 'eqm').iterdir()))} daily partitions",
              flush=True)
        cmd = [sys.executable, __file__, "--replay-only", str(folder)]
        if args.profile:
            cmd.append("--profile")
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        m = json.loads(out.strip().splitlines()[-1])
        print(f"replayed {m['events']:,} events in {m['wall_s']}s: {m['events_per_s']:,} events/s "
              f"(cpu {m['cpu_s']}s: {m['events_per_cpu_s']:,} events per cpu-second), "
              f"peak RSS {m['peak_rss_mb']:,} MiB; "
              f"load average {m['load']:.2f}")
        print(f"chain_intact={m['chain_intact']} invalid_events={m['invalid_events']} "
              f"checkpoints={m['checkpoints']} payload_fallbacks={m['payload_fallbacks']}")
        print(f"engine phases (s): {m['phase_seconds']}; the rest of the wall time is reading Parquet")
        print(f"final_state_root={m['final_state_root']}")
    finally:
        if not args.keep and args.data_dir is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
