"""The per-deployment configuration file: every threshold of every activity, in one TOML file.

One file per deployment, ``qfs-assure.toml``: its path is ``$QFS_CONFIG``, or
``qfs-assure.toml`` in the working directory (the repository root, where ``workspace.yaml``,
``dagster.yaml`` and the demo's ``.env`` are) when that variable is unset. Without a file every
parameter has its code default (the evidence-v1 numbers). A ``QFS_CONFIG`` naming a missing file
is an error, never a silent fallback to the defaults.

Sections are the activity packages (``[node_health]``, ``[economics]``, ``[dual_write]``,
``[node_failure]``, ``[replay_drill]``) and keys are the fields of the package's parameters
model (``qfs_assets/activities/<section>/params.py``), which holds every default and bound: this
module adds none. A field whose type is another activity's parameters model is not a key of its
own section: it is that activity's section (the node failure response's AEGIS thresholds are
``[node_health]``'s, so the receivers are re-verified with the thresholds node health judges by).

The file is validated as a whole when it is read (the code location reads it when it loads): an
unknown section or key, a value of the wrong type or out of its bounds raises
:class:`SettingsError`, one line naming the file, the section and the key.

Every activity run records, beside the parameters it used, where each one came from
(:meth:`DeploymentSettings.sources`): ``default`` (the code default), ``file:<path>`` (this
file) or ``run_config`` (a value given for one run that differs from the deployment's).

Pure Python (no Dagster).
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ValidationError

from qfs_assets.params import Params

ENV_VAR = "QFS_CONFIG"
DEFAULT_FILE = "qfs-assure.toml"
DEFAULT = "default"
RUN_CONFIG = "run_config"


class SettingsError(ValueError):
    """The deployment configuration is invalid: one line naming the file, section and key."""


# ---- the sections: one per activity package with a parameters model --------------------------------
@lru_cache(maxsize=1)
def _sections() -> dict[str, type[Params]]:
    import qfs_assets.activities as package

    out: dict[str, type[Params]] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        try:
            module = importlib.import_module(f"{package.__name__}.{info.name}.params")
        except ModuleNotFoundError:
            continue
        models = [obj for _, obj in inspect.getmembers(module, inspect.isclass)
                  if issubclass(obj, Params) and obj is not Params and obj.__module__ == module.__name__]
        if len(models) != 1:
            raise RuntimeError(f"{module.__name__} must define exactly one parameters model, found {len(models)}")
        out[info.name] = models[0]
    return dict(sorted(out.items(), key=lambda kv: _section_order(kv[0])))


def _section_order(section: str) -> tuple[int, str]:
    """Sections in the registry's display order of their activities (node health first)."""
    from qfs_assets import registry

    module = importlib.import_module(f"qfs_assets.activities.{section}")
    orders = [spec.order for spec in getattr(module, "SPECS", ())] or [registry.Activity.order]
    return min(orders), section


def sections() -> dict[str, type[Params]]:
    """Every section of the file with its parameters model, by section name."""
    return dict(_sections())


@lru_cache(maxsize=1)
def _activity_sections() -> dict[str, str]:
    import qfs_assets.activities as package

    out: dict[str, str] = {}
    for name in _sections():
        module = importlib.import_module(f"{package.__name__}.{name}")
        for spec in getattr(module, "SPECS", ()):
            out[spec.name] = name
    return out


def section_of(activity: str) -> str:
    """The section holding an activity's parameters (``dual_write_diff`` -> ``dual_write``)."""
    try:
        return _activity_sections()[activity]
    except KeyError:
        raise KeyError(f"activity {activity!r} has no parameters section") from None


def section_for_model(model: type[Params]) -> str:
    for name, cls in _sections().items():
        if cls is model:
            return name
    raise KeyError(f"{model.__name__} is not the parameters model of an activity")


def _nested(model: type[Params]) -> dict[str, str]:
    """Fields of ``model`` that are another section's model: field name -> that section."""
    out = {}
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, Params):
            out[name] = section_for_model(ann)
    return out


def _own_keys(model: type[Params]) -> list[str]:
    nested = _nested(model)
    return [k for k in model.model_fields if k not in nested]


