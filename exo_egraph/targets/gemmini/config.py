"""Gemmini's facts, all read from one file: the timing model's header ``model/include/gemmini_timing.h``.

The array size DIM, the scratchpad and accumulator capacities, the longest block load and every
cycle constant are ``#define GEMMINI_T_<NAME> <int>`` lines there; the C model compiles them, and
instruction selection, the rules, the cost model, extraction and replay read them from here.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

PLATFORM = "exo.platforms.gemmini"  # the Exo module whose @instr procs and configs the target uses
# where instructions come from: exo's platform, then those it lacks (`exo_egraph.targets.gemmini.instructions`)
INSTRUCTION_MODULES = (PLATFORM, "exo_egraph.targets.gemmini.instructions")


def instr_module(name: str) -> str:
    """The module a schedule imports instruction (or config) ``name`` from: exo's platform when it has it."""
    return next(m for m in INSTRUCTION_MODULES if hasattr(importlib.import_module(m), name))
TIMING_HEADER = Path(__file__).resolve().parent / "model" / "include" / "gemmini_timing.h"
_DEFINE = re.compile(r"^#define\s+GEMMINI_T_([A-Z0-9_]+)\s+(-?\d+)\b", re.MULTILINE)


def timing_constants() -> Mapping[str, int]:
    """The header's constants keyed without the ``GEMMINI_T_`` prefix (``GEMMINI_T_DIM`` → ``"DIM"``)."""
    return MappingProxyType({name: int(value) for name, value in _DEFINE.findall(TIMING_HEADER.read_text())})


CONSTANTS = timing_constants()
DIM: int = CONSTANTS["DIM"]  # rows and columns of the systolic array, and of every tile
SP_ROWS: int = CONSTANTS["SP_ROWS"]  # scratchpad rows of DIM int8
ACC_ROWS: int = CONSTANTS["ACC_ROWS"]  # accumulator rows of DIM int32
BLOCK: int = CONSTANTS["DMA_MAXBYTES"] // DIM  # most DIM-column int8 blocks one mvin moves (MAX_BLOCK_LEN)


def block_factor(column_tiles: int | None) -> int | None:
    """Column tiles one block load moves when a staging covers ``column_tiles`` consecutive ones:
    the largest count up to BLOCK that divides them; None below two (then a tile load does)."""
    if column_tiles is None:
        return None
    return next((f for f in range(BLOCK, 1, -1) if column_tiles % f == 0), None)
