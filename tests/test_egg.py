"""egglog's private hooks, used only through exo_egraph.egg: fail loudly, naming the version, when they move."""

from __future__ import annotations

from importlib.metadata import version

import pytest
from egglog import EGraph, i64, rewrite, ruleset, vars_

from exo_egraph import egg
from exo_egraph.ir import Aff


def test_the_private_hooks_exist_in_the_installed_egglog():
    egg.check_private_hooks()  # raises EgglogChanged naming the installed version


def test_a_missing_hook_is_reported_with_the_egglog_version(monkeypatch):
    monkeypatch.delattr(egg.egraph_state, "_exprs_multiple_parents")
    with pytest.raises(egg.EgglogChanged, match=version("egglog")):
        egg.check_private_hooks()


def test_serialize_count_and_matches_work_on_a_real_egraph():
    x, y = vars_("x y", i64)
    swap = rewrite(Aff.c(x)).to(Aff.c(x))  # matches every constant, adds nothing
    rules = ruleset(swap, name="probe")
    egraph = EGraph()
    with egg.no_shared_lets():
        egraph.let("root", Aff.c(3))
    report = egraph.run(rules)
    assert egg.matches_per_rule(report, {swap.decl: "probe-rule"}) == {"probe-rule": 1}
    assert egg.table_rows(egraph) >= 1
    data = egg.serialized(egraph)
    assert {"nodes", "class_data"} <= set(data)
    assert any(d.get("let") == "$root" for d in data["class_data"].values())
