"""qfs_assets.evidence.atomic: a target is replaced whole or not at all, and no temporary file is left."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qfs_assets.evidence.atomic import temporary_sibling, write_bytes_atomic, write_parquet_atomic, write_text_atomic


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_bytes_and_text_replace_the_target(tmp_path):
    target = tmp_path / "a" / "b" / "verdict.json"  # parents are created
    assert write_bytes_atomic(target, b"one") == target
    assert target.read_bytes() == b"one"
    write_text_atomic(target, "twö")
    assert target.read_text(encoding="utf-8") == "twö"
    assert _leftovers(target.parent) == []


def test_parquet_replaces_the_target(tmp_path):
    target = tmp_path / "t" / "partition_key=2026-04-01" / "part-0.parquet"
    write_parquet_atomic(target, pa.table({"x": [1, 2]}))
    write_parquet_atomic(target, pa.table({"x": [3]}))
    assert pq.read_table(target).to_pydict() == {"x": [3]}
    assert pq.ParquetFile(target).metadata.row_group(0).column(0).compression == "ZSTD"
    assert _leftovers(target.parent) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "part-0.parquet"
    write_parquet_atomic(target, pa.table({"x": [1]}))
    before = target.read_bytes()
    with pytest.raises(Exception):
        write_parquet_atomic(target, {"not": "a table"})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "text, not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_temporary_names_are_hidden_and_marked(tmp_path):
    # analytics.query skips ".<name>.<uuid>.tmp" files of a write in progress
    tmp = temporary_sibling(tmp_path / "x.json")
    assert tmp.parent == tmp_path and tmp.name.startswith(".x.json.") and tmp.name.endswith(".tmp")
    assert temporary_sibling(tmp_path / "x.json") != tmp

