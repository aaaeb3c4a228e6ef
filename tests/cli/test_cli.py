"""The command line's conventions: shared flags with one name and default everywhere, ``--levels`` in both
forms, exit codes, and ``train``'s flags generated from TrainConfig. Parsing only: no model is loaded."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

import pytest

from exemplar_color.cli.main import build_parser, main
from exemplar_color.cli.options import DEVICE_HELP, join_level_lists


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command's parser by its name: ``match``, ``index build``, ..."""
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix} {name}".strip()
                nested = commands(sub, full)
                out.update(nested or {full: sub})
    return out


def options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions for s in a.option_strings}


@pytest.fixture(scope="module")
def parsers():
    return commands(build_parser())


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_a_run_builds_only_its_own_command_and_the_same_options():
    """A run registers only its command's module (start-up), with the options the full command line has."""
    from exemplar_color.cli.main import COMMAND_MODULE

    def top(parser):
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices

    full = top(build_parser())
    assert set(full) == set(COMMAND_MODULE)
    for name in full:
        alone = build_parser(name)
        assert set(top(alone)) == {n for n, m in COMMAND_MODULE.items() if m == COMMAND_MODULE[name]}
        assert commands(alone).keys() <= commands(build_parser()).keys()
        assert options(top(alone)[name]).keys() == options(full[name]).keys()


# ----------------------------------------------------------------------------- --levels


def test_join_level_lists_takes_level_words_only():
    assert join_level_lists(["--levels", "relu3_1", "relu2_1", "a.jpg"]) == ["--levels", "relu3_1,relu2_1", "a.jpg"]
    assert join_level_lists(["--levels", "relu3_1,relu2_1", "relu1_1"]) == ["--levels", "relu3_1,relu2_1,relu1_1"]
    assert join_level_lists(["--levels", "relu9_1", "x"]) == ["--levels", "relu9_1", "x"]  # refused by its type
    assert join_level_lists(["--", "--levels", "relu3_1", "relu2_1"]) == ["--", "--levels", "relu3_1", "relu2_1"]
    assert join_level_lists(["--levels=relu3_1,relu2_1", "x"]) == ["--levels=relu3_1,relu2_1", "x"]
    assert join_level_lists(["--size", "64"]) == ["--size", "64"]


@pytest.mark.parametrize("form", ["spaces", "commas", "equals"])
def test_levels_in_both_forms_in_every_command(parsers, form, tmp_path):
    f = tmp_path / "a.jpg"
    f.write_bytes(b"")
    levels = ["relu3_1", "relu2_1", "relu1_1"]
    given = {"spaces": ["--levels", *levels], "commas": ["--levels", ",".join(levels)],
             "equals": ["--levels=" + ",".join(levels)]}[form]
    having = sorted(n for n, p in parsers.items() if "--levels" in options(p))
    assert set(having) >= {"cache build", "colorize", "evaluate", "match"}, having
    lines = {
        "match": ["match", *given, str(f), str(f), "--out", "m.npz"],  # positionals after the levels
        "colorize": ["colorize", *given, str(f), "-r", str(f), "-o", "out"],
        "evaluate": ["evaluate", *given, str(tmp_path), "--reference-mode", "self-transform", "--out", "r"],
        "cache build": ["cache", "build", *given, "--pairs", "p.csv", "--out", "c"],
    }
    for name, argv in lines.items():
        args = parse(*argv)
        assert args.levels == levels, name
    assert parse(*lines["match"]).target == str(f) and parse(*lines["match"]).reference_positional == str(f)
    assert parse("match", str(f), "--reference", str(f), *given, "-o", "m.npz").reference == str(f)
    assert parse(*lines["colorize"]).targets == [str(f)]


def test_levels_defaults_and_refusals(parsers, tmp_path, capsys):
    assert parse("cache", "build", "--pairs", "p", "--out", "c").levels == [
        "relu5_1", "relu4_1", "relu3_1", "relu2_1", "relu1_1"]
    f = tmp_path / "a.jpg"
    f.write_bytes(b"")
    assert parse("match", str(f), str(f), "--out", "m.npz").levels is None  # the model's, else the default
    for argv in (["match", "--levels", "relu9_1", str(f), str(f), "--out", "m.npz"],
                 ["cache", "build", "--pairs", "p", "--out", "c", "--levels", "relu3_1,nope"]):
        assert _exit_code(argv) == 2
        assert "unknown VGG-19 level" in capsys.readouterr().err


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)


