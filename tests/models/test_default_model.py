"""The colorization sub-net shipped inside the package: it loads, is what Colorizer() uses, and beats the
analogy head on held-out photos with references that are not their ground truth."""

from __future__ import annotations

import json
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from exemplar_color import Colorizer
from exemplar_color.colorization.checkpoint import load_checkpoint, save_checkpoint
from exemplar_color.colorization.network import ColorizationNet, ColorizationNetConfig
from exemplar_color.errors import ConfigMismatchError, ExemplarColorError, WeightsError
from exemplar_color.models import DEFAULT_MODEL

from conftest import SHARED

FULL_VGG = SHARED / "weights" / "vgg19-caffe-features-0-34-q8.pth"
CARD = DEFAULT_MODEL.with_name("MODEL_CARD.md")


@pytest.fixture(scope="module")
def full_vgg() -> Path:
    if not FULL_VGG.is_file():
        pytest.skip(f"needs {FULL_VGG} (the project's ../shared folder is absent)")
    return FULL_VGG


def test_shipped_checkpoint_loads_and_matches_its_card():
    assert DEFAULT_MODEL.is_file() and DEFAULT_MODEL.stat().st_size <= 25 * 2**20
    model, meta, extra = load_checkpoint(DEFAULT_MODEL)
    assert not extra  # a release holds the network only
    assert all(v.dtype == torch.float16 for v in load_file_dtypes(DEFAULT_MODEL))
    card = CARD.read_text()
    block = re.search(r"```json\n(.*?)\n```", card, re.S)
    assert block, "the model card states the network's config in a json block"
    assert json.loads(block.group(1)) == meta["config"]
    assert model.config.levels == ("relu5_1", "relu4_1", "relu3_1", "relu2_1", "relu1_1")
    assert model.config.variant == "caffe" and model.config.arch == "exemplar-hypercolumn"
    assert meta["release"]["chroma_gain"] == 1.0  # colourful by construction, not by gain


def load_file_dtypes(path: Path) -> list[torch.Tensor]:
    from safetensors.torch import load_file

    return [v for v in load_file(str(path)).values() if v.is_floating_point()]


def test_colorizer_without_arguments_uses_the_shipped_model(full_vgg, monkeypatch):
    monkeypatch.setenv("EXEMPLAR_COLOR_VGG_WEIGHTS", str(full_vgg))
    c = Colorizer(device="cpu")
    assert c.head_name == "network" and c.vgg_variant == "caffe" and c.colours_alone
    assert c.levels == ("relu5_1", "relu4_1", "relu3_1", "relu2_1", "relu1_1")
    assert Colorizer(device="cpu", model="analogy").head_name == "analogy"


def test_contradicting_levels_or_variant_are_refused_naming_both(full_vgg):
    with pytest.raises(ConfigMismatchError, match=r"relu5_1.*relu3_1|relu3_1.*relu5_1"):
        Colorizer(device="cpu", vgg_weights=full_vgg, levels=["relu3_1", "relu2_1", "relu1_1"])
    with pytest.raises(ConfigMismatchError, match=r"caffe.*torchvision"):
        Colorizer(device="cpu", vgg_weights=full_vgg, vgg_variant="torchvision")


def test_checkpoint_of_other_levels_or_variant_is_refused(tmp_path, full_vgg):
    other = save_checkpoint(tmp_path / "slices.safetensors", ColorizationNet(ColorizationNetConfig(
        levels=("relu3_1", "relu2_1", "relu1_1"), variant="caffe", width=0.125)))
    with pytest.raises(ConfigMismatchError, match=r"relu3_1.*relu5_1"):
        Colorizer(device="cpu", vgg_weights=full_vgg, model=other, levels=["relu5_1", "relu4_1", "relu3_1",
                                                                           "relu2_1", "relu1_1"])
    tv = save_checkpoint(tmp_path / "tv.safetensors", ColorizationNet(ColorizationNetConfig(
        variant="torchvision", width=0.125)))
    with pytest.raises(ConfigMismatchError, match=r"torchvision.*caffe"):
        Colorizer(device="cpu", vgg_weights=full_vgg, model=tv, vgg_variant="caffe")


