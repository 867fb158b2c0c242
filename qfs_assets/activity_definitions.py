"""The definitions one activity's run needs: its own folder of ``defs/`` (and the folders that
define its upstream assets) and the resources.

``qfs-assure run`` materialises one activity. Loading the whole code location
(:mod:`qfs_assets.definitions`: every folder of ``defs/`` through Dagster's component loader,
which also scans the installed packages' entry points) costs ~0.6 s of CPU more per run than
loading the activity's own folder (measured 2026-12-06 on this project's 2-core machines:
1.4-1.6 s against 0.86-0.90 s, importing and resolving the economics job). So the CLI builds
this instead. It is not a second set of definitions: the folder's modules are the very modules
the code location loads (Dagster's folder loader reads each Python file of ``defs/`` with
``load_definitions_from_module``, as ``load_definitions_from_package_module`` does here), so
the assets, checks and job are the same objects, with the same resources. A test checks, per
activity, that its job here and in the code location select the same assets and checks and
take the same run config.
"""

from __future__ import annotations

import importlib
import warnings
from functools import lru_cache

import dagster as dg

from qfs_assets import registry


@lru_cache(maxsize=None)
def activity_definitions(name: str) -> dg.Definitions:
    """The definitions of activity ``name``: ``defs/<its package>/``, the folders that define the
    assets it depends on, and the resources.

    An upstream asset defined in another folder (``dual_write_diff`` depends on node health's
    ``object_manifest``) must be loaded with its own definition: left out, Dagster would stand in
    an unpartitioned, unmaterializable asset for it, and a run would record the newest upstream
    version of any partition as its input instead of its own partition's (found by a review:
    the verdict was the same, the lineage in the UI was not)."""
    from qfs_assets import settings
    from qfs_assets.defs.resources import resources

    settings.current()  # as qfs_assets.definitions does when it loads: an invalid configuration stops here
    own = registry.get(name).package
    parts = [_folder(own), resources()]
    missing = _undefined_parents(parts)
    for package in _candidates(own):
        if not missing:
            break
        folder = _folder(package)
        if _defined(folder) & missing:
            parts.append(folder)
            missing = _undefined_parents(parts)
    return dg.Definitions.merge(*parts)


def _folder(package: str) -> dg.Definitions:
    module = importlib.import_module(f"qfs_assets.defs.{package}")
    with warnings.catch_warnings():  # "preview" in Dagster 1.13 (pinned; the tests guard the result)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.load_definitions_from_package_module(module)


def _defined(defs: dg.Definitions) -> set[dg.AssetKey]:
    keys: set[dg.AssetKey] = set()
    for a in defs.assets or ():
        keys |= set(a.keys) if isinstance(a, dg.AssetsDefinition) else {a.key}
    return keys


def _undefined_parents(parts: list[dg.Definitions]) -> set[dg.AssetKey]:
    """The asset keys the loaded folders depend on but do not define."""
    defined = set().union(*(_defined(p) for p in parts))
    graph = dg.Definitions.merge(*parts).resolve_asset_graph()
    return {k for k in graph.get_all_asset_keys() if k not in defined}


def _candidates(own: str) -> list[str]:
    """The other folders of ``defs/``: the activities' first (registry order), then the rest."""
    import pkgutil

    import qfs_assets.defs as defs_package

    activities = [a.package for a in registry.activities().values()]
    others = sorted(m.name for m in pkgutil.iter_modules(defs_package.__path__) if m.ispkg)
    return [p for p in dict.fromkeys(activities + others) if p != own]
