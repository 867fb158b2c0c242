"""Benchmark of economics_sanity_check on a 10M-row week (not a test).

Generates, columnar with numpy/pyarrow, one week of fees + rewards (10M ledger rows by
default, split 60/40), one ``fee_charged`` EQM event per fee (synthetic hashes: the chain is
not what this check reads), and seven daily ``nodes`` snapshots; then times
:func:`assess_economics` and prints wall time and peak RSS.

    .venv/bin/python bench/bench_economics.py [--rows 10000000] [--dir /tmp/qfs_bench_econ] [--keep]

The export is written once and reused while its parameters match (``--regen`` forces it).
Target: under 5 s wall for 10M rows on the 2-core dev machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qfs_assets.contract.schema import EQM, FEES, NODES, REWARDS  # noqa: E402

WEEK = dt.date(2024, 1, 1)  # a Monday
NODES_N = 2_000
ACCOUNTS_N = 50_000
US_PER_DAY = 86_400 * 10**6


def _ids(prefix: str, values: np.ndarray, width: int) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(pa.array(values).cast(pa.string()), width, "0"), "")


def _ts(day: dt.date, rng: np.random.Generator, n: int) -> pa.Array:
    base = int(dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc).timestamp()) * 10**6
    return pa.array(np.sort(base + rng.integers(0, US_PER_DAY, n)), pa.timestamp("us", tz="UTC"))


def _write(root: Path, spec, day: dt.date, table: pa.Table) -> None:
    pdir = root / spec.name / f"{spec.partition_column}={day.isoformat()}"
    pdir.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.cast(spec.schema), pdir / "part-0.parquet", compression="zstd", row_group_size=1 << 20)


def generate(root: Path, rows: int, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    n_fees = rows * 6 // 10
    n_rewards = rows - n_fees
    seq0 = 0
    node_ids = _ids("node-", np.arange(NODES_N), 5)
    for i in range(7):
        day = WEEK + dt.timedelta(days=i)
        nf = n_fees // 7 + (1 if i < n_fees % 7 else 0)
        nr = n_rewards // 7 + (1 if i < n_rewards % 7 else 0)
        f0 = i * (n_fees // 7 + 1)
        r0 = i * (n_rewards // 7 + 1)

        tx = _ids("tx-", np.arange(f0, f0 + nf), 12)
        ts = _ts(day, rng, nf)
        acct = _ids("acct-", rng.integers(0, ACCOUNTS_N, nf), 6)
        obj = _ids("obj-", rng.integers(0, 10**7, nf), 8)
        ops = pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, 4, nf), pa.int8()), ["put", "get", "delete", "renew"]).cast(pa.string())
        amt = pa.array(rng.integers(1, 1_000_000, nf), pa.int64())
        _write(root, FEES, day, pa.table({"tx_id": tx, "ts": ts, "account_id": acct, "object_id": obj, "operation": ops, "amount_atr": amt}))

        # fee_charged events, one per fee, canonical JSON (keys sorted)
        q = lambda a: pc.binary_join_element_wise('"', a, '"', "")  # noqa: E731
        payload = pc.binary_join_element_wise(
            '{"account_id":', q(acct), ',"amount_atr":', amt.cast(pa.string()), ',"object_id":', q(obj),
            ',"operation":', q(ops), ',"tx_id":', q(tx), "}", "",
        )
        seq = pa.array(np.arange(seq0, seq0 + nf), pa.int64())
        seq0 += nf
        h = pa.array(["0" * 64] * nf).dictionary_encode()
        _write(root, EQM, day, pa.table({
            "seq": seq, "ts": ts, "event_type": pa.array(["fee_charged"] * nf).dictionary_encode(),
            "payload": payload, "prev_hash": h, "event_hash": h,
        }))

        rid = _ids("rw-", np.arange(r0, r0 + nr), 12)
        kinds = pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, 2, nr), pa.int8()), ["storage", "proof"]).cast(pa.string())
        _write(root, REWARDS, day, pa.table({
            "reward_id": rid, "ts": _ts(day, rng, nr), "epoch": pa.array(np.full(nr, 1000 + i), pa.int64()),
            "node_id": pc.take(node_ids, pa.array(rng.integers(0, NODES_N, nr))), "kind": kinds,
            "amount_nod": pa.array(rng.integers(1, 400_000, nr), pa.int64()),
        }))

        status = np.array(["active"] * NODES_N, dtype=object)
        status[: 5 + i] = "failed"  # a few failed nodes, a growing set
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
        _write(root, NODES, day, pa.table({
            "node_id": node_ids, "region": pa.array(["eu-west"] * NODES_N), "status": pa.array(list(status)),
            "capacity_bytes": pa.array(np.full(NODES_N, 10**13), pa.int64()), "used_bytes": pa.array(np.full(NODES_N, 10**12), pa.int64()),
            "stake_nod": pa.array(np.full(NODES_N, 2000 * 10**8), pa.int64()), "software_version": pa.array(["13.5.0"] * NODES_N),
            "last_heartbeat": pa.array([end - dt.timedelta(minutes=5)] * NODES_N, pa.timestamp("us", tz="UTC")),
            "registered_at": pa.array([dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc)] * NODES_N, pa.timestamp("us", tz="UTC")),
        }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="fee + reward rows in the week")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/qfs_bench_econ"))
    ap.add_argument("--regen", action="store_true", help="regenerate the export even if present")
    ap.add_argument("--keep", action="store_true", help="keep the export afterwards")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    stamp = args.dir / "bench.json"
    want = {"rows": args.rows, "week": WEEK.isoformat(), "version": 1}
    if args.regen or not stamp.exists() or json.loads(stamp.read_text()) != want:
        shutil.rmtree(args.dir, ignore_errors=True)
        t0 = time.perf_counter()
        # in a child process, so that the peak RSS printed below is the check's alone
        proc = multiprocessing.get_context("spawn").Process(target=generate, args=(args.dir, args.rows))
        proc.start()
        proc.join()
        if proc.exitcode:
            sys.exit(f"generation failed (exit code {proc.exitcode})")
        stamp.write_text(json.dumps(want))
        print(f"generated {args.rows:,} ledger rows in {time.perf_counter() - t0:.1f} s under {args.dir}")

    import pandas  # noqa: F401  (pyarrow imports it on the first Table built, ~0.5 s; Dagster has it loaded)

    from qfs_assets.activities.economics.assess import EconomicsParams, assess_economics
    from qfs_assets.readers.base import ExportReader

    for _ in range(args.repeat):
        load = os.getloadavg()[0]
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        result = assess_economics(ExportReader(args.dir), WEEK, EconomicsParams(atr_per_nod="3/7"))
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        m = result.metrics
        print(
            f"assess_economics: {m['fee_rows'] + m['reward_rows']:,} ledger rows, {m['log_fee_charged_events']:,} eqm events: "
            f"wall {wall:.2f} s, cpu {cpu:.2f} s, peak RSS {r1.ru_maxrss / 1024:.0f} MB (process), "
            f"load average before {load:.2f} on {os.cpu_count()} cores"
        )
    print(json.dumps({k: m[k] for k in ("fees_atr", "rewards_in_atr", "margin_atr", "rewards_to_failed_nodes", "ledger_vs_log_atr")}))
    print(f"findings: {result.tables['economics_findings'].num_rows:,} rows")
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
