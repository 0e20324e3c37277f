"""Who used the machine during a run: CPU per role (client, pods, PostgreSQL) and peak RSS.

CPU answers "who saturates": a Python process tops out near 1.0 core, the machine at its
core count. PostgreSQL's share counts the postmaster's live children plus the backends it
has already reaped (the kernel adds those to its children times), so connections that come
and go during the run are not lost.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from types import TracebackType

import psutil

MB = 1024 * 1024


def _own_cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _server_cpu_seconds(postmaster: psutil.Process) -> float:
    """The postmaster, its reaped backends and its live ones."""
    times = postmaster.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in postmaster.children():
        try:
            total += _own_cpu_seconds(child)
        except psutil.Error:  # a backend that exited meanwhile is in children_* now
            continue
    return float(total)


class CpuMeter:
    """CPU seconds each role used between `start()` and `stop()`."""

    def __init__(
        self, pods: Sequence[int], postmaster: psutil.Process | None, *, client: bool = True
    ) -> None:
        self._roles: dict[str, list[psutil.Process]] = {
            "pods": [psutil.Process(pid) for pid in pods]
        }
        if client:
            self._roles["client"] = [psutil.Process(os.getpid())]
        self._postmaster = postmaster
        self._started: dict[str, float] = {}

    def _snapshot(self) -> dict[str, float]:
        seconds = {
            role: sum(_own_cpu_seconds(process) for process in processes)
            for role, processes in self._roles.items()
        }
        if self._postmaster is not None:
            seconds["postgres"] = _server_cpu_seconds(self._postmaster)
        return seconds

    def start(self) -> None:
        """Take the first reading."""
        self._started = self._snapshot()

    def stop(self, elapsed: float) -> dict[str, float]:
        """Average cores each role used over `elapsed` seconds of work since `start()`,
        e.g. {"client": 0.9, "pods": 1.0, "postgres": 0.4}."""
        ended = self._snapshot()
        return {role: (ended[role] - self._started[role]) / elapsed for role in ended}


class RssSampler:
    """Samples the resident memory of processes in a thread; keeps each one's peak (bytes)."""

    def __init__(self, pids: Sequence[int], interval: float = 0.05) -> None:
        self._processes = {pid: psutil.Process(pid) for pid in pids}
        self._interval = interval
        self.peaks: dict[int, int] = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        for pid, process in self._processes.items():
            try:
                rss = process.memory_info().rss
                rss += sum(child.memory_info().rss for child in process.children(recursive=True))
            except psutil.Error:  # the process ended: its last peak stands
                continue
            self.peaks[pid] = max(self.peaks[pid], rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    @property
    def peak_mb(self) -> float:
        """The largest peak of any sampled process, in MiB."""
        return max(self.peaks.values(), default=0) / MB

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def sample_rss_peak_mb(pids: Sequence[int], seconds: float) -> float:
    """Peak RSS (MiB) of the largest of `pids` over `seconds` (e.g. of idle pods)."""
    with RssSampler(pids) as sampler:
        time.sleep(seconds)
    return sampler.peak_mb
