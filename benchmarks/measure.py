"""Measuring helpers shared by the benchmarks."""

from __future__ import annotations

import re
import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak RSS in MB, interpreter and imports included.

    On Linux ``ru_maxrss`` is no good for a child process: it inherits its parent's
    high-water mark (the kernel keeps it across fork and exec), so the mark of the
    process's own memory, VmHWM, is read instead.
    """
    try:
        match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    except OSError:
        match = None
    if match is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return int(match.group(1)) / 1024
