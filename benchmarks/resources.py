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


def _cpu_seconds_with_reaped(process: psutil.Process) -> float:
    """A process and the children it has waited for (they are in its children times)."""
    times = process.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def _server_cpu_seconds(postmaster: psutil.Process) -> float:
    """The postmaster, its reaped backends and its live ones."""
    total = _cpu_seconds_with_reaped(postmaster)
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
        self._pods = [psutil.Process(pid) for pid in pods]
        self._client = client
        self._postmaster = postmaster
        self._started: dict[str, float] = {}
        self._start_time = 0.0

    def _snapshot(self) -> dict[str, float]:
        seconds = {
            "pods": sum(_own_cpu_seconds(process) for process in self._pods),
        }
        if self._client:
            # This process with a load generator it ran and reaped (wrk); no pod may be
            # reaped while the meter runs, or its CPU would count as the client's.
            seconds["client"] = _cpu_seconds_with_reaped(psutil.Process(os.getpid()))
        if self._postmaster is not None:
            seconds["postgres"] = _server_cpu_seconds(self._postmaster)
        return seconds

    def start(self) -> None:
        """Take the first reading."""
        self._started = self._snapshot()
        self._start_time = time.perf_counter()

    def used(self) -> dict[str, float]:
        """CPU seconds each role has used since `start()`."""
        now = self._snapshot()
        return {role: now[role] - self._started[role] for role in now}

    def stop(self, busy: float | None = None) -> dict[str, float]:
        """Average cores each role used since `start()`, e.g. {"client": 0.9, "pods": 1.0,
        "postgres": 0.4}: over `busy` seconds when only those were busy, else over all."""
        ended = self._snapshot()
        elapsed = busy if busy is not None else time.perf_counter() - self._start_time
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
