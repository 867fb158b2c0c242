"""Deterministic demo QFS deployment: a contract-conformant storage export plus a system of record.

:func:`generate` is the entry point; the work is split by concern:

- :mod:`~qfs_assets.demo.config`: units, tariffs, reward policy, identifiers, :class:`DemoConfig`, :class:`DriftSpec`;
- :mod:`~qfs_assets.demo.incidents`: the incident schedule (:data:`INCIDENT_PLAN`) and the :class:`Incident` list;
- :mod:`~qfs_assets.demo.simulation`: the network's operations day by day from genesis;
- :mod:`~qfs_assets.demo.state`: the contract's state and the eight event types (validated, applied, hashed);
- :mod:`~qfs_assets.demo.rowtext`: state rows and payloads as canonical JSON text;
- :mod:`~qfs_assets.demo.eqm_log`: the EQM log, its hash chain and the checkpoints;
- :mod:`~qfs_assets.demo.ledgers`: the ``fees`` and ``rewards`` ledgers and the reward policy;
- :mod:`~qfs_assets.demo.export_writer`: the Parquet files of the export;
- :mod:`~qfs_assets.demo.sor_table` / :mod:`~qfs_assets.demo.sor_writer`: the system of record
  (the manifest with drift injected) and writing it to a database;
- :mod:`~qfs_assets.demo.deployment`: :class:`DemoDeployment`, what was generated.

The simulation validates every event and applies it to its own in-memory state (following
the effect table of ``qfs-export-v1`` to the letter) before it is logged, so the log never
holds an invalid event. At each day's end the day's tables are written and a checkpoint is
taken at the day's last event with roots maintained incrementally (the ``SetHash`` rule),
independently of any replay engine. Memory is the state plus one day.

Layout written under ``<out_dir>``::

    export/<table>/<snapshot_date|date>=YYYY-MM-DD/part-0.parquet   (nodes objects shards
                                                                     proofs fees rewards eqm)
    export/checkpoints/part-0.parquet
    sor.sqlite                         (default system of record; any SQLAlchemy URL accepted)
    deployment.json                    (what was generated: days, incidents, expected diffs)

Same :class:`DemoConfig` (seed included) => byte-identical files: fixed timestamps, a seeded
``random.Random``, no wall clock, no iteration over hash-ordered sets.

Incidents are on fixed day offsets from the start (:data:`INCIDENT_PLAN`); with the default
start (Monday 2026-03-02, 42 days) they fall on the dates listed in :data:`DEFAULT_INCIDENT_DATES`.
Benchmark / manual run: ``python -m qfs_assets.demo OUT [--nodes N --objects N --days N ...]``.
No Dagster imports here.
"""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from qfs_assets.contract.hashing import state_root
from qfs_assets.demo.config import DIFF_CATEGORIES, DemoConfig, DriftSpec, node_id, object_id
from qfs_assets.demo.deployment import DemoDeployment
from qfs_assets.demo.incidents import (DEFAULT_INCIDENT_DATES, INCIDENT_PLAN, Incident, Schedule, delayed_write_incident,
                                      dual_write_incident, feed_incidents, incident_list, missed_run_incident)
from qfs_assets.demo.simulation import Simulation
from qfs_assets.demo.sor_table import build_sor_table, compare_sor, delayed_write
from qfs_assets.demo.storage_errors import write_storage_errors
from qfs_assets.demo.sor_writer import normalize_url, write_sor
from qfs_assets.evidence.atomic import write_text_atomic

__all__ = [
    "DemoConfig",
    "DriftSpec",
    "DemoDeployment",
    "Incident",
    "INCIDENT_PLAN",
    "DEFAULT_INCIDENT_DATES",
    "DIFF_CATEGORIES",
    "generate",
    "build_sor_table",
    "compare_sor",
    "incident_list",
    "node_id",
    "object_id",
]


def demo_sor_table(config: DemoConfig, manifest, start, as_of):
    """(system of record table, expected diffs, delayed object id or None) of the demo at ``as_of``."""
    drift = config.drift if config.dual_write_drift else None
    tbl, diffs = build_sor_table(manifest, as_of, config.seed, drift, since=start)
    delayed = None
    if config.delayed_write:
        tbl, delayed = delayed_write(tbl, manifest, start, exclude=diffs)
    return tbl, diffs, delayed


def generate(
    out_dir: str | Path,
    config: DemoConfig = DemoConfig(),
    sor_url: str | None = None,
    *,
    sor_schema: str | None = None,
    overwrite: bool = True,
) -> DemoDeployment:
    """Generate the demo deployment under ``out_dir``: ``export/`` (the storage export),
    ``deployment.json`` (this function's result), and the system of record at ``sor_url``
    (default ``sqlite:///<out_dir>/sor.sqlite``; ``sor_schema``: a PostgreSQL schema, created
    when absent). An existing ``out_dir/export`` is replaced when ``overwrite`` (the default),
    else an error."""
    config.validate()
    out = Path(out_dir).resolve()
    export_root = out / "export"
    if export_root.exists():
        if not overwrite:
            raise FileExistsError(export_root)
        shutil.rmtree(export_root)
    export_root.mkdir(parents=True)

    # The state is millions of small containers without cycles: the cyclic GC would only
    # rescan them over and over (it roughly doubled the run time), so it is paused meanwhile.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        sim = Simulation(config, export_root)
        for i, d in enumerate(sim.days):
            sim.run_day(i, d)
        sim.finish()
        days, counts, roots = list(sim.days), dict(sim.counts), sim.state.roots()
        incidents, last_objects_path = sim.incidents(), sim.last_objects_path
        del sim  # free the state before the collector runs again
    finally:
        if gc_was_enabled:
            gc.enable()

    schedule = Schedule.of(config)
    if config.storage_errors:
        counts["storage_errors"], found = write_storage_errors(config, export_root, schedule)
        incidents += feed_incidents(config, found)
    else:
        counts.pop("storage_errors", None)

    url = normalize_url(sor_url) if sor_url else f"sqlite:///{out / 'sor.sqlite'}"
    end = days[-1]
    final_manifest = pq.read_table(last_objects_path)
    sor_tbl, diffs, delayed = demo_sor_table(config, final_manifest, days[0], end)
    if compare_sor(sor_tbl, final_manifest, end) != diffs:  # pragma: no cover - a generator bug
        raise AssertionError("the system of record's drift differs from the expected diffs")
    del final_manifest
    write_sor(url, sor_tbl, schema=sor_schema)

    if config.dual_write_drift:
        incidents.append(dual_write_incident(config, end, diffs))
    if delayed:
        incidents.append(delayed_write_incident(config, days[0], delayed))
    missed = missed_run_incident(config, schedule)
    if missed:
        incidents.append(missed)
    dep = DemoDeployment(
        out_dir=out, export_root=export_root, sor_url=url, sor_schema=sor_schema, start=days[0], end=end, days=days,
        incidents=incidents, expected_dual_write_diffs=diffs, checkpoint_count=counts["checkpoints"],
        event_count=counts["eqm"], row_counts=counts, final_state_root=state_root(*roots), config=config,
    )
    write_text_atomic(out / "deployment.json", json.dumps(dep.to_json(), indent=2, sort_keys=True) + "\n")
    return dep
