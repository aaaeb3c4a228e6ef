"""One command-line vocabulary (docs/cli.md), checked over the whole parser: every argument has help, every
leaf command's help ends with an example, one spelling per concept (old spellings only as hidden aliases), and
building the parser for ``--help`` imports no torch. Parsing only: no model is loaded."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap

import pytest

from exemplar_color.cli.main import COMMAND_MODULE, build_parser, main
from exemplar_color.cli.options import QUIET_HELP


def leaves(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every leaf command's parser by its name: ``match``, ``index build``, ..."""
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix} {name}".strip()
                out.update(leaves(sub, full) or {full: sub})
    return out


def visible(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]


def spellings(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in visible(p) for s in a.option_strings}


PARSERS = leaves(build_parser())

# Spellings of a concept that has one name everywhere (docs/cli.md): forbidden -> the name to use.
FORBIDDEN = {
    "--batch": "--batch-size", "--bs": "--batch-size", "--batchsize": "--batch-size",
    "--num-workers": "--workers", "--n-workers": "--workers", "--jobs": "--workers", "-j": "--workers",
    "--checkpoint": "--shard-size", "--chunk": "--shard-size", "--chunk-size": "--shard-size",
    "--output": "-o/--out", "--out-dir": "-o/--out", "--outdir": "-o/--out", "--output-dir": "-o/--out",
    "--continue": "--resume", "--restart": "--resume",
    "--k": "--top-k", "--topk": "--top-k", "--top": "--top-k",
    "--num-threads": "--threads", "--nthreads": "--threads", "--omp-threads": "--threads",
    "--gpu": "--device", "--cuda": "--device", "--cpu": "--device",
    "--silent": "--quiet", "-q": "--quiet", "--no-progress": "--quiet",
    "--variant": "--vgg-variant", "--weights": "--vgg-weights",
    "--image-size": "--size", "--resolution": "--size", "--working-size": "--size",
}
# Old spellings that must keep working (hidden): command -> (argv, dest, value).
OLD_SPELLINGS = [
    (["index", "build", "g", "--index", "i", "--batch", "4"], "batch_size", 4),
    (["index", "build", "g", "--index", "i", "--checkpoint", "8"], "shard_size", 8),
    (["train", "--pairs", "p", "--cache", "c", "--out", "o", "--num-workers", "0"], "num_workers", 0),
    (["cache", "build", "--pairs", "p", "--out", "c", "--variant", "torchvision"], "vgg_variant", "torchvision"),
]