# ----------------------------------------------------------------------------- shared flags


def test_shared_flags_have_one_name_and_default(parsers):
    for name, p in parsers.items():
        opts = options(p)
        if "--device" in opts:
            assert opts["--device"].help == DEVICE_HELP, name
            assert opts["--device"].default == ("auto" if name != "train" else None), name  # train: auto via config
        if "--vgg-weights" in opts and name not in ("index add", "index query", "train"):
            # every command that loads VGG-19 by itself takes its convention (index add/query use the index's,
            # train the cache's)
            assert "--vgg-variant" in opts and opts["--vgg-variant"].default is None, name
            assert opts["--variant"].dest == "vgg_variant" and opts["--variant"].help == argparse.SUPPRESS, name
        if "--threads" in opts:
            assert opts["--threads"].default is None, name
    with_device = {n for n, p in parsers.items() if "--device" in options(p)}
    assert with_device >= {"match", "colorize", "evaluate", "index build", "index add", "index query",
                           "cache build", "train"}


def test_position_prior_reaches_the_matcher_and_bad_values_are_usage_errors(tv_weights, tmp_path, capsys):
    from exemplar_color.cli.options import colorizer_from
    from exemplar_color.correspondence.matcher import POSITION_PRIOR

    from PIL import Image

    f = tmp_path / "a.png"
    Image.new("RGB", (40, 32), (120, 80, 40)).save(f)
    base = ["match", str(f), str(f), "--out", str(tmp_path / "m.npz"), "--vgg-weights", str(tv_weights),
            "--levels", "relu3_1", "relu2_1", "relu1_1", "--device", "cpu"]
    assert parse(*base).position_prior == POSITION_PRIOR == 0.25
    assert colorizer_from(parse(*base, "--position-prior", "0")).matcher.position_prior == 0.0
    for bad in ("-0.5", "nan", "x"):
        capsys.readouterr()
        assert _exit_code(base + ["--position-prior", bad]) == 2
        assert "--position-prior" in capsys.readouterr().err


def test_index_device_defaults_to_auto_and_variant_alias(tmp_path):
    args = parse("index", "build", str(tmp_path), "--index", str(tmp_path / "i"))
    assert args.device == "auto" and args.vgg_variant is None
    assert parse("cache", "build", "--pairs", "p", "--out", "c", "--variant", "torchvision").vgg_variant == "torchvision"
    assert parse("cache", "build", "--pairs", "p", "--out", "c", "--vgg-variant", "caffe").vgg_variant == "caffe"


# ----------------------------------------------------------------------------- exit codes


