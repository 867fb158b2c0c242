"""The dual-write classification of one object: one ordered rule table, three forms.

An object is a pair ``(sor, storage)``: its row in the system of record and its row in the
manifest, either absent. The rules (qfs-export-v1 "System of record", evidence-v1
``dual_write_verification``), first match wins:

====  ============================================================  ======================
 1    ``updated_at >= snapshot end`` on either side                  ``in_flight``
 2    SoR row only, a tombstone                                       consistent
 3    SoR row only                                                    ``missing_in_storage``
 4    manifest row only, a tombstone                                  consistent
 5    manifest row only                                               ``missing_in_sor``
 6    both rows tombstones (whatever their versions or contents)      consistent
 7    versions differ                                                 ``version_mismatch``
 8    content_hash, size_bytes, data_shards, total_shards or deleted  ``content_mismatch``
      differ
 --   otherwise                                                       consistent
====  ============================================================  ======================

The snapshot end is the next day 00:00 UTC (a day is ``[00:00, 24:00)``), so a row stamped
exactly at the end is in flight. An object in flight is counted once, whatever its sides, and
neither judged nor counted as an object: a side's row counts in ``sor_objects`` /
``storage_objects`` when it is present, not a tombstone and the object is not in flight
(:data:`LIVE`).

:data:`RULES` is data (small predicate trees); the forms are generated from it, so they cannot
drift apart:

* :func:`classify` -- one pair of rows (mappings with the ``qfs_objects`` columns, or None);
* :func:`classify_arrow` -- a joined Arrow table (columns ``sor_<column>`` and
  ``storage_<column>``, a side absent where its ``version`` is null), vectorised;
* :func:`classify_sql` / :func:`live_sql` -- a SQL ``CASE`` expression and predicates over such
  columns (DuckDB and PostgreSQL).

Values of a present row are never null (the readers reject nulls); the forms still treat
nulls alike (``IS DISTINCT FROM`` semantics, a null ``deleted`` or ``updated_at`` is false /
not in flight) so they agree on any input. Pure: no Dagster, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

import pyarrow as pa
import pyarrow.compute as pc

from qfs_assets.sqltext import quote_literal

IN_FLIGHT = "in_flight"
#: The four inconsistency categories, in report order.
CATEGORIES = ("missing_in_storage", "missing_in_sor", "version_mismatch", "content_mismatch")
#: Fields compared at equal versions (``content_mismatch``), in report order.
CONTENT_FIELDS = ("content_hash", "size_bytes", "data_shards", "total_shards", "deleted")
SIDES = ("sor", "storage")


# -- the predicate language ----------------------------------------------------------------------

@dataclass(frozen=True)
class Present:
    """The side has a row."""
    side: str


@dataclass(frozen=True)
class Deleted:
    """The side has a row and it is a tombstone."""
    side: str


@dataclass(frozen=True)
class InFlight:
    """The side has a row written at or after the snapshot's end."""
    side: str


@dataclass(frozen=True)
class Differs:
    """Both sides have a row and ``field`` differs (nulls compare as values)."""
    field: str


@dataclass(frozen=True)
class Not:
    arg: "Pred"


@dataclass(frozen=True)
class All:
    args: tuple["Pred", ...]


@dataclass(frozen=True)
class AnyOf:
    args: tuple["Pred", ...]


Pred = Union[Present, Deleted, InFlight, Differs, Not, All, AnyOf]


@dataclass(frozen=True)
class Rule:
    category: str | None  # None: consistent
    when: Pred


def _only(side: str) -> Pred:
    other = "storage" if side == "sor" else "sor"
    return All((Present(side), Not(Present(other))))


#: Either side in flight.
IN_FLIGHT_WHEN: Pred = AnyOf((InFlight("sor"), InFlight("storage")))

