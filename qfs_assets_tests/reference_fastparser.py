"""The per-event reference engine's DuckDB payload parser: FROZEN, not part of the runtime.

Moved out of ``qfs_assets/replay/payloads.py`` with the reference engine (``reference_engine.py``,
which says why it is kept): only that engine and its tests use it. The columnar engine parses
canonical payloads in compiled code (``qfs_assets/replay/kernels.py``) and leaves every other
payload to ``qfs_assets.replay.payloads.parse_payload``, as this parser does.

``FastParser``: DuckDB's ``from_json`` over a whole Arrow batch of one event type, followed by a
proof that the row was parsed exactly: every field is non-null (and in range), and the canonical
JSON text of the parsed fields, rebuilt in SQL with the strings written raw between quotes,
equals the payload byte for byte. Then the payload *is* the canonical JSON of those fields: a
JSON string token holding a quote, a backslash or a control character can only be written with
an escape (yyjson rejects raw control characters), and an escape is never equal to the raw
character the rebuilt text holds. Canonical JSON round-trips, so ``json.loads(payload)`` is
exactly the parsed fields. DuckDB's lenient casts ("5" -> 5, 1.5 -> 2, a nested object read as a
string, duplicate keys, trailing commas, ...) can never produce a rebuilt text equal to the
payload. Every other row (non-canonical key order or spacing, escapes, extra fields, bad types,
invalid JSON) goes to ``parse_payload``, so the engine's answer never depends on which parser ran
(``test_replay_engine`` checks this on fuzzed payloads).
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
from typing import Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qfs_assets.replay.payloads import _INT_RANGES, _STR, _STR_OR_NULL, EVENT_FIELDS, EVENT_TYPES
from qfs_assets.sqltext import quote_literal

# The fields the apply loop reads, in the order of the tuples the parsers hand it. The other
# fields (fee_charged's object_id and operation, reward_paid's epoch and kind) are validated
# but never enter the state, so they are not converted to Python objects.
APPLY_FIELDS: dict[str, tuple[str, ...]] = {et: tuple(n for n, _ in f) for et, f in EVENT_FIELDS.items()}
APPLY_FIELDS["fee_charged"] = ("tx_id", "account_id", "amount_atr")
APPLY_FIELDS["reward_paid"] = ("reward_id", "node_id", "amount_nod")
APPLY_INDEX: dict[str, tuple[int, ...]] = {
    et: tuple([n for n, _ in EVENT_FIELDS[et]].index(f) for f in fs) for et, fs in APPLY_FIELDS.items()
}
# Low-cardinality string fields: converted through an Arrow dictionary and interned, so the
# state holds one string object per node / account / object instead of one per event.
_DICT_FIELDS = frozenset({"node_id", "from_node_id", "to_node_id", "account_id", "object_id", "status", "region"})


_DUCK_TYPE = {_STR: "VARCHAR", _STR_OR_NULL: "VARCHAR", "int64": "BIGINT", "int32": "BIGINT", "int16": "BIGINT"}


def _canonical_sql(fields: Sequence[tuple[str, str]], extra: Sequence[tuple[str, str]] = ()) -> str:
    """SQL text expression: canonical JSON of the struct ``s`` (plus constant ``extra`` members).

    Built with ``concat`` (one allocation; a NULL argument reads as ''). Strings are written
    between quotes without escaping: the equality with the payload is what proves them free of
    characters that need escaping (see the module doc).
    """
    members = [(name, kind) for name, kind in fields] + [(n, "const:" + lit) for n, lit in extra]
    members.sort(key=lambda m: m[0])
    args: list[str] = []
    lit = ""
    for i, (name, kind) in enumerate(members):
        lit += ("{" if i == 0 else ",") + json.dumps(name) + ":"
        if kind.startswith("const:"):
            lit += kind[6:]
        elif kind == _STR:
            args += [quote_literal(lit + '"'), f"s.{name}"]
            lit = '"'
        elif kind == _STR_OR_NULL:
            args += [quote_literal(lit), f"CASE WHEN s.{name} IS NULL THEN 'null' ELSE concat('\"', s.{name}, '\"') END"]
            lit = ""
        else:
            args += [quote_literal(lit), f"CAST(s.{name} AS VARCHAR)"]
            lit = ""
    args.append(quote_literal(lit + "}"))
    return "concat(" + ", ".join(args) + ")"


def _checks_sql(fields: Sequence[tuple[str, str]]) -> str:
    conds = []
    for name, kind in fields:
        if kind != _STR_OR_NULL:
            conds.append(f"s.{name} IS NOT NULL")
        if kind in ("int32", "int16"):
            lo, hi = _INT_RANGES[kind]
            conds.append(f"s.{name} BETWEEN {lo} AND {hi}")
    return " AND ".join(conds)


# Row text (canonical JSON of the state row an event writes) for the events whose row is a
# pure function of the payload: its hash is computed before the apply loop, vectorised.
# shard_placed needs none: its payload has exactly the shard row's fields, so the row text is
# the (canonical) payload itself.
ROW_TEXT_SQL = {
    "node_registered": _canonical_sql(EVENT_FIELDS["node_registered"], [("status", '"active"')]),
    "object_written": _canonical_sql(EVENT_FIELDS["object_written"], [("deleted", "false")]),
}


def _query(event_type: str) -> str:
    fields = EVENT_FIELDS[event_type]
    struct = "{" + ",".join(f'"{n}":"{_DUCK_TYPE[k]}"' for n, k in fields) + "}"
    cols = ", ".join(f"s.{n} AS {n}" for n in APPLY_FIELDS[event_type])
    rt = ROW_TEXT_SQL.get(event_type)
    rt_col = f", {rt} AS rt" if rt else ""
    return (
        f"SELECT i, coalesce({_checks_sql(fields)} AND {_canonical_sql(fields)} = p, false) AS ok, {cols}{rt_col}"
        f" FROM (SELECT i, p, TRY(from_json(p, {quote_literal(struct)})) AS s"
        f" FROM {{source}} WHERE c = {EVENT_TYPES.index(event_type)})"
    )


QUERIES = {et: _query(et) for et in EVENT_TYPES}
_VIEW_IDS = itertools.count()


_BASE_CON = None
_BASE_LOCK = threading.Lock()


def _cursor():
    """A new DuckDB connection to one process-wide in-memory database (cheap to open)."""
    global _BASE_CON
    with _BASE_LOCK:
        if _BASE_CON is None:
            _BASE_CON = duckdb.connect(":memory:")
            _BASE_CON.execute("SET threads = 1")
            _BASE_CON.execute("SET preserve_insertion_order = true")
        return _BASE_CON.cursor()


class FastParser:
    """Parses the payloads of a whole batch with DuckDB, one query per event type (see module doc)."""

    def __init__(self) -> None:
        self._con = _cursor()
        self._view = f"__qfs_payloads_{next(_VIEW_IDS)}"
        self._queries = {et: q.replace("{source}", self._view) for et, q in QUERIES.items()}

    def close(self) -> None:
        self._con.close()

    def parse_batch(self, payload: pa.Array, codes: np.ndarray, wanted: Sequence[tuple[str, np.ndarray]]
                    ) -> dict[str, tuple[np.ndarray, list[list], pa.Array | None, np.ndarray]]:
        """Parse the rows ``rows`` (ascending) of each ``(event_type, rows)`` in ``wanted``.

        ``codes`` holds every batch row's index in ``EVENT_TYPES``. For each event type returns
        ``(ok_rows, columns, row_texts, slow_rows)``: the batch rows parsed exactly, one Python
        list per field (``APPLY_FIELDS`` order) for them, the Arrow string array of their
        state-row texts (None when there is none or it is the payload itself), and the batch
        rows left for ``parse_payload``.
        """
        return self.unpack(self.query(payload, codes, wanted))

    def query(self, payload: pa.Array, codes: np.ndarray, wanted: Sequence[tuple[str, np.ndarray]]
              ) -> dict[str, tuple[np.ndarray, pa.Table]]:
        """The DuckDB half of ``parse_batch`` (releases the GIL; may run in another thread):
        ``{event_type: (rows, result table)}``, for ``unpack``."""
        n = len(payload)
        tbl = pa.table({"i": pa.array(np.arange(n, dtype=np.int64)), "c": pa.array(codes.astype(np.int8)),
                        "p": payload})
        con = self._con
        out = {}
        con.register(self._view, tbl)
        try:
            for event_type, rows in wanted:
                try:
                    res = con.sql(self._queries[event_type]).to_arrow_table()
                except duckdb.Error:  # e.g. bytes that are not UTF-8: leave the type to parse_payload
                    continue
                out[event_type] = (rows, res)
        finally:
            con.unregister(self._view)
        return out

    def unpack(self, results: dict[str, tuple[np.ndarray, pa.Table]]
               ) -> dict[str, tuple[np.ndarray, list[list], pa.Array | None, np.ndarray]]:
        """The Python half of ``parse_batch``: the answer of ``query`` as Python columns."""
        return {et: self._unpack(et, rows, res) for et, (rows, res) in results.items()}

    @staticmethod
    def _unpack(event_type: str, rows: np.ndarray, res: pa.Table):
        i_all = res.column("i").to_numpy()
        if not np.array_equal(i_all, rows):  # DuckDB keeps the insertion order; make sure
            raise RuntimeError("DuckDB returned payload rows out of order")
        ok = res.column("ok").to_numpy()
        if ok.all():
            good = res
            slow = np.empty(0, dtype=np.int64)
        else:
            good = res.filter(pa.array(ok))
            slow = i_all[~ok]
        kinds = dict(EVENT_FIELDS[event_type])
        cols: list[list] = []
        for name in APPLY_FIELDS[event_type]:
            col = good.column(name).combine_chunks()
            if kinds[name] in ("int64", "int32", "int16"):
                cols.append(col.to_numpy().tolist())
            elif name in _DICT_FIELDS and len(col) > 32:
                enc = pc.dictionary_encode(col)
                uniq = np.array([sys.intern(v) for v in enc.dictionary.to_pylist()] + [None], dtype=object)
                cols.append(uniq[enc.indices.to_numpy()].tolist())
            else:
                cols.append(col.to_pylist())
        rt = good.column("rt").combine_chunks() if "rt" in good.column_names else None
        return good.column("i").to_numpy(), cols, rt, slow
