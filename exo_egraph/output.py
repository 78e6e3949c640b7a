"""Where a run's results go: the folder is checked before any work, locked while the run writes, and
``schedule.py`` + ``report.json`` are written as a pair that is never half-written or stale.

- Before any work: ``--out`` must be a folder we can create and write; one holding another kernel's
  results is refused unless ``force``.
- While the run works: a lock file (``O_EXCL``, holding the pid) keeps a second run out; a lock left
  by a dead process is taken over.
- The previous pair is moved aside (``*.previous``) when the run starts, so a run that fails leaves
  no pair that looks current; the new pair is written to temporary files and renamed into place,
  schedule first, and ``report.json`` (renamed last) holds the schedule's SHA-256, so a reader can
  tell a matching pair.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEDULE, REPORT, LOCK = "schedule.py", "report.json", ".exo-egraph.lock"


class OutputError(Exception):
    """The output folder cannot take this run's results: one line, exit code 2."""


@dataclass(frozen=True)
class OutDir:
    path: Path

    def check(self, kernel: str, force: bool = False) -> None:
        """Refuse, before any work, a folder that cannot take ``kernel``'s results."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise OutputError(f"--out {p} is a file, not a folder")
        existing = next((a for a in [p, *p.parents] if a.exists()), None)
        if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(f"--out {p} cannot be created or written (no write permission on {existing})")
        report = p / REPORT
        if report.exists() and not force:
            try:
                previous = json.loads(report.read_text()).get("kernel")
            except (OSError, ValueError, AttributeError):
                previous = None
            if previous != kernel:
                raise OutputError(
                    f"--out {p} holds the results of {previous or 'something else'}; pass --force to replace them"
                )

    def lock(self) -> "Lock":
        self.path.mkdir(parents=True, exist_ok=True)
        return Lock(self.path / LOCK)

    def retire_previous(self) -> None:
        """Move an earlier pair aside, so a run that fails leaves nothing that looks current."""
        for name in (SCHEDULE, REPORT):
            f = self.path / name
            if f.exists():
                f.replace(self.path / f"{name}.previous")

    def write_pair(self, schedule: str, report: dict[str, Any]) -> None:
        """Write the pair through temporary files and renames; the report names the schedule's hash."""
        report = {**report, "schedule_sha256": hashlib.sha256(schedule.encode()).hexdigest()}
        _atomic_write(self.path / SCHEDULE, schedule)
        _atomic_write(self.path / REPORT, json.dumps(report, indent=2) + "\n")


class Lock:
    """A lock file holding the owner's pid; ``with`` takes and releases it."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def __enter__(self) -> "Lock":
        for _ in range(2):
            try:
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _pid_in(self.file)
                if owner is not None and _alive(owner):
                    raise OutputError(f"another exo-egraph run (pid {owner}) is writing to {self.file.parent}") from None
                self.file.unlink(missing_ok=True)  # left by a run that died: take it over
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise OutputError(f"could not lock {self.file.parent}")

    def __exit__(self, *exc: Any) -> None:
        self.file.unlink(missing_ok=True)


def _pid_in(file: Path) -> int | None:
    try:
        return int(file.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _atomic_write(target: Path, text: str) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(target)