#: The rule table, first match wins; no match: consistent.
RULES: tuple[Rule, ...] = (
    Rule(IN_FLIGHT, IN_FLIGHT_WHEN),
    Rule(None, All((_only("sor"), Deleted("sor")))),
    Rule("missing_in_storage", _only("sor")),
    Rule(None, All((_only("storage"), Deleted("storage")))),
    Rule("missing_in_sor", _only("storage")),
    Rule(None, All((Deleted("sor"), Deleted("storage")))),
    Rule("version_mismatch", Differs("version")),
    Rule("content_mismatch", AnyOf(tuple(Differs(f) for f in CONTENT_FIELDS))),
)

#: Per side: the row counts as an object (``sor_objects`` / ``storage_objects``).
LIVE: dict[str, Pred] = {
    side: All((Not(IN_FLIGHT_WHEN), Present(side), Not(Deleted(side)))) for side in SIDES
}

_CHECKED = {r.category for r in RULES if r.category is not None}
assert _CHECKED == {IN_FLIGHT, *CATEGORIES}, _CHECKED  # every category has a rule, and no other


# -- one pair of rows (Python) -------------------------------------------------------------------

Row = Mapping[str, Any]


def _py(p: Pred, rows: dict[str, Row | None], end: Any) -> bool:
    if isinstance(p, Present):
        return rows[p.side] is not None
    if isinstance(p, Deleted):
        r = rows[p.side]
        return r is not None and bool(r["deleted"])
    if isinstance(p, InFlight):
        r = rows[p.side]
        return r is not None and r["updated_at"] is not None and r["updated_at"] >= end
    if isinstance(p, Differs):
        a, b = rows["sor"], rows["storage"]
        return a is not None and b is not None and a[p.field] != b[p.field]
    if isinstance(p, Not):
        return not _py(p.arg, rows, end)
    if isinstance(p, All):
        return all(_py(x, rows, end) for x in p.args)
    if isinstance(p, AnyOf):
        return any(_py(x, rows, end) for x in p.args)
    raise TypeError(p)  # pragma: no cover


def classify(sor: Row | None, storage: Row | None, snapshot_end: Any) -> str | None:
    """The category of one object (``in_flight`` or one of :data:`CATEGORIES`), None when
    consistent. ``snapshot_end`` is compared with ``updated_at`` as given (datetimes with
    datetimes, integer microseconds with integers)."""
    if sor is None and storage is None:
        raise ValueError("an object needs a row on at least one side")
    rows = {"sor": sor, "storage": storage}
    for rule in RULES:
        if _py(rule.when, rows, snapshot_end):
            return rule.category
    return None


def is_live(side: str, sor: Row | None, storage: Row | None, snapshot_end: Any) -> bool:
    """Whether ``side``'s row counts as an object (not deleted, object not in flight)."""
    return _py(LIVE[side], {"sor": sor, "storage": storage}, snapshot_end)


# -- a joined Arrow table (vectorised) ----------------------------------------------------------

class _ArrowForm:
    """Predicates over a joined table as boolean arrays without nulls, leaves computed once."""

    def __init__(self, j: pa.Table, end_us: int) -> None:
        self.j = j
        self.end = pa.scalar(end_us, pa.int64())  # a timestamp scalar would import pandas
        self.cache: dict[Pred, Any] = {}

    def __call__(self, p: Pred):
        got = self.cache.get(p)
        if got is None:
            got = self.cache[p] = self._eval(p)
        return got

    def _eval(self, p: Pred):
        j = self.j
        if isinstance(p, Present):
            return pc.is_valid(j[f"{p.side}_version"])
        if isinstance(p, Deleted):
            return pc.and_(self(Present(p.side)), pc.fill_null(j[f"{p.side}_deleted"], False))
        if isinstance(p, InFlight):
            return pc.fill_null(pc.greater_equal(pc.cast(j[f"{p.side}_updated_at"], pa.int64()), self.end), False)
        if isinstance(p, Differs):
            a, b = j[f"sor_{p.field}"], j[f"storage_{p.field}"]
            distinct = pc.fill_null(pc.not_equal(a, b), pc.xor(pc.is_null(a), pc.is_null(b)))
            return pc.and_(pc.and_(self(Present("sor")), self(Present("storage"))), distinct)
        if isinstance(p, Not):
            return pc.invert(self(p.arg))
        if isinstance(p, (All, AnyOf)):
            op = pc.and_ if isinstance(p, All) else pc.or_
            out = self(p.args[0])
            for x in p.args[1:]:
                out = op(out, self(x))
            return out
        raise TypeError(p)  # pragma: no cover


