"""qfs_assets.sqltext against hostile text, in DuckDB and in a real PostgreSQL (QFS_TEST_PG_URL,
default ``postgresql://postgres@127.0.0.1:5432/test``; no skip marker: without the server these
tests error), with ``standard_conforming_strings`` on and off."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import unicodedata

import duckdb
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.pool import NullPool

from qfs_assets.readers.sor import normalise_url
from qfs_assets.sqltext import (
    SqlTextError,
    comment_text,
    list_literal,
    qualified_name,
    quote_ident,
    quote_literal,
    sql_value,
    validate_ident,
)

PG_URL = os.environ.get("QFS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

HOSTILE = [
    "",
    "plain",
    "it's",
    "''",
    "'; DROP TABLE qfs_objects; --",
    "a\\",  # a trailing backslash: with standard_conforming_strings off, '\' would escape the quote
    "\\'; SELECT 1; --",
    "C:\\path\\to\\x",
    "line1\nline2",
    "cr\rlf\r\n",
    "tab\there",
    "-- comment",
    "/* block */ */ /*",
    "semi;colon",
    "dollar $$ $tag$ quoting",
    "line\u2028separator",
    "para\u2029separator",
    "next\u0085line",
    "bidi \u202eevil\u202c override",
    "zero\u200bwidth\u200djoiner",
    "\ufeffbom",
    "vertical\x0btab\x0cform feed\x1b[31m escape \x7f del",
    "tag \U000e0041 character",  # a Cf character outside the BMP
    "émoji 😀 and 中文",
    '"double" quotes',
]

# characters that may never stand raw in the SQL text (between the quotes or elsewhere)
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def _raw_ok(sql: str) -> bool:
    return "\\" not in sql and not any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in sql)


_text = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40)


# -- literals -------------------------------------------------------------------------------------

def test_plain_text_is_one_quoted_token():
    assert quote_literal("abc") == "'abc'"
    assert quote_literal("it's") == "'it''s'"
    assert quote_literal("") == "''"
    assert quote_literal("émoji 😀") == "'émoji 😀'"  # printable non-ASCII stays as it is


def test_hostile_characters_are_spelled_out():
    assert quote_literal("a\\") == "('a' || chr(92))"
    assert quote_literal("x\ny") == "('x' || chr(10) || 'y')"
    assert quote_literal("\n") == "chr(10)"
    assert quote_literal("it's\u2028") == "('it''s' || chr(8232))"
    assert quote_literal("\u202e") == "chr(8238)"
    for text in HOSTILE:
        sql = quote_literal(text)
        assert _raw_ok(sql) and "\n" not in sql, text


@pytest.mark.parametrize("bad", ["\x00", "a\x00b", "tail\x00"])
def test_nul_is_refused(bad):
    with pytest.raises(SqlTextError, match="NUL"):
        quote_literal(bad)


def test_lone_surrogates_and_non_text_are_refused():
    with pytest.raises(SqlTextError, match="surrogate"):
        quote_literal("a\ud800b")
    with pytest.raises(TypeError):
        quote_literal(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        quote_literal(None)  # type: ignore[arg-type]


_DUCK = duckdb.connect()  # one connection for the module: connecting costs ~0.1 s


def _duck(sql: str):
    return _DUCK.execute(sql).fetchall()[0][0]


def test_duckdb_reads_back_every_hostile_text():
    assert [_duck(f"SELECT {quote_literal(t)}") for t in HOSTILE] == HOSTILE
    assert _duck(f"SELECT {list_literal(HOSTILE)}") == HOSTILE


@settings(max_examples=300, deadline=None)
@given(st.lists(_text, min_size=1, max_size=5))
def test_duckdb_roundtrip_any_text(texts):
    for t in texts:
        sql = quote_literal(t)
        assert _raw_ok(sql) and "\n" not in sql
    assert _duck("SELECT [" + ", ".join(quote_literal(t) for t in texts) + "]") == texts
    assert _duck(f"SELECT {list_literal(texts)}") == texts


@pytest.fixture(scope="module")
def pg():
    """One raw DB-API connection (SQL sent as written: no driver parameter syntax)."""
    engine = sa.create_engine(normalise_url(PG_URL), poolclass=NullPool)
    con = engine.raw_connection()
    con.autocommit = True
    cur = con.cursor()

    def run(sql: str):
        cur.execute(sql)
        return cur.fetchall()[0][0]

    yield run
    con.close()
    engine.dispose()


@pytest.mark.parametrize("conforming", ["on", "off"])
def test_postgresql_reads_back_every_hostile_text(pg, conforming):
    pg(f"SET standard_conforming_strings = {conforming}; SELECT 1")
    assert [pg(f"SELECT {quote_literal(t)}") for t in HOSTILE] == HOSTILE


@pytest.mark.parametrize("conforming", ["on", "off"])
def test_postgresql_a_literal_cannot_leave_a_comment_line(pg, conforming):
    # what the reconciliation script does: a value on a "--" line, then statements
    pg(f"SET standard_conforming_strings = {conforming}; SELECT 1")
    for t in HOSTILE + ["x\nSELECT 1/0;", "x\rSELECT 1/0;", "x\u2028SELECT 1/0;"]:
        assert pg(f"-- object {quote_literal(t)}\nSELECT 42") == 42, t
        assert pg(f"SELECT {quote_literal(t)} = {quote_literal(t)}") is True


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_text)
def test_postgresql_roundtrip_any_text(pg, text):
    pg("SET standard_conforming_strings = off; SELECT 1")
    assert pg(f"SELECT {quote_literal(text)}") == text


_SQLITE = sqlite3.connect(":memory:")


def test_sqlite_spells_characters_with_char():
    assert quote_literal("a\nb", "sqlite") == "('a' || char(10) || 'b')"
    assert [_SQLITE.execute(f"SELECT {quote_literal(t, 'sqlite')}").fetchone()[0] for t in HOSTILE] == HOSTILE


@settings(max_examples=200, deadline=None)
@given(_text)
def test_sqlite_roundtrip_any_text(text):
    assert _SQLITE.execute(f"SELECT {quote_literal(text, 'sqlite')}").fetchone()[0] == text


def test_an_unknown_dialect_gets_plain_text_only():
    assert quote_literal("it's", "mysql") == "'it''s'"
    for bad in ("a\\b", "x\ny"):  # MySQL reads backslash escapes inside quotes: refuse
        with pytest.raises(SqlTextError, match="mysql"):
            quote_literal(bad, "mysql")


# -- values -----------------------------------------------------------------------------------------

def test_sql_value():
    assert sql_value(None) == "NULL"
    assert sql_value(True) == "TRUE" and sql_value(False) == "FALSE"
    assert sql_value(-12) == "-12"
    assert sql_value("o'k\n") == "('o''k' || chr(10))"
    assert sql_value("o'k\n", "sqlite") == "('o''k' || char(10))"
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert sql_value(dt.datetime(2026, 4, 1, 1, 2, 3, 4, tzinfo=plus2)) == "'2026-03-31 23:02:03.000004+00:00'"
    with pytest.raises(SqlTextError):
        sql_value(dt.datetime(2026, 4, 1))
    for bad in (1.5, b"x", dt.date(2026, 4, 1), [1]):
        with pytest.raises(TypeError):
            sql_value(bad)


# -- identifiers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ['plain', 'Mixed Case', 'a"b', '""', "x'y", "-- not a comment", "é", "a\\b", "1st"])
def test_quoted_identifiers_work_in_duckdb(name):
    con = duckdb.connect()
    try:
        con.execute(f"CREATE TABLE {quote_ident(name)} ({quote_ident(name)} INTEGER)")
        con.execute(f"INSERT INTO {qualified_name(name)} VALUES (7)")
        assert con.execute(f"SELECT {quote_ident(name)} FROM {quote_ident(name)}").fetchall() == [(7,)]
        assert con.execute("SELECT table_name FROM information_schema.tables").fetchall() == [(name,)]
    finally:
        con.close()


@pytest.mark.parametrize("bad", ["", "a\x00b", "new\nline", "cr\r", "sep\u2028", "bidi\u202e", "tab\t"])
def test_identifiers_that_cannot_stand_on_one_line_are_refused(bad):
    with pytest.raises(SqlTextError):
        quote_ident(bad)


def test_qualified_name():
    assert qualified_name("s", "t") == '"s"."t"'
    assert qualified_name('we"ird', "t") == '"we""ird"."t"'
    with pytest.raises(SqlTextError):
        qualified_name()


def test_validate_ident():
    assert validate_ident("qfs_objects") == "qfs_objects"
    assert validate_ident("_x9") == "_x9"
    assert validate_ident("a" * 63) == "a" * 63
    for bad in ("", "1a", "a-b", "a b", "a;b", "a\nb", "é", "a" * 64, '"q"'):
        with pytest.raises(SqlTextError):
            validate_ident(bad, "schema")
    with pytest.raises(SqlTextError, match="schema"):
        validate_ident(None, "schema")  # type: ignore[arg-type]


# -- comments -------------------------------------------------------------------------------------

def test_comment_text():
    assert comment_text("postgresql://u@h/db") == "postgresql://u@h/db"
    assert comment_text("a\nb") == "a\\u000ab"
    assert comment_text("a\\u000ab") == "a\\u005cu000ab"  # an escape in the input stays distinguishable
    assert comment_text("\x00\u2028\u202e\U000e0041") == "\\u0000\\u2028\\u202e\\U000e0041"
    for text in HOSTILE:  # backslashes are the escapes' own; nothing else that could break the line
        shown = comment_text(text)
        assert _raw_ok(shown.replace("\\", "")) and "\n" not in shown
