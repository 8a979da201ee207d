"""fastreg's CPU threading runtime: the one owner of the threads that run the Numba kernels.

The decision (issue 14, measured on the 2-core AVX2 EPYC VM with nothing set in the environment):
fastreg never starts a Numba threading layer. Every Numba kernel is a serial ``nogil`` body over a
range of work units (tiles, rows, samples), and :func:`parallel_for` hands contiguous ranges of
units to a small pool of Python threads that fastreg starts itself; the calling thread works too.
Idle workers block on a lock (a futex), so they cost nothing while PyTorch, NumPy's BLAS or
anything else in the process runs. Why not one of Numba's layers, measured:

- ``omp`` (GNU OpenMP, the layer Numba picked here): its idle threads spin for ~300k iterations
  after every kernel, on the cores PyTorch's and OpenBLAS's threads need next. PyTorch's own MLP
  step slowed 1.7x beside it, per-batch DropConnect took 4.2x its three bare GEMMs and the dense
  forward 1.34x its GEMM; ``OMP_WAIT_POLICY=PASSIVE`` fixed most of it but is an environment
  variable, read once when libgomp loads (too late once PyTorch has loaded its own copy), and it
  left results bimodal across processes. A ``fork()`` child of a parent that ran a parallel
  kernel is killed ("fork() called from a process already using GNU OpenMP").
- ``tbb``: fork-safe, but its workers spin too (the dense forward went to 1.93x its GEMM), and
  the wheel's ``libtbb`` is not where the loader looks.
- ``workqueue``: aborts the process when two Python threads launch kernels at once
  ("Concurrent access").

The pool has none of these problems by construction: it is fork-safe (a child starts a new pool
on first use, :func:`os.register_at_fork`), thread-safe (each call is one job with its own
completion count; any number of Python threads may submit), and results never depend on the
thread count because bodies write disjoint units and every reduction is over a fixed, split-
independent partition. Less work than a kernel's ``work`` threshold runs on the calling thread.

Waking a blocked worker is not free, and on a VM it is expensive: an idle vCPU is halted, and
waking it took ~20 us back to back and ~200-300 us after a 2 ms idle gap on the 2-core VM (the
caller then also loses time handing the GIL to the waking worker between ranges). A 64k-element
dropout took 0.39 ms on two threads against 0.12 ms on one. So the pool measures that latency
(submit to start, a moving average over recent jobs) and a job runs on the calling thread
unless its estimated serial time (``work`` at ~1 ns a unit, the cheapest kernels' rate) is at
least the latency (the caller works while the worker wakes, so a longer job gains); one such
job in 32 goes to the pool anyway, to keep the estimate fresh.
The thread count never changes a result, so this only moves time.

Thread count: ``os.sched_getaffinity`` (the CPUs this process may run on), lowered by
``NUMBA_NUM_THREADS`` or ``OMP_NUM_THREADS`` if the user set them (never required),
by :func:`set_num_threads`, by the ``with num_threads(n):`` block of the current context, and by
``threadpoolctl.threadpool_limits`` (a registered controller).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "describe",
    "get_num_threads",
    "num_threads",
    "parallel_for",
    "set_num_threads",
]

#: Jobs are cut into at most this many ranges per thread: a busy core (another process, a
#: PyTorch thread still spinning) then delays only its current range, not half the job.
_RANGES_PER_THREAD = 4
#: The serial time of one unit of ``work`` that :func:`parallel_for` assumes: dropout's select,
#: the cheapest kernel, runs at about 1 ns an element on one core.
_SECONDS_PER_WORK = 1e-9
#: A job is handed to the pool only if its estimated serial time is this many wake latencies:
#: below one, the caller finishes before the worker starts...
_LATENCY_FACTOR = 1.0
#: ...except one job in this many, which refreshes the latency estimate.
_PROBE_EVERY = 32


def _default_threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    for variable in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(variable, "").strip()
        if value.isdigit() and int(value) > 0:
            cores = min(cores, int(value))
    return max(1, cores)


_MAX_THREADS = _default_threads()
_global_threads: int | None = None
_context_threads: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "fastreg_num_threads", default=None
)
#: The limit threadpoolctl sets through :class:`_Controller` (None: no limit).
_threadpoolctl_limit: int | None = None


def _check_thread_count(n: Any) -> int:
    import numbers

    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"num_threads must be an int, got {type(n).__name__}")
    n = int(n)
    if n < 1:
        raise ValueError(f"num_threads must be at least 1, got {n}")
    return n


def get_num_threads() -> int:
    """The number of threads fastreg's CPU kernels use in this context (the calling thread
    included).

    The innermost ``with fastreg.num_threads(n):`` block wins, then
    :func:`set_num_threads`, then the CPUs this process may run on; a
    ``threadpoolctl.threadpool_limits`` limit lowers all of them.

    Examples
    --------
    >>> import fastreg
    >>> with fastreg.num_threads(1):
    ...     fastreg.get_num_threads()
    1
    """
    n = _context_threads.get()
    if n is None:
        n = _global_threads if _global_threads is not None else _MAX_THREADS
    if _threadpoolctl_limit is not None:
        n = min(n, _threadpoolctl_limit)
    return n


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (``n >= 1``) for fastreg's CPU kernels from now on, in every thread.

    Results never depend on the thread count. Only fastreg is affected: PyTorch's and NumPy's
    BLAS threads keep their own settings.

    Raises
    ------
    TypeError
        ``n`` is not an int.
    ValueError
        ``n < 1``.
    """
    global _global_threads
    _global_threads = _check_thread_count(n)


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """``with fastreg.num_threads(n):`` runs the block's fastreg kernels on ``n`` threads.

    Context-local (:mod:`contextvars`): other Python threads and asyncio tasks keep theirs.
    """
    token = _context_threads.set(_check_thread_count(n))
    try:
        yield
    finally:
        _context_threads.reset(token)


