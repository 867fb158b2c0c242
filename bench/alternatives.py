"""The bare baselines and the naive alternatives the benchmark runner (bench/run.py) compares with.

Each runs in its own child process (``python bench/alternatives.py KIND ARGS_JSON``) so that the
runner can read its wall time, CPU time and peak RSS with ``os.wait4``; it prints one JSON line
(the result, so the runner checks every implementation agrees on the same data).

Bare baselines (what the pipeline's own work costs without Dagster, GX, validation or evidence):
    duckdb_node_health   the per-object DuckDB group-by over the shard rows (the heavy query)
    duckdb_economics     the week's sums over fees, rewards (by node) and fee_charged events
    engine_replay        the replay engine over the Parquet log, no Dagster (bench_replay.run_replay)
    pure_node_health     assess_node_health() alone (validation + metrics, no Dagster/GX/evidence)
    profile_node_health  the steps of a node health run timed one by one

Naive alternatives (what an operator would write instead):
    pandas_node_health   pandas read_parquet + group-bys + merges for the same metrics
    pandas_dual_write    COPY the SoR to CSV, pandas read_csv + read_parquet + outer merge + classify
    python_replay        a per-event, dict-based Python replay of the contract (chain, state, roots)
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository root: qfs_assets, and qfs_assets_tests (the reference engine)
sys.path.insert(0, str(ROOT / "bench"))


def _files(export: str, table: str, part: str, day: str) -> list[str]:
    return sorted(str(p) for p in (Path(export) / table / f"{part}={day}").glob("*.parquet"))


# -- node health -------------------------------------------------------------------------------

def duckdb_node_health(a: dict) -> dict:
    import duckdb

    shards = _files(a["export"], "shards", "snapshot_date", a["day"])
    con = duckdb.connect()
    n = con.execute(f"""
        SELECT count(*), sum(shard_rows) FROM (
            SELECT object_id, count(*) AS shard_rows, count(DISTINCT shard_index) AS idx
            FROM read_parquet({shards!r}) GROUP BY object_id)""").fetchall()[0]
    return {"objects": int(n[0]), "shard_rows": int(n[1])}


def pure_node_health(a: dict) -> dict:
    from qfs_assets.activities.node_health.assess import assess_node_health
    from qfs_assets.readers.base import ExportReader

    r = assess_node_health(ExportReader(a["export"]), dt.date.fromisoformat(a["day"]))
    m = r.metrics
    return {k: m[k] for k in ("in_service_nodes", "verified_nodes", "objects_degraded", "objects_unrecoverable",
                              "proof_challenges")}


def profile_node_health(a: dict) -> dict:
    """Each step of a node health run, in the order the Dagster job runs them (wall and CPU seconds)."""
    out: dict = {}

    def step(name, fn):
        t, c = time.perf_counter(), time.process_time()
        v = fn()
        out[name] = {"wall_s": round(time.perf_counter() - t, 2), "cpu_s": round(time.process_time() - c, 2)}
        return v

    import resource

    import duckdb

    def step(name, fn, _step=step):  # noqa: F811  (adds the process's peak RSS so far)
        v = _step(name, fn)
        out[name]["peak_rss_mb_so_far"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return v

    shards = _files(a["export"], "shards", "snapshot_date", a["day"])
    con = duckdb.connect()
    step("bare DuckDB: group by node_id over the shard rows (count, sum bytes)", lambda: con.execute(
        f"SELECT node_id, count(*), sum(shard_bytes) FROM read_parquet({shards!r}) GROUP BY node_id").fetchall())
    step("bare DuckDB: group by object_id over the shard rows (count, count distinct index)", lambda: con.execute(
        f"SELECT count(*) FROM (SELECT object_id, count(*), count(DISTINCT shard_index) FROM read_parquet({shards!r}) "
        "GROUP BY object_id)").fetchall())
    step("bare DuckDB: count(*) - count(col) over every shard column (the validation scan)", lambda: con.execute(
        f"SELECT count(*), count(object_id), count(shard_index), count(node_id), count(shard_hash), count(shard_bytes) "
        f"FROM read_parquet({shards!r})").fetchall())
    con.close()
    step("import dagster + definitions", lambda: __import__("qfs_assets.definitions"))
    from qfs_assets.activities.node_health.assess import aegis_table, distribution_table, object_health
    from qfs_assets.windows import day_window
    from qfs_assets.readers.base import ExportReader, connect
    from qfs_assets.readers.nodes import node_snapshot
    from qfs_assets.readers.proofs import proofs_of_day
    from qfs_assets.readers.storage import object_manifest, shard_map

    day = dt.date.fromisoformat(a["day"])
    reader = ExportReader(a["export"])
    for table, kw in (("nodes", {}), ("objects", {}), ("shards", {"validate_keys": False}), ("proofs", {})):
        con = connect()
        step(f"input asset: validate {table}" + (" (no key check)" if kw else " (with key check)"),
             lambda: reader.relation(con, table, [day], **kw))
        con.close()
    con = connect()
    step("assessment: re-validate nodes", lambda: node_snapshot(reader, con, day))
    step("assessment: re-validate proofs", lambda: proofs_of_day(reader, con, day))
    step("assessment: re-validate objects (4 columns, with key check)", lambda: object_manifest(
        reader, con, day, columns=["object_id", "data_shards", "total_shards", "deleted"]))
    step("assessment: re-validate shards (4 columns, no key check)", lambda: shard_map(
        reader, con, day, columns=["object_id", "shard_index", "node_id", "shard_bytes"], validate_keys=False))
    step("assessment: aegis_table", lambda: aegis_table(con, day_window(day)[1], __import__(
        "qfs_assets.activities.node_health.assess", fromlist=["NodeHealthParams"]).NodeHealthParams()))
    step("assessment: distribution_table (shard count and bytes by node)", lambda: distribution_table(con))
    step("assessment: object_health (shard rows by index with hash sums, rows on bad nodes; manifest by total_shards)", lambda: object_health(con))
    con.close()
    step("import great_expectations", lambda: __import__("great_expectations"))
    return out


def pandas_node_health(a: dict) -> dict:
    import pandas as pd

    ex, day = a["export"], a["day"]
    end = pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=1)
    nodes = pd.read_parquet(_files(ex, "nodes", "snapshot_date", day)[0])
    objects = pd.read_parquet(_files(ex, "objects", "snapshot_date", day)[0],
                              columns=["object_id", "data_shards", "total_shards", "deleted"])
    shards = pd.read_parquet(_files(ex, "shards", "snapshot_date", day)[0],
                             columns=["object_id", "shard_index", "node_id", "shard_bytes"])
    proofs = pd.read_parquet(_files(ex, "proofs", "date", day)[0], columns=["node_id", "outcome"])
    if shards.duplicated(["object_id", "shard_index"]).any():
        raise SystemExit("duplicate shard keys")
    tallies = proofs.assign(passed=proofs.outcome.eq("passed")).groupby("node_id").agg(
        challenges=("outcome", "size"), passed=("passed", "sum"))
    n = nodes.set_index("node_id").join(tallies).fillna({"challenges": 0, "passed": 0})
    n["in_service"] = n.status.isin(["active", "degraded"])
    n["verified"] = (n.in_service & (n.last_heartbeat >= end - pd.Timedelta(seconds=3600))
                     & (n.stake_nod >= 1000 * 10**8) & (n.used_bytes <= n.capacity_bytes)
                     & (n.challenges > 0) & (n.passed * 10000 >= 9500 * n.challenges))
    per_node = shards.groupby("node_id").shard_bytes.sum()
    ins = n[n.in_service].join(per_node).fillna({"shard_bytes": 0})
    util = ins.shard_bytes / ins.capacity_bytes
    healthy = shards.node_id.isin(n.index[n.in_service])
    per_obj = shards.assign(h=healthy).groupby("object_id").h.sum()
    live = objects[~objects.deleted].set_index("object_id").join(per_obj).fillna({"h": 0})
    degraded = live[live.h < live.total_shards]
    return {"in_service_nodes": int(n.in_service.sum()), "verified_nodes": int(n.verified.sum()),
            "objects_degraded": int(len(degraded)), "objects_unrecoverable": int((degraded.h < degraded.data_shards).sum()),
            "proof_challenges": int(len(proofs)), "utilization_cv": float(util.std(ddof=0) / util.mean())}


# -- dual write ---------------------------------------------------------------------------------

def pandas_dual_write(a: dict) -> dict:
    import pandas as pd
    import psycopg2

    end = pd.Timestamp(a["day"], tz="UTC") + pd.Timedelta(days=1)
    buf = io.BytesIO()
    conn = psycopg2.connect(a["dsn"])
    conn.cursor().copy_expert("COPY qfs_objects TO STDOUT WITH (FORMAT csv, HEADER true)", buf)
    conn.close()
    buf.seek(0)
    sor = pd.read_csv(buf, dtype={"object_id": "str", "content_hash": "str"}, true_values=["t"], false_values=["f"])
    sor["updated_at"] = pd.to_datetime(sor.updated_at, utc=True, format="ISO8601")
    del buf
    man = pd.read_parquet(_files(a["export"], "objects", "snapshot_date", a["day"])[0])
    m = sor.merge(man, on="object_id", how="outer", suffixes=("_sor", "_st"), indicator=True)
    flight = (m.updated_at_sor >= end) | (m.updated_at_st >= end)
    j = m[~flight]
    both = j._merge == "both"
    deleted_both = both & j.deleted_sor.astype(bool) & j.deleted_st.astype(bool)
    counts = {
        "in_flight": int(flight.sum()),
        "missing_in_storage": int(((j._merge == "left_only") & ~j.deleted_sor.astype(bool)).sum()),
        "missing_in_sor": int(((j._merge == "right_only") & ~j.deleted_st.astype(bool)).sum()),
        "version_mismatch": int((both & ~deleted_both & (j.version_sor != j.version_st)).sum()),
    }
    same = both & ~deleted_both & (j.version_sor == j.version_st)
    content = ((j.content_hash_sor != j.content_hash_st) | (j.size_bytes_sor != j.size_bytes_st)
               | (j.data_shards_sor != j.data_shards_st) | (j.total_shards_sor != j.total_shards_st)
               | (j.deleted_sor.astype(bool) != j.deleted_st.astype(bool)))
    counts["content_mismatch"] = int((same & content).sum())
    return counts


# -- economics ----------------------------------------------------------------------------------

def duckdb_economics(a: dict) -> dict:
    import duckdb

    days = [(dt.date.fromisoformat(a["week"]) + dt.timedelta(days=i)).isoformat() for i in range(7)]
    f = lambda t: [x for d in days for x in _files(a["export"], t, "date", d)]  # noqa: E731
    nodes = [x for d in days for x in _files(a["export"], "nodes", "snapshot_date", d)]
    con = duckdb.connect()
    fees = con.execute(f"SELECT count(*), sum(amount_atr) FROM read_parquet({f('fees')!r})").fetchall()[0]
    rw = con.execute(f"""
        SELECT count(*), sum(r.amount_nod), count(*) FILTER (WHERE n.status IN ('failed', 'decommissioned'))
        FROM read_parquet({f('rewards')!r}) r LEFT JOIN read_parquet({nodes!r}, hive_partitioning=true) n
          ON n.node_id = r.node_id AND n.snapshot_date = CAST(r.ts AS DATE)""").fetchall()[0]
    log = con.execute(f"""SELECT count(*), sum(CAST(json_extract(payload, '$.amount_atr') AS BIGINT))
        FROM read_parquet({f('eqm')!r}) WHERE event_type = 'fee_charged'""").fetchall()[0]
    return {"fee_rows": int(fees[0]), "fees_atr": int(fees[1]), "reward_rows": int(rw[0]),
            "rewards_to_failed_nodes": int(rw[2]), "log_fee_charged_events": int(log[0]),
            "ledger_vs_log_atr": int(fees[1]) - int(log[1])}


# -- replay -------------------------------------------------------------------------------------

def engine_replay(a: dict) -> dict:
    """A replay engine alone over the log (Parquet read with pyarrow), checkpoints compared:
    ``engine`` "columnar" (the drill's, default) or "reference" (today's engine: the per-event
    engine the drill used before, kept frozen in qfs_assets_tests/reference_engine.py)."""
    import pyarrow.parquet as pq

    from bench_replay import stream

    if a.get("engine", "columnar") == "reference":
        from qfs_assets_tests.reference_engine import replay
    else:
        from qfs_assets.replay.columnar import replay

    cps = pq.read_table(Path(a["export"]) / "checkpoints" / "part-0.parquet")
    kw = {}
    if a.get("engine", "columnar") != "reference":  # the log's row count from its footers, as the drill passes it
        kw["expected_events"] = sum(pq.read_metadata(f).num_rows for f in (Path(a["export"]) / "eqm").glob("date=*/*.parquet"))
    res = replay(stream(Path(a["export"])), expected_checkpoints=cps, **kw)
    cmp = res.checkpoint_comparison
    return {"events": res.events_replayed, "chain_intact": res.chain_intact, "invalid_events": len(res.invalid_events),
            "checkpoints_compared": cmp.compared, "checkpoints_matched": cmp.matched,
            "final_state_root": res.final_roots.state, "phase_cpu_seconds": res.phase_seconds,
            "payload_fallbacks": res.payload_fallbacks}


def python_replay(a: dict) -> dict:
    """A straightforward per-event replay: one dict per component, json.loads per payload, the
    hash chain with hashlib, each row's hash (canonical JSON) added/subtracted as it changes."""
    import hashlib

    import pyarrow.parquet as pq

    from qfs_assets.contract.hashing import GENESIS_PREV_HASH, canonical_json, format_root, state_root

    def h(row: dict) -> int:
        return int.from_bytes(hashlib.sha256(canonical_json(row).encode()).digest(), "big")

    limit = int(a.get("limit") or 0) or None
    cps = {r["seq"]: r for r in pq.read_table(Path(a["export"]) / "checkpoints" / "part-0.parquet").to_pylist()}
    nodes, objects, shards, ledger, by_obj = {}, {}, {}, {}, {}
    acc = {"nodes": 0, "objects": 0, "shards": 0, "ledger": 0}
    seen_tx, seen_rw = set(), set()
    prev, expected_seq, invalid, intact = GENESIS_PREV_HASH, 0, 0, True
    compared = matched = events = 0

    def put(comp: str, store: dict, key, row: dict | None) -> None:
        old = store.get(key)
        if old is not None:
            acc[comp] -= h(old)
        if row is None:
            store.pop(key, None)
        else:
            store[key] = row
            acc[comp] += h(row)

    def credit(party: str, atr: int, nod: int) -> None:
        row = dict(ledger.get(party) or {"party_id": party, "atr_paid": 0, "nod_earned": 0})
        row["atr_paid"] += atr
        row["nod_earned"] += nod
        put("ledger", ledger, party, row)

    files = sorted((Path(a["export"]) / "eqm").glob("date=*/*.parquet"))
    done = False
    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=65_536):
            for ev in batch.to_pylist():
                seq, et, pl = ev["seq"], ev["event_type"], ev["payload"]
                if (seq != expected_seq or ev["prev_hash"] != prev
                        or hashlib.sha256(f"{prev}|{seq}|{et}|{pl}".encode()).hexdigest() != ev["event_hash"]):
                    intact = False
                prev, expected_seq = ev["event_hash"], seq + 1
                p = json.loads(pl)
                ok = True
                if et == "node_registered":
                    ok = p["node_id"] not in nodes
                    if ok:
                        put("nodes", nodes, p["node_id"], {"node_id": p["node_id"], "region": p["region"],
                            "capacity_bytes": p["capacity_bytes"], "stake_nod": p["stake_nod"], "status": "active"})
                elif et == "node_status_changed":
                    ok = p["node_id"] in nodes
                    if ok:
                        put("nodes", nodes, p["node_id"], {**nodes[p["node_id"]], "status": p["status"]})
                elif et == "object_written":
                    old = objects.get(p["object_id"])
                    ok = old is None or p["version"] > old["version"]
                    if ok:
                        put("objects", objects, p["object_id"], {k: p[k] for k in (
                            "object_id", "version", "content_hash", "size_bytes", "data_shards", "total_shards")}
                            | {"deleted": False})
                elif et == "object_deleted":
                    old = objects.get(p["object_id"])
                    ok = old is not None
                    if ok:
                        put("objects", objects, p["object_id"], {**old, "deleted": True, "version": p["version"]})
                        for i in by_obj.pop(p["object_id"], ()):
                            put("shards", shards, (p["object_id"], i), None)
                elif et == "shard_placed":
                    ok = p["object_id"] in objects and p["node_id"] in nodes
                    if ok:
                        by_obj.setdefault(p["object_id"], set()).add(p["shard_index"])
                        put("shards", shards, (p["object_id"], p["shard_index"]), {k: p[k] for k in (
                            "object_id", "shard_index", "node_id", "shard_hash", "shard_bytes")})
                elif et == "shard_moved":
                    key = (p["object_id"], p["shard_index"])
                    old = shards.get(key)
                    ok = old is not None and old["node_id"] == p["from_node_id"] and p["to_node_id"] in nodes
                    if ok:
                        put("shards", shards, key, {**old, "node_id": p["to_node_id"]})
                elif et == "fee_charged":
                    ok = p["tx_id"] not in seen_tx
                    if ok:
                        seen_tx.add(p["tx_id"])
                        credit(p["account_id"], p["amount_atr"], 0)
                elif et == "reward_paid":
                    ok = p["reward_id"] not in seen_rw and p["node_id"] in nodes
                    if ok:
                        seen_rw.add(p["reward_id"])
                        credit(p["node_id"], 0, p["amount_nod"])
                invalid += not ok
                events += 1
                cp = cps.get(seq)
                if cp is not None:
                    roots = {c: format_root(acc[c]) for c in acc}
                    roots["state"] = state_root(roots["nodes"], roots["objects"], roots["shards"], roots["ledger"])
                    compared += 1
                    matched += all(roots[c] == cp[f"{c}_root"] for c in roots)
                if limit and events >= limit:
                    done = True
                    break
            if done:
                break
        if done:
            break
    return {"events": events, "chain_intact": intact, "invalid_events": invalid, "checkpoints_compared": compared,
            "checkpoints_matched": matched}


KINDS = {f.__name__: f for f in (duckdb_node_health, pure_node_health, profile_node_health, pandas_node_health,
                                 pandas_dual_write, duckdb_economics, engine_replay, python_replay)}

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    kind, args = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(KINDS[kind](args), default=str))
