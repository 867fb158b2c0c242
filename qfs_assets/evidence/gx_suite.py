"""The one adapter between QFS Assure and Great Expectations 1.x.

Suite in (criteria as :class:`~qfs_assets.evidence.model.CriterionSpec` data), verdicts out
(:class:`~qfs_assets.evidence.model.Criterion`). Nothing else in the project imports GX, so a
change of GX's API or ownership touches this file only.

- GX is imported lazily (3-4 s) and one ephemeral context is kept per process, with progress
  bars off; GX 1.7+ has no analytics to disable.
- GX judges a *compact* table (one row per partition, or per entity), never raw rows.
- ``mostly`` ignores NULLs, so every rule column also gets a not-null expectation: a NULL
  metric fails its criterion instead of passing silently.
- A GX expectation that could not run (missing column, engine error) comes back as
  ``success=False`` with ``exception_info``; it is reported as ``could_not_run``, apart from
  a criterion that ran and failed.
- GX's import (3-7 s of single-threaded Python) is kept off a run's critical path: by
  default :func:`prefetch` starts a helper *process* (:mod:`qfs_assets.evidence.gx_worker`)
  that imports GX on the other core while the run imports Dagster and scans its inputs;
  :func:`validate` sends it the judge table (Arrow IPC) and the criteria and reads the
  verdicts back. The helper runs exactly :func:`validate_local`, so the verdicts are the same;
  if it cannot start or fails, :func:`validate` judges in this process instead.
  ``QFS_GX_WORKER=0`` turns the helper off (GX is then imported in a background thread).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from qfs_assets.evidence.model import Criterion, CriterionSpec, Rule

if TYPE_CHECKING:
    import pyarrow as pa

_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}


def _context():
    """A process-wide ephemeral GX context with one pandas data source."""
    if "ctx" not in _STATE:
        for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
            logging.getLogger(name).setLevel(logging.ERROR)
        # No stderr redirection here: it swaps sys.stderr for the whole process, and this runs
        # in a background thread (prefetch) while the CLI may print a bad-input line.
        warnings.filterwarnings("ignore", module=r"great_expectations(\..*)?")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = ctx.data_sources.add_pandas("qfs_assure")
        _STATE.update(gx=gx, ctx=ctx, source=source)
    return _STATE["gx"], _STATE["ctx"], _STATE["source"]


def _worker_wanted() -> bool:
    return os.environ.get("QFS_GX_WORKER", "1").strip().lower() not in ("0", "false", "no", "off")


class _Worker:
    """The GX helper process: length-prefixed pickles over its stdin and stdout."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # the folder holding qfs_assets
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.setdefault("PYTHONWARNINGS", "ignore")
        env.setdefault("OPENBLAS_NUM_THREADS", "1")  # GX judges one-row tables: no BLAS thread pool to start
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qfs_assets.evidence.gx_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, close_fds=True,
        )
        self.answered = False

    def call(self, request: tuple) -> Any:
        data = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.write(struct.pack("<Q", len(data)) + data)
        self.proc.stdin.flush()
        head = self.proc.stdout.read(8)
        if len(head) != 8:
            raise EOFError("the GX helper process ended")
        (n,) = struct.unpack("<Q", head)
        ok, value = pickle.loads(self.proc.stdout.read(n))
        self.answered = True
        if not ok:
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        """Close its stdin (it then exits at once); a helper that never answered (still importing
        GX: a run that failed early, a usage error) is killed rather than waited for."""
        with contextlib.suppress(Exception):
            self.proc.stdin.close()
        if self.answered:
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=5)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()  # reaped: its CPU time is counted with this process's children


def _stop_worker() -> None:
    worker = _STATE.pop("worker", None)
    if worker is not None:
        worker.close()


def prefetch() -> None:
    """Get GX ready while the run does other work: start the helper process (default), or build
    the GX context in a background thread (``QFS_GX_WORKER=0``, or when the helper cannot start).

    Importing GX costs 3-7 s of mostly pure-Python work per process. In a thread it competes
    for the GIL with everything but the DuckDB scans; in the helper process it runs beside the
    whole run. Call it as early as a run knows it will be judged. ``validate`` waits for it.
    Failures are left for ``validate`` to handle.
    """
    if "ctx" in _STATE or "worker" in _STATE or _STATE.get("prefetching"):
        return
    if _worker_wanted():
        try:
            _STATE["worker"] = _Worker()
        except Exception:  # noqa: BLE001 - no helper: fall back to the thread
            _STATE.pop("worker", None)
        else:
            import atexit

            atexit.register(_stop_worker)
            return
    _STATE["prefetching"] = True

    def run() -> None:
        with _LOCK:
            try:
                _context()
            except Exception:  # noqa: BLE001 - validate() will try again and raise
                pass

    threading.Thread(target=run, name="gx-prefetch", daemon=True).start()


