"""exo-egraph: equality-saturation scheduling for Exo procedures.

    from exo_egraph import explore, Budget
    result = explore(my_proc, "cpu", budget=Budget(seconds=10))
    result.script      # the schedule: a script of Exo calls
    result.proc        # the scheduled proc
    result             # in Jupyter: a summary table

    from exo_egraph import tune
    result = tune(my_proc, "cpu", trials=32)   # candidates measured on this machine
    result.tuning      # what was measured, the calibration, why the schedule was chosen
"""

from .api import DEFAULT_TOP_K, Candidate, Result, explore
from .rewrites.loops import LoopRuleConfig
from .saturate import Budget, Iteration, SaturationStats, StopReason
from .target import Target, create
from .target import names as target_names
from .tuning import DEFAULT_TRIALS, tune

__all__ = [
    "DEFAULT_TOP_K",
    "DEFAULT_TRIALS",
    "Budget",
    "Candidate",
    "Iteration",
    "LoopRuleConfig",
    "Result",
    "SaturationStats",
    "StopReason",
    "Target",
    "create",
    "explore",
    "target_names",
    "tune",
]
