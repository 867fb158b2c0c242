"""The definitions one activity's run needs: its own folder of ``defs/`` and the resources.

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
    """The definitions of activity ``name``: ``defs/<its package>/`` and the resources."""
    from qfs_assets import settings
    from qfs_assets.defs.resources import resources

    settings.current()  # as qfs_assets.definitions does when it loads: an invalid configuration stops here
    package = importlib.import_module(f"qfs_assets.defs.{registry.get(name).package}")
    with warnings.catch_warnings():  # "preview" in Dagster 1.13 (pinned; the test above guards the result)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        found = dg.load_definitions_from_package_module(package)
    return dg.Definitions.merge(found, resources())
