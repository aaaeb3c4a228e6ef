"""Several references per photo, on real photos with the real VGG-19 slices: one reference is exactly today's
path; two references that each cover half of the target beat either alone; the label map says which half
came from which; both heads; the CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from exemplar_color import Colorizer
from exemplar_color.cli.main import main
from exemplar_color.color import rgb_to_lab

from conftest import small_gallery

LEVELS = ["relu3_1", "relu2_1", "relu1_1"]
# (left, right) Kodak photos of different scenes, joined side by side as the target
SCENES = [("kodim05.png", "kodim23.png"), ("kodim01.png", "kodim20.png"), ("kodim13.png", "kodim03.png")]


@pytest.fixture(scope="module")
def colorizer(tv_weights):
    return Colorizer(device="cpu", vgg_weights=tv_weights, vgg_variant="torchvision", levels=LEVELS, size=96,
                     model="analogy")


def joined(data_dir, left: str, right: str, size=(192, 128)) -> tuple[Image.Image, Image.Image, Image.Image]:
    """``(colour truth, left photo, right photo)``: two real photos of different scenes side by side."""
    a = Image.open(data_dir / "kodak" / left).convert("RGB").resize(size, Image.BICUBIC)
    b = Image.open(data_dir / "kodak" / right).convert("RGB").resize(size, Image.BICUBIC)
    both = Image.new("RGB", (2 * size[0], size[1]))
    both.paste(a, (0, 0))
    both.paste(b, (size[0], 0))
    return both, a, b


def true_ab(img: Image.Image) -> np.ndarray:
    arr = torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1)[None]
    return rgb_to_lab(arr)[0, 1:].permute(1, 2, 0).numpy()


def ab_error(result, truth: Image.Image) -> float:
    return float(np.abs(result.ab - true_ab(truth)).mean())


def quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


_RESULTS: dict = {}


def scene_results(colorizer, data_dir, scene):
    """``(truth, a, b, only_a, only_b, both)`` for a joined scene whose references are its two photos moved
    by a small similarity transform (no reference is the target's crop); computed once per module."""
    if scene not in _RESULTS:
        truth, a, b = joined(data_dir, *scene)
        a = a.rotate(4, resample=Image.BICUBIC, translate=(5, -3)).crop((8, 8, 184, 120))
        b = b.rotate(-4, resample=Image.BICUBIC, translate=(-4, 4)).crop((8, 8, 184, 120))
        gray = truth.convert("L")
        _RESULTS[scene] = (truth, a, b, quiet(colorizer.colorize, gray, a), quiet(colorizer.colorize, gray, b),
                           quiet(colorizer.colorize, gray, [a, b]))
    return _RESULTS[scene]


def test_one_reference_in_a_list_is_exactly_the_single_path(colorizer, data_dir):
    truth, a, _, single, _, _ = scene_results(colorizer, data_dir, SCENES[0])
    listed = quiet(colorizer.colorize, truth.convert("L"), [a])
    assert np.array_equal(np.asarray(single.image), np.asarray(listed.image))
    assert np.array_equal(single.ab, listed.ab) and np.array_equal(single.confidence, listed.confidence)
    assert listed.labels is not None and not listed.labels.any() and len(listed.references) == 1
    assert np.array_equal(single.labels, listed.labels) and single.references == listed.references


def test_the_same_reference_twice_gives_the_single_result(colorizer, data_dir):
    """The fused path itself (two references) changes nothing when both are the same photo."""
    truth, a, _, single, _, _ = scene_results(colorizer, data_dir, SCENES[0])
    twice = quiet(colorizer.colorize, truth.convert("L"), [a, a])
    assert np.abs(single.ab - twice.ab).max() < 1e-3
    assert twice.labels.shape == single.confidence.shape and set(np.unique(twice.labels)) <= {0, 1}


@pytest.mark.parametrize("scene", SCENES, ids=lambda s: f"{s[0][:7]}+{s[1][:7]}")
def test_two_references_beat_either_alone(colorizer, data_dir, scene):
    """Target: two real photos joined; references: each photo, moved. Both together beat the better one
    alone by a margin, and the label map gives each half to its own reference."""
    truth, a, b, only_a, only_b, both = scene_results(colorizer, data_dir, scene)
    err_a, err_b, err_both = (ab_error(r, truth) for r in (only_a, only_b, both))
    # measured (slices, size 96): 12.45 / 15.69 -> 11.58; 6.36 / 5.59 -> 4.70; 7.45 / 10.62 -> 7.00
    assert err_both < min(err_a, err_b) - 0.3, (err_a, err_b, err_both)
    half = both.labels.shape[1] // 2
    right_labels = (np.mean(both.labels[:, :half] == 0) + np.mean(both.labels[:, half:] == 1)) / 2
    assert right_labels > 0.8, right_labels  # measured 0.88, 0.87, 0.90
    assert both.references == (only_a.reference, only_b.reference)
    assert both.forward.shape == (truth.height, truth.width, 2)
    # the output keeps the target's L
    gray = truth.convert("L")
    l_in = rgb_to_lab(torch.from_numpy(np.asarray(gray.convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None])[0, 0]
    l_out = rgb_to_lab(torch.from_numpy(np.asarray(both.image, np.float32) / 255).permute(2, 0, 1)[None])[0, 0]
    assert float((l_in - l_out).abs().mean()) < 0.5


def test_colour_photo_halves_as_two_references(colorizer, data_dir):
    """A colour photo's left and right halves as the references of its own gray version: together they
    cover it, each alone covers half."""
    img = Image.open(data_dir / "kodak" / "kodim23.png").convert("RGB").resize((192, 128), Image.BICUBIC)
    left, right = img.crop((0, 0, 96, 128)), img.crop((96, 0, 192, 128))
    gray = img.convert("L")
    errs = [ab_error(quiet(colorizer.colorize, gray, r), img) for r in (left, right)]
    both = ab_error(quiet(colorizer.colorize, gray, [left, right]), img)
    assert both < min(errs) - 1.0, (errs, both)


def test_both_heads_and_output_fusion(tv_weights, data_dir):
    """The trained-network head takes the fused correspondence as well (here an untrained, narrow one:
    shapes and finiteness), and fusing the heads' outputs instead works too."""
    from exemplar_color.colorization.checkpoint import save_checkpoint
    from exemplar_color.colorization.network import ColorizationNet, ColorizationNetConfig

    torch.manual_seed(0)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(Path(tmp) / "net.safetensors",
                               ColorizationNet(ColorizationNetConfig(levels=tuple(LEVELS), width=0.125, size=96)))
        c = Colorizer(device="cpu", vgg_weights=tv_weights, model=ckpt, size=96)
    truth, a, b = joined(data_dir, *SCENES[1])
    gray = truth.convert("L")
    heads = quiet(c.colorize_heads, gray, [a, b])
    assert set(heads) == {"network", "analogy"}
    for r in heads.values():
        assert r.image.size == truth.size and np.isfinite(r.ab).all() and r.labels is not None
    assert np.array_equal(heads["network"].labels, heads["analogy"].labels)
    out = quiet(c.colorize_references, gray, [a, b], ("analogy",), fuse="outputs")["analogy"]
    assert out.image.size == truth.size and np.isfinite(out.ab).all()
    with pytest.raises(ValueError, match="fuse"):
        c.colorize_references(gray, [a, b], ("analogy",), fuse="nowhere")


def test_cli_several_references_writes_label_map(tv_weights, data_dir, tmp_path, capsys):
    truth, a, b = joined(data_dir, *SCENES[0])
    target, ra, rb = tmp_path / "old.png", tmp_path / "a.png", tmp_path / "b.png"
    truth.convert("L").save(target)
    a.save(ra)
    b.save(rb)
    out = tmp_path / "out"
    rc = main(["colorize", str(target), "--reference", str(ra), str(rb), "-o", str(out), "--save-confidence",
               "--json", "--vgg-weights", str(tv_weights), "--vgg-variant", "torchvision", "--levels", *LEVELS,
               "--size", "96", "--model", "analogy", "--device", "cpu"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["outputs"][0]["references"] == [str(ra), str(rb)]
    labels = Image.open(out / "old_labels.png")
    assert labels.mode == "P" and set(np.unique(np.asarray(labels))) == {0, 1}
    assert (out / "old_confidence.png").is_file() and Image.open(out / "old.png").size == truth.size
    # a single reference writes no label map; --top-k without --auto is a usage error
    rc = main(["colorize", str(target), "-r", str(ra), "-o", str(tmp_path / "one"), "--save-confidence",
               "--vgg-weights", str(tv_weights), "--vgg-variant", "torchvision", "--levels", *LEVELS,
               "--size", "96", "--model", "analogy", "--device", "cpu"])
    assert rc == 0 and not (tmp_path / "one" / "old_labels.png").exists()
    assert main(["colorize", str(target), "-r", str(ra), "--top-k", "2", "-o", str(tmp_path / "x")]) == 2


def test_automatic_top_k_uses_several_gallery_references(tv_weights, data_dir, tmp_path, capsys):
    """--auto --top-k 2: the gallery's two best usable photos (here the two halves' own scenes) colour the
    target together, and the label map is written."""
    index = tmp_path / "g.index"
    small_gallery([data_dir / "kodak" / n for n in ("kodim05.png", "kodim23.png", "kodim13.png", "kodim20.png")],
                  tmp_path / "gallery", index, tv_weights).close()
    truth, _, _ = joined(data_dir, *SCENES[0])
    target = tmp_path / "old.png"
    truth.convert("L").save(target)
    rc = main(["colorize", str(target), "--auto", "--top-k", "2", "--index", str(index), "-o", str(tmp_path / "out"),
               "--save-confidence", "--json", "--vgg-weights", str(tv_weights), "--vgg-variant", "torchvision",
               "--levels", *LEVELS, "--size", "96", "--model", "analogy", "--device", "cpu"])
    report = json.loads(capsys.readouterr().out)
    used = sorted(p.rsplit("/", 1)[-1] for p in report["outputs"][0]["references"])
    assert rc == 0 and used == ["kodim05.png", "kodim23.png"], report
    labels = np.asarray(Image.open(tmp_path / "out" / "old_labels.png"))
    assert set(np.unique(labels)) == {0, 1}
