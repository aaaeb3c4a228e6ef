"""Measure the package's structure for docs/architecture.md: modules, lines, layers, imports, and the
imports that run back up the layering.

    python docs/measure_architecture.py            # the working tree
    python docs/measure_architecture.py 3032249    # a commit (read with git show; nothing is checked out)

Imports are read with ``ast`` (module-level and inside functions, the latter marked "lazy"); only imports
of the package's own modules count.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "exemplar_color"

# Layers, lowest first; a module may import its own layer and the ones below it. Beside the main line
# (colour -> backbone -> correspondence -> colorization heads -> pipeline -> CLI) sit retrieval (on the
# backbone), training (on correspondence and the heads), evaluation, video and the app (on the pipeline).
LAYERS = [
    ("foundation", ("_version", "errors", "constants", "runtime", "artifacts", "device", "io", "color", "layout",
                    "working", "metrics", "outputs", "uris")),
    ("backbone", ("vgg_spec", "weights", "backbone")),
    ("correspondence, retrieval", ("correspondence", "retrieval")),
    ("colorization heads", ("colorization", "models")),
    ("pipeline, training", ("pipeline", "photos", "recommendations", "result", "full_resolution", "multireference", "training",
                            "baselines")),
    ("evaluation, video, app, scale", ("evaluation", "video", "app", "scale")),
    ("cli", ("cli",)),
]
RANK = {top: i for i, (_, tops) in enumerate(LAYERS) for top in tops}


def sources(ref: str | None) -> dict[str, str]:
    """{module path relative to the package: text} of the working tree or of commit ``ref``."""
    if ref is None:
        return {p.relative_to(ROOT / PACKAGE).as_posix(): p.read_text() for p in (ROOT / PACKAGE).rglob("*.py")}
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", ref, PACKAGE], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    return {n.removeprefix(PACKAGE + "/"): subprocess.run(["git", "show", f"{ref}:{n}"], cwd=ROOT, check=True,
                                                           capture_output=True, text=True).stdout
            for n in names if n.endswith(".py")}


def module_name(rel: str) -> str:
    parts = rel[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


def top_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(rel: str, text: str, modules: set[str]) -> list[tuple[str, bool]]:
    """(imported package module, lazy) for every import of the package in one file; ``from X import name``
    counts as an import of ``X.name`` when that is a module, else of ``X``."""
    me = module_name(rel)
    package = me if rel.endswith("__init__.py") else me.rsplit(".", 1)[0]
    tree = ast.parse(text)
    lazy_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for n in names:
            if n == PACKAGE or n.startswith(PACKAGE + "."):
                out.append((n, id(node) in lazy_nodes))
    return out


def measure(ref: str | None) -> dict:
    src = sources(ref)
    lines = {module_name(r): len(t.splitlines()) for r, t in src.items()}
    edges = []
    for rel, text in src.items():
        me = module_name(rel)
        edges += [(me, target, lazy) for target, lazy in dict.fromkeys(imports(rel, text, set(lines)))
                  if target != me]
    up = [(a, b, lazy) for a, b, lazy in edges
          if top_of(b) in RANK and top_of(a) in RANK and RANK[top_of(b)] > RANK[top_of(a)]]
    from_init = [(a, b, lazy) for a, b, lazy in edges if b == PACKAGE and a != PACKAGE]
    per_layer = Counter(LAYERS[RANK[top_of(m)]][0] for m in lines if top_of(m) in RANK)
    per_layer = {name: per_layer[name] for name, _ in LAYERS}
    fan_in = Counter(b for _, b, _ in edges)
    return {"modules": len(lines), "lines": sum(lines.values()), "per_layer": per_layer, "edges": edges, "up": up,
            "from_init": from_init, "biggest": sorted(lines.items(), key=lambda kv: -kv[1])[:8],
            "over_400": [m for m, n in lines.items() if n > 400], "fan_in": fan_in.most_common(6),
            "unlayered": sorted({top_of(m) for m in lines} - set(RANK) - {"__init__"})}


def report(ref: str | None) -> str:
    m = measure(ref)
    out = [f"## {ref or 'working tree'}",
           f"- {m['modules']} modules, {m['lines']} lines; {len(m['edges'])} imports between them "
           f"({sum(lazy for *_, lazy in m['edges'])} lazy, inside functions)",
           "- modules per layer: " + ", ".join(f"{k} {v}" for k, v in m["per_layer"].items())]
    if m["unlayered"]:
        out.append(f"- not in any layer: {', '.join(m['unlayered'])}")
    out.append("- which layer imports which (number of imports, module-level + lazy):")
    matrix = Counter((LAYERS[RANK[top_of(a)]][0], LAYERS[RANK[top_of(b)]][0]) for a, b, _ in m["edges"]
                     if top_of(a) in RANK and top_of(b) in RANK and top_of(a) != top_of(b))
    for name, _ in LAYERS:
        row = [f"{t} {matrix[(name, t)]}" for t, _ in LAYERS if matrix[(name, t)]]
        out.append(f"  - {name} -> {', '.join(row) or 'nothing'}")
    out.append(f"- imports that run back up the layering: {len(m['up'])}")
    for a, b, lazy in sorted(m["up"]):
        out.append(f"  - {a.removeprefix(PACKAGE + '.')} -> {b.removeprefix(PACKAGE + '.')}{' (lazy)' if lazy else ''}")
    out.append(f"- imports from the package's __init__: {len(m['from_init'])}"
               + "".join(f"\n  - {a.removeprefix(PACKAGE + '.')}{' (lazy)' if lazy else ''}"
                         for a, _, lazy in sorted(m["from_init"])))
    out.append("- biggest modules: " + ", ".join(f"{k.removeprefix(PACKAGE + '.')} {v}" for k, v in m["biggest"]))
    out.append("- over 400 lines: " + (", ".join(k.removeprefix(PACKAGE + ".") for k in m["over_400"]) or "none"))
    out.append("- most imported: " + ", ".join(f"{k.removeprefix(PACKAGE + '.')} ({v})" for k, v in m["fan_in"]))
    return "\n".join(out)


if __name__ == "__main__":
    print(report(sys.argv[1] if len(sys.argv) > 1 else None))