def test_usage_errors_exit_2_with_one_line(tmp_path, capsys):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{nope")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"nope": 1}))
    base = ["train", "--pairs", "p", "--cache", "c", "--out", str(tmp_path / "run")]
    cases = [
        (["cache", "pairs", "--root", str(tmp_path), "--out", "m.csv", "--rule", "oops"], "unknown rule"),
        (["cache", "pairs", "--root", str(tmp_path), "--out", "m.csv", "--rule", "same-class"], "needs --labels"),
        (["cache", "build", "--pairs", "p", "--out", "c", "--size", "0"], "--size"),
        ([*base, "--set", "nope=1"], "--set"),
        ([*base, "--set", "epochs=many"], "epochs"),
        ([*base, "--config", str(bad_json)], "not valid JSON"),
        ([*base, "--config", str(unknown)], "unknown training settings"),
        ([*base, "--epochs", "x"], "--epochs"),
        (["train", "--cache", "c", "--out", "o"], "--pairs"),
    ]
    for argv, words in cases:
        capsys.readouterr()
        assert _exit_code(argv) == 2, argv
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and "error" in err[0] and words in err[0], (argv, err)


# ----------------------------------------------------------------------------- train flags from TrainConfig


def test_train_flags_are_trainconfig_fields(parsers):
    from exemplar_color.training.config import TrainConfig

    opts = options(parsers["train"])
    renamed = {"resume": "--resume", "progress": "--quiet", "num_workers": "--workers", "out": "--out"}
    for f in fields(TrainConfig):
        flag = renamed.get(f.name, "--" + f.name.replace("_", "-"))
        assert flag in opts, f.name
        if f.name != "progress":
            assert opts[flag].dest == f.name, f.name
            assert opts[flag].default is None  # only flags given override --config
        if f.name not in ("resume", "progress", "device"):
            assert opts[flag].help == f.metadata["help"].format(default=f.default)
    assert opts["--no-resume"].dest == "resume" and opts["--num-workers"].dest == "num_workers"  # old spellings
    assert opts["-o"] is opts["--out"]
    assert "weight of a chrominance loss" in opts["--reference-chroma"].help
    assert "colourfulness" in opts["--saturation"].help and "(default 0)" in opts["--saturation"].help
    assert "(default 10)" in opts["--epochs"].help


def test_train_settings_precedence(tmp_path):
    from exemplar_color.cli.train import resolve_config

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"epochs": 4, "lr": 0.5, "device": "cpu", "augment": True}))
    args = parse("train", "--pairs", "p", "--cache", "c", "--out", "o", "--config", str(cfg), "--lr", "0.25",
                 "--reference-chroma", "0.1", "--set", "epochs=7", "--quiet", "--no-resume")
    c = resolve_config(args)
    assert (c.epochs, c.lr, c.device, c.augment, c.reference_chroma) == (7, 0.25, "cpu", True, 0.1)
    assert c.progress is False and c.resume is False and c.saturation == 0.0
    c = resolve_config(parse("train", "--pairs", "p", "--cache", "c", "-o", "o", "--num-workers", "0", "--resume"))
    assert (c.num_workers, c.resume, c.progress, c.out) == (0, True, True, "o")  # --num-workers: the old spelling
    c = resolve_config(parse("train", "--pairs", "p", "--cache", "c", "--out", "o"))
    assert (c.device, c.resume, c.progress, c.augment, c.epochs) == ("auto", True, True, False, 10)


# ----------------------------------------------------------------------------- weights recognised by hash


def test_published_weights_choose_the_variant_and_a_contradiction_is_one_line(tv_weights, caffe_weights, tmp_path,
                                                                               capsys):
    from exemplar_color.cli.options import variant_or_default

    for weights, variant in ((tv_weights, "torchvision"), (caffe_weights, "caffe")):
        args = parse("index", "build", str(tmp_path), "--index", str(tmp_path / "i"), "--vgg-weights", str(weights))
        assert variant_or_default(args) == variant  # no --vgg-variant: the file's own convention
    assert variant_or_default(parse("index", "build", str(tmp_path), "--index", "i")) == "caffe"
    f = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (40, 32), (120, 80, 40)).save(f)
    argv = ["match", str(f), str(f), "--out", str(tmp_path / "m.npz"), "--vgg-weights", str(caffe_weights),
            "--vgg-variant", "torchvision", "--levels", "relu2_1", "relu1_1", "--size", "32", "--device", "cpu"]
    capsys.readouterr()
    assert _exit_code(argv) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "caffe" in err[0] and "torchvision" in err[0] and "weights_only" not in err[0], err
    assert not (tmp_path / "m.npz").exists()


def test_the_library_logs_and_the_cli_decides_what_reaches_stderr(capsys):
    """Library modules never write to stderr themselves; the CLI shows their warnings always and their
    notes unless --json/--quiet."""
    import logging
    import re
    from pathlib import Path

    import exemplar_color
    from exemplar_color.cli.main import setup_logging

    package = Path(exemplar_color.__file__).parent
    for path in package.rglob("*.py"):
        rel = path.relative_to(package).as_posix()
        if not rel.startswith("cli/"):
            assert not re.search(r"print\([^\n]*file=sys\.stderr|sys\.stderr\.write", path.read_text()), rel
    log = logging.getLogger("exemplar_color.training.cache")
    setup_logging(quiet=False)
    log.warning("skipped pair 3: corrupt")
    log.info("resumed at step 4")
    setup_logging(quiet=True)  # twice: still one handler
    log.warning("skipped pair 5: missing")
    log.info("a note nobody asked for")
    assert capsys.readouterr().err.splitlines() == ["skipped pair 3: corrupt", "resumed at step 4",
                                                    "skipped pair 5: missing"]
