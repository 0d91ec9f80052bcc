"""Keep prometheus_client's multiprocess directory bounded: one dead worker's files are folded into one total."""

from __future__ import annotations

import os

from prometheus_client import multiprocess
from prometheus_client.mmap_dict import MmapedDict

# Only additive kinds are folded; live gauges are deleted by mark_process_dead.
ADDITIVE = ("counter", "histogram")


def _add_file(totals: dict[str, list[float]], path: str) -> None:
    if os.path.exists(path):
        for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(path):
            total = totals.setdefault(key, [0.0, 0.0])
            total[0] += value
            total[1] = max(total[1], timestamp)


def fold_dead_worker(pid: int, directory: str) -> None:
    """Drop a dead worker's live gauges and move its counters and histograms into the dead workers' totals."""
    # prometheus_client keeps every dead pid's files forever: each worker restart would add ~20 KiB of
    # tmpfs and two more files that every scrape reads. Folded, the directory holds live workers plus one.
    multiprocess.mark_process_dead(pid, directory)
    for kind in ADDITIVE:
        source = os.path.join(directory, f"{kind}_{pid}.db")
        if not os.path.exists(source):
            continue
        target = os.path.join(directory, f"{kind}_dead.db")
        totals: dict[str, list[float]] = {}
        _add_file(totals, target)
        _add_file(totals, source)
        staging = f"{target}.staging"  # not *.db: scrapes never read it half-written
        folded = MmapedDict(staging)
        for key, (value, timestamp) in totals.items():
            folded.write_value(key, value, timestamp)
        folded.close()
        os.replace(staging, target)
        os.remove(source)