class _Job:
    """One :func:`parallel_for` call: ranges handed out in order, a count of unfinished ones."""

    __slots__ = ("body", "args", "bounds", "next", "left", "lock", "done", "error", "submitted")

    def __init__(self, body: Callable[..., Any], args: tuple, bounds: list[int]) -> None:
        self.submitted = time.perf_counter()
        self.body = body
        self.args = args
        self.bounds = bounds
        self.next = 0
        self.left = len(bounds) - 1
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def work(self) -> None:
        """Run ranges until none is left (the bodies release the GIL while they run)."""
        bounds = self.bounds
        while True:
            with self.lock:
                r = self.next
                if r >= len(bounds) - 1:
                    return
                self.next = r + 1
            try:
                if self.error is None:
                    self.body(*self.args, bounds[r], bounds[r + 1])
            except BaseException as error:  # re-raised in the submitting thread
                self.error = error
            with self.lock:
                self.left -= 1
                finished = self.left == 0
            if finished:
                self.done.set()


class _Pool:
    """Worker threads that take jobs from one queue; they block (no spinning) when idle.

    ``wake_latency`` is a moving average of the seconds from a job's submission to a worker
    starting it (0.0 until measured); ``declined`` counts the jobs kept on the caller."""

    def __init__(self) -> None:
        import queue

        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.wake_latency = 0.0
        self.declined = 0

    def worth_waking(self, work: int) -> bool:
        """Whether ``work`` units are worth waking the workers for (module docstring)."""
        if work * _SECONDS_PER_WORK >= _LATENCY_FACTOR * self.wake_latency:
            return True
        self.declined += 1  # unlocked: a lost count only shifts the next probe
        return self.declined % _PROBE_EVERY == 0

    def ensure(self, workers: int) -> None:
        if len(self._workers) >= workers:
            return
        with self._lock:
            while len(self._workers) < workers:
                thread = threading.Thread(
                    target=self._serve, name=f"fastreg-worker-{len(self._workers)}", daemon=True
                )
                thread.start()
                self._workers.append(thread)

    def _serve(self) -> None:
        _local.in_worker = True
        while True:
            job = self._queue.get()
            if job is None:
                return
            latency = time.perf_counter() - job.submitted
            previous = self.wake_latency
            self.wake_latency = latency if previous == 0.0 else 0.75 * previous + 0.25 * latency
            job.work()

    def submit(self, job: _Job, helpers: int) -> None:
        for _ in range(helpers):
            self._queue.put(job)


_local = threading.local()
_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _get_pool() -> _Pool:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = _Pool()
    return _pool


