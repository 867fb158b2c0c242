"""Names that become paths: one strict pattern, and paths that stay inside their root.

Every file name the pipeline builds from data (a node id inside a failure id, a partition key,
an evidence key) or from code (an activity, a table) goes through :func:`check_name`: ASCII
letters, digits, ``.``, ``_`` and ``-``, starting with a letter or a digit, at most
:data:`MAX_NAME` characters. That excludes every separator (``/``, ``\\``), ``.`` and ``..``, a
leading dot (hidden and temporary files), white space and line breaks of any script, NUL, ``%`` and
``=`` (Hive's ``key=value``), and leaves room under the 255-byte file name limit for the
suffixes and temporary names the evidence store adds. :func:`inside` verifies that a path built
from checked names still lies under its root.

A name that does not match is bad input (:class:`~qfs_assets.readers.base.BadInput`), shown
with ``repr`` so a hostile value stays on one line. Pure standard library (plus BadInput).
"""

from __future__ import annotations

import os
import re
from pathlib import PurePath
from typing import TypeVar

from qfs_assets.readers.base import BadInput

MAX_NAME = 160
#: the longest node id usable in a failure id (``<node_id>_<YYYYMMDD>[_n]`` stays within MAX_NAME)
MAX_NODE_ID = 128
NAME_RULE = f"ASCII letters, digits, '.', '_', '-', starting with a letter or digit, at most {MAX_NAME} characters"
NAME_PATTERN = rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME - 1}}}"
NODE_ID_PATTERN = rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NODE_ID - 1}}}"
NODE_ID_RULE = f"ASCII letters, digits, '.', '_', '-', starting with a letter or digit, at most {MAX_NODE_ID} characters"
_NAME = re.compile(NAME_PATTERN, re.ASCII)

P = TypeVar("P", bound=PurePath)


def is_safe_name(value: object) -> bool:
    """Whether ``value`` is a string usable as one path component."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def check_name(value: object, what: str, table: str) -> str:
    """``value`` if it is a safe name, else :class:`BadInput` naming ``table`` and showing ``value``'s repr."""
    if not is_safe_name(value):
        shown = repr(value)
        if len(shown) > 200:
            shown = shown[:200] + "…"
        raise BadInput(table, f"{what} {shown} is not a safe name ({NAME_RULE})")
    return value  # type: ignore[return-value]


def inside(root: P, path: P, table: str = "evidence") -> P:
    """``path`` if it lies strictly under ``root`` once normalised, else :class:`BadInput`."""
    base = os.path.normpath(str(root))
    joined = os.path.normpath(str(path))
    if joined == base or os.path.commonpath([base, joined]) != base:
        raise BadInput(table, f"path {joined!r} leaves its root {base!r}")
    return path
