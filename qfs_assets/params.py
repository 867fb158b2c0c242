"""Activity parameters: one pydantic model per activity, defaults and bounds written once.

An activity's ``params.py`` subclasses :class:`Params`. The same model is used by the pure
assessment (typed, validated values), by Dagster's run config (``defs/common.config_class``
derives the launchpad's fields and defaults from it), by the CLI and by the per-deployment
configuration. Fields listed in ``KNOBS`` tune execution (batch sizes, algorithms) and are not
recorded in the evidence's ``parameters``; every other field is.

A bad value raises :class:`ParamsError` with one line naming the field.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError


class ParamsError(ValueError):
    """An invalid parameter: one line naming the field and the rule it breaks."""


def one_line(exc: ValidationError, model: str) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or model
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg} (got {err.get('input')!r})" if "input" in err else f"{where}: {msg}")
    return f"{model}: " + "; ".join(parts)


class Params(BaseModel):
    """Base of every activity's parameters: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    #: execution knobs: accepted, never recorded in the evidence
    KNOBS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def build(cls, values: Mapping[str, Any] | None = None, **overrides: Any):
        """Validate ``values`` (plus ``overrides``) into the model; ParamsError on a bad value."""
        data = {**dict(values or {}), **overrides}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ParamsError(one_line(exc, cls.__name__)) from None

    @classmethod
    def coerce(cls, params: "Params | Mapping[str, Any] | None"):
        if params is None:
            return cls()
        if isinstance(params, cls):
            return params
        return cls.build(params)

    def as_evidence(self) -> dict[str, Any]:
        """The recorded parameters (JSON-ready), knobs left out."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in self.KNOBS}
