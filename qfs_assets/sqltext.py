"""SQL text built from values: string literals, identifiers and comments, once for the package.

Everything here targets the dialects the product writes SQL for: DuckDB (the export and
evidence queries) and the system of record's database, PostgreSQL (or SQLite for the demo),
for the reconciliation script; it is strict, because some of that SQL is written into files an
operator will run:

* :func:`quote_literal` returns a SQL expression equal to the text, whatever the text (NUL
  aside, which neither database can store: it is rejected). Printable characters are kept
  inside one ``'...'`` (a quote doubled); a backslash, every control character (``Cc``: line
  feed, carriage return, tab, NEL...), every format character (``Cf``: bidirectional
  overrides, zero-width characters, BOM) and the Unicode line and paragraph separators are
  written as ``chr(N)`` (``char(N)`` for SQLite) and joined with ``||``. So the expression

  - means the same in DuckDB, in SQLite and in PostgreSQL with ``standard_conforming_strings``
    on *or off* (no backslash ever appears inside the quotes, so no escape syntax applies);
  - stays on one line, so it cannot end a ``--`` comment it is written into, and shows no
    invisible or reordering character to the person reviewing the script.

  Lone surrogates (not encodable as UTF-8) are rejected. For another dialect, text that needs
  a character spelled out is rejected (its escape rules are not known here).
* :func:`quote_ident` double-quotes an identifier (a ``"`` doubled); identifiers cannot be
  built from ``chr()``, so any character :func:`quote_literal` would have to spell out is
  rejected, as is the empty name. :func:`validate_ident` accepts only plain names
  (``[A-Za-z_][A-Za-z0-9_]*``, at most 63 bytes: PostgreSQL truncates longer ones).
* :func:`comment_text` makes text safe to follow ``--`` on one line (for headers naming a
  database or a table): the same characters are shown as ``\\uXXXX`` escapes.

Pure: no Dagster, no database connection.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Any, Iterable

__all__ = [
    "SqlTextError",
    "quote_literal",
    "sql_value",
    "list_literal",
    "quote_ident",
    "qualified_name",
    "validate_ident",
    "comment_text",
]


class SqlTextError(ValueError):
    """A value that cannot be written as SQL text (NUL, a lone surrogate, a bad identifier)."""


#: Text made only of these needs no more than doubled quotes (printable ASCII but the backslash).
_PLAIN = re.compile(r"[ -\[\]-~]*")
_SPELLED_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}
#: The function that makes a character from its code point, per dialect (SQLAlchemy's names).
_CHAR_FUNCTION = {"duckdb": "chr", "postgresql": "chr", "sqlite": "char"}
_PLAIN_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_IDENT_BYTES = 63


def _must_spell(ch: str) -> bool:
    """Characters that never appear raw inside quotes: backslash, controls, format characters,
    line and paragraph separators."""
    return ch == "\\" or unicodedata.category(ch) in _SPELLED_CATEGORIES


def _check_text(text: Any, what: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, not {type(text).__name__}")
    if "\x00" in text:
        raise SqlTextError(f"{what} contains a NUL character, which SQL text cannot hold")
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        raise SqlTextError(f"{what} contains a lone surrogate (not valid Unicode text)")
    return text


def quote_literal(text: str, dialect: str = "duckdb") -> str:
    """A one-line SQL expression whose value is ``text`` in ``dialect`` (``duckdb``,
    ``postgresql``, ``sqlite``; see the module's docstring)."""
    _check_text(text, "a string literal")
    if _PLAIN.fullmatch(text):
        return "'" + text.replace("'", "''") + "'"
    char = _CHAR_FUNCTION.get(dialect)
    pieces: list[str] = []
    run: list[str] = []
    for ch in text:
        if _must_spell(ch):
            if run:
                pieces.append("'" + "".join(run).replace("'", "''") + "'")
                run = []
            if char is None:
                raise SqlTextError(f"cannot write U+{ord(ch):04X} into a {dialect} string literal safely")
            pieces.append(f"{char}({ord(ch)})")
        else:
            run.append(ch)
    if run:
        pieces.append("'" + "".join(run).replace("'", "''") + "'")
    if len(pieces) == 1:
        return pieces[0]
    return "(" + " || ".join(pieces) + ")"


def sql_value(value: Any, dialect: str = "duckdb") -> str:
    """A SQL literal for a scalar: NULL, TRUE/FALSE, an integer, a string (:func:`quote_literal`)
    or a timezone-aware datetime (as ``'YYYY-MM-DD HH:MM:SS.ffffff+00:00'``, UTC). Anything else
    (floats included: money is integer minor units) is a TypeError."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, str):
        return quote_literal(value, dialect)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise SqlTextError("a timestamp literal needs a timezone-aware datetime")
        return "'" + value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00:00") + "'"
    raise TypeError(f"no SQL literal for a {type(value).__name__}")


def list_literal(values: Iterable[str]) -> str:
    """A DuckDB list of strings: ``['a', 'b']``."""
    return "[" + ", ".join(quote_literal(v) for v in values) + "]"


def quote_ident(name: str) -> str:
    """A double-quoted identifier (``"`` doubled); SqlTextError for an empty name or one with
    a character that cannot stand raw in one line of SQL."""
    _check_text(name, "an identifier")
    if not name:
        raise SqlTextError("an identifier cannot be empty")
    bad = next((ch for ch in name if ch != "\\" and _must_spell(ch)), None)
    if bad is not None:
        raise SqlTextError(f"identifier {comment_text(name)!r} contains the control or format character "
                           f"U+{ord(bad):04X}")
    return '"' + name.replace('"', '""') + '"'


def qualified_name(*parts: str) -> str:
    """``"schema"."table"`` from its parts (each :func:`quote_ident`)."""
    if not parts:
        raise SqlTextError("a qualified name needs at least one part")
    return ".".join(quote_ident(p) for p in parts)


def validate_ident(name: str, what: str = "identifier") -> str:
    """``name`` when it is a plain identifier (letters, digits, ``_``, not starting with a
    digit, at most 63 bytes), else SqlTextError naming ``what``."""
    if not isinstance(name, str) or not _PLAIN_IDENT.fullmatch(name):
        raise SqlTextError(f"{what} {comment_text(str(name))!r} is not a plain identifier "
                           "(letters, digits and _, not starting with a digit)")
    if len(name.encode("utf-8")) > _MAX_IDENT_BYTES:
        raise SqlTextError(f"{what} {name!r} is longer than {_MAX_IDENT_BYTES} bytes")
    return name


def comment_text(text: str) -> str:
    """``text`` with backslashes, controls, format characters and line separators (and NUL)
    shown as ``\\uXXXX`` escapes: safe on a ``--`` comment line, and visible."""
    if _PLAIN.fullmatch(text):
        return text
    return "".join(_escape(ch) if ch == "\x00" or "\ud800" <= ch <= "\udfff" or _must_spell(ch) else ch
                   for ch in text)


def _escape(ch: str) -> str:
    n = ord(ch)
    return f"\\u{n:04x}" if n <= 0xFFFF else f"\\U{n:08x}"
