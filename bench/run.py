#!/usr/bin/env python
"""QFS Assure benchmark runner (not part of the test suite): every activity end to end at network
size, side by side with its bare baseline and the alternatives, on the same data.

    .venv/bin/python bench/run.py                      # full size (~30-40 min on 2 cores, incl. generation)
    .venv/bin/python bench/run.py --quick              # ~1/20 size, a few minutes: a smoke test
    .venv/bin/python bench/run.py --runs 3 --only node_health,economics --out bench/results

Data (generated once per size under --data, default /tmp/qfs_bench, reused while its parameters
match; --regen forces it): one storage day (qfs_assets.demo.scale: nodes, objects = the manifest,
shards, proofs), a 10M-row economics week (bench/bench_economics.generate), an EQM log with a true
hash chain (bench/bench_replay.generate) whose checkpoints are computed by replaying it once with
the replay engine itself (so the drill's comparison is exercised, not validated independently),
and the system of record in PostgreSQL (database ``qfs_bench``: ``qfs_objects`` loaded with COPY,
and the manifest in ``qfs_manifest`` for reladiff).

Each measurement is a child process run under ``/usr/bin/time``: wall time (perf_counter around it),
CPU time (user + sys) and peak RSS (``%M``, the child's ``ru_maxrss``). Pipeline figures run
``qfs-assure run ACTIVITY`` (Dagster in-process on an ephemeral instance, GX, evidence writing).
Medians over --runs (default 3); the naive alternatives run --naive-runs times (default 1), and the
per-event Python replay over the first --naive-replay-events events (default 500k; rate reported).
Replay is measured last, so that it measures the newest engine.

Writes <out>/results.json, <out>/results.md and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

PY = str(ROOT / ".venv" / "bin" / "python")
QFS = str(ROOT / ".venv" / "bin" / "qfs-assure")
RELADIFF_VENV = BENCH / ".venvs" / "reladiff"
PG = os.environ.get("QFS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
PG_DB = "qfs_bench"  # full size; quick size uses qfs_bench_quick, so the two never overwrite each other


def dsn(quick: bool) -> str:
    return f"{PG}/{PG_DB}{'_quick' if quick else ''}"


DSN = dsn(False)
GIB = 1024**3

DAY = dt.date(2024, 3, 11)  # the storage day (node health, dual-write diff)
WEEK = dt.date(2024, 1, 1)  # the economics week (bench_economics.WEEK)
QUARTER = dt.date(2025, 1, 1)  # the replay quarter (bench_replay.START)
ENV = {**os.environ, "QFS_PARTITIONS_START": "2023-01-01", "DAGSTER_DISABLE_TELEMETRY": "1", "PYTHONWARNINGS": "ignore"}
ENV.pop("DAGSTER_HOME", None)

ACTIVITIES = ("tiny", "node_health", "economics", "dual_write", "replay")  # replay last: it measures the newest engine


def sizes(quick: bool) -> dict:
    f = 20 if quick else 1
    return {"nodes": 10_000 // (10 if quick else 1), "objects": 10_000_000 // f, "econ_rows": 10_000_000 // f,
            "events": 10_000_000 // f}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {msg}", flush=True)


# -- measurement ----------------------------------------------------------------------------------

def _tree_rss_kb(root: int) -> int:
    """Resident memory (kB) of a process and all its descendants (e.g. the GX helper process)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                parts = fh.read().rsplit(")", 1)[1].split()
            children.setdefault(int(parts[1]), []).append(int(d))
            rss[int(d)] = int(parts[21]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


class _TreeSampler:
    """Samples the summed RSS of a process tree every 50 ms (the peak of all its processes together)."""

    def __init__(self, pid: int) -> None:
        import threading

        self.pid, self.peak, self.stop = pid, 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, _tree_rss_kb(self.pid))

    def close(self) -> int:
        self.stop.set()
        self.thread.join()
        return self.peak

