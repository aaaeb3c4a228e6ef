"""Run every benchmark of the project and write one JSON file with each figure and its ratio to the VGG floor.

    python benchmarks/run_all.py [--quick] [--device auto|cpu|cuda|cpu,cuda] [--only NAME ...]
                                 [--threads N] [--out benchmarks/results/latest.json]

Every ``benchmarks/bench_*.py`` is imported and its ``run(quick=..., device=...)`` called once per device,
after the VGG-19 floor (five-level forward of one 256x256 target+reference pair, fp32) has been measured
on that device in the same run. Each figure whose key ends in ``_s`` (seconds) gets a ``*_x_floor``
ratio beside it, against the nearest enclosing ``floor_s`` the benchmark reported (e.g. a floor at its
own image size) or else the run's floor. A benchmark that raises is recorded with its error and the
others still run; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # so bench modules (and this one) can `import common`

import torch  # noqa: E402

from common import FLOOR_LEVELS, machine_info, now_iso, vgg_floor, write_json  # noqa: E402

FLOOR_SIZE, FLOOR_PAIRS = 256, 1


def discover(only: list[str] | None = None) -> dict[str, Path]:
    """``{name: path}`` of ``bench_*.py`` files, name without the ``bench_`` prefix, sorted by name."""
    found = {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}
    if only:
        wanted = [o.removeprefix("bench_").removesuffix(".py") for o in only]
        unknown = [w for w in wanted if w not in found]
        if unknown:
            raise SystemExit(f"unknown benchmark(s) {unknown}; available: {', '.join(found) or 'none'}")
        found = {w: found[w] for w in wanted}
    return found


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise TypeError(f"{path.name} has no run(quick=False, device='cpu') -> dict")
    return module


def add_ratios(result: Any, floor_s: float) -> Any:
    """Copy of ``result`` with ``<key>_x_floor = value / floor`` beside every numeric ``<key>_s``."""
    if not isinstance(result, dict):
        return result
    floor = result.get("floor_s", floor_s)
    floor = floor if isinstance(floor, (int, float)) and floor > 0 else floor_s
    out: dict[str, Any] = {}
    for key, value in result.items():
        out[key] = add_ratios(value, floor) if isinstance(value, dict) else value
        if (isinstance(key, str) and key.endswith("_s") and key != "floor_s"
                and isinstance(value, (int, float)) and not isinstance(value, bool)):
            out[f"{key[:-2]}_x_floor"] = value / floor
    return out


def devices(spec: str) -> list[str]:
    if spec == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    devs = [d.strip() for d in spec.split(",") if d.strip()]
    for d in devs:
        if torch.device(d).type == "cuda" and not torch.cuda.is_available():
            raise SystemExit(f"--device {d}: CUDA is not available on this machine")
    return devs


def run_one(module, quick: bool, device: str) -> dict[str, Any]:
    params = inspect.signature(module.run).parameters
    if "device" in params:
        return module.run(quick=quick, device=device)
    if torch.device(device).type != "cpu":
        return {"skipped": "run() takes no device argument; measured on CPU only"}
    return module.run(quick=quick)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes (a smoke run)")
    ap.add_argument("--device", default="auto", help="auto (cpu, and cuda when available), cpu, cuda, or a list")
    ap.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "latest.json")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    benches = discover(args.only)
    report: dict[str, Any] = {
        "date": now_iso(),
        "command": " ".join(shlex.quote(a) for a in ["python", "benchmarks/run_all.py", *(argv or sys.argv[1:])]),
        "quick": args.quick,
        "machine": machine_info(),
        "floor_definition": {"levels": list(FLOOR_LEVELS), "size": FLOOR_SIZE, "pairs": FLOOR_PAIRS,
                             "dtype": "float32", "weights": "random (timing does not depend on values)"},
        "floor_s": {},
        "results": {},
    }
    failed = False
    for device in devices(args.device):
        floor = vgg_floor(device, FLOOR_SIZE, FLOOR_PAIRS, repeats=3 if args.quick else 10)
        report["floor_s"][device] = floor
        print(f"[{device}] VGG-19 floor (relu1_1..relu5_1, {FLOOR_PAIRS} pair {FLOOR_SIZE}px): {floor:.4f} s",
              flush=True)
        report["results"][device] = {}
        for name, path in benches.items():
            t0 = time.perf_counter()
            try:
                result = add_ratios(run_one(load(name, path), args.quick, device), floor)
            except Exception as e:  # record and go on: one broken benchmark must not lose the others
                failed = True
                result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=5)}
            result["wall_s_total"] = time.perf_counter() - t0
            report["results"][device][name] = result
            status = result.get("error") or result.get("skipped") or "ok"
            print(f"[{device}] {name}: {status} ({result['wall_s_total']:.1f} s)", flush=True)
            write_json(args.out, report)  # partial results survive an interrupted run
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
