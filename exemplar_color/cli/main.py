"""Entry point of ``exemplar-color``: results to stdout, progress and logs to stderr.

Building the parser imports no torch, numpy or Pillow (``exemplar-color --help`` and every subcommand's
``--help`` take a fraction of a second): the command modules import what they need inside their ``run``
functions. The command line's vocabulary (one name per concept) is written down in ``docs/cli.md``.

Every failure ends in ONE line on stderr, ``error: ...``: usage mistakes (bad arguments, outputs that would
collide or overwrite an input) exit 2, before any model is loaded; the library's typed errors
(:class:`~exemplar_color.errors.ExemplarColorError`), file-system errors and anything unexpected exit 1.
Set ``EXEMPLAR_COLOR_DEBUG=1`` to get the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys

from .._version import __version__
from ..errors import ExemplarColorError, without_unsafe_advice
from .options import HelpFormatter, join_level_lists

# Each module defines ``register(subparsers)`` that adds its command(s) with ``set_defaults(func=...)``.
COMMAND_MODULES = ("match", "colorize", "video", "index", "cache", "train", "evaluate", "info", "app")
# The module of each command: a run registers only its own (``train`` would import the trainer and h5py, ``index``
# FAISS, for a one-photo ``colorize`` that needs none of them); help and unknown commands register all.
COMMAND_MODULE = {"match": "match", "colorize": "colorize", "colorize-video": "video", "index": "index",
                  "cache": "cache", "train": "train", "evaluate": "evaluate", "info": "info", "app": "app"}


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (``exemplar-color colorize: error: ...``), exit 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)  # the subcommands' parsers too (add_parser)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        # ``--levels a b c`` becomes ``--levels a,b,c``: a positional argument after it is never eaten.
        return super().parse_known_args(join_level_lists(sys.argv[1:] if args is None else args), namespace)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or only ``command``'s part of it (what a run of that command needs)."""
    parser = Parser(
        prog="exemplar-color",
        description="Exemplar-based colorization of black-and-white photos, with automatic reference retrieval.",
        epilog="Example:\n  exemplar-color colorize old.jpg --reference colour.jpg -o old_colour.png",
    )
    parser.add_argument("--version", action="version", version=f"exemplar_color {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in [COMMAND_MODULE[command]] if command in COMMAND_MODULE else COMMAND_MODULES:
        module_name = f"{__package__}.{name}"
        if importlib.util.find_spec(module_name) is not None:
            importlib.import_module(module_name).register(sub)
    return parser


def debug() -> bool:
    return os.environ.get("EXEMPLAR_COLOR_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def one_line(message: object) -> str:
    """An error message as one line, without unsafe advice (:func:`~exemplar_color.errors.without_unsafe_advice`)."""
    return without_unsafe_advice(message)


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (tests and notebooks swap it), through tqdm, so a
    line logged while a progress bar runs is printed above the bar, never glued to it."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_logging(quiet: bool) -> None:
    """The library logs through ``logging``; the CLI decides what reaches stderr: warnings (a skipped file)
    always, notes of progress unless ``--json``/``--quiet``."""
    logger = logging.getLogger("exemplar_color")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(words[0] if words else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(bool(getattr(args, "json", False) or getattr(args, "quiet", False)))
    if getattr(args, "threads", None):  # --threads: every command that computes has it
        from ..runtime import set_threads

        set_threads(args.threads)
    from ..io import current_max_pixels, pixel_limit

    try:
        with pixel_limit(getattr(args, "max_pixels", None)):
            current_max_pixels()  # a bad $EXEMPLAR_COLOR_MAX_PIXELS: one line, before any work
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug():
            raise
        if isinstance(e, ExemplarColorError):
            print(f"error: {one_line(e)}", file=sys.stderr)
            return e.exit_code
        if isinstance(e, OSError):  # a file-system problem: which file and what, nothing more
            what = f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)
            print(f"error: {one_line(what)}", file=sys.stderr)
            return 1
        print(f"error: unexpected {type(e).__name__}: {one_line(e)} (set EXEMPLAR_COLOR_DEBUG=1 for the "
              f"traceback, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
