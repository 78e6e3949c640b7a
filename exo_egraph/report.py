"""What a `Result` shows: report.json, the summary table (terminal, Markdown, HTML) and its plot.

One report for every target: the target's own facts come from its `Verdict` (``to_json``,
``summary``) and from ``Target.describe`` of each candidate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Result


def egraph_json(result: "Result") -> dict[str, Any] | None:
    s = result.stats
    if s is None:
        return None
    return {
        "enodes": s.enodes,
        "eclasses": s.eclasses,
        "iterations": len(s.history),
        "stop_reason": s.stop_reason.value,
        "schedules": s.schedules,
        "cyclic_classes": s.cyclic_classes,
        "seconds": round(s.seconds, 3),
        "history": [it.to_json() for it in s.history],
        **({"stages": [stage.to_json() for stage in s.stages]} if s.stages else {}),
    }


def roundtrip(result: "Result") -> bool | None:
    """Did every candidate lower back to its term (None: the target's terms are not programs)?"""
    checks = [c.replayed.roundtrip for c in result.candidates if c.replayed.roundtrip is not None]
    return all(checks) if checks else None


def to_json(result: "Result") -> dict[str, Any]:
    """report.json: what was explored, how big the e-graph grew, the best schedules and the verdict."""
    return {
        "kernel": result.kernel,
        "target": result.target,
        "stop_reason": result.stop_reason.value,
        "cost_unit": result.cost_unit,
        "egraph": egraph_json(result),
        "naive_cost": result.naive_cost,
        "best": {"cost": result.cost, "steps": result.best.replayed.lines, **result.details[0]},
        "top_k": [{"cost": c.cost, "steps": c.replayed.lines} for c in result.candidates],
        "replay": {"ok": not result.replay_failures, "roundtrip": roundtrip(result), "failures": list(result.replay_failures)},
        "notes": list(result.notes),
        "validation": None if result.validation is None else result.validation.to_json(),
        "build": result.build,
        "phases": {k: round(v, 3) for k, v in result.phases.items()},
        "peak_rss_mb": None if result.peak_rss_mb is None else round(result.peak_rss_mb, 1),
        **({"tuning": result.tuning.to_json()} if result.tuning is not None else {}),
    }


def _stage(st: Any) -> str:
    text = f"{st.enodes:,} e-nodes, {st.schedules:,} schedules, {st.seconds:.2f} s"
    if st.kept is None:
        return text
    if st.bound is None:  # kept by a heuristic (a timed shortlist): nothing is known of the rest
        return text + f"; kept the {st.kept} fastest of a timed shortlist"
    return text + f"; kept the {st.kept} cheapest (the rest cost >= {_number(st.bound)})"


def summary_rows(result: "Result") -> list[tuple[str, str]]:
    s = result.stats
    rows = [("kernel", f"{result.kernel} ({result.target})")]
    if s is not None:
        rows += [
            ("e-nodes / e-classes", f"{s.enodes:,} / {s.eclasses:,}"),
            ("schedules held", f"{s.schedules:,}"),
            ("saturation", f"{len(s.history)} iterations, {s.seconds:.2f} s, {s.stop_reason.value}"),
        ]
        rows += [(f"stage {st.name}", _stage(st)) for st in s.stages]
    rows += [
        ("run stopped", result.stop_reason.value),
        (f"best {result.cost_unit} (naive)", f"{_number(result.cost)} ({_number(result.naive_cost)})"),
        ("replay / round trip", f"{'ok' if not result.replay_failures else 'FAILED'} / {'n/a' if roundtrip(result) is None else roundtrip(result)}"),
    ]
    if result.tuning is not None:
        tu = result.tuning
        rows.append(("measured", f"{len(tu.trials)} schedules ({tu.reused} from the database), {tu.workers}"))
        rows.append(("chosen", tu.verdict))
    if result.build is not None:
        rows.append(("built with", result.build))
    if result.validation is None:
        rows.append(("validation", "skipped"))
    else:
        rows += result.validation.summary()
    return rows


def _number(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.4g}"


def text_table(result: "Result") -> str:
    rows = summary_rows(result)
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def markdown_table(result: "Result") -> str:
    lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in summary_rows(result)]
    return "\n".join(lines) + "\n\n```python\n" + result.script + "```\n"


def html_table(result: "Result") -> str:
    from html import escape

    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in summary_rows(result))
    return f"<table>{rows}</table><pre>{escape(result.script)}</pre>"


def plot_result(result: "Result", axes: Any = None) -> Any:
    """E-graph growth per iteration and cost by rank of the top-k (matplotlib, the ``bench`` extra)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("Result.plot needs matplotlib: pip install 'exo-egraph[bench]'") from e
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    grow, rank = axes
    hist = result.stats.history if result.stats is not None else ()
    grow.plot([it.index for it in hist], [it.enodes for it in hist], marker="o")
    grow.set(xlabel="iteration", ylabel="e-graph rows", title=f"{result.kernel}: saturation")
    costs = [c.cost for c in result.candidates]
    rank.bar(range(1, len(costs) + 1), costs, label="candidates")
    rank.axhline(result.naive_cost, color="gray", linestyle="--", label="input")
    rank.set(xlabel="rank", ylabel=result.cost_unit, title="cost by rank")
    rank.legend()
    return axes
