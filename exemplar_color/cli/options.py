"""Options shared by the commands, and the argument checks every command uses.

Every flag two commands share is added here, so it has one name, one default and one help text everywhere
(the vocabulary is written down in ``docs/cli.md`` and enforced by ``tests/cli/test_vocabulary.py``):
``--device`` (default ``auto``), ``--vgg-weights``, ``--vgg-variant`` (``--variant`` kept as a hidden
alias), ``--levels`` (``a b c`` or ``a,b,c``), ``--threads``, ``--method``, ``--size``, ``--max-pixels``,
``--model``, ``-o/--out``, ``--batch-size``, ``--workers``, ``--shard-size``, ``--top-k``, ``--resume``,
``--json`` and ``--quiet``. Old spellings (``--batch``, ``--num-workers``, ``--checkpoint``) keep working as
hidden aliases (:func:`add_hidden_alias`). Each check is an argparse ``type``: a bad value ends in one line
and exit 2 before anything is loaded.

This module, like every ``register`` function of the command modules, imports no torch, numpy or Pillow:
``exemplar-color --help`` builds the whole parser in a fraction of a second. What needs them is imported
inside the functions that run a command.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Callable, Sequence

from ..constants import MAX_PIXELS, MAX_PIXELS_ENV, METHODS, POSITION_PRIOR, PRECISIONS, WORKING_SIZE
from ..backbone.spec import DEFAULT_LEVELS, DEFAULT_VARIANT, LEVELS, VARIANTS

MATCH_LEVELS = tuple(lv for lv in LEVELS if lv.startswith("relu"))


def non_negative(text: str) -> float:
    """A number >= 0 (``--position-prior -1`` and ``nan`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def at_least(low: int, what: str = "a whole number") -> Callable[[str], int]:
    """An integer >= ``low`` (``--size 0``, ``-k 0``, ``--size -5`` are refused)."""

    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = "number"
    return parse


def in_range(low: float, high: float, what: str = "a number", integer: bool = False,
             low_open: bool = False) -> Callable[[str], float]:
    """A finite number in [low, high] (``(low, high]`` with ``low_open``): nan, inf and out-of-range values are
    refused at parse time, stating the range (``--size 100000``, ``--chroma-gain nan``)."""
    shown = f"{'(' if low_open else '['}{low:g}, {high:g}]" if not integer else f"{low:g} to {high:g}"

    def parse(text: str) -> float:
        try:
            value = int(text.replace("_", "")) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (low < value if low_open else low <= value) or not value <= high:
            raise argparse.ArgumentTypeError(f"must be {'a whole number from ' + shown if integer else 'in ' + shown}, "
                                             f"got {text}")
        return value

    parse.__name__ = "number"
    return parse


SIZE_RANGE = (32, 2048)  # the matcher needs two relu5_1 cells (32 px); 2048 already costs ~11 GB
CHROMA_GAIN_RANGE = (0.0, 3.0)  # as the Colorizer accepts: (0, 3]


def device_name(text: str) -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` (and ``mps`` where this machine has it), refused at parse time
    otherwise (``--device banana``, ``meta``)."""
    name = text.strip().lower()
    if name in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", name):
        return name
    if name == "mps":
        import torch

        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return name
        raise argparse.ArgumentTypeError("mps (Apple GPUs) is not available on this machine; use auto, cpu, cuda "
                                         "or cuda:N")
    raise argparse.ArgumentTypeError(f"unknown device {text!r}; use auto, cpu, cuda or cuda:N")


def pixel_count(text: str) -> int:
    """A pixel count: ``400000000``, ``400_000_000`` or ``4e8``."""
    try:
        value = int(float(text.replace("_", "")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number of pixels, got {text!r}")
    return value


def level_of(known: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in known:
            raise argparse.ArgumentTypeError(f"unknown VGG-19 level {text!r}; choose from {', '.join(known)}")
        return text

    parse.__name__ = "level"
    return parse


def level_list(known: tuple[str, ...]) -> Callable[[str], list[str]]:
    """A comma-separated list of levels (``relu3_1,relu2_1``); see :func:`join_level_lists` for ``a b c``."""
    one = level_of(known)

    def parse(text: str) -> list[str]:
        names = [one(part.strip()) for part in text.split(",") if part.strip()]
        if not names:
            raise argparse.ArgumentTypeError("expected at least one VGG-19 level")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise argparse.ArgumentTypeError(f"{', '.join(twice)} given twice; name each level once")
        return names

    parse.__name__ = "levels"
    return parse


# Options that take a list of levels, written ``--levels a b c`` or ``--levels a,b,c`` (or a mix).
LEVEL_LIST_OPTIONS = ("--levels",)
_LEVEL_WORD = re.compile(r"^(relu|conv|pool|fc)\d+(_\d+)?$")


def _is_levels(token: str) -> bool:
    parts = [p for p in token.split(",") if p]
    return bool(parts) and all(_LEVEL_WORD.match(p) for p in parts)


def join_level_lists(argv: Sequence[str]) -> list[str]:
    """``--levels a b c`` rewritten as ``--levels a,b,c`` before argparse sees it.

    Only the words that look like VGG-19 level names (``relu3_1``, ``conv1_2``, ``fc6``, or comma lists of
    them) are taken, so a positional argument after the list (``--levels relu2_1 relu1_1 photo.jpg``) stays
    a positional argument; a misspelt level (``relu9_1``) is still taken, and refused by :func:`level_list`.
    Nothing after ``--`` is touched.
    """
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        token = args[i]
        out.append(token)
        i += 1
        if token == "--":
            out.extend(args[i:])
            break
        if token in LEVEL_LIST_OPTIONS:
            words = []
            while i < len(args) and _is_levels(args[i]):
                words.append(args[i].strip(","))
                i += 1
            if words:
                out.append(",".join(words))
    return out


def existing_file(text: str) -> str:
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if not p.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return text


def index_folder(text: str) -> str:
    """An existing gallery index (a folder); ``index build`` makes one."""
    p = Path(text)
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a gallery index folder")
    if not p.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such gallery index (build one with "
                                         f"`exemplar-color index build GALLERY --index {text}`)")
    return text


def model_choice(text: str) -> str:
    if text in ("default", "analogy", "none", "None"):
        return text
    return existing_file(text)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's, except that a description or epilog written on several lines (an example, a list) is kept
    as written; one-line texts are wrapped as usual."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip("\n"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


# ----------------------------------------------------------------------------- shared flags

DEVICE_HELP = "auto (CUDA when present; under torchrun this rank's GPU), cpu, cuda, cuda:1, ... (default auto)"


def add_device_option(p: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """``--device``; ``default=None`` only where a settings file may give it (``train``: auto otherwise)."""
    p.add_argument("--device", default=default, metavar="DEVICE", type=device_name, help=DEVICE_HELP)


def add_levels_option(p: argparse.ArgumentParser, default: Sequence[str] | None = None,
                      default_help: str | None = None) -> None:
    """``--levels a b c`` or ``--levels a,b,c`` (see :func:`join_level_lists`); a list, or ``default``."""
    shown = default_help or " ".join(default or DEFAULT_LEVELS)
    p.add_argument("--levels", metavar="LEVEL[,LEVEL...]", type=level_list(MATCH_LEVELS),
                   default=list(default) if default else None,
                   help=f"VGG-19 levels to match, deepest first, space- or comma-separated (default: {shown})")


def add_vgg_options(p: argparse.ArgumentParser, weights_help: str = "") -> None:
    """``--vgg-weights PATH`` and ``--vgg-variant caffe|torchvision`` (hidden alias ``--variant``)."""
    p.add_argument("--vgg-weights", metavar="PATH", type=existing_file,
                   help="VGG-19 weight file (default: $EXEMPLAR_COLOR_VGG_WEIGHTS, the cache, or a download)"
                        + weights_help)
    p.add_argument("--vgg-variant", default=None, choices=VARIANTS,
                   help="preprocessing convention of the weights (default: a published file's own, recognised "
                        "by its SHA-256; else the model's where there is one; else caffe)")
    p.add_argument("--variant", dest="vgg_variant", choices=VARIANTS, default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)


def add_threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=at_least(1), default=None, metavar="N",
                   help="CPU threads for torch (and FAISS) (default: torch's, usually one per core)")


def add_method_option(p: argparse.ArgumentParser, precision: bool = True) -> None:
    """``--method`` and ``--precision``: how the correspondence is searched and computed (the training cache
    always matches in float32, so its records do not depend on the machine that built them)."""
    p.add_argument("--method", default="fast", choices=METHODS,
                   help="correspondence search (patchmatch: the published schedule, ~100x slower)")
    if precision:
        p.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="VGG-19 arithmetic while matching: mixed = bfloat16 beyond relu2_1 (1.6x faster "
                            "matching on a CPU with AVX512_BF16/AMX, same accuracy); auto (default) = mixed where the "
                            "device computes bfloat16 natively, else float32")
        p.add_argument("--position-prior", type=non_negative, default=POSITION_PRIOR, metavar="W",
                       help="how much the coarsest level holds a match to the same place in both photos "
                            f"(default {POSITION_PRIOR}: crossing half the photo costs 0.06 of cosine; "
                            "0: the subject may be anywhere in the reference)")


def add_json_option(p: argparse.ArgumentParser, help: str = "print the result as JSON on stdout",
                    quiet: bool = True) -> None:
    """``--json`` (the result as JSON on stdout, no progress bar, no notes) and, unless ``quiet=False``,
    ``--quiet`` (the result as text on stdout, no progress bar, no notes; warnings and errors still shown)."""
    p.add_argument("--json", action="store_true", help=help)
    if quiet:
        add_quiet_option(p)


QUIET_HELP = "no progress bar and no notes on stderr (warnings and errors are still shown)"


def add_quiet_option(p: argparse.ArgumentParser, dest: str = "quiet") -> None:
    kw = {"action": "store_true"} if dest == "quiet" else {"action": "store_false", "default": None}
    p.add_argument("--quiet", dest=dest, help=QUIET_HELP, **kw)


# ----------------------------------------------------------------------------- one name per concept


def add_hidden_alias(p: argparse.ArgumentParser, old: str, dest: str, **kw) -> None:
    """An old spelling (``--batch`` for ``--batch-size``) that keeps working, hidden from ``--help``: it sets
    the same ``dest`` and leaves the canonical option's default alone when not given."""
    p.add_argument(old, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kw)


def add_out_option(p: argparse.ArgumentParser, help: str, required: bool = True, metavar: str | None = None,
                   **kw) -> None:
    """``-o/--out``: what the command writes (a file or a folder, said by ``help``)."""
    p.add_argument("-o", "--out", required=required, metavar=metavar or "OUT", help=help, **kw)


def add_batch_size_option(p: argparse.ArgumentParser, default: int, what: str, alias: str | None = None) -> None:
    """``--batch-size N`` (``alias``: an old spelling kept hidden)."""
    p.add_argument("--batch-size", type=at_least(1), default=default, metavar="N",
                   help=f"{what} per forward pass (default {default})")
    if alias:
        add_hidden_alias(p, alias, "batch_size", type=at_least(1))


def add_workers_option(p: argparse.ArgumentParser, default: int, default_help: str | None = None,
                       alias: str | None = None, dest: str = "workers") -> None:
    """``--workers N``: image-decoding processes."""
    p.add_argument("--workers", type=at_least(0), default=default, metavar="N", dest=dest,
                   help=f"image-decoding worker processes, 0: decode in the main process "
                        f"(default {default_help or default})")
    if alias:
        add_hidden_alias(p, alias, dest, type=at_least(0))


def add_shard_size_option(p: argparse.ArgumentParser, default: int, what: str, alias: str | None = None) -> None:
    """``--shard-size N``: how much work is kept at a time (what a resumed run does not redo)."""
    p.add_argument("--shard-size", type=at_least(1), default=default, metavar="N",
                   help=f"{what} per shard, written as soon as it is done; an interrupted run keeps its finished "
                        f"shards (default {default})")
    if alias:
        add_hidden_alias(p, alias, "shard_size", type=at_least(1))


def add_top_k_option(p: argparse.ArgumentParser, default: int, help: str, short: bool = False) -> None:
    """``--top-k K`` (and ``-k`` where a command always had it)."""
    names = ("-k", "--top-k") if short else ("--top-k",)
    p.add_argument(*names, dest="top_k", type=at_least(1), default=default, metavar="K", help=help)


def add_resume_option(p: argparse.ArgumentParser, help: str) -> None:
    """``--resume``: continue an interrupted run, keeping its finished work."""
    p.add_argument("--resume", action="store_true", help=help)


def variant_or_default(args: argparse.Namespace) -> str:
    """The convention of ``--vgg-weights``: a published file's own (recognised by its SHA-256; a contradicting
    ``--vgg-variant`` is refused), else ``--vgg-variant``, else the default (caffe; where no model can say)."""
    from ..backbone.weights import choose_variant

    return choose_variant(args.vgg_weights, args.vgg_variant, default=DEFAULT_VARIANT)  # type: ignore[return-value]


def add_pipeline_options(p: argparse.ArgumentParser) -> None:
    """What every command that runs the colorization pipeline takes: working size, levels, VGG-19 weights,
    device, threads, correspondence method and pixel limit."""
    p.add_argument("--size", type=in_range(*SIZE_RANGE, "a whole number of pixels", integer=True), default=WORKING_SIZE,
                   help=f"working size: short side in pixels, {SIZE_RANGE[0]} to {SIZE_RANGE[1]} (default {WORKING_SIZE}; "
                        "above 256, never more than the largest photo's own short side)")
    add_levels_option(p, default_help=f"{' '.join(DEFAULT_LEVELS)}, or the model's")
    add_vgg_options(p)
    add_device_option(p)
    add_threads_option(p)
    add_method_option(p)
    add_max_pixels_option(p)


def add_max_pixels_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-pixels", type=pixel_count, metavar="N", default=None,
                   help=f"refuse images with more pixels (default: ${MAX_PIXELS_ENV}, else {MAX_PIXELS:,}; "
                        f"memory grows with the scan: ~0.5 GB per 10 megapixels)")


