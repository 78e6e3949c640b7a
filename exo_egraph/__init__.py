"""exo-egraph: equality-saturation scheduling for Exo procedures."""

from .api import Result, explore

__all__ = ["Result", "explore"]
