"""What the dashboard reads: the evidence store through the analyst views.

:func:`open_store` discovers an evidence root (:func:`qfs_assets.analytics.query.load_catalog`)
and registers its views on a fresh DuckDB connection (the same SQL an analyst runs with
``qfs-assure query``). A missing root gives an empty store, so the page still renders with every
panel saying "no evidence yet". The panels only read through :class:`Store`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import duckdb

from qfs_assets.analytics.query import Catalog, QueryError, load_catalog, register_catalog
from qfs_assets.readers.base import connect


@dataclass
class Store:
    """An evidence root opened for reading: its catalog and its views on one DuckDB connection."""

    con: duckdb.DuckDBPyConnection
    views: dict[str, list[str]]
    cat: Catalog

    @property
    def root(self) -> Path:
        return self.cat.root

    def has(self, view: str) -> bool:
        return view in self.views

    def cols(self, view: str) -> list[str]:
        return self.views.get(view, [])

    def tables(self, prefix: str = "") -> list[str]:
        """The detail tables found under the root (not the verdict views), optionally by name prefix."""
        return [t for t in self.cat.tables if t.startswith(prefix)]

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        cur = self.con.execute(sql, list(params or []))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def select(self, view: str, wanted: Sequence[str], order: str = "partition", where: str = "",
               params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """``wanted`` columns of ``view`` (absent ones come back as None), ordered; [] when the view is absent."""
        if not self.has(view):
            return []
        have = set(self.cols(view))
        exprs = [f'"{c}"' if c in have else f'NULL AS "{c}"' for c in wanted]
        return self.rows(f'SELECT {", ".join(exprs)} FROM "{view}" {where} ORDER BY {order}', params)

    def docs(self, activity: str) -> list[dict]:
        """The JSON verdicts of an activity, oldest partition first."""
        return [v.doc for v in self.cat.verdicts.get(activity, [])]

    def latest_doc(self, activity: str) -> dict | None:
        docs = self.docs(activity)
        return docs[-1] if docs else None


@contextmanager
def open_store(evidence_root: str | os.PathLike) -> Iterator[Store]:
    """The evidence root opened for reading (an empty store when the folder does not exist)."""
    root = Path(evidence_root)
    try:
        cat = load_catalog(root)
    except QueryError:
        cat = Catalog(root=root)
    con = connect()
    try:
        yield Store(con, register_catalog(con, cat), cat)
    finally:
        con.close()


def criterion_threshold(doc: dict | None, name: str, key: str | None = None,
                        default: float | None = None) -> float | None:
    """The threshold an activity recorded for a criterion (the evidence records the value used)."""
    for c in (doc or {}).get("criteria") or []:
        if c.get("name") == name:
            t = c.get("threshold")
            if isinstance(t, dict):
                t = t.get(key) if key else None
            if isinstance(t, (int, float)) and not isinstance(t, bool):
                return float(t)
    return default


def find_key(doc: Any, key: str) -> Any:
    """The first value of ``key`` anywhere in a JSON document (depth first), else None."""
    if isinstance(doc, dict):
        if key in doc and doc[key] is not None:
            return doc[key]
        for v in doc.values():
            found = find_key(v, key)
            if found is not None:
                return found
    elif isinstance(doc, list):
        for v in doc:
            found = find_key(v, key)
            if found is not None:
                return found
    return None