def _after_fork_in_child() -> None:
    # The parent's workers do not exist in the child, and a lock may have been held by one of
    # them at the fork: start from nothing, a new pool on first use.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()
    _local.__dict__.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def parallel_for(body: Callable[..., Any], nunits: int, *args: Any, work: int,
                 serial_work: int = 1 << 16) -> None:
    """``body(*args, u0, u1)`` over contiguous ranges ``[u0, u1)`` that partition
    ``range(nunits)``, on up to :func:`get_num_threads` threads.

    ``body`` is a Numba ``@njit(nogil=True)`` function that handles units ``[u0, u1)`` and writes
    only their outputs, so the result is the same for every partition. ``work`` (elements, or
    any unit of cost) below ``serial_work`` runs on the calling thread: waking a worker costs more
    than such a job. So does a job too short for the workers' measured wake latency (module
    docstring), a call from a worker thread, or one with one thread.
    """
    threads = min(get_num_threads(), nunits)
    pool = _get_pool()
    if (threads <= 1 or work < serial_work or getattr(_local, "in_worker", False)
            or not pool.worth_waking(work)):
        if nunits > 0:
            body(*args, 0, nunits)
        return
    ranges = min(nunits, threads * _RANGES_PER_THREAD)
    bounds = [nunits * r // ranges for r in range(ranges + 1)]
    job = _Job(body, args, bounds)
    pool.ensure(threads - 1)
    pool.submit(job, threads - 1)
    job.work()
    job.done.wait()
    if job.error is not None:
        raise job.error


def describe() -> dict[str, Any]:
    """What the runtime is and the environment variables that could affect it, as found."""
    variables = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "NUMBA_NUM_THREADS",
                 "NUMBA_THREADING_LAYER", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    return {
        "runtime": "fastreg pool: Python threads running nogil Numba bodies (no Numba layer)",
        "threads": get_num_threads(),
        "environment": {name: os.environ.get(name) for name in variables},
    }


_registered = False


def _register_threadpoolctl() -> None:
    """Make ``threadpoolctl.threadpool_limits(n)`` limit fastreg too. Runs when threadpoolctl
    is imported (:class:`_ThreadpoolctlHook`), or at once if it already was: importing it
    ourselves would add ~35 ms to ``import fastreg``."""
    global _registered
    if _registered:
        return
    import sys

    threadpoolctl = sys.modules.get("threadpoolctl")
    if threadpoolctl is None:
        return
    _registered = True
    if not hasattr(threadpoolctl, "register"):  # threadpoolctl < 3.2
        return

    class _Controller(threadpoolctl.LibController):
        # threadpoolctl finds controllers through the shared libraries loaded in the process;
        # fastreg's pool is Python threads, so it is anchored on the C library every process has.
        user_api = "fastreg"
        internal_api = "fastreg"
        filename_prefixes = ("libc.so", "libc-")

        def get_num_threads(self) -> int:
            # The threadpoolctl-level cap, not the context's count: threadpoolctl restores what
            # this returned on entry, and restoring a `with num_threads(1)` value would leave a
            # permanent limit behind.
            if _threadpoolctl_limit is not None:
                return _threadpoolctl_limit
            return max(_MAX_THREADS, _global_threads or 0)

        def set_num_threads(self, num_threads: int) -> None:
            global _threadpoolctl_limit
            # threadpoolctl restores the value get_num_threads returned on entry: that is no
            # limit unless one was already set.
            # "No limit" is the count get_num_threads reports without one, which counts a
            # set_num_threads above the CPU count: threadpool_limits(4) after set_num_threads(8)
            # on 2 CPUs limits fastreg to 4.
            limit = None if num_threads is None else max(1, int(num_threads))
            unlimited = max(_MAX_THREADS, _global_threads or 0)
            _threadpoolctl_limit = None if limit is not None and limit >= unlimited else limit

        def get_version(self) -> str | None:
            return None

        def set_additional_attributes(self) -> None:
            pass

    threadpoolctl.register(_Controller)


class _ThreadpoolctlHook:
    """A meta-path finder that registers fastreg's controller right after ``threadpoolctl``
    is imported (whenever that happens), then removes itself."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "threadpoolctl":
            return None
        import importlib.util
        import sys

        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_register(module: Any) -> None:
            exec_module(module)
            _register_threadpoolctl()

        spec.loader.exec_module = exec_and_register  # type: ignore[method-assign]
        return spec


def _install_threadpoolctl_hook() -> None:
    import sys

    if "threadpoolctl" in sys.modules:
        _register_threadpoolctl()
    else:
        sys.meta_path.insert(0, _ThreadpoolctlHook())


_install_threadpoolctl_hook()
