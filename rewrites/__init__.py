"""Rewrite rules, one module per family (`loops`, `gemmini`), each rule beside the Exo call it stands for.

A family hands saturation one `Rules`: the egglog ruleset, the name of the Exo call each rule
stands for (so each saturation iteration reports matches per Exo call), the facts to assert with
the term, and the rules to close before every iteration (guard relations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping


@dataclass(frozen=True)
class Rules:
    ruleset: Any
    names: Mapping[Any, str]  # rule declaration → the Exo call it stands for
    facts: tuple[Any, ...] = ()
    before: Any = None  # run to saturation before each iteration


def named(groups: Iterable[tuple[str, list]]) -> tuple[list, dict[Any, str]]:
    """Every rule of ``groups`` (``(exo call, rules)`` pairs) and each rule's name, by declaration."""
    rules, names = [], {}
    for name, group in groups:
        rules += group
        names.update({r.decl: name for r in group})
    return rules, names
