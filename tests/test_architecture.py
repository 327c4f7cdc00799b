"""The house rules, checked on the source: imports flow one way (core ← train ← export ← deploy ← hw_sim, with the
workflows, the benchmarks and the command-line face above every stage), Lava only through ``snnchip.lava_compat``,
and no file refers to anything outside the repository."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> (the package it installs as, its layer); a module may import its own layer and those below it
PACKAGES = {"snnchip": "snnchip", "train": "snnchip.train", "export": "snnchip.export", "deploy": "snnchip.deploy",
            "hw_sim": "snnchip.hw_sim", "bench": "snnchip.bench"}
ORDER = ["core", "train", "export", "deploy", "hw_sim", "top"]
TOP = ("snnchip.cli", "snnchip.workflows", "snnchip.bench")


def layer_of(module: str) -> str:
    if module == "snnchip" or module.startswith(TOP):
        return "top"
    for stage in ("train", "export", "deploy", "hw_sim"):
        if module == f"snnchip.{stage}" or module.startswith(f"snnchip.{stage}."):
            return stage
    return "core"


def modules() -> list[tuple[str, Path]]:
    out = []
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out.append((".".join([package, *parts]), path))
    return out


def imported(module: str, path: Path) -> list[str]:
    """Every snnchip module ``path`` imports, at the top or inside a function, absolute or relative."""
    names = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from snnchip import lava_compat`` imports the module snnchip.lava_compat
            names += [f"{target}.{a.name}" for a in node.names] if target == "snnchip" else [target]
    return [n for n in names if n == "snnchip" or n.startswith("snnchip.")]


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_imports_flow_one_way(module: str, path: Path):
    mine = ORDER.index(layer_of(module))
    upward = [n for n in imported(module, path) if ORDER.index(layer_of(n)) > mine]
    assert not upward, f"{module} ({layer_of(module)}) imports from layers above it: {upward}"


def test_no_stage_imports_the_face():
    offenders = [m for m, p in modules() if layer_of(m) != "top" and any(n.startswith("snnchip.cli")
                                                                         for n in imported(m, p))]
    assert not offenders


def test_no_stage_below_the_workflows_loads_a_dataset():
    """Exporting, deploying and simulating take numbers (spike bounds, calibration inputs); the workflows measure
    them on a model's training set (``snnchip.workflows.model_data``)."""
    offenders = [m for m, p in modules() if layer_of(m) in ("export", "deploy", "hw_sim")
                 and any(n.startswith("snnchip.train.data") for n in imported(m, p))]
    assert not offenders


def test_lava_is_imported_only_through_lava_compat():
    offenders = []
    for module, path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            if any(n == "lava" or n.startswith("lava.") for n in names) and module != "snnchip.lava_compat":
                offenders.append(module)
    assert not offenders


def test_no_file_refers_outside_the_repository():
    suffixes = {".py", ".md", ".toml", ".cfg", ".txt"}
    offenders = []
    for path in ROOT.rglob("*"):
        if path.suffix not in suffixes or any(p in (".venv", ".git", "runs") for p in path.relative_to(ROOT).parts):
            continue
        if path == Path(__file__):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "../shared" in text or "DESIGN.md" in text or "shared/papers" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders
