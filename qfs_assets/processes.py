"""Which process is which: a run records its process, and a later start can tell it died.

``identity(pid)`` is ``<boot id>:<start time>`` of a live process on this machine (Linux
``/proc``), or None when it is gone; a pid reused by another process, or a reboot, gives
another identity. Used by ``qfs-assure`` to mark failed the runs whose process was killed
(``kill -9``, out of memory, a power cut) instead of leaving them STARTED for ever. Pure
standard library.
"""

from __future__ import annotations

import os
import socket


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return "no-boot-id"


def identity(pid: int) -> str | None:
    """``<boot id>:<start time in clock ticks>`` of process ``pid``, or None if it does not exist."""
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except (OSError, ValueError):
        try:
            os.kill(int(pid), 0)  # no /proc (not Linux): alive or not, without a start time
        except (ProcessLookupError, ValueError):
            return None
        except PermissionError:
            pass
        return f"{_boot_id()}:unknown"
    fields = stat.rsplit(")", 1)[-1].split()  # the command name may hold spaces and ')'
    return f"{_boot_id()}:{fields[19]}" if len(fields) > 19 else None


def host() -> str:
    return socket.gethostname()


def tags(prefix: str = "qfs/") -> dict[str, str]:
    """This process's tags for a run: host, pid and identity."""
    pid = os.getpid()
    return {f"{prefix}host": host(), f"{prefix}pid": str(pid), f"{prefix}process": identity(pid) or ""}


def is_dead(tags_of_run: dict[str, str], prefix: str = "qfs/") -> bool:
    """Whether the process a run's tags name is gone (only for runs of this host)."""
    if tags_of_run.get(f"{prefix}host") != host() or not tags_of_run.get(f"{prefix}pid"):
        return False
    try:
        pid = int(tags_of_run[f"{prefix}pid"])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    now = identity(pid)
    return now is None or (now != tags_of_run.get(f"{prefix}process") and not now.endswith(":unknown"))