def measure(cmd: list[str], cwd: Path | None = None, ok_codes=(0,)) -> dict:
    """Run ``cmd``; wall, CPU and peak RSS of the child (GNU time's %M, %U, %S), its stdout, load before/after."""
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    # Through /usr/bin/time (a small process): on Linux a child's ru_maxrss starts at the RSS of the
    # process it was forked from, so forking the runner itself (large after generating data) would
    # floor every figure at the runner's size.
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe, \
            tempfile.NamedTemporaryFile("w+", suffix=".time") as ft:
        p = subprocess.Popen(["/usr/bin/time", "-f", "%M %U %S", "-o", ft.name, *cmd], cwd=cwd, env=ENV,
                             stdout=fo, stderr=fe, text=True)
        sampler = _TreeSampler(p.pid)
        _, status, _ = os.wait4(p.pid, 0)
        tree_kb = sampler.close()
        wall = time.perf_counter() - t0
        p.returncode = code = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
        last = [ln for ln in Path(ft.name).read_text().splitlines() if ln.strip()][-1].split()
    rss_kb, user, sys_ = int(last[0]), float(last[1]), float(last[2])
    if code not in ok_codes:
        raise RuntimeError(f"{' '.join(cmd[:4])} exited {code}: {err.strip()[-2000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(user + sys_, 2), "peak_rss_mb": round(rss_kb / 1024),
            "peak_tree_rss_mb": round(tree_kb / 1024),
            "exit_code": code, "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2),
            "stdout": out.strip().splitlines()[-1] if out.strip() else ""}


def repeat(name: str, cmd: list[str], runs: int, cwd: Path | None = None, ok_codes=(0,), before=None) -> dict:
    if runs < 1:
        raise SystemExit(f"bench: {name}: the number of runs must be at least 1")
    rs = []
    for i in range(runs):
        if before:
            before()
        r = measure(cmd, cwd, ok_codes)
        rs.append(r)
        log(f"  {name} run {i + 1}/{runs}: wall {r['wall_s']} s, cpu {r['cpu_s']} s, peak RSS {r['peak_rss_mb']} MB "
            f"(process tree {r['peak_tree_rss_mb']} MB), "
            f"exit {r['exit_code']}")
    return {"runs": rs, "median_wall_s": round(statistics.median(r["wall_s"] for r in rs), 2),
            "max_peak_tree_rss_mb": max(r.get("peak_tree_rss_mb", 0) for r in rs),
            "median_cpu_s": round(statistics.median(r["cpu_s"] for r in rs), 2),
            "median_peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in rs)),
            "max_peak_rss_mb": max(r["peak_rss_mb"] for r in rs), "result": rs[-1]["stdout"]}


def alt(kind: str, args: dict) -> list[str]:
    return [PY, str(BENCH / "alternatives.py"), kind, json.dumps(args)]


def cli(activity: str, partition: str, export: Path, evidence: Path, sor: str | None = None) -> list[str]:
    cmd = [QFS, "run", activity, "--partition", partition, "--export-root", str(export), "--evidence-root", str(evidence)]
    return cmd + (["--sor-url", sor] if sor else [])


# -- data -----------------------------------------------------------------------------------------

def _stamped(folder: Path, want: dict, regen: bool, build) -> float:
    stamp = folder / "bench.json"
    if not regen and stamp.exists() and json.loads(stamp.read_text()) == want:
        return 0.0
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    build()
    stamp.write_text(json.dumps(want))
    return round(time.perf_counter() - t0, 1)


