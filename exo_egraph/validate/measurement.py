"""A measurement: a candidate run against the input and timed, as ``tune`` records it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class Measurement:
    """A candidate measured against the input in one run, interleaved so drift hits both alike.

    ``naive`` and ``median`` are medians in ``unit`` (seconds per call on a CPU; cycles on a model);
    spreads are relative (interquartile range / median): ``spread`` is that of the candidate's time
    relative to the input's, round by round, which is what judging it against the input needs. ``ok`` is False when the outputs differ
    and None when nothing could be measured (``message`` says why)."""

    ok: bool | None
    exact: bool
    unit: str
    naive: float
    median: float
    spread: float = 0.0
    naive_spread: float = 0.0
    runs: int = 0
    message: str = "ok"
    timings: tuple[float, ...] = ()  # the candidate's runs, in ``unit``
    sizes: tuple[tuple[str, int], ...] = ()  # the size arguments the runs used

    @property
    def speedup(self) -> float:
        """How many times faster than the input (1.0 when it could not be measured)."""
        return self.naive / self.median if self.ok is not None and self.median > 0 else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "exact": self.exact, "unit": self.unit, "naive": self.naive, "median": self.median,
            "spread": self.spread, "naive_spread": self.naive_spread, "runs": self.runs,
            "speedup": self.speedup, "message": self.message,
        } | ({"sizes": dict(self.sizes)} if self.sizes else {})  # fmt: skip

    def summary(self) -> list[tuple[str, str]]:
        if self.ok is None:
            return [("measurement", f"not measured: {self.message}")]
        if self.unit == "cycles":  # a deterministic model: one run, no spread
            how = f"{self.median:,.0f} simulated cycles against the input's {self.naive:,.0f}"
        else:
            how = f"median of {self.runs} interleaved rounds, spread {self.spread:.1%}"
        at = f" at {', '.join(f'{k}={v}' for k, v in self.sizes)}" if self.sizes else ""
        return [("validation", f"{self.ok} (exact {self.exact}){at}"), ("speed-up (measured)", f"{self.speedup:.2f}x, {how}")]

    @staticmethod
    def from_json(d: Mapping[str, Any], timings: tuple[float, ...] = ()) -> "Measurement":
        fields = {k: d[k] for k in ("ok", "exact", "unit", "naive", "median", "spread", "naive_spread", "runs", "message")}
        return Measurement(**fields, timings=tuple(timings), sizes=tuple(d.get("sizes", {}).items()))


def failed(message: str, unit: str = "seconds") -> Measurement:
    """A measurement that could not be made: ``ok=None``, with ``message`` saying why."""
    return Measurement(ok=None, exact=False, unit=unit, naive=0.0, median=0.0, message=message)
