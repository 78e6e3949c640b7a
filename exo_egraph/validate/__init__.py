"""validate: compile the original and the scheduled proc, run both, compare outputs, time both."""

from .cpu import Validation, ValidationError, random_inputs, run_many, run_proc, validate_cpu

__all__ = ["Validation", "ValidationError", "random_inputs", "run_many", "run_proc", "validate_cpu"]