def _pg_admin(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(f"{PG}/postgres")
    conn.autocommit = True
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def gen_storage(base: Path, s: dict, regen: bool, need_pg: bool) -> tuple[Path, dict]:
    from qfs_assets.demo import scale

    cfg = scale.ScaleConfig(day=DAY, nodes=s["nodes"], objects=s["objects"])
    folder = base / "storage"
    counts: dict = {}

    def build():
        counts.update(scale.storage_day(folder / "export", cfg))
        (folder / "counts.json").write_text(json.dumps(counts))

    secs = _stamped(folder, {**cfg.as_dict(), "v": 1}, regen, build)
    counts = json.loads((folder / "counts.json").read_text())
    if secs:
        log(f"generated the storage day {counts} in {secs} s")
    if need_pg:
        DSN = dsn(base.name == "quick")
        stamp = folder / "pg.json"
        want = {**cfg.as_dict(), "dsn": DSN}
        ok = stamp.exists() and json.loads(stamp.read_text()) == want and not regen
        if ok:
            try:
                import psycopg2

                c = psycopg2.connect(DSN)
                cur = c.cursor()
                cur.execute("SELECT (SELECT count(*) FROM qfs_objects), (SELECT count(*) FROM qfs_manifest)")
                n_sor, n_man = cur.fetchone()
                c.close()
                ok = n_man == counts["objects"]
            except Exception:
                ok = False
        if not ok:
            try:
                _pg_admin(f"CREATE DATABASE {DSN.rsplit('/', 1)[1]}")
            except Exception as exc:
                if "already exists" not in str(exc):
                    raise
            t0 = time.perf_counter()
            n_sor = scale.load_sor(DSN, cfg)
            n_man = scale.load_table(DSN, "qfs_manifest", scale.manifest_batches(folder / "export", DAY))
            stamp.write_text(json.dumps(want))
            log(f"loaded qfs_objects ({n_sor:,} rows) and qfs_manifest ({n_man:,} rows) with COPY in "
                f"{time.perf_counter() - t0:.0f} s")
        counts["sor_rows"] = n_sor
        counts["expected_drift"] = scale.expected_drift(cfg)
        counts["dsn"] = DSN
    return folder / "export", counts


def gen_economics(base: Path, s: dict, regen: bool) -> Path:
    import bench_economics

    folder = base / "economics"
    secs = _stamped(folder, {"rows": s["econ_rows"], "week": WEEK.isoformat(), "v": 1}, regen,
                    lambda: bench_economics.generate(folder / "export", s["econ_rows"]))
    if secs:
        log(f"generated the economics week ({s['econ_rows']:,} ledger rows) in {secs} s")
    return folder / "export"


def gen_replay(base: Path, s: dict, regen: bool) -> Path:
    """The EQM log (bench_replay's generator, <= 80 days so it fits the quarter) and its checkpoints,
    computed by the replay engine itself at every day's last event."""
    import bench_replay
    import pyarrow as pa
    import pyarrow.parquet as pq

    from qfs_assets.contract.schema import CHECKPOINTS

    folder = base / "replay"
    n = s["events"]

    def build():
        from qfs_assets.replay import replay  # the columnar engine (same results as the reference engine)

        bench_replay.EVENTS_PER_DAY = max(100_000, -(-n // 80))
        export = folder / "export"
        bench_replay.generate(export, n)
        cps = bench_replay.day_checkpoints(export)
        res = replay(bench_replay.stream(export), checkpoint_seqs=cps)
        rows = [{"seq": r.seq, "ts": r.ts, "state_root": r.state, "nodes_root": r.nodes, "objects_root": r.objects,
                 "shards_root": r.shards, "ledger_root": r.ledger} for _, r in sorted(res.checkpoint_roots.items())]
        (export / "checkpoints").mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=CHECKPOINTS.schema), export / "checkpoints" / "part-0.parquet")

    secs = _stamped(folder, {"events": n, "v": 1}, regen, build)
    if secs:
        log(f"generated the EQM log ({n:,} events) and its checkpoints in {secs} s")
    _cover_quarter(folder / "export")
    return folder / "export"


def _cover_quarter(export: Path) -> None:
    """Empty ``eqm`` partitions for the days after the log's last event up to the quarter's end:
    the contract's coverage rule (v1.1) makes a missing day bad input."""
    import pyarrow.parquet as pq

    from qfs_assets.contract.schema import EQM

    month = QUARTER.month + 3
    end = dt.date(QUARTER.year + (month > 12), (month - 1) % 12 + 1, 1)
    day = QUARTER
    while day < end:
        folder = export / "eqm" / f"date={day.isoformat()}"
        if not folder.is_dir():
            folder.mkdir(parents=True)
            pq.write_table(EQM.schema.empty_table(), folder / "part-0.parquet")
        day += dt.timedelta(days=1)


# -- activities -----------------------------------------------------------------------------------

def ensure_reladiff() -> Path:
    exe = RELADIFF_VENV / "bin" / "reladiff"
    if not exe.exists():
        log("creating bench/.venvs/reladiff (pip install reladiff psycopg2-binary)")
        subprocess.run([sys.executable if sys.executable else "python3", "-m", "venv", str(RELADIFF_VENV)], check=True)
        subprocess.run([str(RELADIFF_VENV / "bin" / "pip"), "install", "-q", "reladiff", "psycopg2-binary"], check=True)
    return exe


def bench_tiny(base, s, args, work) -> dict:
    """A tiny partition end to end: what a run costs besides its data (imports, Dagster, GX, evidence)."""
    from qfs_assets.demo import scale

    cfg = scale.ScaleConfig(day=DAY, nodes=100, objects=2_000, chunk_objects=2_000)
    folder = base / "tiny"
    _stamped(folder, {**cfg.as_dict(), "v": 1}, args.regen, lambda: scale.storage_day(folder / "export", cfg))
    export = folder / "export"
    ev = work / "evidence_tiny"
    log("tiny partition: 100 nodes, 2,000 objects")
    pipe = repeat("qfs-assure run node_health_assessment (tiny)", cli("node_health_assessment", DAY.isoformat(), export, ev),
                  args.runs, cwd=work, ok_codes=(0, 1))
    floor = repeat("python -c 'import qfs_assets.definitions'", [PY, "-c", "import qfs_assets.definitions"], args.runs)
    serial = repeat("python -c 'import qfs_assets.definitions, great_expectations'",
                    [PY, "-W", "ignore", "-c", "import qfs_assets.definitions, great_expectations"], args.naive_runs)
    return {"activity": "node_health_assessment (tiny partition)", "data": "100 nodes, 11,940 shard rows, 1,990 objects",
            "pipeline": pipe, "baseline_name": "importing the definitions alone", "baseline": floor,
            "naive_name": "importing the definitions and GX one after the other (the run's imports before)",
            "naive": serial, "target": {}}


def bench_node_health(base, s, args, work) -> dict:
    export, counts = gen_storage(base, s, args.regen, need_pg=False)
    ev = work / "evidence_nh"
    log(f"node health: {counts['nodes']:,} nodes, {counts['shards']:,} shard rows")
    pipe = repeat("qfs-assure run node_health_assessment", cli("node_health_assessment", DAY.isoformat(), export, ev),
                  args.runs, cwd=work, ok_codes=(0, 1))
    a = {"export": str(export), "day": DAY.isoformat()}
    bare = repeat("bare DuckDB group-by over the shard rows", alt("duckdb_node_health", a), args.runs)
    pure = repeat("assess_node_health() without Dagster/GX/evidence", alt("pure_node_health", a), args.runs)
    prof = measure(alt("profile_node_health", a))
    naive = repeat("naive pandas group-by", alt("pandas_node_health", a), args.naive_runs)
    return {"activity": "node_health_assessment", "data": f"{counts['nodes']:,} nodes, {counts['shards']:,} shard rows, "
            f"{counts['objects']:,} objects, {counts['proofs']:,} proofs", "counts": counts,
            "pipeline": pipe, "baseline_name": "bare DuckDB group-by", "baseline": bare, "pure": pure,
            "profile": json.loads(prof["stdout"]), "naive_name": "pandas group-by", "naive": naive,
            "target": {"wall_s": 10 if not args.quick else None, "rss_gib": 2}}


def bench_economics(base, s, args, work) -> dict:
    export = gen_economics(base, s, args.regen)
    ev = work / "evidence_econ"
    log(f"economics: {s['econ_rows']:,} ledger rows")
    pipe = repeat("qfs-assure run economics_sanity_check", cli("economics_sanity_check", WEEK.isoformat(), export, ev),
                  args.runs, cwd=work, ok_codes=(0, 1))
    bare = repeat("bare DuckDB sums", alt("duckdb_economics", {"export": str(export), "week": WEEK.isoformat()}), args.runs)
    return {"activity": "economics_sanity_check", "data": f"{s['econ_rows']:,} ledger rows (fees + rewards) in a week, "
            f"{s['econ_rows'] * 6 // 10:,} fee_charged events", "pipeline": pipe, "baseline_name": "bare DuckDB sums",
            "baseline": bare, "naive_name": None, "naive": None,
            "target": {"wall_s": 5 if not args.quick else None, "x_of_baseline": 4}}


def bench_dual_write(base, s, args, work) -> dict:
    export, counts = gen_storage(base, s, args.regen, need_pg=True)
    ev = work / "evidence_dw"
    DSN = counts["dsn"]
    log(f"dual write: {counts['objects']:,} manifest rows vs {counts['sor_rows']:,} SoR rows; expected {counts['expected_drift']}")
    # numba compiles the pg_hash kernels once per machine (cached beside the module): not part of a run
    t0 = time.perf_counter()
    subprocess.run([PY, "-c", "from qfs_assets.activities.dual_write import pghash; pghash.warm_up()"], check=True, env=ENV)
    log(f"  pg_hash kernels loaded or compiled in {time.perf_counter() - t0:.1f} s (not measured)")
    pipe = repeat("qfs-assure run dual_write_diff", cli("dual_write_diff", DAY.isoformat(), export, ev, DSN), args.runs,
                  cwd=work, before=lambda: shutil.rmtree(ev, ignore_errors=True))
    exe = ensure_reladiff()
    cols = ["version", "content_hash", "size_bytes", "data_shards", "total_shards", "updated_at", "deleted"]
    rcmd = [str(exe), DSN, "qfs_objects", DSN, "qfs_manifest", "-k", "object_id", "--stats", "--json"]
    for c in cols:
        rcmd += ["-c", c]
    peer = repeat("reladiff (hashdiff, PostgreSQL table to table)", rcmd, args.runs)
    naive = repeat("naive pandas merge", alt("pandas_dual_write", {"dsn": DSN, "export": str(export), "day": DAY.isoformat()}),
                   args.naive_runs)
    return {"activity": "dual_write_diff", "data": f"{counts['sor_rows']:,} SoR rows vs {counts['objects']:,} manifest rows, "
            "0.01% drift", "counts": counts, "pipeline": pipe, "baseline_name": "reladiff", "baseline": peer,
            "naive_name": "pandas merge", "naive": naive, "target": {"rss_gib": 2, "x_faster_than_peer": 3}}


def bench_replay(base, s, args, work) -> dict:
    export = gen_replay(base, s, args.regen)
    ev = work / "evidence_replay"
    log(f"replay: {s['events']:,} events (engine: {engine_version()})")
    pipe = repeat("qfs-assure run storage_replay_drill", cli("storage_replay_drill", QUARTER.isoformat(), export, ev),
                  args.runs, cwd=work, ok_codes=(0, 1))
    bare = repeat("columnar engine alone", alt("engine_replay", {"export": str(export)}), args.runs)
    ref = repeat("today's engine alone (qfs_assets_tests/reference_engine.py, per-event Python)",
                 alt("engine_replay", {"export": str(export), "engine": "reference"}), args.naive_runs)
    limit = min(s["events"], args.naive_replay_events)
    naive = repeat(f"per-event Python replay (first {limit:,} events)",
                   alt("python_replay", {"export": str(export), "limit": limit}), args.naive_runs)
    for name, r in (("columnar engine", bare), ("today's engine", ref)):
        got = json.loads(r["result"])
        if not (got["chain_intact"] and got["checkpoints_matched"] == got["checkpoints_compared"] > 0):
            raise RuntimeError(f"bench: the {name} did not reproduce the checkpoints: {got}")
    if json.loads(bare["result"])["final_state_root"] != json.loads(ref["result"])["final_state_root"]:
        raise RuntimeError("bench: the columnar engine and today's engine disagree on the final state root")
    return {"activity": "storage_replay_drill", "data": f"{s['events']:,} EQM events", "events": s["events"],
            "naive_events": limit, "pipeline": pipe, "baseline_name": "columnar engine alone", "baseline": bare,
            "reference_name": "today's engine (qfs_assets_tests/reference_engine.py)", "reference": ref,
            "naive_name": "per-event Python replay", "naive": naive, "target": {"events_per_s": 1_000_000, "rss_gib": 2}}


def compile_bytecode() -> int:
    """Compile the project's modules to bytecode (``__pycache__``), as installing the package from
    a wheel does, so the runs measure a deployed pipeline. An editable install compiles nothing
    itself and Python writes the bytecode on first import, unless ``PYTHONDONTWRITEBYTECODE`` is
    set (as on this project's machines): then every run compiled the project's modules again,
    ~0.3 s of CPU per ``qfs-assure run``. Returns how many compiled modules the project has."""
    import compileall
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        ok = compileall.compile_dir(str(ROOT / "qfs_assets"), quiet=1, force=False)
    if not ok:
        raise RuntimeError(f"bench: the project's modules do not compile: {buf.getvalue()[-500:]}")
    n = sum(1 for _ in (ROOT / "qfs_assets").rglob("__pycache__/*.pyc"))
    log(f"bytecode of the project's modules compiled ({n} files in __pycache__)")
    return n


CALIBRATION = r"""
import hashlib, json, time
import numpy as np

t = time.perf_counter()
s = 0
for i in range(10_000_000):
    s += i
loop = time.perf_counter() - t
msg = bytes(range(256))
t = time.perf_counter()
for _ in range(1_000_000):
    hashlib.sha256(msg).digest()
sha = 1.0 / (time.perf_counter() - t)
t = time.perf_counter()
a = np.ones(1 << 27)  # 1 GiB of pages this process never touched
fresh = time.perf_counter() - t
t = time.perf_counter()
a[:] = 2.0
again = time.perf_counter() - t
print(json.dumps({"python_loop_10m_s": round(loop, 2), "sha256_256b_m_per_s": round(sha, 2),
                  "fresh_memory_s_per_gib": round(fresh, 2), "touched_memory_s_per_gib": round(again, 2)}))
"""


def machine_calibration() -> dict | None:
    """One core's speed, measured in a child process before the runs, so figures from different
    machines (or sessions) can be read side by side: the interpreter (10M additions in a Python
    loop), SHA-256 (1M 256-byte messages through hashlib: the hash the replay's chain needs, with
    Python's call overhead, about half of it) and memory (the wall time of writing 1 GiB of pages
    the process never touched, then of the same pages again). On these virtual machines the first
    touch of memory costs from ~0.3 to ~3 s per GiB depending on what the host took back shortly
    before, and every activity pays it for the memory it uses: one figure is a sample, not a
    constant. None (and a log line) when the calibration fails."""
    env = {**ENV, "NUMPY_MADVISE_HUGEPAGE": "0"}  # 4 KiB pages, as the drill's runs use
    p = subprocess.run([PY, "-c", CALIBRATION], env=env, capture_output=True, text=True)
    try:
        cal = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else None
    except (ValueError, IndexError):
        cal = None
    if cal is None:  # a figure for the record, not a measurement: the runs go on without it
        log(f"machine calibration failed (exit {p.returncode}): {p.stderr.strip()[-500:]}")
        return None
    log(f"machine: {cal}")
    return cal


def engine_version() -> str:
    out = []
    for name in ("columnar.py", "kernels.py"):
        p = ROOT / "qfs_assets" / "replay" / name
        out.append(f"{name} modified {time.strftime('%Y-%m-%d %H:%M', time.localtime(p.stat().st_mtime))}")
    return ", ".join(out)


# -- report ---------------------------------------------------------------------------------------

def verdict(r: dict) -> tuple[str, str, bool | None, list[str]]:
    """(target text, measured text, met, reasons missed)."""
    p, t = r["pipeline"], r["target"]
    # memory of the run's whole process tree (the GX helper included) when sampled, else the process's
    wall, rss_gib = p["median_wall_s"], max(p["max_peak_rss_mb"], p.get("max_peak_tree_rss_mb") or 0) / 1024
    met, text, missed = True, [], []
    if r["activity"] == "storage_replay_drill":
        rate = r["events"] / wall
        text.append(">= 1M events/s")
        if rate < t["events_per_s"]:
            met = False
            missed.append(f"{rate / 1e6:.2f}M events/s")
    if t.get("wall_s"):
        text.append(f"< {t['wall_s']} s")
        if wall >= t["wall_s"]:
            met = False
            missed.append(f"{wall} s")
    if t.get("rss_gib"):
        text.append(f"< {t['rss_gib']} GiB")
        if rss_gib >= t["rss_gib"]:
            met = False
            missed.append(f"{rss_gib:.2f} GiB")
    if t.get("x_of_baseline"):
        text.append(f"<= {t['x_of_baseline']}x the {r['baseline_name']}")
        x = wall / r["baseline"]["median_wall_s"]
        if x > t["x_of_baseline"]:
            met = False
            missed.append(f"{x:.2f}x the {r['baseline_name']}")
    if t.get("x_faster_than_peer"):
        text.append(f">= {t['x_faster_than_peer']}x faster than reladiff")
        x = r["baseline"]["median_wall_s"] / wall
        if x < t["x_faster_than_peer"]:
            met = False
            missed.append(f"{x:.2f}x reladiff's speed")
    return ", ".join(text), ", ".join(missed), met, missed


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def table(results: list[dict], quick: bool) -> str:
    lines = ["| activity | data | median wall (s) | median CPU (s) | peak RSS (MB): process / with helpers | target | met? | "
             "pipeline / bare baseline or peer (wall) | naive alternative / pipeline (wall) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        p, b, nv = r["pipeline"], r["baseline"], r["naive"]
        target, missed, met, _ = verdict(r)
        if quick:
            met_s = "n/a (quick size)"
        else:
            met_s = "yes" if met else f"**no** ({missed})"
        base = f"{_ratio(p['median_wall_s'], b['median_wall_s'])} ({r['baseline_name']}: {b['median_wall_s']} s, {b['max_peak_rss_mb']} MB)"
        if nv is None:
            naive = "n/a"
        elif r["activity"] == "storage_replay_drill":
            naive_rate = r["naive_events"] / nv["median_wall_s"]
            rate = r["events"] / p["median_wall_s"]
            naive = (f"{rate / naive_rate:.1f}x events/s ({r['naive_name']}: {naive_rate:,.0f} events/s over "
                     f"{r['naive_events']:,} events, {nv['max_peak_rss_mb']} MB)")
            if r.get("reference"):
                rf = r["reference"]
                ref_rate = r["events"] / rf["median_wall_s"]
                naive = (f"{rate / ref_rate:.1f}x events/s (today's engine alone: {ref_rate:,.0f} events/s, "
                         f"{rf['median_wall_s']} s, {rf['max_peak_rss_mb']} MB); " + naive)
        else:
            naive = f"{_ratio(nv['median_wall_s'], p['median_wall_s'])} ({r['naive_name']}: {nv['median_wall_s']} s, {nv['max_peak_rss_mb']} MB)"
        extra = f" ({r['events'] / p['median_wall_s'] / 1e6:.2f}M events/s)" if r["activity"] == "storage_replay_drill" else ""
        if not r["target"]:
            met_s = "-"
        lines.append(f"| {r['activity']} | {r['data']} | {p['median_wall_s']}{extra} | {p['median_cpu_s']} | "
                     f"{p['max_peak_rss_mb']} / {p.get('max_peak_tree_rss_mb', '-')} | {target or '-'} | {met_s} | {base} | {naive} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~1/20 size (a smoke test of a few minutes)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--naive-runs", type=int, default=1)
    ap.add_argument("--naive-replay-events", type=int, default=500_000)
    ap.add_argument("--only", default=",".join(ACTIVITIES), help="comma-separated: " + ",".join(ACTIVITIES))
    ap.add_argument("--out", type=Path, default=BENCH / "results")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("QFS_BENCH_DATA", "/tmp/qfs_bench")))
    ap.add_argument("--regen", action="store_true", help="regenerate the data even if present")
    ap.add_argument("--generate-only", action="store_true",
                    help="generate (or check) the data of the --only activities and stop, measuring nothing")
    ap.add_argument("--no-docs", action="store_true",
                    help="do not rewrite docs/benchmarks.md (never rewritten by --quick or --only runs)")
    ap.add_argument("--report", action="store_true",
                    help="only rewrite docs/benchmarks.md (and results.md) from <out>/results.json")
    args = ap.parse_args()
    if args.report:
        import report

        doc = json.loads((args.out / "results.json").read_text())
        md = table(doc["results"], doc["meta"]["quick"])
        report.write_docs(ROOT / "docs" / "benchmarks.md", doc["meta"], doc["results"], md)
        print(md)
        return
    only = [a for a in ACTIVITIES if a in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(ACTIVITIES)
    if unknown:
        ap.error(f"unknown activities {sorted(unknown)}")
    s = sizes(args.quick)
    base = args.data / ("quick" if args.quick else "full")
    work = base / "work"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    log(f"QFS Assure benchmark ({'quick' if args.quick else 'full'} size {s}), runs {args.runs}, data {base}")
    if args.generate_only:
        if {"node_health", "dual_write"} & set(only):
            gen_storage(base, s, args.regen, need_pg="dual_write" in only)
        if "economics" in only:
            gen_economics(base, s, args.regen)
        if "replay" in only:
            gen_replay(base, s, args.regen)
        log(f"data ready under {base} in {(time.perf_counter() - t0) / 60:.1f} min")
        return
    compiled = compile_bytecode()
    calibration = machine_calibration()
    fns = {"tiny": bench_tiny, "node_health": bench_node_health, "economics": bench_economics, "dual_write": bench_dual_write,
           "replay": bench_replay}
    results = []
    args.out.mkdir(parents=True, exist_ok=True)
    for a in only:
        results.append(fns[a](base, s, args, work))
        (args.out / "partial.json").write_text(json.dumps(results, indent=1, default=str))  # survives an interrupted run
    load1 = os.getloadavg()
    cmd = "bench/run.py" + (" --quick" if args.quick else "") + (f" --runs {args.runs}" if args.runs != 3 else "") + (
        f" --only {args.only}" if len(only) != len(ACTIVITIES) else "")
    meta = {"command": f".venv/bin/python {cmd}", "date": time.strftime("%Y-%m-%d %H:%M %Z"), "cores": os.cpu_count(),
            "load_start": [round(x, 2) for x in load0], "load_end": [round(x, 2) for x in load1],
            "total_minutes": round((time.perf_counter() - t0) / 60, 1), "sizes": s, "quick": args.quick,
            "replay_engine": engine_version(), "bytecode_compiled": compiled, "machine": calibration}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    md = table(results, args.quick)
    (args.out / "results.md").write_text(f"`{meta['command']}` — {meta['date']}, {meta['cores']} cores, load average "
                                         f"{meta['load_start']} at start, {meta['load_end']} at end\n\n{md}\n")
    print(md)
    log(f"done in {meta['total_minutes']} min; {args.out / 'results.json'}")
    if not args.no_docs and not args.quick and len(only) == len(ACTIVITIES):  # docs show full runs only
        import report

        report.write_docs(ROOT / "docs" / "benchmarks.md", meta, results, md)
        log("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
