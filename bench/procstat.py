"""What a process costs, read from /proc: CPU seconds and resident memory (Linux only)."""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Memory:
    rss: int  # bytes, now (VmRSS)
    peak_rss: int  # bytes, the high-water mark since the process started (VmHWM)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid` so far (utime + stime of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    # The command name (field 2) may hold spaces; the fields after it are plain numbers.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLOCK_TICKS


def memory(pid: int) -> Memory:
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024  # kB
    return Memory(values["VmRSS"], values["VmHWM"])
