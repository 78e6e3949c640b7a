"""The input's one compared call, as plain data: its random arguments and how to pass them to C.

Validation compares the schedule's outputs with the input's. For a large kernel the input's one
call is the longest thing validation runs (a naive 1024³ f32 matmul: about 10 s), and it does
not depend on the schedule, so `exo_egraph.validate.cpu.begin_reference` runs it in a child
process while the schedule is still being searched. This file is that child's program, run by
path (``python reference_call.py FOLDER``): it imports numpy and nothing of Exo or this package,
so it starts in a fraction of a second. The parent uses the same `random_values` and `c_arg`, so
both sides pass the same arguments.

``FOLDER/job.json`` says what to run: ``cflags``, ``function``, ``seed``, ``context_bytes`` and
``params`` (each ``{"name", "kind": "index" | "flag" | "array", "value"`` for an index,
``"dtype"`` and ``"shape"`` for an array``}``), beside ``unit.c``. The child compiles it, runs the
function once, and writes ``outputs.npz`` (every array after the call) and then ``seconds`` (the
call's wall time); each is written whole and renamed, so a file that exists is complete.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

PR_SET_PDEATHSIG = 1  # Linux prctl: the signal this process gets when its parent dies


def random_values(params: Sequence[Mapping[str, Any]], seed: int) -> dict[str, Any]:
    """Seeded random values for the ``params`` (described as in the module docstring): index
    arguments take their ``value``, flags a random bool, integer arrays small integers (so sums of
    products stay exact), float arrays uniform in [-1, 1)."""
    rng = np.random.default_rng(seed)
    values: dict[str, Any] = {}
    for p in params:
        if p["kind"] == "index":
            values[p["name"]] = int(p["value"])
        elif p["kind"] == "flag":
            values[p["name"]] = bool(rng.integers(0, 2))
        else:
            dtype = np.dtype(p["dtype"])
            shape = tuple(p["shape"])
            if np.issubdtype(dtype, np.integer):
                bound = 8 if dtype.itemsize == 1 else 100
                low = -bound if np.issubdtype(dtype, np.signedinteger) else 0
                values[p["name"]] = rng.integers(low, bound, shape).astype(dtype)
            else:
                values[p["name"]] = rng.uniform(-1, 1, shape).astype(dtype)
    return values


def c_arg(kind: str, value: Any) -> Any:
    """How an argument of this ``kind`` is passed to Exo's C: sizes and flags by value, arrays by pointer."""
    if kind == "index":
        return ctypes.c_int64(value)
    if kind == "flag":
        return ctypes.c_bool(value)
    return ctypes.c_void_p(value.ctypes.data)


def _write_whole(path: Path, write: Any) -> None:
    partial = path.with_name(path.name + ".partial")
    write(partial)
    os.replace(partial, path)


def _save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would add ".npz" to a name
        np.savez(f, **arrays)


def main(folder: Path) -> int:
    try:  # die with the parent, which may be killed before it can stop this call
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, 9)
    except (OSError, AttributeError):
        pass
    job = json.loads((folder / "job.json").read_text())
    built = subprocess.run(
        ["gcc", *job["cflags"], "-shared", "-fPIC", "-o", str(folder / "unit.so"), str(folder / "unit.c")],
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        sys.stderr.write(built.stderr[-4000:])
        return 1
    function = getattr(ctypes.CDLL(str(folder / "unit.so")), job["function"])
    values = random_values(job["params"], job["seed"])
    args = [c_arg(p["kind"], values[p["name"]]) for p in job["params"]]
    context = ctypes.create_string_buffer(job["context_bytes"])
    began = time.perf_counter()
    function(context, *args)
    took = time.perf_counter() - began
    arrays = {k: v for k, v in values.items() if isinstance(v, np.ndarray)}
    _write_whole(folder / "outputs.npz", lambda path: _save_arrays(path, arrays))
    _write_whole(folder / "seconds", lambda path: path.write_text(repr(took)))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
