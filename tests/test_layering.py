"""The packages stay layered: mri at the bottom, detect and classify beside each other, cascade above both,
curation on top, tools as wiring only. An import across the layers fails here (README "Layout")."""

import ast

import pytest

from mri import PROJECT_ROOT

# package -> project packages its modules may import (besides itself)
ALLOWED = {
    "mri": set(),
    "detect": {"mri"},
    "classify": {"mri"},
    "cascade": {"mri", "detect", "classify"},
    "curation": {"mri", "detect", "classify", "cascade"},
}
PROJECT_PACKAGES = set(ALLOWED) | {"tools", "benchmarks"}
# entry points are wiring: classify.train runs the detector for --proposals
WIRING = {"classify/train.py": {"detect"}}


def project_imports(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & PROJECT_PACKAGES


MODULES = sorted(p for package in ALLOWED for p in (PROJECT_ROOT / package).glob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_module_imports_only_lower_layers(path):
    relative = path.relative_to(PROJECT_ROOT).as_posix()
    package = relative.split("/")[0]
    allowed = ALLOWED[package] | {package} | WIRING.get(relative, set())
    assert project_imports(path) <= allowed, f"{relative} imports {sorted(project_imports(path) - allowed)}"
