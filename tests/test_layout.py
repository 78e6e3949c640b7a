"""The house's rules, checked on the imports: stages only look upstream, the core never names a
target, a target never imports another, and the project installs under one namespace."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import exo_egraph
import exo_egraph.extract
import exo_egraph.rewrites

ROOT = Path(__file__).resolve().parents[1]
# where each installed module's source lives: rewrites/ and extract/ install as exo_egraph.rewrites / .extract
SOURCES = {"exo_egraph": ROOT / "exo_egraph", "exo_egraph.rewrites": ROOT / "rewrites", "exo_egraph.extract": ROOT / "extract"}

# the line, upstream first; a module may import only from its own stage or an earlier one
STAGES = [
    ("terms", ["exo_egraph.terms", "exo_egraph.ir", "exo_egraph.egg"]),
    ("lower", ["exo_egraph.lower", "exo_egraph.instrs"]),
    ("rewrites", ["exo_egraph.rewrites"]),
    ("saturate", ["exo_egraph.saturate"]),
    ("extract", ["exo_egraph.extract"]),
    ("replay", ["exo_egraph.script", "exo_egraph.replay"]),
    ("validate", ["exo_egraph.validate"]),
    ("surface", ["exo_egraph.target", "exo_egraph.report", "exo_egraph.api", "exo_egraph.cli", "exo_egraph.checks",
                 "exo_egraph.testing", "exo_egraph.measure", "exo_egraph.db", "exo_egraph.tuning", "exo_egraph"]),
]  # fmt: skip
TARGET_FACTS = ["config", "plans", "pattern", "selection"]  # a target's facts: below its rules, cost and replay


def modules() -> dict[str, Path]:
    out = {}
    for package, folder in SOURCES.items():
        for file in folder.rglob("*.py"):
            rel = file.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = file
    return out


def imports(name: str, file: Path) -> set[str]:
    tree = ast.parse(file.read_text())
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            mod = (base + ("." + node.module if node.module else "")) if node.level else node.module
            out.update(f"{mod}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("exo_egraph")}


def stage(name: str) -> int | None:
    if name.startswith("exo_egraph.targets"):
        return None  # a target's pieces: checked by their own rules below
    best = None
    for i, (_, prefixes) in enumerate(STAGES):
        for p in prefixes:
            if name == p or name.startswith(p + "."):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    return None if best is None else best[0]


def target_of(name: str) -> str | None:
    """The target a module belongs to: its package under exo_egraph.targets, or a rule/cost module named for it."""
    parts = name.split(".")
    if name.startswith("exo_egraph.targets.") and len(parts) > 2:
        return parts[2]
    named_for = {"gemmini": "gemmini", "gemmini_cost": "gemmini", "gemmini_timeline": "gemmini", "plan_extract": "gemmini", "x86": "x86", "x86_cost": "x86"}
    if name.startswith(("exo_egraph.rewrites.", "exo_egraph.extract.")):
        return named_for.get(parts[2])
    return None


def test_every_module_is_on_the_map():
    unplaced = [m for m in modules() if stage(m) is None and not m.startswith("exo_egraph.targets")]
    assert not unplaced


def test_stages_import_only_upstream_and_the_core_never_imports_a_target():
    bad = []
    for name, file in modules().items():
        mine = stage(name)
        for dep in imports(name, file):
            theirs = stage(dep)
            if mine is not None and theirs is not None and theirs > mine:
                bad.append(f"{name} (stage {STAGES[mine][0]}) imports {dep} (stage {STAGES[theirs][0]})")
            if target_of(name) is None and target_of(dep) is not None:
                bad.append(f"core module {name} imports target module {dep}")
    assert not bad, "\n".join(bad)


def test_a_target_never_imports_another_and_its_facts_sit_below_the_rest():
    bad = []
    for name, file in modules().items():
        mine = target_of(name)
        for dep in imports(name, file):
            theirs = target_of(dep)
            if mine and theirs and mine != theirs:
                bad.append(f"{name} imports another target's {dep}")
            facts_only = {f"exo_egraph.targets.{mine}.{f}" for f in TARGET_FACTS}
            if name in facts_only and theirs == mine and not any(dep == f or dep.startswith(f + ".") for f in facts_only):
                bad.append(f"fact module {name} imports {dep}, which is above the facts")
    assert not bad, "\n".join(bad)


def test_no_private_name_is_imported_across_modules():
    bad = [
        f"{name} imports {dep}"
        for name, file in modules().items()
        for dep in imports(name, file)
        if dep.rpartition(".")[2].startswith("_") and not dep.rpartition(".")[2].startswith("__")
    ]
    assert not bad, "\n".join(bad)


def test_no_module_outside_the_registry_asks_which_target_it_runs():
    bad = [
        str(file)
        for name, file in modules().items()
        if any(s in file.read_text() for s in ('== "gemmini"', "== 'gemmini'", '== "cpu"', "== 'cpu'"))
    ]
    assert not bad


def test_rewrites_and_extract_install_under_the_project_namespace():
    assert Path(exo_egraph.rewrites.__file__).parent == ROOT / "rewrites"
    assert Path(exo_egraph.extract.__file__).parent == ROOT / "extract"
    # outside the checkout, a generic top-level `rewrites` or `extract` is not ours to take
    done = subprocess.run(
        [sys.executable, "-c", "import exo_egraph.rewrites.loops, exo_egraph.extract.cost\n"
         "for n in ('rewrites', 'extract'):\n"
         "    try:\n        __import__(n)\n    except ModuleNotFoundError:\n        continue\n"
         "    raise SystemExit(n + ' is importable')"],
        cwd="/", capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
