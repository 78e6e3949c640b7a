"""Measurement for ``tune``: a candidate schedule timed against the input, as a task of plain text.

Procs don't pickle, so a task carries the kernel's source file as text and the schedule as the
script ``explore`` writes (``def schedule(p): ...``). A worker — a local process or a Dask worker —
needs only the package installed: it imports the kernel from the text, applies the script through
Exo's scheduling API (Exo re-checks every step), and asks the target to measure the result.
`run_task` is that whole job; a `Pool` runs many — `LocalPool` in processes on this machine,
`DaskPool` on a Dask cluster — and yields each result as it completes.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import itertools
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

from exo import Procedure

from .validate.measurement import Measurement, failed


@dataclass(frozen=True)
class KernelSource:
    """A kernel as text: the source of the file that defines it and the proc's name."""

    filename: str  # the file's base name, as it was (a module is imported under a fresh name)
    text: str
    proc: str

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.proc}\0{self.text}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class MeasureTask:
    """One measurement to run: ``script`` applied to the kernel, timed against the kernel as written."""

    kernel: KernelSource
    script: str  # a schedule as `exo_egraph.script.script_text` renders it; "" for the input itself
    target: str  # a registered target name
    options: tuple[tuple[str, Any], ...] = ()  # the target's options (``create(target, **options)``)
    sizes: tuple[tuple[str, int], ...] = ()  # values of size arguments
    seconds: float = 10.0  # time allowed for the timing runs of this task

    @property
    def script_hash(self) -> str:
        return hashlib.sha256(self.script.encode()).hexdigest()[:20]


def _error(e: BaseException) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


# --- tasks from text ---------------------------------------------------------------------------


def kernel_source(proc: Procedure) -> KernelSource:
    """The file that defines ``proc``, as text, with the proc's name (a `ValueError` when there is
    no file to read: a proc defined in a notebook cell or by ``exec``)."""
    filename = proc.INTERNAL_proc().srcinfo.filename
    try:
        text = Path(filename).read_text()
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(
            f"cannot read the file that defines proc {proc.name()} ({filename}: {_error(e)}); "
            "measuring needs a proc defined in a .py file"
        ) from None
    return KernelSource(Path(filename).name, text, proc.name())


# Per-process memo of imported kernels, by fingerprint: a worker imports each kernel once and
# reuses the proc for every task on it (module-level on purpose: it lives as long as the process).
_KERNELS: dict[str, Procedure] = {}
_KERNEL_LOCK = threading.Lock()  # Dask runs tasks in threads
_KERNEL_DIR: Path | None = None
_MODULE_IDS = itertools.count()


def _kernel_dir() -> Path:
    global _KERNEL_DIR
    if _KERNEL_DIR is None:
        _KERNEL_DIR = Path(tempfile.mkdtemp(prefix="exo-egraph-kernels-"))
        atexit.register(shutil.rmtree, _KERNEL_DIR, True)
    return _KERNEL_DIR


def load_kernel(source: KernelSource) -> Procedure:
    """The proc ``source.proc`` that ``source.text`` defines, imported in this process (once per
    fingerprint) from a temp folder under the file's own name. The kernel's original folder is not
    on the path, so a kernel that imports its neighbours fails to load here."""
    key = source.fingerprint
    with _KERNEL_LOCK:
        if key in _KERNELS:
            return _KERNELS[key]
        folder = _kernel_dir() / key
        folder.mkdir(exist_ok=True)
        path = folder / (Path(source.filename).name or "kernel.py")
        path.write_text(source.text)
        stem = "".join(c if c.isalnum() else "_" for c in path.stem)
        module_name = f"_exo_egraph_kernel_{stem}_{key}_{next(_MODULE_IDS)}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ValueError(f"cannot import {source.filename} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # Exo's parser looks the module up while it runs
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        found = getattr(module, source.proc, None)
        if not isinstance(found, Procedure) or found.is_instr():
            procs = sorted(k for k, v in vars(module).items() if isinstance(v, Procedure) and not v.is_instr())
            defined = ", ".join(procs) or "none"
            raise ValueError(f"{source.filename} defines no proc {source.proc} (it defines: {defined})")
        _KERNELS[key] = found
        return found


def apply_script(proc: Procedure, script: str) -> Procedure:
    """``proc`` scheduled by ``script`` (a module text defining ``schedule(p)``); "" is ``proc`` itself."""
    if not script.strip():
        return proc
    namespace: dict[str, Any] = {"__name__": "_exo_egraph_schedule"}
    exec(compile(script, "<schedule>", "exec"), namespace)
    schedule = namespace.get("schedule")
    if not callable(schedule):
        raise ValueError("the script defines no schedule(p) function")
    out = schedule(proc)
    if not isinstance(out, Procedure):
        raise TypeError(f"schedule(p) returned {type(out).__name__}, not a Procedure")
    return out


