"""fastreg's CPU runtime (docs: runtime): thread control, thread count independence, fork and
thread safety, threadpoolctl, and that Numba's own threading layer is never started.

What could crash or hang the process (fork, concurrent threads) runs in a subprocess with a
timeout, so a failure is a failed test, not a dead test run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import runtime_ops

import fastreg
from fastreg import _runtime

TESTS = Path(__file__).resolve().parent


def _run_script(code: str, timeout: float = 600) -> str:
    """Run ``code`` in a fresh interpreter with nothing added to the environment."""
    script = f"import sys; sys.path.insert(0, {str(TESTS)!r})\n" + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def serial_results():
    with fastreg.num_threads(1):
        return runtime_ops.run_all()


def test_thread_count_api():
    default = fastreg.get_num_threads()
    assert default >= 1
    with fastreg.num_threads(1):
        assert fastreg.get_num_threads() == 1
        with fastreg.num_threads(3):
            assert fastreg.get_num_threads() == 3
        assert fastreg.get_num_threads() == 1
    assert fastreg.get_num_threads() == default
    try:
        fastreg.set_num_threads(1)
        assert fastreg.get_num_threads() == 1
    finally:
        fastreg.set_num_threads(default)


@pytest.mark.parametrize("bad", [0, -1])
def test_thread_count_bad_values(bad):
    with pytest.raises(ValueError, match="num_threads"):
        fastreg.set_num_threads(bad)
    with pytest.raises(ValueError, match="num_threads"), fastreg.num_threads(bad):
        pass


@pytest.mark.parametrize("bad", [2.0, "2", True, None])
def test_thread_count_bad_types(bad):
    with pytest.raises(TypeError, match="num_threads"):
        fastreg.set_num_threads(bad)


def test_num_threads_is_context_local():
    seen = {}

    def other():
        seen["other"] = fastreg.get_num_threads()

    with fastreg.num_threads(1):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert seen["other"] == fastreg.get_num_threads()


def _threads_used(n: int) -> set[int]:
    """The threads that run a job of 8 sleeping units under ``num_threads(n)``."""
    used: set[int] = set()
    lock = threading.Lock()

    def body(u0, u1):
        time.sleep(0.02)
        with lock:
            used.add(threading.get_ident())

    with fastreg.num_threads(n):
        _runtime.parallel_for(body, 8, work=1 << 30)
    return used


def test_parallel_for_uses_the_pool_and_the_count():
    assert len(_threads_used(1)) == 1
    assert len(_threads_used(2)) == 2
    assert threading.get_ident() in _threads_used(2)  # the caller works too


def test_parallel_for_partitions_and_propagates_errors():
    seen = []

    def body(u0, u1):
        seen.append((u0, u1))

    with fastreg.num_threads(2):
        _runtime.parallel_for(body, 37, work=1 << 30)
    covered = sorted(seen)
    assert covered[0][0] == 0 and covered[-1][1] == 37
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:], strict=False))

    def failing(u0, u1):
        raise ZeroDivisionError("unit failed")

    with pytest.raises(ZeroDivisionError, match="unit failed"), fastreg.num_threads(2):
        _runtime.parallel_for(failing, 8, work=1 << 30)


def test_jobs_shorter_than_the_wake_latency_stay_on_the_caller(monkeypatch):
    pool = _runtime._Pool()
    monkeypatch.setattr(_runtime, "_LATENCY_FACTOR", 2.0)
    pool.wake_latency = 250e-6  # 250 us: 500k units of ~1 ns are the least worth waking for
    assert pool.worth_waking(10**6) and pool.worth_waking(500_000)
    decisions = [pool.worth_waking(100_000) for _ in range(3 * _runtime._PROBE_EVERY)]
    assert decisions.count(True) == 3  # one probe in every _PROBE_EVERY declined jobs
    pool.wake_latency = 0.0  # not measured yet: every job above serial_work goes to the pool
    assert pool.worth_waking(1)


def test_the_pool_measures_its_wake_latency():
    with fastreg.num_threads(2):
        _runtime.parallel_for(lambda u0, u1: None, 8, work=1 << 30)
    assert 0.0 < _runtime._get_pool().wake_latency < 1.0


@pytest.mark.parametrize("threads", [2, 3])
def test_results_do_not_depend_on_thread_count(serial_results, threads):
    with fastreg.num_threads(threads):
        runtime_ops.assert_same(runtime_ops.run_all(), serial_results, f"with {threads} threads")


def test_numba_threading_layer_never_starts():
    _run_script("""
        import runtime_ops
        runtime_ops.run_all()
        import numba.np.ufunc.parallel as parallel
        assert not parallel._is_initialized, parallel.threading_layer()
    """)


def test_concurrent_python_threads_get_serial_results():
    _run_script("""
        import threading, runtime_ops, fastreg
        with fastreg.num_threads(1):
            want = runtime_ops.run_all()
        errors = []
        def work():
            try:
                for _ in range(2):
                    runtime_ops.assert_same(runtime_ops.run_all(), want, "in a Python thread")
            except BaseException as error:
                errors.append(error)
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
    """)


def test_fork_after_parallel_ops():
    _run_script("""
        import os, traceback, multiprocessing, runtime_ops

        want = runtime_ops.run_all()  # the parent has run every op, in parallel

        pid = os.fork()
        if pid == 0:
            try:
                runtime_ops.assert_same(runtime_ops.run_all(), want, "in an os.fork() child")
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "forked child failed"

        def child(i):
            runtime_ops.assert_same(runtime_ops.run_all(), want, "in a fork pool worker")
            return i

        with multiprocessing.get_context("fork").Pool(2) as pool:
            assert sorted(pool.map(child, range(4))) == [0, 1, 2, 3]
    """)


def test_dataloader_fork_workers():
    pytest.importorskip("torch")
    _run_script("""
        import numpy as np, torch, fastreg

        x = np.random.default_rng(0).standard_normal((4, 1 << 17)).astype(np.float32)

        class Noisy(torch.utils.data.Dataset):
            def __len__(self):
                return 4
            def __getitem__(self, i):
                return torch.from_numpy(fastreg.gaussian_noise(x[i], 0.1, seed=5, offset=i))

        want = [Noisy()[i] for i in range(4)]  # the parent runs the op first
        loader = torch.utils.data.DataLoader(Noisy(), batch_size=1, num_workers=2,
                                             multiprocessing_context="fork", timeout=120)
        got = [batch[0] for batch in loader]
        for i in range(4):
            assert torch.equal(got[i], want[i]), i
    """)


def test_threadpoolctl_limits_fastreg():
    pytest.importorskip("threadpoolctl")
    # fastreg first, threadpoolctl imported afterwards: the controller registers on that import.
    _run_script("""
        import threading, time
        import fastreg
        from fastreg import _runtime
        from threadpoolctl import threadpool_info, threadpool_limits

        assert "fastreg" in [lib["user_api"] for lib in threadpool_info()]
        before = fastreg.get_num_threads()
        used = set()
        def body(u0, u1):
            time.sleep(0.02)
            used.add(threading.get_ident())
        with threadpool_limits(1):
            assert fastreg.get_num_threads() == 1
            _runtime.parallel_for(body, 8, work=1 << 30)
            assert len(used) == 1
        assert fastreg.get_num_threads() == before
        with threadpool_limits(limits=1, user_api="fastreg"):
            assert fastreg.get_num_threads() == 1
        assert fastreg.get_num_threads() == before
    """)


def test_threadpoolctl_limits_a_count_set_above_the_cpus():
    pytest.importorskip("threadpoolctl")
    _run_script("""
        import fastreg
        from fastreg import _runtime
        from threadpoolctl import threadpool_limits

        cpus = _runtime._MAX_THREADS
        fastreg.set_num_threads(cpus + 6)
        assert fastreg.get_num_threads() == cpus + 6
        with threadpool_limits(cpus + 2):
            assert fastreg.get_num_threads() == cpus + 2  # min(set, limit)
        assert fastreg.get_num_threads() == cpus + 6
        with threadpool_limits(cpus + 9):  # above the set count: no effect
            assert fastreg.get_num_threads() == cpus + 6
        with threadpool_limits(1):
            assert fastreg.get_num_threads() == 1
        assert fastreg.get_num_threads() == cpus + 6
        fastreg.set_num_threads(1)
        with threadpool_limits(cpus):
            assert fastreg.get_num_threads() == 1
        assert fastreg.get_num_threads() == 1
    """)
