"""The demo's system of record as a table: the manifest it mirrors with drift injected, and a
reference comparison of a system of record with a manifest. Writing it to a database is
:mod:`qfs_assets.demo.sor_writer`."""

from __future__ import annotations

import random
from datetime import date

import pyarrow as pa

from qfs_assets.activities.dual_write.classify import classify
from qfs_assets.demo.config import DAY, MINUTE, DriftSpec, sha_hex
from qfs_assets.demo.sor_writer import SOR_ARROW_SCHEMA
from qfs_assets.windows import day_start_us


def build_sor_table(
    objects: pa.Table, as_of: date, seed: int, drift: DriftSpec | None = DriftSpec(), since: date | None = None
) -> tuple[pa.Table, dict[str, str]]:
    """The system of record mirroring a manifest snapshot (``objects`` of day ``as_of``),
    with ``drift`` injected. Returns (table of SOR_ARROW_SCHEMA, {object_id: category}).

    Deterministic in (manifest, as_of, seed, drift, since). Drift rows (not in flight) carry an
    ``updated_at`` at or before the snapshot's end; in-flight rows carry one after it. With
    ``since``, the drifted objects are taken among those last written on or before that day, so
    every difference is visible (and reaches 24 hours) from the same daily diff on.
    """
    cols = {c: objects.column(c).to_pylist() for c in SOR_ARROW_SCHEMA.names if c != "updated_at"}
    cols["updated_at"] = objects.column("updated_at").cast(pa.int64()).to_pylist()
    n = objects.num_rows
    diffs: dict[str, str] = {}
    keep = [True] * n
    extra: list[tuple] = []
    end = day_start_us(as_of) + DAY
    if drift is not None and n:
        rng = random.Random(seed * 1_000_003 + as_of.toordinal())
        live = [i for i in range(n) if not cols["deleted"][i]]
        if since is not None:
            cut = day_start_us(since) + DAY
            early = [i for i in live if cols["updated_at"][i] < cut]
            live = early if len(early) >= 16 else live
        n_inflight_existing = sum(1 for j in range(drift.in_flight) if j % 3 != 1)
        want = drift.missing_in_sor + drift.version_mismatch + drift.content_mismatch + n_inflight_existing
        picks = rng.sample(live, min(want, len(live)))
        it = iter(picks)

        def take(count: int) -> list[int]:
            return [x for x in (next(it, None) for _ in range(count)) if x is not None]

        for i in take(drift.missing_in_sor):
            keep[i] = False
            diffs[cols["object_id"][i]] = "missing_in_sor"
        for i in take(drift.version_mismatch):
            v = cols["version"][i]
            nv = v - 1 if v > 1 else v + 1
            cols["version"][i] = nv
            cols["content_hash"][i] = sha_hex(f"{seed}:{cols['object_id'][i]}:{nv}")
            if nv < v:  # a stale row: written before the manifest's last write
                cols["updated_at"][i] = min(cols["updated_at"][i] - MINUTE, end - MINUTE)
            diffs[cols["object_id"][i]] = "version_mismatch"
        for i in take(drift.content_mismatch):
            cols["content_hash"][i] = sha_hex(f"sor-drift:{seed}:{cols['object_id'][i]}")
            diffs[cols["object_id"][i]] = "content_mismatch"
        k_default = cols["data_shards"][live[0]] if live else 4
        n_default = cols["total_shards"][live[0]] if live else 6
        sizes = sorted(cols["size_bytes"][i] for i in live) or [1 << 30]
        median = sizes[len(sizes) // 2]
        for j in range(drift.in_flight):
            t = end + (4 + 7 * j) * MINUTE
            if j % 3 == 1:  # a new object the StorageEngine had not written by the snapshot
                oid = f"obj-inflight-{j // 3 + 1:04d}"
                extra.append((oid, 1, sha_hex(f"{seed}:{oid}:1"), median, k_default, n_default, t, False))
                diffs[oid] = "in_flight"
                continue
            got = take(1)
            if not got:
                continue
            i = got[0]
            cols["version"][i] += 1
            cols["updated_at"][i] = t
            if j % 3 == 0:  # an update after the snapshot
                cols["content_hash"][i] = sha_hex(f"{seed}:{cols['object_id'][i]}:{cols['version'][i]}")
            else:  # a delete after the snapshot
                cols["deleted"][i] = True
            diffs[cols["object_id"][i]] = "in_flight"
        for j in range(drift.missing_in_storage):
            oid = f"obj-ghost-{j + 1:04d}"
            extra.append((oid, 1, sha_hex(f"{seed}:{oid}:1"), median, k_default, n_default,
                          end - (37 + 53 * j) * MINUTE, False))
            diffs[oid] = "missing_in_storage"

    out = {c: [v for v, k in zip(cols[c], keep) if k] for c in SOR_ARROW_SCHEMA.names}
    for row in extra:
        for c, v in zip(SOR_ARROW_SCHEMA.names, row):
            out[c].append(v)
    arrays = [
        pa.array(out[f.name], type=pa.int64()).cast(f.type)
        if f.name == "updated_at"
        else pa.array(out[f.name], type=f.type)
        for f in SOR_ARROW_SCHEMA
    ]
    tbl = pa.Table.from_arrays(arrays, schema=SOR_ARROW_SCHEMA).sort_by("object_id")
    return tbl, dict(sorted(diffs.items()))


def compare_sor(sor: pa.Table, manifest: pa.Table, day: date) -> dict[str, str]:
    """Dual-write comparison of a system of record with the objects snapshot of ``day``, one
    object at a time with the activity's own rule table (:func:`classify`): {object_id:
    category} (DIFF_CATEGORIES), rows in flight (updated_at on either side at or after the
    day's end) reported as ``in_flight`` and not judged."""
    end = day_start_us(day) + DAY

    def rows(t: pa.Table) -> dict[str, dict]:
        t = t.select(list(SOR_ARROW_SCHEMA.names))
        t = t.set_column(6, "updated_at", t.column("updated_at").cast(pa.int64()))
        return {r["object_id"]: r for r in t.to_pylist()}

    s, m = rows(sor), rows(manifest)
    out: dict[str, str] = {}
    for oid in sorted(s.keys() | m.keys()):
        category = classify(s.get(oid), m.get(oid), end)
        if category is not None:
            out[oid] = category
    return out


#: The delayed write: the gateway recorded it (system of record) this long before the StorageEngine
#: applied it; the daily diffs see a ``missing_in_storage`` for three days, resolved after 72 hours.
DELAY_DAYS = 3
GATEWAY_AT = 10 * 60 * MINUTE  # 10:00 UTC on the start day


def delayed_write(sor: pa.Table, objects: pa.Table, start: date, exclude=()) -> tuple[pa.Table, str | None]:
    """The system of record with one write made 72 hours late by the StorageEngine.

    The object is the smallest id of ``objects`` (the final manifest) written once, on day
    ``start + 3``, and never touched again; its system of record row gets the gateway's time,
    10:00 on ``start``. Nothing else changes (``updated_at`` is not compared, so the final
    comparison is unchanged). Returns (table, object_id or None when there is no such object).
    """
    lo = day_start_us(start) + DELAY_DAYS * DAY
    hi = lo + DAY
    ids = objects.column("object_id").to_pylist()
    ver = objects.column("version").to_pylist()
    gone = objects.column("deleted").to_pylist()
    upd = objects.column("updated_at").cast(pa.int64()).to_pylist()
    skip = set(exclude)
    cands = sorted(o for o, v, d, u in zip(ids, ver, gone, upd) if v == 1 and not d and lo <= u < hi and o not in skip)
    if not cands:
        return sor, None
    oid = cands[0]
    at = day_start_us(start) + GATEWAY_AT
    col = sor.column("updated_at").cast(pa.int64()).to_pylist()
    sids = sor.column("object_id").to_pylist()
    col = [at if s == oid else u for s, u in zip(sids, col)]
    i = sor.schema.get_field_index("updated_at")
    return sor.set_column(i, sor.schema.field(i), pa.array(col, pa.int64()).cast(sor.schema.field(i).type)), oid