def _expectations(spec: CriterionSpec, rule_index: int, rule: Rule) -> list:
    import great_expectations.expectations as gxe

    meta = {"criterion": spec.name, "rule": rule.describe()}
    out = [gxe.ExpectColumnValuesToNotBeNull(column=rule.column, meta=meta)]
    if rule.equals is not None:
        out.append(gxe.ExpectColumnValuesToBeInSet(column=rule.column, value_set=[rule.equals], meta=meta))
    else:
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=rule.column,
                min_value=rule.min_value,
                max_value=rule.max_value,
                strict_min=rule.strict_min,
                strict_max=rule.strict_max,
                meta=meta,
            )
        )
    return out


def _exception_text(result) -> str | None:
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "exception")
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message") or "exception").splitlines()[0]
    return None


def observed_value(spec: CriterionSpec, row: dict[str, Any]) -> Any:
    if len(spec.observed) == 1:
        return row.get(spec.observed[0])
    return {k: row.get(k) for k in spec.observed}


def validate(suite_name: str, judge_table: "pa.Table", specs: Sequence[CriterionSpec],
             metrics: dict[str, Any] | None = None) -> list[Criterion]:
    """Validate ``judge_table`` against the criteria; one :class:`Criterion` per spec, in order.

    Observed values are read from ``metrics`` (the evidence's metrics, with their JSON types)
    where they hold the key, else from the judge table's single row. Runs in the GX helper
    process when :func:`prefetch` started one, else (or if the helper fails) in this process.
    """
    worker = _STATE.get("worker")
    if worker is not None:
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, judge_table.schema) as w:
            w.write_table(judge_table)
        try:
            with _LOCK:
                return worker.call(("validate", suite_name, sink.getvalue().to_pybytes(), list(specs), metrics))
        except Exception:  # noqa: BLE001 - the helper died or misbehaved: judge here instead
            _stop_worker()
    return validate_local(suite_name, judge_table, specs, metrics)


def validate_local(suite_name: str, judge_table: "pa.Table", specs: Sequence[CriterionSpec],
                   metrics: dict[str, Any] | None = None) -> list[Criterion]:
    """:func:`validate` in this process (what the GX helper process runs)."""
    df = judge_table.to_pandas()
    with _LOCK, contextlib.redirect_stderr(io.StringIO()):
        gx, ctx, source = _context()
        name = f"{suite_name}_{uuid.uuid4().hex[:8]}"
        asset = source.add_dataframe_asset(name)
        try:
            batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": df})
            suite = gx.ExpectationSuite(name=name)
            for spec in specs:
                for i, rule in enumerate(spec.rules):
                    for exp in _expectations(spec, i, rule):
                        suite.add_expectation(exp)
            suite = ctx.suites.add(suite)
            results = batch.validate(suite).results
        finally:
            with contextlib.suppress(Exception):
                ctx.suites.delete(name)
            with contextlib.suppress(Exception):
                source.delete_asset(name)

    by_criterion: dict[str, list] = {s.name: [] for s in specs}
    for r in results:
        by_criterion[r.expectation_config.meta["criterion"]].append(r)
    first_row = df.iloc[0].to_dict() if len(df) == 1 else {}
    if first_row and metrics:
        first_row.update({k: v for k, v in metrics.items() if k in {o for s in specs for o in s.observed}})
    verdicts = []
    for spec in specs:
        rs = by_criterion[spec.name]
        errors = [e for e in (_exception_text(r) for r in rs) if e]
        failed_rules = sorted({r.expectation_config.meta["rule"] for r in rs if not r.success})
        passed = bool(rs) and not errors and all(r.success for r in rs)
        observed = observed_value(spec, first_row) if first_row else {
            "rows": len(df), "failing_rows": max((r.result or {}).get("unexpected_count", 0) or 0 for r in rs) if rs else None}
        verdicts.append(
            Criterion(
                name=spec.name,
                passed=passed,
                observed=_plain(observed),
                threshold=spec.threshold,
                could_not_run=bool(errors),
                detail=("could not run: " + errors[0]) if errors else (None if passed else "failed: " + "; ".join(failed_rules)),
            )
        )
    return verdicts


def _plain(value: Any) -> Any:
    """numpy/pandas scalars to plain Python for JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    try:
        import pandas as pd

        if value is pd.NA or (isinstance(value, float) and value != value):
            return None
    except ImportError:  # pragma: no cover
        pass
    return value