def add_model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", metavar="default|analogy|PATH", type=model_choice,
                   help="default: the trained colorization sub-net shipped with the package; analogy (or none): "
                        "the analogy head, no network; PATH: your own checkpoint (.safetensors)")
    p.add_argument("--chroma-gain", type=in_range(*CHROMA_GAIN_RANGE, low_open=True), default=None, metavar="G",
                   help="push the trained sub-net's colours out from gray by G, in (0, 3] (default: the model's "
                        "calibrated gain; 1: as predicted; >1: more vivid, at some cost in colour error); the analogy "
                        "head has no gain: ignored there, with a warning")
    p.add_argument("--vivid", action="store_true",
                   help="the trained sub-net's bolder readout of its colour distribution: more colourful where the "
                        "reference gives nothing, at some cost in colour error (figures in docs/quality.md)")


def colorizer_settings(args: argparse.Namespace) -> dict:
    """The Colorizer's keyword arguments the options ask for (plain values: a Ray worker builds the same one)."""
    return {"device": args.device, "vgg_weights": args.vgg_weights, "vgg_variant": args.vgg_variant,
            "levels": args.levels, "size": args.size, "method": args.method, "precision": args.precision,
            "position_prior": args.position_prior, "model": getattr(args, "model", "analogy"),
            "chroma_gain": getattr(args, "chroma_gain", None), "vivid": getattr(args, "vivid", False)}


