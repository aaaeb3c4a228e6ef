"""The engine flags shared by ``colorize`` and ``index build``; argparse only, so ``--help`` imports no Ray."""

from __future__ import annotations

import argparse

ENGINES = ("local", "ray")


def gpu_share(text: str) -> float:
    """A GPU count per worker: 0, a fraction (0.5: two workers share a GPU) or a whole number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of GPUs, got {text!r}") from None
    if not 0 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be from 0 to 64, got {text}")
    return value


def add_engine_options(p: argparse.ArgumentParser, workers: bool) -> None:
    """``--engine``, ``--address``, ``--gpus-per-worker`` (and ``--workers`` where the command has none)."""
    p.add_argument("--engine", default="local", choices=ENGINES,
                   help="local (default): this process; ray: Ray workers, each holding one model "
                        "(pip install 'exemplar_color[scale]')")
    p.add_argument("--address", metavar="ADDR",
                   help="with --engine ray: the cluster (host:port of `ray start --head`, or auto); default: a local "
                        "Ray started for this run")
    p.add_argument("--gpus-per-worker", type=gpu_share, default=0.0, metavar="G",
                   help="with --engine ray: GPUs each worker holds (0: CPU workers, default; 0.5: two share a GPU)")
    if workers:
        p.add_argument("--workers", type=_positive, default=None, metavar="N",
                       help="with --engine ray: Ray workers, each with one model (default: the cluster's CPUs "
                            "divided by --threads, or its GPUs divided by --gpus-per-worker)")


def refuse_engine_flags(args: argparse.Namespace, workers: bool) -> None:
    """The Ray flags without ``--engine ray`` would be silently ignored: refused instead (exit 2)."""
    from ..errors import UsageError

    if getattr(args, "engine", "local") == "ray":
        return
    given = [f for f, on in (("--address", args.address), ("--gpus-per-worker", args.gpus_per_worker),
                             ("--workers", workers and args.workers)) if on]
    if given:
        raise UsageError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for --engine ray; add it, or "
                         f"leave {'it' if len(given) == 1 else 'them'} out")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
