"""The package's shape, read from its source with ``ast`` (nothing is imported): no module reaches into another
module's private names, and no module is over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("exemplar_color", "benchmarks")
MAX_LINES = 400

def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _external_modules(tree: ast.Module) -> set[str]:
    """Names bound to modules of other projects (``import argparse``): their private names are theirs to keep."""
    return {(a.asname or a.name).split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
            for a in node.names if not a.name.startswith("exemplar_color")}


def _ours(node: ast.ImportFrom, path: Path) -> bool:
    """Whether ``from M import ...`` names a module of this project (relative, the package, or a sibling script)."""
    module = node.module or ""
    return bool(node.level) or module.startswith("exemplar_color") or (path.parent / f"{module}.py").is_file()


def private_reaches(path: Path) -> list[str]:
    """``x._name`` where ``x`` is not ``self``, ``cls``, ``super()`` or another project's module, and
    ``from <this project's module> import _name``."""
    tree = ast.parse(path.read_text(), str(path))
    external = _external_modules(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in {"self", "cls", *external}:
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            found.append(f"{ast.unparse(node)} (line {node.lineno})")
        elif isinstance(node, ast.ImportFrom) and _ours(node, path):
            found += [f"from {'.' * node.level}{node.module or ''} import {a.name}" for a in node.names
                      if _private(a.name) and a.name != "_version"]
    return found


def test_private_reaches_finds_what_it_should(tmp_path):
    f = tmp_path / "m.py"
    (tmp_path / "sibling.py").write_text("")
    f.write_text("import argparse\nfrom .io import _why, ok\nfrom . import _version\nfrom sibling import _s\n"
                 "from os.path import _joinrealpath\n"
                 "class A:\n    def f(self, other):\n        super()._g(); self._x; argparse._SubParsersAction\n"
                 "        return other._y, self.store._rows\n")
    assert sorted(private_reaches(f)) == ["from .io import _why", "from sibling import _s", "other._y (line 9)",
                                          "self.store._rows (line 9)"]


def test_no_module_reaches_into_another_modules_private_names():
    found = {(p.relative_to(ROOT).as_posix(), reach) for top in CHECKED for p in sorted((ROOT / top).rglob("*.py"))
             for reach in private_reaches(p)}
    assert not found, "make the step public instead:\n" + "\n".join(sorted(map(str, found)))


def test_no_module_is_over_400_lines():
    long = {p.relative_to(ROOT).as_posix(): n for p in (ROOT / "exemplar_color").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules: {long}"
