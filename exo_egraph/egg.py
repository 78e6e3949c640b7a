"""The one place that touches egglog-python's private surface (egglog 13.2).

egglog-python has no public way to serialize an e-graph to JSON, or to insert a term without its
shared global ``let`` bindings. Both are needed, so both go through this module, and
`check_private_hooks` (run by the test suite) fails loudly, naming the installed egglog
version, when an upgrade moves them.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any, Iterator

from egglog import EGraph, RunReport
from egglog import egraph_state

TESTED_VERSION = "13.2.0"


class EgglogChanged(RuntimeError):
    """egglog's private hooks this project relies on are missing or changed shape."""


def check_private_hooks() -> None:
    """Raise `EgglogChanged` naming the installed version when a hook this module uses is gone."""
    missing = [
        name
        for owner, name in ((egraph_state, "_exprs_multiple_parents"), (EGraph, "_serialize"))
        if not callable(getattr(owner, name, None))
    ]
    if missing:
        raise EgglogChanged(
            f"egglog {version('egglog')} lacks {', '.join(missing)} (exo-egraph is tested with egglog "
            f"{TESTED_VERSION}): update exo_egraph/egg.py"
        )


@contextmanager
def no_shared_lets() -> Iterator[None]:
    """Insert terms as plain trees, without egglog-python's shared global ``let`` bindings.

    egglog 13.2 can resolve a global binding to the value of another one when one action refers
    to several of them: inserting a lowered kernel then occasionally put ``i + 1`` where the
    program has ``0`` (found by the soundness properties; reproduced on the plain egglog text).
    Without shared bindings each command refers to no global, which sidesteps it; the inserted
    terms are small, so the lost sharing costs nothing that matters.
    """
    shared = egraph_state._exprs_multiple_parents
    egraph_state._exprs_multiple_parents = lambda typed_expr: []
    try:
        yield
    finally:
        egraph_state._exprs_multiple_parents = shared


def serialized(egraph: EGraph) -> dict[str, Any]:
    """The whole e-graph as egglog's serialization JSON (``nodes``, ``class_data``, ...)."""
    return json.loads(egraph._serialize(max_functions=None, max_calls_per_function=None).to_json())


def table_rows(egraph: EGraph) -> int:
    """Rows of every egglog table: e-nodes plus relation facts (what memory grows with)."""
    return sum(n for _, n in egraph.all_function_sizes())


def matches_per_rule(report: RunReport, names: dict[Any, str]) -> dict[str, int]:
    """Matches per rule name in one run (``names``: rule declaration → the name of the Exo call it
    stands for); a rule without a name counts as ``other``."""
    out: dict[str, int] = {}
    for decl, n in report.num_matches_per_rule.items():
        name = names.get(decl) or getattr(decl, "name", None) or "other"
        out[name] = out.get(name, 0) + n
    return out