class _Trap:
    """Unpickling this would create a file: proof that a loader executed the pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("kind", ["truncated", "text", "pickle"])
def test_bad_checkpoint_files_are_refused_without_executing_anything(tmp_path, kind):
    path = tmp_path / "model.safetensors"
    marker = tmp_path / "executed"
    if kind == "truncated":
        raw = DEFAULT_MODEL.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "text":
        path.write_text("this is not a checkpoint\n")
    else:
        path.write_bytes(pickle.dumps({"w": _Trap(marker)}))
    with pytest.raises(WeightsError, match=re.escape(str(path))):
        Colorizer(device="cpu", model=path)
    assert not marker.exists()


def _held_out_pairs(data_dir: Path, full_vgg: Path, n_gallery: int = 36, n_targets: int = 12):
    """bsds500/test photos (never trained on), each with its nearest *other* photo of the same set as the
    reference (gray relu5_1 descriptor): real cross-image references, not the ground truth."""
    from exemplar_color.backbone import VGG19Features
    from exemplar_color.training.pairs import NearestDescriptor

    photos = sorted((data_dir / "bsds500" / "test").glob("*.jpg"))[:n_gallery]
    rule = NearestDescriptor(VGG19Features(["relu5_1"], weights=full_vgg, variant="caffe"), size=128)
    refs = rule(photos)
    step = n_gallery // n_targets
    return [(photos[i], photos[refs[i]]) for i in range(0, n_gallery, step)][:n_targets]


PREVIOUS = Path(__file__).resolve().parents[1] / "data" / "unet-2026-12-03.safetensors"  # the U-Net shipped before


def _scores(colorizer: Colorizer, pairs, alone: bool = False) -> dict[str, dict[str, list[float]]]:
    """ab error and colourfulness of every head of ``colorizer`` (and, with ``alone``, of its no-reference
    result) on ``pairs``, plus the truth's colourfulness and the gray image's ab error."""
    from exemplar_color.evaluation import decolorize
    from exemplar_color.io import load_image
    from exemplar_color.metrics import ab_error, colorfulness

    out: dict[str, dict[str, list[float]]] = {}

    def add(name: str, pred, truth) -> None:
        out.setdefault(name, {"ab": [], "cf": []})
        out[name]["ab"].append(float(ab_error(pred, truth)))
        out[name]["cf"].append(float(colorfulness(pred)))

    for target, reference in pairs:
        truth = load_image(target, "RGB")
        gray = decolorize(truth)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for head, res in colorizer.colorize_heads(gray, reference).items():
                add(head, np.asarray(res.image), truth)
            if alone:
                add("alone", np.asarray(colorizer.colorize_alone(gray).image), truth)
        add("truth", truth, truth)
        add("gray", np.repeat(gray[..., None], 3, 2), truth)
    return out


def test_shipped_model_beats_the_previous_one_and_the_analogy_head_on_held_out_pairs(data_dir, full_vgg):
    pairs = _held_out_pairs(data_dir, full_vgg)
    new = _scores(Colorizer(device="cpu", vgg_weights=full_vgg), pairs, alone=True)
    old = _scores(Colorizer(device="cpu", vgg_weights=full_vgg, model=PREVIOUS), pairs)
    mean = {k: {m: float(np.mean(v[m])) for m in ("ab", "cf")} for k, v in
            {**new, "previous": old["network"]}.items()}
    print({k: (round(v["ab"], 2), round(v["cf"], 1)) for k, v in mean.items()})
    net, prev, ana, truth = mean["network"], mean["previous"], mean["analogy"], mean["truth"]
    assert net["ab"] < prev["ab"] - AB_MARGIN and net["ab"] < ana["ab"] - AB_MARGIN, mean
    # a reference brings colour without error: measured 11.35 / 19.8 with it, 11.42 / 18.0 without (the
    # model of 2026-12-05 had 11.88 with it: the gate then also trusted loose references)
    assert net["ab"] < mean["alone"]["ab"] + 0.05 and net["cf"] > mean["alone"]["cf"] + 1.0, mean
    assert net["cf"] >= MIN_COLOURFULNESS * truth["cf"], mean  # not gray; less vivid than the previous model
    # the vivid readout beats the previous model on both: measured ab 12.34 / colourfulness 27.9 against 12.51 / 26.3
    # (12.18 / 28.1 while the chance agreements of another photo still spread their colours)
    vivid = mean["vivid"]
    assert vivid["ab"] < prev["ab"] - 0.1 and vivid["cf"] > prev["cf"] + 1.0, mean


def test_no_reference_colours_real_photos_away_from_gray(data_dir, full_vgg):
    """With no reference and no gallery the shipped model is an automatic colorizer: real colours, closer to the
    truth than leaving the photo gray."""
    from exemplar_color.evaluation import decolorize
    from exemplar_color.io import load_image
    from exemplar_color.metrics import ab_error, colorfulness

    c = Colorizer(device="cpu", vgg_weights=full_vgg)
    errs, gray_errs, cf, truth_cf = [], [], [], []
    for photo in sorted((data_dir / "bsds500" / "test").glob("*.jpg"))[40:46]:
        truth = load_image(photo, "RGB")
        gray = decolorize(truth)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = c.colorize(gray)  # no reference, no index
        pred = np.asarray(res.image)
        assert res.reference == "" and float(np.max(res.confidence)) == 0.0  # nothing came from a reference
        errs.append(float(ab_error(pred, truth)))
        gray_errs.append(float(ab_error(np.repeat(gray[..., None], 3, 2), truth)))
        cf.append(float(colorfulness(pred)))
        truth_cf.append(float(colorfulness(truth)))
    print(f"no reference: ab {np.mean(errs):.2f} vs gray {np.mean(gray_errs):.2f}; colourfulness "
          f"{np.mean(cf):.1f} vs truth {np.mean(truth_cf):.1f}")
    assert np.mean(errs) < NOREF_ERROR_RATIO * np.mean(gray_errs)
    assert np.mean(cf) > NOREF_MIN_COLOURFULNESS * np.mean(truth_cf)


def test_the_previous_unet_checkpoint_still_loads_and_runs(data_dir, full_vgg):
    c = Colorizer(device="cpu", vgg_weights=full_vgg, model=PREVIOUS, size=128)
    assert type(c.head).__name__ == "NetworkHead" and c.chroma_gain == 1.2 and not c.colours_alone
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = c.colorize(data_dir / "kodak" / "kodim05.png", data_dir / "kodak" / "kodim06.png")
    assert res.image.size == (768, 512) and float(np.abs(res.ab).mean()) > 1
    with pytest.raises(ExemplarColorError, match="needs a reference"):
        c.colorize(data_dir / "kodak" / "kodim05.png")


def test_cli_colours_a_photo_with_no_reference(data_dir, full_vgg, tmp_path, monkeypatch):
    from PIL import Image

    from exemplar_color.cli.main import main

    monkeypatch.setenv("EXEMPLAR_COLOR_VGG_WEIGHTS", str(full_vgg))
    out = tmp_path / "colour.png"
    src = data_dir / "legacy-gray" / "chaplin_1.jpg"
    assert main(["colorize", str(src), "-o", str(out), "--size", "128"]) == 0
    img = np.asarray(Image.open(out).convert("RGB")).astype(np.float32)
    assert img.shape[:2] == np.asarray(Image.open(src)).shape[:2]
    assert np.abs(img - img.mean(2, keepdims=True)).mean() > 1  # coloured, not gray
    assert main(["colorize", str(src), "-o", str(tmp_path / "x.png"), "--model", "analogy"]) == 2


# Measured with the shipped model (2026-12-06), 12 pairs: ab error 11.35 (previous model 12.51, analogy head
# 14.16, no reference 11.42); colourfulness 19.8 against the truth's 33.3 (0.60x; previous model 26.3, analogy
# head 28.8: the goal of a more vivid model is NOT met). No reference, 6 other photos: ab 16.77
# against gray's 20.69, colourfulness 14.7 against 42.3 (0.35x). The bounds fail for a model no better than the
# previous one or the analogy head, for one whose reference makes things worse, and for gray output.
AB_MARGIN = 0.5  # ab units
MIN_COLOURFULNESS = 0.5
NOREF_ERROR_RATIO = 0.9  # no reference: ab error below 0.9x the gray image's
NOREF_MIN_COLOURFULNESS = 0.25
VIVID_GAIN = 1.15  # vivid over natural colourfulness with no reference (measured 25.1 vs 19.6 on these 6: 1.28x)


def test_shipped_model_keeps_exact_matches_on_self_transform(data_dir, full_vgg):
    """With a moved copy of the photo itself as reference, the matches are exact: the network path must keep
    them (it alone predicted cautious colours there: 8.7 dB below the analogy head on Kodak). Measured:
    33.96 dB against 33.78."""
    from exemplar_color.correspondence.synthetic import similarity_pair
    from exemplar_color.evaluation import decolorize
    from exemplar_color.layout import to_array, to_tensor
    from exemplar_color.io import load_image
    from exemplar_color.metrics import psnr

    c = Colorizer(device="cpu", vgg_weights=full_vgg)
    scores: dict[str, list[float]] = {}
    for name in ("kodim05.png", "kodim23.png"):
        truth = load_image(data_dir / "kodak" / name, "RGB")
        reference = to_array(similarity_pair(to_tensor(truth), 6.0, 1.05, 0.03, -0.02).reference.clamp(0, 1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = c.colorize_heads(decolorize(truth), reference)
        for head, res in out.items():
            scores.setdefault(head, []).append(float(psnr(np.asarray(res.image), truth)))
    net, ana = np.mean(scores["network"]), np.mean(scores["analogy"])
    print(f"self-transform PSNR network {net:.2f} analogy {ana:.2f}")
    assert net > ana - 0.5 and net > 30, scores


def test_chroma_gain_makes_uncertain_colours_vivid_and_keeps_certain_matches(data_dir, full_vgg):
    """The calibrated gain comes with the model; it scales the network's muted colours, never exact matches."""
    from exemplar_color.colorization.checkpoint import read_metadata
    from exemplar_color.correspondence.synthetic import similarity_pair
    from exemplar_color.evaluation import decolorize
    from exemplar_color.layout import to_array, to_tensor
    from exemplar_color.io import load_image

    shipped = read_metadata(DEFAULT_MODEL)["release"].get("chroma_gain", 1.0)
    assert Colorizer(device="cpu", vgg_weights=full_vgg, size=128).chroma_gain == shipped
    with pytest.raises(ValueError, match="chroma_gain"):
        Colorizer(device="cpu", vgg_weights=full_vgg, chroma_gain=-1)
    plain, vivid = (Colorizer(device="cpu", vgg_weights=full_vgg, size=128, chroma_gain=g) for g in (1.0, 1.5))
    truth = load_image(data_dir / "kodak" / "kodim23.png", "RGB")
    gray = decolorize(truth)
    moved = to_array(similarity_pair(to_tensor(truth), 6.0, 1.05, 0.03, -0.02).reference.clamp(0, 1))
    other = data_dir / "kodak" / "kodim03.png"  # another photo: few certain matches

    def chroma(c: Colorizer, reference) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ab = c.colorize(gray, reference).ab
        return float(np.linalg.norm(ab, axis=-1).mean())

    cross = chroma(vivid, other) / chroma(plain, other)
    exact = chroma(vivid, moved) / chroma(plain, moved)
    assert 1.3 < cross <= 1.55, cross
    assert exact < 1.15, exact


