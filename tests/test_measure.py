"""Measurement for ``tune``: interleaved CPU timing, tasks as plain text, and the pools that run them
(local processes and a real Dask cluster, including a task that kills its worker)."""

from __future__ import annotations

import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from exo import DRAM, proc
from exo.stdlib.scheduling import rename

from exo_egraph.cli import load_procs
from exo_egraph.measure import (
    DaskPool,
    KernelSource,
    LocalPool,
    MeasureTask,
    Measurement,
    apply_script,
    kernel_source,
    load_kernel,
    pool_for,
    run_task,
)
from exo_egraph.targets.cpu import create as cpu
from exo_egraph.validate.cpu import CACHE_LINE, copy_inputs, library, measure_cpu, random_inputs, time_interleaved

KERNELS = """from __future__ import annotations

from exo import DRAM, proc


@proc
def vadd(a: i32[64] @ DRAM, b: i32[64] @ DRAM, c: i32[64] @ DRAM):
    for i in seq(0, 64):
        c[i] = a[i] + b[i]


@proc
def vsub(a: i32[64] @ DRAM, b: i32[64] @ DRAM, c: i32[64] @ DRAM):
    for i in seq(0, 64):
        c[i] = a[i] - b[i]


@proc
def matmul(A: f32[16, 16] @ DRAM, B: f32[16, 16] @ DRAM, C: f32[16, 16] @ DRAM):
    for i in seq(0, 16):
        for j in seq(0, 16):
            for k in seq(0, 16):
                C[i, j] += A[i, k] * B[k, j]
"""

SPLIT_I = """from exo.stdlib.scheduling import divide_loop


def schedule(p):
    p = divide_loop(p, "i", 4, ["io", "ii"], perfect=True)
    return p
"""

BAD_LOOP = """from exo.stdlib.scheduling import divide_loop


def schedule(p):
    return divide_loop(p, "nope", 4, ["io", "ii"], perfect=True)
"""

KILL_WORKER = """def schedule(p):
    import os
    os._exit(1)
"""


@pytest.fixture
def kernels(tmp_path: Path) -> dict:
    f = tmp_path / "small_kernels.py"
    f.write_text(KERNELS)
    return load_procs(f)


def _task(kernels: dict, name: str = "vadd", script: str = SPLIT_I, seconds: float = 0.3) -> MeasureTask:
    return MeasureTask(kernel_source(kernels[name]), script, "cpu", seconds=seconds)


