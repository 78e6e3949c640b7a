"""Time schedules of one proc against each other, interleaved, as ratios (a noisy machine's way).

    python benchmarks/ab_schedules.py FILE.py::PROC A/schedule.py B/schedule.py [...] [--sizes N=128,...] [--runs 2]
        [--cflags "-O2 -fwrapv"]

Each ``schedule.py`` is what ``exo-egraph explore`` or ``tune`` wrote (or any module defining
``schedule(p)``). The naive proc and every schedule are compiled into one library at the flags
users build with (`NATIVE_CFLAGS`; ``--cflags`` for another build, such as the cpu target's) and
timed by `time_interleaved` (each round runs every proc once, in alternating order); each run
prints microseconds per call and each schedule's time over the first schedule's. Schedules of a kernel cut into pieces name the pieces after the proc, so
each is applied to a copy renamed ``s0``, ``s1``, ..., its pieces' names in the script with it,
to share the library.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exo.stdlib.scheduling import rename  # noqa: E402

from exo_egraph.cli import InputError, load_proc, parse_sizes  # noqa: E402
from exo_egraph.measure import apply_script  # noqa: E402
from exo_egraph.validate.cpu import NATIVE_CFLAGS, library, random_inputs, time_interleaved  # noqa: E402


def sizes_arg(text: str) -> dict[str, int] | None:
    """``--sizes`` for argparse: a bad value is argparse's one-line usage error."""
    try:
        return parse_sizes(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kernel", help="FILE.py::PROC")
    ap.add_argument("schedules", nargs="+", help="schedule.py files")
    ap.add_argument("--sizes", type=sizes_arg, default=None, help="values of the proc's size arguments, N=128,...")
    ap.add_argument("--runs", type=int, default=2, help="interleaved runs, each printed")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per run")
    ap.add_argument("--cflags", default=" ".join(NATIVE_CFLAGS), help="gcc flags (default: %(default)s)")
    args = ap.parse_args(argv)
    sys.setrecursionlimit(20000)  # Exo's checks recurse through fully unrolled register tiles
    proc = load_proc(args.kernel)
    procs = [rename(proc, "naive")]
    for i, f in enumerate(args.schedules):  # its pieces (`piece_name`: PROC_part0, ...) renamed with it
        script = Path(f).read_text().replace(f"{proc.name()}_part", f"s{i}_part")
        procs.append(apply_script(rename(proc, f"s{i}"), script))
    lib = library(procs, cflags=tuple(args.cflags.split()))
    for _ in range(args.runs):
        timings = time_interleaved(lib, procs, random_inputs(proc, args.sizes), seconds=args.seconds, min_rounds=15)
        first = timings[1].median
        cells = [f"naive {timings[0].median * 1e6:.2f} us"]
        cells += [f"s{i} {t.median * 1e6:.2f} us ({t.median / first:.3f})" for i, t in enumerate(timings[1:])]
        print("  ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