@dataclass
class ArrowClassification:
    category: pa.ChunkedArray  # per row: the category, null where consistent
    hits: dict[str, Any]  # category -> boolean mask of its rows (no nulls)
    live: dict[str, Any]  # side -> boolean mask of the rows that count as objects (:data:`LIVE`)


def classify_arrow(j: pa.Table, snapshot_end_us: int) -> ArrowClassification:
    """Classify every row of a joined table (columns ``sor_<c>``/``storage_<c>`` for the
    ``qfs_objects`` columns but ``object_id``; a side is absent where its ``version`` is null)."""
    form = _ArrowForm(j, snapshot_end_us)
    category = pa.chunked_array([pa.nulls(len(j), pa.string())])
    hits: dict[str, Any] = {}
    undecided = None
    for i, rule in enumerate(RULES):
        when = form(rule.when)
        hit = when if undecided is None else pc.and_(undecided, when)
        if rule.category is not None:
            hits[rule.category] = hit
            if pc.any(hit).as_py():
                category = pc.if_else(hit, pa.scalar(rule.category), category)
        if i + 1 < len(RULES):
            undecided = pc.invert(when) if undecided is None else pc.and_(undecided, pc.invert(when))
    return ArrowClassification(category, hits, {side: form(LIVE[side]) for side in SIDES})


# -- SQL ---------------------------------------------------------------------------------------

def _sql(p: Pred, col: Callable[[str, str], str], present: Mapping[str, str], end: str) -> str:
    if isinstance(p, Present):
        return present[p.side]
    if isinstance(p, Deleted):
        return f"({present[p.side]} AND coalesce({col(p.side, 'deleted')}, false))"
    if isinstance(p, InFlight):
        return f"coalesce({col(p.side, 'updated_at')} >= {end}, false)"
    if isinstance(p, Differs):
        return (f"({present['sor']} AND {present['storage']} AND "
                f"{col('sor', p.field)} IS DISTINCT FROM {col('storage', p.field)})")
    if isinstance(p, Not):
        return f"(NOT {_sql(p.arg, col, present, end)})"
    if isinstance(p, (All, AnyOf)):
        op = " AND " if isinstance(p, All) else " OR "
        return "(" + op.join(_sql(x, col, present, end) for x in p.args) + ")"
    raise TypeError(p)  # pragma: no cover


def _default_col(side: str, field: str) -> str:
    return f"{side}_{field}"


_DEFAULT_PRESENT = {"sor": "s_present", "storage": "m_present"}


def classify_sql(snapshot_end_sql: str, *, consistent: str = "NULL",
                 col: Callable[[str, str], str] = _default_col,
                 present: Mapping[str, str] = _DEFAULT_PRESENT) -> str:
    """The rule table as a SQL ``CASE`` expression yielding the category (``consistent``, a SQL
    expression, where no category applies). ``snapshot_end_sql`` is a SQL expression of the
    snapshot's end comparable with ``updated_at`` (e.g. a ``TIMESTAMPTZ`` literal); ``col``
    names a side's column (default ``sor_<c>``/``storage_<c>``); ``present`` gives the boolean
    expression of each side's presence (default ``s_present``/``m_present``)."""
    whens = [f"WHEN {_sql(r.when, col, present, snapshot_end_sql)} THEN "
             + (quote_literal(r.category) if r.category is not None else consistent) for r in RULES]
    return "CASE " + " ".join(whens) + f" ELSE {consistent} END"


def live_sql(side: str, snapshot_end_sql: str, *, col: Callable[[str, str], str] = _default_col,
             present: Mapping[str, str] = _DEFAULT_PRESENT) -> str:
    """SQL predicate: ``side``'s row counts as an object (:data:`LIVE`)."""
    return _sql(LIVE[side], col, present, snapshot_end_sql)