def run_task(task: MeasureTask) -> Measurement:
    """Load the kernel, apply the script and measure it on the task's target. Never raises for a
    bad candidate: an error while scheduling or measuring is an ``ok=None`` measurement naming it."""
    from .target import create  # the registry loads targets, which import this module

    try:
        original = load_kernel(task.kernel)
        scheduled = apply_script(original, task.script)
        target = create(task.target, **dict(task.options))
        measure = getattr(target, "measure", None)
        if measure is None:
            return failed(f"target {task.target} cannot measure schedules")
        return measure(original, scheduled, sizes=dict(task.sizes) or None, seconds=task.seconds)
    except KeyboardInterrupt:
        raise
    except (Exception, SystemExit) as e:  # a script's sys.exit() is a bad candidate too
        return failed(_error(e))


# --- pools -------------------------------------------------------------------------------------


class Pool(Protocol):
    """Runs measure tasks somewhere; results come as they complete."""

    def run(self, tasks: Sequence[MeasureTask]) -> Iterator[tuple[MeasureTask, Measurement]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> "Pool": ...

    def __exit__(self, *exc: object) -> None: ...


class _Closing:
    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _leave_interrupts_to_the_caller() -> None:
    """In a worker: ignore Ctrl-C, which the terminal sends to the whole process group. The calling
    process handles it (records what finished, shuts the pool down); a worker's traceback is noise."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalPool(_Closing):
    """Tasks in worker processes on this machine (spawned, one task per worker at a time); default
    one worker per core; ``workers=0`` runs them in the calling process, one after another.

    When a worker process dies, every task then in flight fails with it; those tasks are run again
    one at a time in a fresh pool, so the one that kills its worker is found and charged. A task
    that killed its worker ``retries + 1`` times comes back as an ``ok=None`` measurement."""

    def __init__(self, workers: int | None = None, retries: int = 2) -> None:
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        if self.workers < 0:
            raise ValueError(f"workers must be 0 or more, not {workers}")
        self.retries = retries
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_leave_interrupts_to_the_caller
            )
        return self._executor

    def _discard(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def run(self, tasks: Sequence[MeasureTask]) -> Iterator[tuple[MeasureTask, Measurement]]:
        tasks = list(tasks)
        if self.workers == 0:
            for task in tasks:
                yield task, run_task(task)
            return
        deaths = [0] * len(tasks)
        fresh = deque(range(len(tasks)))
        suspects: deque[int] = deque()  # in flight when a worker died: run again alone
        in_flight: dict[Future, int] = {}
        try:
            while fresh or suspects:
                queue, limit = (suspects, 1) if suspects else (fresh, self.workers)
                executor = self._pool()
                broken = False
                while queue or in_flight:
                    while queue and len(in_flight) < limit and not broken:
                        i = queue.popleft()
                        try:
                            in_flight[executor.submit(run_task, tasks[i])] = i
                        except BrokenProcessPool:
                            queue.appendleft(i)
                            broken = True
                    if not in_flight:
                        break
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        i = in_flight.pop(future)
                        try:
                            result = future.result()
                        except BrokenProcessPool:
                            broken = True
                            deaths[i] += 1
                            if deaths[i] > self.retries:
                                yield tasks[i], failed(f"worker died running this task ({deaths[i]} times)")
                            else:
                                suspects.append(i)
                            continue
                        except Exception as e:  # the task could not reach the worker, say
                            result = failed(_error(e))
                        yield tasks[i], result
                    if broken and not in_flight:
                        break
                if broken:
                    self._discard()
        finally:
            for future in in_flight:  # the caller stopped early
                future.cancel()

    def close(self) -> None:
        self._discard()


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        message = "measuring on a Dask cluster needs distributed: pip install 'exo-egraph[distributed]'"
        raise ImportError(message) from None
    return distributed


class DaskPool(_Closing):
    """Tasks on a Dask cluster: ``cluster`` is the scheduler's address (or a `distributed.Client`,
    which stays open when the pool closes). The workers need exo-egraph installed. Dask retries a
    task whose worker died; a task that still fails comes back as an ``ok=None`` measurement."""

    def __init__(self, cluster: Any, retries: int = 2) -> None:
        distributed = _distributed()
        self._own = isinstance(cluster, str)
        self.client = distributed.Client(cluster) if self._own else cluster
        self.retries = retries

    def run(self, tasks: Sequence[MeasureTask]) -> Iterator[tuple[MeasureTask, Measurement]]:
        distributed = _distributed()
        tasks = list(tasks)
        futures = [self.client.submit(run_task, task, pure=False, retries=self.retries) for task in tasks]
        which = {future.key: task for future, task in zip(futures, tasks)}
        try:
            for future in distributed.as_completed(futures):
                task = which[future.key]
                try:
                    result = future.result()
                except Exception as e:  # KilledWorker: its workers died running it, retries included
                    result = failed(f"worker died or failed: {_error(e)}")
                yield task, result
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()

    def close(self) -> None:
        if self._own:
            self.client.close()


def pool_for(workers: int | None, cluster: str | None) -> Pool:
    """A `DaskPool` on ``cluster`` when one is given (``workers`` is then the cluster's business),
    else a `LocalPool` of ``workers`` processes (default one per core; 0 runs in this process)."""
    return DaskPool(cluster) if cluster else LocalPool(workers)
