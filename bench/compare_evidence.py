#!/usr/bin/env python
"""Evidence before and after a change, on the benchmark data: must be identical.

Runs ``qfs-assure run`` of each activity twice on the same generated data (``bench/run.py``'s
data folder): once with the package of a previous commit (``--before``, default: where this
branch left ``main``; extracted with ``git archive`` into a temporary folder and put first on
``PYTHONPATH``), once with the working tree, each into its own evidence root. Then compares
every evidence JSON (key by key, in order) and every Parquet detail table (schema, rows, row
order), and prints one line per activity.

Left out of the comparison: values that measure the run rather than the data (keys named
``seconds`` or ending in ``_seconds``, the drill's ``timings``, the ``judged_at`` stamp) and the diff's ``method`` name (a new default method may
be named differently).

    .venv/bin/python bench/compare_evidence.py --size quick          # after bench/run.py --quick
    .venv/bin/python bench/compare_evidence.py --size full --before 30d5239

Exit code 0 when every activity's evidence is identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import run as bench  # noqa: E402  (paths, dates and the database of the benchmark data)

IGNORED_KEYS = {"seconds", "method", "judged_at", "timings"}  # judged_at: when the run judged; timings: the drill's own speed
# the alert outbox (``_alerts/``) also records when and from which run it alerted
ALERT_KEYS = {"at", "created_at", "run_id", "fingerprint", "dedupe_key"}


def activities(base: Path, dsn: str | None) -> list[tuple[str, str, Path, str | None]]:
    storage, econ, eqm = base / "storage" / "export", base / "economics" / "export", base / "replay" / "export"
    out = [("node_health_assessment", bench.DAY.isoformat(), storage, None),
           ("economics_sanity_check", bench.WEEK.isoformat(), econ, None),
           ("storage_replay_drill", bench.QUARTER.isoformat(), eqm, None)]
    if dsn:
        out += [("dual_write_diff", bench.DAY.isoformat(), storage, dsn),
                ("dual_write_verification", bench.DAY.replace(day=1).isoformat(), storage, dsn)]
    return out


def run_cli(src: Path | None, activity: str, partition: str, export: Path, evidence: Path, dsn: str | None) -> dict:
    env = dict(bench.ENV)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    cmd = [bench.PY, "-m", "qfs_assets.cli", "run", activity, "--partition", partition,
           "--export-root", str(export), "--evidence-root", str(evidence)]
    if dsn:
        cmd += ["--sor-url", dsn]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=evidence.parent)
    return {"code": p.returncode, "out": (p.stdout + p.stderr).strip().splitlines()[-2:], "s": round(time.perf_counter() - t0, 1)}


def _strip(doc, root: Path, ignored=IGNORED_KEYS):
    """The document without run-dependent keys, with the evidence root's path replaced by a token."""
    if isinstance(doc, dict):
        return {k: _strip(v, root, ignored) for k, v in doc.items()
                if k not in ignored and not k.endswith("_seconds")}  # e.g. the drill's timings.elapsed_seconds
    if isinstance(doc, list):
        return [_strip(v, root, ignored) for v in doc]
    if isinstance(doc, str):
        return doc.replace(str(root), "<evidence root>")
    return doc


def _first_difference(a, b, path="") -> str | None:
    if type(a) is not type(b):
        return f"{path}: {a!r} != {b!r}"
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{path}: keys {list(a)} != {list(b)}"
        for k in a:
            d = _first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = _first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def compare_roots(before: Path, after: Path) -> list[str]:
    """Every difference between two evidence roots (JSON documents and Parquet tables)."""
    import pyarrow.parquet as pq

    problems = []
    def listing(root: Path) -> list[Path]:
        return sorted(p.relative_to(root) for p in root.rglob("*")
                      if p.is_file() and not p.name.startswith(".") and "locks" not in p.relative_to(root).parts)

    files_b, files_a = listing(before), listing(after)
    if files_b != files_a:
        problems.append(f"files differ: only before {sorted(set(files_b) - set(files_a))}, only after {sorted(set(files_a) - set(files_b))}")
    for rel in sorted(set(files_b) & set(files_a)):
        b, a = before / rel, after / rel
        if rel.suffix == ".json":
            d = _first_difference(_strip(json.loads(b.read_text()), before), _strip(json.loads(a.read_text()), after), str(rel))
            if d:
                problems.append(d)
        elif rel.suffix == ".jsonl":
            lb = [_strip(json.loads(x), before, IGNORED_KEYS | ALERT_KEYS) for x in b.read_text().splitlines() if x.strip()]
            la = [_strip(json.loads(x), after, IGNORED_KEYS | ALERT_KEYS) for x in a.read_text().splitlines() if x.strip()]
            d = _first_difference(lb, la, str(rel))
            if d:
                problems.append(d)
        elif rel.suffix == ".parquet":
            tb, ta = pq.read_table(b), pq.read_table(a)
            if tb.schema != ta.schema:
                problems.append(f"{rel}: schema {tb.schema} != {ta.schema}")
            elif not tb.equals(ta):
                problems.append(f"{rel}: {tb.num_rows} rows before, {ta.num_rows} after, contents differ")
        elif b.read_bytes() != a.read_bytes():
            problems.append(f"{rel}: bytes differ")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default=None, help="commit of the previous version (default: merge-base with main)")
    ap.add_argument("--size", choices=("quick", "full"), default="quick")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("QFS_BENCH_DATA", "/tmp/qfs_bench")))
    ap.add_argument("--only", default="", help="comma-separated activity names (default: all with data)")
    ap.add_argument("--no-sor", action="store_true", help="leave out the dual-write activities")
    args = ap.parse_args()
    ref = args.before or subprocess.run(["git", "-C", str(ROOT), "merge-base", "HEAD", "main"], capture_output=True,
                                        text=True, check=True).stdout.strip()
    base = args.data / args.size
    if not (base / "storage" / "bench.json").exists():
        raise SystemExit(f"no benchmark data under {base}: run bench/run.py{' --quick' if args.size == 'quick' else ''} first")
    dsn = None if args.no_sor or not (base / "storage" / "pg.json").exists() else bench.dsn(args.size == "quick")
    work = Path(tempfile.mkdtemp(prefix="qfs_compare_"))
    src = work / "before_src"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "qfs_assets", "pyproject.toml"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    print(f"before: {ref} ({src}); after: the working tree {ROOT}; data {base}")
    failed = 0
    try:
        wanted = set(filter(None, args.only.split(",")))
        for activity, partition, export, sor in activities(base, dsn):
            if wanted and activity not in wanted:
                continue
            ev_b, ev_a = work / "before" / activity, work / "after" / activity
            ev_b.mkdir(parents=True)
            ev_a.mkdir(parents=True)
            rb = run_cli(src, activity, partition, export, ev_b, sor)
            ra = run_cli(None, activity, partition, export, ev_a, sor)
            problems = compare_roots(ev_b, ev_a) if rb["code"] == ra["code"] else [f"exit codes {rb['code']} != {ra['code']}"]
            if not any(ev_b.rglob("*.json")) and not any(ev_b.rglob("*.parquet")):
                problems.append("the previous version wrote no evidence: " + " / ".join(rb["out"]))
            files = sum(1 for p in ev_a.rglob("*") if p.is_file())
            verdict = "identical" if not problems else "DIFFERENT"
            print(f"{activity} {partition}: {verdict} ({files} evidence files; exit {ra['code']}; "
                  f"before {rb['s']} s, after {ra['s']} s)")
            for p in problems[:10]:
                print(f"    {p}")
            failed += bool(problems)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
