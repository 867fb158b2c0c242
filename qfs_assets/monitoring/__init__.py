"""Watching what no verdict judges: new storage errors, lost redundancy, overdue differences,
missing evidence. Pure code (no Dagster): each module turns what it reads into
:mod:`qfs_assets.alerting.events` alerts; the sensors and assets in ``qfs_assets/defs/`` call it
and dispatch them.
"""
