"""Readers for the tables of qfs-export-v1, one module per table family.

- :mod:`.nodes` — the node inventory snapshots
- :mod:`.storage` — the object manifest and shard placement snapshots
- :mod:`.proofs` — proof-of-storage challenges
- :mod:`.ledgers` — the ATR fee and NOD reward ledgers
- :mod:`.eqm` — the EQM event log and the published checkpoints
- :mod:`.sor` — the system of record (``qfs_objects``) over SQLAlchemy

All of them are plain Python (DuckDB/Arrow), free of Dagster, and raise
:class:`~qfs_assets.readers.base.BadInput` for anything the contract calls bad input.
"""

from qfs_assets.readers.base import BadInput, ExportReader, TableRead, connect

__all__ = ["BadInput", "ExportReader", "TableRead", "connect"]
