"""``exemplar-color train``: train the colorization sub-net from a pair cache.

Settings come from typed defaults, then ``--config FILE.json``, then the flags given, then ``--set
key=value`` overrides; the result is saved as ``RUN_DIR/config.json`` and in every checkpoint. Runs
resume from ``RUN_DIR`` by default. The same command runs on CPU, one GPU, or many through
``torchrun --nproc_per_node=N -m exemplar_color.cli.main train ...``.
Final metrics go to stdout (JSON with ``--json``), progress and logs to stderr.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Callable, get_args, get_type_hints

from ..errors import UsageError
from ..training.config import TrainConfig  # torch-free: `train --help` imports no torch
from ..backbone.spec import LEVELS
from .options import (QUIET_HELP, add_device_option, add_hidden_alias, add_json_option, add_threads_option,
                      existing_file, level_of)

# Fields whose flag is not ``--field-name`` (the shared vocabulary, docs/cli.md): field -> flag(s).
# ``resume`` is ``--resume`` (the default) / ``--no-resume``; ``progress`` is ``--quiet``; ``device`` the shared
# ``--device``. ``--num-workers`` keeps working as a hidden alias of ``--workers``.
FLAGS = {"out": ("-o", "--out"), "num_workers": ("--workers",)}
ALIASES = {"num_workers": "--num-workers"}
_METAVARS = {int: "N", float: "X"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train the colorization sub-net", description=__doc__,
        epilog="Example:\n  exemplar-color train --pairs pairs.csv --cache cache/ -o runs/r1 --width 0.25 "
               "--batch-size 16 --perceptual-level relu3_1 --vgg-weights vgg-slice.pth")
    p.add_argument("--config", type=existing_file, metavar="FILE.json", help="JSON file of settings")
    p.set_defaults(config_flags=add_config_flags(p))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any setting")
    add_threads_option(p)
    add_json_option(p, "print the final metrics as JSON on stdout (default: one 'name: value' line each)",
                    quiet=False)
    p.set_defaults(func=run)


def _flag_type(name: str, hint: Any) -> Callable[[str], Any]:
    """The argparse type of a TrainConfig field: its annotation without ``None`` (files and levels checked)."""
    if name == "vgg_weights":
        return existing_file
    if name == "perceptual_level":
        return level_of(LEVELS)
    return next((a for a in get_args(hint) if a is not type(None)), hint)


def add_config_flags(p: argparse.ArgumentParser) -> list[str]:
    """One flag per :class:`~exemplar_color.training.config.TrainConfig` field, with the field's help text
    and default (its ``metadata``); returns the dests that override settings.

    Flags default to None, so that only the flags given override ``--config``; the defaults shown are
    TrainConfig's. ``--device`` is the shared option; ``resume`` is ``--resume``/``--no-resume``, ``progress``
    is ``--quiet`` (handled by :func:`resolve_config`), ``num_workers`` is ``--workers``, ``out`` is ``-o/--out``.
    """
    hints = get_type_hints(TrainConfig)
    dests = []
    for f in fields(TrainConfig):
        help_ = f.metadata["help"].format(default=f.default)
        if f.name == "progress":
            p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
            continue
        dests.append(f.name)
        if f.name == "device":
            add_device_option(p, default=None)
        elif f.name == "resume":
            p.add_argument("--resume", dest="resume", action="store_true", default=None,
                           help="continue the run in OUT if it holds one (the default)")
            p.add_argument("--no-resume", dest="resume", action="store_false", default=None,
                           help="refuse to continue an existing run")
        elif hints[f.name] is bool:
            p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, action="store_true", default=None,
                           help=help_)
        else:
            typ = _flag_type(f.name, hints[f.name])
            flags = FLAGS.get(f.name, ("--" + f.name.replace("_", "-"),))
            p.add_argument(*flags, dest=f.name, type=typ, default=None, required=f.default is MISSING,
                           metavar=_METAVARS.get(typ, "PATH" if typ is existing_file else f.name.upper()),
                           help=help_)
            if f.name in ALIASES:
                add_hidden_alias(p, ALIASES[f.name], f.name, type=typ)
    return dests


def _coerce(name: str, value: str, types: dict[str, Any]) -> Any:
    t = types[name]
    if value.lower() in ("none", "null"):
        return None
    if "bool" in str(t):
        return value.lower() in ("1", "true", "yes", "on")
    if "int" in str(t) and "float" not in str(t):
        return int(value)
    if "float" in str(t):
        return float(value)
    return value


def resolve_config(args: argparse.Namespace) -> "Any":
    """Defaults < --config file < flags given < --set overrides; a mistake is a :class:`UsageError`."""
    settings: dict[str, Any] = {}
    if args.config:
        try:
            settings.update(json.loads(Path(args.config).read_text()))
        except json.JSONDecodeError as e:
            raise UsageError(f"--config {args.config}: not valid JSON ({e})") from None
    settings.update({k: getattr(args, k) for k in args.config_flags if getattr(args, k) is not None})
    if getattr(args, "quiet", False):
        settings["progress"] = False
    types = {f.name: f.type for f in fields(TrainConfig)}
    for item in args.set:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(types)}")
        try:
            settings[key] = _coerce(key, value, types)
        except ValueError:
            raise UsageError(f"--set {item!r}: {value!r} is not a valid {types[key]}") from None
    try:
        return TrainConfig.from_dict(settings)
    except ValueError as e:  # unknown settings in --config
        raise UsageError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    from ..runtime import is_main_process, set_threads
    from ..training.trainer import train
    from ..outputs import check_output_folder

    set_threads(args.threads)
    config = resolve_config(args)
    check_output_folder(config.out, "--out", [config.cache])  # before any model loads
    result = train(config)
    if is_main_process():
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            for k, v in result.items():
                print(f"{k}: {v}")
    return 0
