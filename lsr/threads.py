"""Thread pools sized against the cores a process has and the processes beside it.

A process that answers queries runs three pools: the server's (an event loop, and the thread pool FastAPI runs
handlers in), torch's intra-op OpenMP team (siamese and dense query encoding) and numba's OpenMP team (the batch
kernels). Left alone, torch and numba each start one thread a core in every worker, so ``lsr serve --workers 2`` on 2
cores runs four OpenMP threads per core-pair beside the server's own. An OpenMP team is only as fast as its slowest
thread: when another job holds a core, every parallel region of a forward pass waits for a thread the scheduler has
parked. Measured on 2 cores beside one other CPU-bound process (``benchmarks/busy_cpu.py``, README "Queries that run
a model"): a dense query 3.3x slower at p50 (5.2x mean) with torch's team of 2, 1.06x with one thread.

:func:`configure` (called by ``lsr serve`` in each worker, and by ``lsr eval``) sets:

- numba's batch kernels: ``cores // workers`` threads a process (at least 1), or ``NUMBA_NUM_THREADS`` when the user
  set it: a batch of queries is many independent queries and scales across the cores that are this worker's share.
  numba's thread count is per calling thread, so the retriever sets it in the handler thread before each parallel
  launch (:func:`team`), and the supervisor of several workers sizes each worker's pool (``NUMBA_NUM_THREADS``);
- torch: 1 intra-op thread and 1 inter-op thread. One query is about ten tokens: a second thread gains little on
  it (see the README's figures), and with one thread a query never waits on a parked team member. Concurrent
  requests still use every core, each in its own handler thread.

``cores`` is what the process may run on: its CPU affinity (``taskset``, cpusets), capped by a cgroup v2 CPU quota
(``cpu.max``, what ``docker run --cpus`` and compose's ``cpus:`` set), rounded up.

Settings (environment): ``LSR_THREADS=N`` gives the kernels N threads a process; ``LSR_TORCH_THREADS=N`` (N >= 1) gives
torch N; ``LSR_THREADS=0`` leaves every pool as the libraries size it (lsr before this module). Library users who embed
an :class:`lsr.Engine` call :func:`configure` themselves if they want this (or :func:`configured`, which puts the
pools back afterwards, as ``lsr eval`` does); nothing else calls it.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

THREADS_ENV = "LSR_THREADS"
TORCH_THREADS_ENV = "LSR_TORCH_THREADS"
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cores(cpu_max: Path = CPU_MAX) -> int:
    """The CPUs this process may use: its affinity, capped by a cgroup v2 quota (``quota period`` in ``cpu.max``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


@dataclass(frozen=True)
class Plan:
    cores: int
    workers: int
    kernel_threads: int
    torch_threads: int

    def describe(self) -> str:
        return (f"{self.cores} cores, {self.workers} worker{'s' if self.workers != 1 else ''}: kernel threads "
                f"{self.kernel_threads}, torch threads {self.torch_threads} a process")


_PLAN: Plan | None = None


def _positive(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        from lsr.errors import InvalidInput

        raise InvalidInput(f"{name}={value!r} is not a thread count: use a whole number >= 1, or {THREADS_ENV}=0 to "
                           "leave the thread pools as torch and numba size them")
    return number


def plan(workers: int = 1, environ=os.environ, cores: int | None = None) -> Plan | None:
    """The thread counts :func:`configure` would set; None when ``LSR_THREADS=0`` asks to leave them alone."""
    kernel = environ.get(THREADS_ENV)
    torch_threads = _positive(TORCH_THREADS_ENV, environ.get(TORCH_THREADS_ENV, "1"))
    if torch_threads == 0:
        from lsr.errors import InvalidInput

        raise InvalidInput(f"{TORCH_THREADS_ENV}=0: torch needs at least 1 thread; use {THREADS_ENV}=0 to leave every "
                           "pool as the libraries size it")
    if kernel is not None and _positive(THREADS_ENV, kernel) == 0:
        return None
    cores = cores or available_cores()
    workers = max(1, int(workers))
    if kernel is not None:
        kernel_threads = _positive(THREADS_ENV, kernel)
    elif environ.get("NUMBA_NUM_THREADS", "").isdigit() and int(environ["NUMBA_NUM_THREADS"]) > 0:
        kernel_threads = int(environ["NUMBA_NUM_THREADS"])  # the user's (or the supervisor's) numba setting
    else:
        kernel_threads = max(1, cores // workers)
    return Plan(cores, workers, kernel_threads, torch_threads)


def configure(workers: int = 1) -> Plan | None:
    """Size this process's pools for ``workers`` processes sharing its cores (see the module); returns what it set.
    Safe to call again (a later call replaces the plan). Before numba is imported it sets ``NUMBA_NUM_THREADS``
    (the pool's size); after, ``numba.set_num_threads``. torch is set now if imported, else when an encoder first
    loads a model (:func:`apply_to_torch`, from :func:`lsr.encoders.device.resolve_device`)."""
    global _PLAN
    chosen = plan(workers)
    if chosen is None:
        _PLAN = None
        return None
    _PLAN = chosen
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(max(1, min(chosen.kernel_threads, numba.config.NUMBA_NUM_THREADS)))
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(chosen.kernel_threads)
    if "torch" in sys.modules:
        apply_to_torch()
    return chosen


@contextlib.contextmanager
def configured(workers: int = 1):
    """:func:`configure` for the duration of a ``with`` block, then the plan and torch's and numba's thread counts
    as they were (``lsr eval`` in a process that goes on: a notebook, a test)."""
    global _PLAN
    previous = _PLAN
    torch_threads = None
    if "torch" in sys.modules:
        import torch

        torch_threads = torch.get_num_threads()
    numba_threads = None
    if "numba" in sys.modules:
        import numba

        numba_threads = numba.get_num_threads()
    try:
        yield configure(workers)
    finally:
        _PLAN = previous
        if "torch" in sys.modules:  # (imported inside the block: back to what torch would have started with)
            import torch

            torch.set_num_threads(torch_threads or int(os.environ.get("OMP_NUM_THREADS") or available_cores()))
        if numba_threads is not None:
            import numba

            numba.set_num_threads(numba_threads)


def team(threads: int) -> None:
    """Give the calling thread's next numba parallel launch ``threads`` threads (at most numba's pool): numba's count
    is per calling thread, so a server's handler thread must set its own."""
    import numba

    wanted = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != wanted:
        numba.set_num_threads(wanted)


def kernel_threads() -> int | None:
    """The kernels' thread count :func:`configure` chose, or None when it was not called."""
    return _PLAN.kernel_threads if _PLAN is not None else None


def apply_to_torch() -> None:
    """Give torch the plan's thread counts (nothing when :func:`configure` was not called)."""
    if _PLAN is None:
        return
    import torch

    if torch.get_num_threads() != _PLAN.torch_threads:
        torch.set_num_threads(_PLAN.torch_threads)
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # only settable before torch's first inter-op work: keep what it has
            pass