def test_the_backbone_convention_defaults_to_the_files_own_and_names_both_when_the_model_disagrees(tv_weights):
    """README: the default convention is a recognised file's own; the API used to force Caffe on it (issue 25, 9)."""
    c = Colorizer(vgg_weights=tv_weights, model="analogy", levels=["relu3_1", "relu2_1", "relu1_1"], device="cpu")
    assert c.vgg_variant == "torchvision"
    with pytest.raises(ConfigMismatchError, match="trained on caffe VGG-19 features, but the weight file is the "
                                                  "torchvision"):
        Colorizer(vgg_weights=tv_weights, device="cpu")  # the user asked for nothing: no "asked for" in the message


def test_vivid_readout_colours_more_boldly_and_still_errs_less_than_gray(data_dir, full_vgg):
    """The model's second calibrated readout: bolder colours from the same distribution (not a gain), still
    closer to the truth than leaving the photo gray."""
    from exemplar_color.evaluation import decolorize
    from exemplar_color.io import load_image
    from exemplar_color.metrics import ab_error, colorfulness

    natural, vivid = (Colorizer(device="cpu", vgg_weights=full_vgg, vivid=v) for v in (False, True))
    assert vivid.vivid and not natural.vivid
    figures: dict[str, list[float]] = {k: [] for k in ("natural", "vivid", "gray", "cf_natural", "cf_vivid", "cf")}
    for photo in sorted((data_dir / "bsds500" / "test").glob("*.jpg"))[40:46]:
        truth = load_image(photo, "RGB")
        gray = decolorize(truth)
        for name, c in (("natural", natural), ("vivid", vivid)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pred = np.asarray(c.colorize(gray).image)
            figures[name].append(float(ab_error(pred, truth)))
            figures[f"cf_{name}"].append(float(colorfulness(pred)))
        figures["gray"].append(float(ab_error(np.repeat(gray[..., None], 3, 2), truth)))
        figures["cf"].append(float(colorfulness(truth)))
    mean = {k: round(float(np.mean(v)), 2) for k, v in figures.items()}
    print(mean)
    assert mean["cf_vivid"] > VIVID_GAIN * mean["cf_natural"], mean
    assert mean["vivid"] < mean["gray"], mean


def test_vivid_is_refused_where_there_is_no_distribution_to_read(full_vgg):
    with pytest.raises(ValueError, match=r"unet-2026-12-03.*vivid"):
        Colorizer(device="cpu", vgg_weights=full_vgg, model=PREVIOUS, vivid=True)
    with pytest.raises(ValueError, match="vivid colours need the trained sub-net"):
        Colorizer(device="cpu", vgg_weights=full_vgg, model="analogy", vivid=True)


def test_cli_vivid_with_the_analogy_head_is_one_line_exit_2(data_dir, full_vgg, tmp_path, capsys):
    from exemplar_color.cli.main import main

    rc = main(["colorize", str(data_dir / "kodak" / "kodim05.png"), "-r", str(data_dir / "kodak" / "kodim06.png"),
               "-o", str(tmp_path / "out.png"), "--model", "analogy", "--vivid", "--vgg-weights", str(full_vgg)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["error: vivid colours need the trained sub-net (model='default' or a checkpoint), "
                               "not the analogy head"], err
    assert not (tmp_path / "out.png").exists()
