"""CPU seconds spent by each part of a benchmark's stack over a phase, per process kind.

On a 2-core machine every part of the stack (this process's worker, the Temporal dev server, PostgreSQL,
the venue sandboxes) competes for the same cores, so throughput ratios say little about *where* the time
goes. `CpuMeter` reads the CPU time of this process and all its descendants before and after a phase;
the difference per kind, divided by the work done, is the CPU each piece of work cost each part.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import psutil

KINDS = ("this process", "temporal", "postgres", "sandbox", "other")


def _kind(proc: psutil.Process, me: int) -> str:
    if proc.pid == me:
        return "this process"
    try:
        name = proc.name()
        cmdline = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "other"
    if "temporal" in name:
        return "temporal"
    if "postgres" in name or "postgres" in cmdline.split(" ")[0]:
        return "postgres"
    if "-m sandbox" in cmdline:
        return "sandbox"
    return "other"


def postmaster_pid(data_dir: Path) -> int | None:
    """The PostgreSQL server's pid (pg_ctl detaches it, so it is not among this process's children)."""
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cpu_by_kind(extra_roots: tuple[int, ...] = ()) -> dict[str, float]:
    """CPU seconds (user + system) so far of this process, the `extra_roots` (e.g. the postmaster) and
    every live descendant of them, summed per kind."""
    me = os.getpid()
    procs: dict[int, psutil.Process] = {}
    for pid in (me, *extra_roots):
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                procs[proc.pid] = proc
        except psutil.NoSuchProcess:
            continue
    totals = dict.fromkeys(KINDS, 0.0)
    for proc in procs.values():
        try:
            t = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        totals[_kind(proc, me)] += t.user + t.system
    return totals


@dataclass
class CpuMeter:
    """`start()`, run the phase, `stop(units)`: CPU milliseconds per unit of work, per kind."""

    extra_roots: tuple[int, ...] = ()
    _before: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._before = cpu_by_kind(self.extra_roots)

    def stop(self, units: int) -> dict[str, float]:
        after = cpu_by_kind(self.extra_roots)
        per = {k: round((after[k] - self._before.get(k, 0.0)) * 1000 / max(units, 1), 2) for k in KINDS}
        per["total"] = round(sum(per[k] for k in KINDS), 2)
        return per