def colorizer_from(args: argparse.Namespace, **extra):
    """The Colorizer of :func:`colorizer_settings` (``extra``: more keyword arguments, e.g. ``index``)."""
    import sys

    from ..pipeline.colorizer import Colorizer

    settings = colorizer_settings(args)
    if settings["chroma_gain"] is not None and settings["model"] in ("analogy", "none", "None"):
        print(f"warning: --chroma-gain {args.chroma_gain:g} is ignored: the analogy head has no gain (it is the "
              "trained sub-net's; --model default or a checkpoint)", file=sys.stderr)
    return Colorizer(**settings, **extra)


__all__ = ["at_least", "in_range", "device_name", "SIZE_RANGE", "CHROMA_GAIN_RANGE", "pixel_count", "level_of",
           "level_list", "join_level_lists", "existing_file", "index_folder", "model_choice", "add_device_option",
           "add_levels_option", "add_vgg_options", "add_threads_option", "add_method_option", "add_json_option",
           "add_quiet_option", "add_hidden_alias", "add_out_option", "add_batch_size_option", "add_workers_option",
           "add_shard_size_option", "add_top_k_option", "add_resume_option", "variant_or_default",
           "add_pipeline_options", "add_max_pixels_option", "add_model_option", "colorizer_from",
           "colorizer_settings", "MATCH_LEVELS", "LEVELS", "VARIANTS", "DEVICE_HELP", "QUIET_HELP", "HelpFormatter"]
