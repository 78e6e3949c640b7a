"""exo-egraph: equality-saturation scheduling for Exo procedures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Result, explore

__all__ = ["Result", "explore"]


def __getattr__(name: str) -> Any:
    # loaded on first use, so `rewrites` may import `exo_egraph.ir` without pulling in the pipeline
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
