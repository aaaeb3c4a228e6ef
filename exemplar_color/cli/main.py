"""Entry point of ``exemplar-color``: results to stdout, progress and logs to stderr.

Known errors (:class:`~exemplar_color.errors.ExemplarColorError`) print as one line and exit 1; usage
errors exit 2; set ``EXEMPLAR_COLOR_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from .. import __version__
from ..errors import ExemplarColorError

# Each module defines ``register(subparsers)`` that adds its command(s) with ``set_defaults(func=...)``.
COMMAND_MODULES = ("match", "colorize", "index", "cache", "train", "evaluate", "info")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exemplar-color",
        description="Exemplar-based colorization of black-and-white photos, with automatic reference retrieval.",
        epilog="Example: exemplar-color colorize old.jpg --reference colour.jpg -o old_colour.png",
    )
    parser.add_argument("--version", action="version", version=f"exemplar_color {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module_name = f"{__package__}.{name}"
        if importlib.util.find_spec(module_name) is not None:
            importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ExemplarColorError as e:
        if os.environ.get("EXEMPLAR_COLOR_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