@contextmanager
def time_limit(seconds: int):
    """Fail rather than hang: SIGALRM raises in the test's (main) thread."""

    def expired(signum, frame):
        raise TimeoutError(f"test body took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- time_interleaved and measure_cpu ----------------------------------------------------------


def test_time_interleaved_stops_early_on_a_stable_pair(kernels):
    a, b = rename(kernels["vadd"], "vadd_a"), rename(kernels["vadd"], "vadd_b")
    lib = library([a, b])
    timings = time_interleaved(lib, [a, b], random_inputs(a), seconds=30.0)
    assert len(timings) == 2
    for t in timings:
        assert t.median > 0 and t.runs >= 5 and len(t.timings) == t.runs and t.spread >= 0
    assert timings[0].runs == timings[1].runs < 200


def test_time_interleaved_always_times_one_round(kernels):
    a = rename(kernels["matmul"], "matmul_a")
    (t,) = time_interleaved(library([a]), [a], random_inputs(a), seconds=0.0)
    assert t.runs == 1 and t.median > 0 and t.spread == 0.0


@pytest.mark.parametrize("offset", [0, 16])
def test_timed_and_checked_buffers_begin_where_asked_past_a_cache_line(kernels, offset):
    # numpy's own large arrays begin 16 bytes past a line; timing them would price split loads
    inputs = random_inputs(kernels["matmul"])
    copies = copy_inputs(inputs, offset)
    for name, value in inputs.items():
        if hasattr(value, "ctypes"):
            assert copies[name].ctypes.data % CACHE_LINE == offset and copies[name].flags.c_contiguous
            assert copies[name].dtype == value.dtype and (copies[name] == value).all()
            assert not np.shares_memory(copies[name], value)


def test_measure_cpu_same_proc_is_ok_and_near_one(kernels):
    m = measure_cpu(kernels["matmul"], kernels["matmul"], seconds=2.0)
    assert m.ok is True and m.exact and m.unit == "seconds" and m.message == "ok"
    assert m.naive > 0 and m.median > 0 and m.runs >= 1 and len(m.timings) == m.runs
    assert 0.3 < m.speedup < 3.0


def test_a_measurement_says_the_sizes_it_ran_at_and_keeps_them_through_json():
    from exo_egraph.validate.measurement import Measurement

    @proc
    def scale(n: size, a: f32[n] @ DRAM):
        for i in seq(0, n):
            a[i] = 2.0 * a[i]

    m = measure_cpu(scale, scale, sizes={"n": 40}, seconds=0.5)
    assert m.sizes == (("n", 40),) and m.to_json()["sizes"] == {"n": 40}
    assert "at n=40" in dict(m.summary())["validation"]
    assert Measurement.from_json(m.to_json()).sizes == m.sizes


def test_measure_cpu_wrong_proc_is_not_ok(kernels):
    m = measure_cpu(kernels["vadd"], rename(kernels["vsub"], "vadd"), seconds=1.0)
    assert m.ok is False and not m.exact and "differs" in m.message


def test_cpu_target_measure(kernels):
    m = cpu().measure(kernels["vadd"], apply_script(kernels["vadd"], SPLIT_I), sizes=None, seconds=0.5)
    assert m.ok is True and m.exact and m.median > 0


# --- tasks from text ---------------------------------------------------------------------------


def test_kernel_source_round_trips(kernels):
    for name in ("vadd", "matmul"):
        src = kernel_source(kernels[name])
        assert src.filename == "small_kernels.py" and src.proc == name and src.text == KERNELS
        loaded = load_kernel(src)
        assert loaded.name() == name and str(loaded) == str(kernels[name])
        assert load_kernel(src) is loaded  # once per process


def test_kernel_source_without_a_file_is_a_clear_error(tmp_path):
    f = tmp_path / "gone.py"  # like a notebook cell: the file the proc came from cannot be read
    f.write_text(KERNELS)
    vadd = load_procs(f)["vadd"]
    f.unlink()
    with pytest.raises(ValueError, match="cannot read the file that defines proc vadd") as e:
        kernel_source(vadd)
    assert "\n" not in str(e.value)


def test_load_kernel_names_a_missing_proc():
    with pytest.raises(ValueError, match="defines no proc nothere"):
        load_kernel(KernelSource("k.py", KERNELS, "nothere"))


def test_run_task_good_bad_and_empty_scripts(kernels):
    good = run_task(_task(kernels))
    assert good.ok is True and good.exact and good.median > 0
    bad = run_task(_task(kernels, script=BAD_LOOP))
    assert bad.ok is None and bad.message.startswith("SchedulingError:") and "failed to find" in bad.message
    assert bad.speedup == 1.0
    same = run_task(_task(kernels, script=""))
    assert same.ok is True and same.exact
    broken = run_task(_task(kernels, script="def schedule(p):\n    return 1 / 0\n"))
    assert broken.ok is None and broken.message == "ZeroDivisionError: division by zero"


def test_run_task_of_a_target_option_it_does_not_know(kernels):
    task = MeasureTask(kernel_source(kernels["vadd"]), "", "cpu", options=(("nosuch", 1),), seconds=0.2)
    m = run_task(task)
    assert m.ok is None and m.message.startswith("TypeError:")


# --- pools -------------------------------------------------------------------------------------


def _four(kernels: dict) -> list[MeasureTask]:
    return [_task(kernels, "vadd"), _task(kernels, "vadd", ""), _task(kernels, "matmul"), _task(kernels, "matmul", "")]


def _check_all_ok(tasks, results):
    assert len(results) == len(tasks)
    assert {t for t, _ in results} == set(tasks)
    for _, m in results:
        assert isinstance(m, Measurement) and m.ok is True, m.message


@pytest.mark.parametrize("workers", [2, 0])
def test_local_pool_runs_every_task(kernels, workers):
    tasks = _four(kernels)
    with time_limit(120), LocalPool(workers=workers) as pool:
        results = list(pool.run(tasks))
    _check_all_ok(tasks, results)


def test_local_pool_survives_a_task_that_kills_its_worker(kernels):
    tasks = [_task(kernels, "vadd"), _task(kernels, "vadd", KILL_WORKER), _task(kernels, "matmul", "")]
    with time_limit(120), LocalPool(workers=2) as pool:
        results = dict((t.script, m) for t, m in pool.run(tasks))
    assert len(results) == 3
    assert results[SPLIT_I].ok is True and results[""].ok is True
    assert results[KILL_WORKER].ok is None and "worker died" in results[KILL_WORKER].message


def test_pool_for():
    with pool_for(3, None) as pool:
        assert isinstance(pool, LocalPool) and pool.workers == 3
    assert pool_for(None, None).workers >= 1


def test_dask_pool_without_distributed_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed → ImportError
    with pytest.raises(ImportError, match=r"pip install 'exo-egraph\[distributed\]'"):
        DaskPool("tcp://127.0.0.1:1")


# --- Dask --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    import dask

    # one task per worker at a time (as measuring wants), so a worker's death charges only the task
    # it was running; Dask gives up on a task after its 4th worker death (allowed-failures: 3)
    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
        )
        client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_pool_runs_every_task(kernels, dask_client):
    tasks = _four(kernels)
    with time_limit(60):
        pool = DaskPool(dask_client)
        results = list(pool.run(tasks))
        pool.close()  # a client it was handed stays open
    assert dask_client.status == "running"
    _check_all_ok(tasks, results)


def test_pool_for_a_cluster_address(kernels, dask_client):
    with time_limit(60), pool_for(None, dask_client.scheduler.address) as pool:
        assert isinstance(pool, DaskPool)
        ((task, m),) = list(pool.run([_task(kernels, "vadd", "")]))
    assert m.ok is True and pool.client.status == "closed"


def test_dask_pool_survives_a_task_that_kills_its_worker(kernels, dask_client):
    tasks = [_task(kernels, "vadd"), _task(kernels, "vadd", KILL_WORKER), _task(kernels, "matmul", "")]
    start = time.monotonic()
    with time_limit(60), DaskPool(dask_client) as pool:
        results = dict((t.script, m) for t, m in pool.run(tasks))
    assert len(results) == 3, time.monotonic() - start
    assert results[SPLIT_I].ok is True and results[""].ok is True
    assert results[KILL_WORKER].ok is None and "KilledWorker" in results[KILL_WORKER].message
