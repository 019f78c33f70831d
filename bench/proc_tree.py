"""Sample a process and its descendants from /proc: memory and CPU per process, and the whole tree's peak.

Three memory figures:
    peak tree PSS   the largest sum of Pss (/proc/PID/smaps_rollup) over the live processes of the tree in one
                    sample (every 50 ms): pages shared between processes (the forked workers share the code
                    and data their server preloaded) are divided among them, so the sum counts them once
    peak tree RSS   the same with VmRSS: shared pages counted once per process that maps them
    sum of VmHWM    each process's own high-water mark (the kernel keeps it, so no peak is missed), summed
                    over every process the tree ever had: an upper bound, shared pages counted repeatedly
                    and the processes need not peak at the same moment
CPU is utime + stime of each process at its last sample (a process that exits loses at most one interval).
"""
from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class ProcStats:
    """What was seen of one process."""

    pid: int
    ppid: int
    role: str
    cpu_s: float = 0.0
    hwm_mb: float = 0.0
    first_s: float = 0.0  # seconds after the sampler started
    last_s: float = 0.0


@dataclass
class TreeSample:
    """The whole tree over a run."""

    procs: dict[int, ProcStats] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    peak_pss_mb: float = 0.0

    @property
    def hwm_sum_mb(self) -> float:
        return sum(p.hwm_mb for p in self.procs.values())

    def by_role(self) -> dict[str, tuple[int, float, float]]:
        """role -> (processes, CPU seconds, seconds alive summed)."""
        out: dict[str, tuple[int, float, float]] = {}
        for p in self.procs.values():
            n, cpu, alive = out.get(p.role, (0, 0.0, 0.0))
            out[p.role] = (n + 1, cpu + p.cpu_s, alive + p.last_s - p.first_s)
        return out


class TreeSampler:
    """A thread sampling `pid` and its descendants until the root process is gone."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.root, self.interval_s = pid, interval_s
        self.sample = TreeSample()
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def join(self) -> TreeSample:
        self._thread.join()
        return self.sample

    def _run(self) -> None:
        while True:
            pids = self._tree()
            if self.root not in pids:
                return
            now = time.perf_counter() - self._started
            total = total_pss = 0.0
            for pid, ppid in pids.items():
                read = _read(pid)
                if read is None:
                    continue
                rss, pss, hwm, cpu, cmdline = read
                stats = self.sample.procs.get(pid)
                if stats is None:
                    stats = self.sample.procs[pid] = ProcStats(pid, ppid, self._role(pid, ppid, cmdline),
                                                               first_s=now)
                stats.cpu_s, stats.hwm_mb, stats.last_s = cpu, max(stats.hwm_mb, hwm), now
                total += rss
                total_pss += pss
            self.sample.peak_rss_mb = max(self.sample.peak_rss_mb, total)
            self.sample.peak_pss_mb = max(self.sample.peak_pss_mb, total_pss)
            time.sleep(self.interval_s)

    def _tree(self) -> dict[int, int]:
        """pid -> ppid for the root and every live descendant."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(stat.parent.name))
        found, todo = {}, [(self.root, os.getpid())]
        while todo:
            pid, ppid = todo.pop()
            found[pid] = ppid
            todo += [(c, pid) for c in children.get(pid, [])]
        if not Path(f"/proc/{self.root}").exists():
            found.pop(self.root, None)
        return found

    def _role(self, pid: int, ppid: int, cmdline: str) -> str:
        if pid == self.root:
            return "main"
        if "resource_tracker" in cmdline:
            return "resource tracker"
        parent = self.sample.procs.get(ppid)
        if parent is not None and parent.role == "forkserver":
            return "extraction worker"
        if "forkserver" in cmdline:
            return "forkserver"
        return "other"


def _read(pid: int) -> tuple[float, float, float, float, str] | None:
    """(VmRSS MB, Pss MB, VmHWM MB, CPU s, cmdline) of a live process; None once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmRSS" not in fields:  # a zombie
        return None
    mb = lambda key: int(fields[key].split()[0]) / 1024  # noqa: E731
    pss = re.search(r"^Pss:\s+(\d+) kB", rollup, re.M)
    return (mb("VmRSS"), int(pss.group(1)) / 1024 if pss else mb("VmRSS"), mb("VmHWM"),
            (int(stat[11]) + int(stat[12])) / _TICK, cmdline)
