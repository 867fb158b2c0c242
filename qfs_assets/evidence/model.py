"""What an activity produces, independent of Dagster and of Great Expectations.

An activity's pure code computes an :class:`ActivityResult`: metrics, the inputs it read,
parameters used, detail tables, and its criteria as *data* (:class:`CriterionSpec`: rules
over a compact judge table). The GX adapter (:mod:`qfs_assets.evidence.gx_suite`) turns the
specs into a Great Expectations suite, validates the judge table and returns
:class:`Criterion` verdicts; the evidence store writes them. Keeping criteria as data keeps
the coupling to GX in one small module.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


@dataclass(frozen=True)
class Rule:
    """One expectation over a column of the judge table: every row must satisfy it.

    ``min_value``/``max_value`` are inclusive unless ``strict_min``/``strict_max``;
    ``equals`` requires equality (mapped to a value-set expectation).
    """

    column: str
    min_value: Any = None
    max_value: Any = None
    strict_min: bool = False
    strict_max: bool = False
    equals: Any = None

    def holds(self, value: Any) -> bool:
        """Plain-Python reading of the rule (used to cross-check the GX adapter in tests)."""
        if value is None:
            return False
        if self.equals is not None:
            return value == self.equals
        if self.min_value is not None and (value <= self.min_value if self.strict_min else value < self.min_value):
            return False
        if self.max_value is not None and (value >= self.max_value if self.strict_max else value > self.max_value):
            return False
        return True

    def describe(self) -> str:
        if self.equals is not None:
            return f"{self.column} == {self.equals!r}"
        parts = []
        if self.min_value is not None:
            parts.append(f"{self.column} {'>' if self.strict_min else '>='} {self.min_value!r}")
        if self.max_value is not None:
            parts.append(f"{self.column} {'<' if self.strict_max else '<='} {self.max_value!r}")
        return " and ".join(parts)


@dataclass(frozen=True)
class CriterionSpec:
    """A contract criterion: passes when every rule holds on every row of the judge table.

    ``observed`` names the metric keys reported as the criterion's observed value (one key:
    the value itself; several: a dict); ``threshold`` is what the evidence records as the
    threshold (a number or a dict), and ``description`` says the rule in words.
    """

    name: str
    rules: tuple[Rule, ...]
    observed: tuple[str, ...]
    threshold: Any
    description: str = ""


@dataclass
class Criterion:
    """A verdict. ``could_not_run`` separates "the check failed to run" from "the data failed"."""

    name: str
    passed: bool
    observed: Any
    threshold: Any
    could_not_run: bool = False
    detail: str | None = None

    def as_evidence(self) -> dict:
        out = {"name": self.name, "passed": self.passed, "observed": self.observed, "threshold": self.threshold}
        if self.could_not_run:
            out["could_not_run"] = True
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass
class ActivityResult:
    """Everything an activity judged for one partition, before criteria are validated."""

    activity: str
    partition: str  # YYYY-MM-DD, the partition's first day
    window_start: dt.datetime
    window_end: dt.datetime
    metrics: dict[str, Any]
    inputs: dict[str, Any]
    parameters: dict[str, Any]
    criteria_specs: list[CriterionSpec]
    judge_table: pa.Table  # compact: one row per partition (or per entity); GX validates this
    tables: dict[str, pa.Table] = field(default_factory=dict)  # detail tables, by evidence table name
    extra: dict[str, Any] = field(default_factory=dict)  # extra JSON keys (e.g. timings, notes)
    evidence_key: str | None = None  # file stem override (node_failure_response/<node>_<YYYYMMDD>)
    #: files published beside the verdict, by suffix (``{".reconciliation.sql": text}``), before it
    sidecars: dict[str, str | bytes] = field(default_factory=dict)