def _error_line(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = err.get("loc") or ()
    key = str(loc[0]) if loc else ""
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if "input" in err and not isinstance(err["input"], Mapping):
        msg += f" (got {err['input']!r})"
    return key, msg


# ---- the loaded configuration ---------------------------------------------------------------------
@dataclass(frozen=True)
class DeploymentSettings:
    """The validated deployment configuration: per section, the keys the file sets."""

    path: Path | None  # the file read; None when there is none (every parameter has its default)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return f"file:{self.path}" if self.path is not None else DEFAULT

    def params(self, section: str) -> Params:
        """The section's parameters: the file's values over the code defaults (nested sections filled)."""
        model = _sections()[section]
        data: dict[str, Any] = dict(self.values.get(section, {}))
        for name, other in _nested(model).items():
            data[name] = self.params(other)
        return model.build(data)

    def key_source(self, section: str, key: str) -> str:
        return f"file:{self.path}" if key in self.values.get(section, {}) else DEFAULT

    def sources(self, section: str, used: Params) -> dict[str, Any]:
        """Where each recorded parameter of ``used`` (a run's parameters) came from, shaped like
        :meth:`Params.as_evidence`: ``default`` / ``file:<path>`` when it is the deployment's
        value, ``run_config`` when the run was given another value."""
        deployed = self.params(section)
        nested = _nested(type(used))
        out: dict[str, Any] = {}
        for key in used.as_evidence():
            if key in nested:
                inner = getattr(used, key)
                out[key] = self.sources(nested[key], inner)
            elif getattr(used, key) == getattr(deployed, key):
                out[key] = self.key_source(section, key)
            else:
                out[key] = RUN_CONFIG
        return out

    def config_values(self, section: str) -> dict[str, Any]:
        """The section's parameters as JSON values (run config of a schedule, a sensor, the CLI)."""
        return self.params(section).model_dump(mode="json")

    def describe(self) -> str:
        return str(self.path) if self.path is not None else f"no file (defaults; looked for {DEFAULT_FILE})"


def parse(text: str, where: str = DEFAULT_FILE) -> dict[str, dict[str, Any]]:
    """Validate the file's text; return the keys it sets per section. SettingsError otherwise."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{where}: not valid TOML: {exc}") from None
    known = _sections()
    values: dict[str, dict[str, Any]] = {}
    for section, table in doc.items():
        if section not in known:
            raise SettingsError(f"{where}: unknown section [{section}] (known: {', '.join(known)})")
        if not isinstance(table, dict):
            raise SettingsError(f"{where}: {section} must be a table [{section}], not a value")
        model = known[section]
        nested = _nested(model)
        own = _own_keys(model)
        for key in table:
            if key in nested:
                raise SettingsError(f"{where}: [{section}] {key}: not set here; it is the [{nested[key]}] section")
            if key not in own:
                raise SettingsError(f"{where}: [{section}] {key}: unknown key (known: {', '.join(own)})")
        values[section] = dict(table)
    for section, data in values.items():  # types and bounds, through the models (nested sections apart)
        try:
            known[section].model_validate(data)
        except ValidationError as exc:
            key, msg = _error_line(exc)
            raise SettingsError(f"{where}: [{section}] {key}: {msg}") from None
    return values


def resolve_path(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> tuple[Path | None, bool]:
    """(the file to read, whether it must exist): ``$QFS_CONFIG`` (must exist) or the default."""
    env = os.environ if env is None else env
    explicit = env.get(ENV_VAR, "").strip()
    if explicit:
        return Path(explicit).expanduser().resolve(), True
    return (cwd or Path.cwd()) / DEFAULT_FILE, False


def load(path: str | os.PathLike | None = None, *, env: Mapping[str, str] | None = None) -> DeploymentSettings:
    """Read and validate the deployment configuration (``path``, else ``$QFS_CONFIG``, else the default)."""
    required = True
    if path is None:
        path, required = resolve_path(env)
    path = Path(path)
    if not path.is_file():
        if required:
            raise SettingsError(f"{ENV_VAR}={path}: no such file")
        return DeploymentSettings(None, {})
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return DeploymentSettings(path.resolve(), parse(text, str(path)))


_current: dict[tuple, DeploymentSettings] = {}


def current() -> DeploymentSettings:
    """The configuration of this process, read once per file location (and file version)."""
    path, required = resolve_path()
    try:
        stamp = path.stat().st_mtime_ns if path is not None and path.is_file() else None
    except OSError:
        stamp = None
    key = (str(path), required, stamp)
    if key not in _current:
        _current.clear()
        _current[key] = load()
    return _current[key]


def reset() -> None:
    """Forget the cached configuration (tests)."""
    _current.clear()


def toml_text(settings: DeploymentSettings | None = None) -> str:
    """The whole file, every key with its value (defaults unless ``settings`` says otherwise),
    each preceded by its description: what ``docs/configuration.md`` shows."""
    settings = settings or DeploymentSettings(None, {})
    lines = []
    for section, model in _sections().items():
        lines.append(f"[{section}]")
        nested = _nested(model)
        for name in nested:
            lines.append(f"# {name}: the [{nested[name]}] section")
        values = settings.params(section).model_dump(mode="json")
        for key in _own_keys(model):
            info = model.model_fields[key]
            comment = _field_comment(model, key) or info.description
            if comment:
                lines.append(f"# {comment}")
            lines.append(f"{key} = {_toml_value(values[key])}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _field_comment(model: type[BaseModel], key: str) -> str | None:
    """The ``#:`` comment above a field in its model's source (the models document fields that way)."""
    try:
        source = inspect.getsource(model)
    except (OSError, TypeError):
        return None
    lines = source.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(f"{key}:"):
            comments = []
            j = i - 1
            while j >= 0 and lines[j].strip().startswith("#:"):
                comments.insert(0, lines[j].strip()[2:].strip())
                j -= 1
            return " ".join(comments) or None
    return None