def pages(parser: argparse.ArgumentParser, name: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every help page: the top level, the command groups (``index``, ``cache``) and the leaves."""
    out = {name: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                out.update(pages(sub, f"{name} {sub_name}".strip()))
    return out


def test_every_argument_has_help_and_every_leaf_an_example():
    assert len(PARSERS) == 14, sorted(PARSERS)
    every = pages(build_parser())
    assert len(every) == 17, sorted(every)
    for name, p in every.items():
        assert "Example" in (p.epilog or ""), name or "exemplar-color"
    for name, p in PARSERS.items():
        for a in p._actions:
            assert a.help, (name, a.option_strings or a.dest)
        assert "Example" in (p.epilog or ""), name
        assert f"exemplar-color {name}" in p.epilog, name  # the example is of this very command


def test_one_spelling_per_concept():
    for name, p in PARSERS.items():
        opts = spellings(p)
        for spelling, instead in FORBIDDEN.items():
            assert spelling not in opts, f"{name}: {spelling} (use {instead})"
        for s, a in opts.items():
            assert s == s.lower() and "_" not in s, (name, s)  # --kebab-case
        if "--out" in opts:
            assert opts["--out"].option_strings in (["-o", "--out"], ["--out", "-o"]), name
        if "-o" in opts:
            assert "--out" in opts["-o"].option_strings, name
        if "-k" in opts:
            assert "--top-k" in opts["-k"].option_strings, name  # -k only as the short form of --top-k
        if "--top-k" in opts:
            assert opts["--top-k"].dest == "top_k", name
        if "--no-resume" in opts:
            assert "--resume" in opts and opts["--resume"].dest == opts["--no-resume"].dest == "resume", name
        if "--quiet" in opts:
            assert opts["--quiet"].help == QUIET_HELP, name
        for shared in ("--batch-size", "--workers", "--shard-size"):
            if shared in opts and name != "train":  # train's dests are TrainConfig's fields (num_workers)
                assert opts[shared].dest == shared[2:].replace("-", "_"), (name, shared)


def test_every_command_that_computes_takes_threads_device_json_and_quiet():
    computing = {n for n, p in PARSERS.items() if "--device" in spellings(p)}
    assert computing == {"match", "colorize", "colorize-video", "evaluate", "app", "index build", "index add",
                         "index query", "cache build", "cache pairs", "train"}
    for name in computing:
        opts = spellings(PARSERS[name])
        assert "--threads" in opts, name
        if name != "app":  # a server: no result to print, nothing to quieten
            assert "--json" in opts and "--quiet" in opts, name
    for name, p in PARSERS.items():
        assert name == "app" or "--json" in spellings(p), name  # every command that prints a result


@pytest.mark.parametrize("argv,dest,value", OLD_SPELLINGS)
def test_old_spellings_keep_working_hidden(argv, dest, value):
    assert getattr(build_parser(argv[0]).parse_args(argv), dest) == value


def test_new_spellings_parse(tmp_path):
    t, i = tmp_path / "t.jpg", tmp_path / "i"
    t.write_bytes(b"")
    i.mkdir()
    ns = build_parser().parse_args(["index", "query", str(t), "--index", str(i), "-k", "3"])
    assert ns.top_k == 3
    ns = build_parser().parse_args(["index", "query", str(t), "--index", str(i), "--top-k", "4", "--quiet"])
    assert ns.top_k == 4 and ns.quiet
    ns = build_parser().parse_args(["index", "build", "g", "--index", "i", "--batch-size", "2", "--shard-size", "3",
                                    "--workers", "0"])
    assert (ns.batch_size, ns.shard_size, ns.workers) == (2, 3, 0)
    ns = build_parser().parse_args(["cache", "pairs", "--root", "r", "-o", "p.csv", "--device", "cpu", "--threads",
                                    "1"])
    assert (ns.out, ns.device, ns.threads) == ("p.csv", "cpu", 1)
    ns = build_parser().parse_args(["colorize", "a.jpg", "-o", "b.png", "--threads", "2", "--quiet"])
    assert ns.threads == 2 and ns.quiet


@pytest.mark.slow  # a fresh interpreter (subprocess)
def test_help_builds_without_torch():
    """`exemplar-color --help` and every (sub)command's --help: no torch (nor numpy, Pillow, h5py, FAISS,
    tqdm) is imported. Run in a fresh interpreter: this test process has imported them long ago."""
    heavy = ("torch", "numpy", "PIL", "h5py", "faiss", "tqdm", "scipy")
    names = [[]] + [n.split() for n in PARSERS] + [[c] for c in COMMAND_MODULE]
    code = textwrap.dedent(f"""
        import contextlib, io, sys
        from exemplar_color.cli.main import build_parser, main
        build_parser().format_help()
        for words in {names!r}:
            with contextlib.redirect_stdout(io.StringIO()) as out:
                try:
                    main([*words, "--help"])
                except SystemExit as e:
                    assert e.code == 0, (words, e.code)
            assert "usage: exemplar-color" in out.getvalue(), words
        loaded = sorted(m for m in {heavy!r} if m in sys.modules)
        assert not loaded, loaded
        print("ok")
        """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]


def test_usage_mistakes_in_match_reference(tmp_path, capsys):
    f = tmp_path / "a.png"
    f.write_bytes(b"")
    for argv, words in ((["match", str(f), "-o", str(tmp_path / "m.npz")], "--reference"),
                        (["match", str(f), str(f), "-r", str(f), "-o", str(tmp_path / "m.npz")], "not both")):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


def test_the_constants_help_shows_are_the_library_s():
    """exemplar_color.constants (torch-free, for --help) and the modules that use them agree."""
    from exemplar_color import constants, io
    from exemplar_color.app import jobs
    from exemplar_color.correspondence import matcher

    assert constants.POSITION_PRIOR == matcher.POSITION_PRIOR
    assert constants.PRECISIONS == matcher.PRECISIONS
    assert (io.MAX_PIXELS, io.MAX_PIXELS_ENV, jobs.MAX_UPLOAD_PIXELS) == (
        constants.MAX_PIXELS, constants.MAX_PIXELS_ENV, constants.MAX_UPLOAD_PIXELS)
