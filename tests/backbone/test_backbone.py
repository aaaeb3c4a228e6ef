"""VGG-19 backbone: the real pretrained slices from ../shared/weights (both conventions), partial-coverage
errors, early stop, gray input, Caffe preprocessing, weight resolution without network, and a check that
the real weights give features random ones cannot."""

from __future__ import annotations

import copy
import hashlib
import re
import typing

import numpy as np
import pytest
import torch

from exemplar_color.backbone import (
    KNOWN_WEIGHTS,
    LEVEL_CHANNELS,
    LEVEL_STRIDE,
    LEVELS,
    PREPROCESSING,
    VARIANTS,
    WEIGHTS,
    Variant,
    VGG19Features,
    choose_variant,
    identify_weights,
    load_state_dict,
    resolve_weights,
)
from exemplar_color.backbone import RELU_INDEX
from exemplar_color.color import l_to_gray, rgb_to_lab
from exemplar_color.errors import WeightsError
from exemplar_color.io import load_image


@pytest.fixture(scope="module")
def gray_photos(data_dir) -> torch.Tensor:
    """Four Kodak photos as the gray images the pipeline shows VGG (L -> neutral sRGB gray), 128x160."""
    files = sorted((data_dir / "kodak").glob("*.png"))[:4]
    rgb = torch.stack([torch.from_numpy(load_image(f, "RGB")[:128, :160]).permute(2, 0, 1) for f in files])
    return l_to_gray(rgb_to_lab(rgb)[:, :1])


# ----------------------------------------------------------------------------------------- loading
def test_both_slice_files_load_and_give_features(tv_weights, caffe_weights):
    x = torch.rand(2, 3, 32, 40)
    tv = VGG19Features(["relu1_1", "relu2_1", "relu3_1"], weights=tv_weights)
    caffe = VGG19Features(["relu3_4", "relu1_1"], weights=caffe_weights, variant="caffe")
    for net in (tv, caffe):
        out = net(x)
        assert list(out) == list(net.levels)  # the order asked for
        for lv, f in out.items():
            assert f.shape == (2, LEVEL_CHANNELS[lv], 32 // LEVEL_STRIDE[lv], 40 // LEVEL_STRIDE[lv])
            assert torch.isfinite(f).all() and (f >= 0).all()
    # the loaded tensors are the file's, not the random initialisation
    sd = load_state_dict(caffe_weights)
    assert torch.equal(caffe.features[16].weight, sd["features.16.weight"])
    assert torch.equal(tv.features[0].weight, load_state_dict(tv_weights)["features.0.weight"])
    assert not any(p.requires_grad for p in tv.parameters())


@pytest.mark.parametrize("which,level,has,needs", [
    ("tv", "relu4_1", "conv1_1..conv3_1", "conv1_1..conv4_1"),
    ("tv", "relu3_2", "conv1_1..conv3_1", "conv1_1..conv3_2"),
    ("caffe", "relu5_1", "conv1_1..conv3_4", "conv1_1..conv5_1"),
])
def test_level_beyond_the_slice_names_present_and_needed_layers(tv_weights, caffe_weights, which, level, has,
                                                                needs):
    path = tv_weights if which == "tv" else caffe_weights
    with pytest.raises(WeightsError) as e:
        VGG19Features(["relu1_1", level], weights=path, variant="torchvision" if which == "tv" else "caffe")
    msg = str(e.value)
    assert str(path) in msg and f"the file has {has}" in msg and f"need {needs}" in msg and level in msg


def test_not_a_weight_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "vgg.pth"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(WeightsError, match="not a readable PyTorch weight file"):
        VGG19Features(["relu1_1"], weights=bad)
    with pytest.raises(WeightsError, match="not found"):
        VGG19Features(["relu1_1"], weights=tmp_path / "absent.pth")


# --------------------------------------------------------------------------------------- forward
def test_stops_at_the_deepest_requested_level(tv_weights):
    net = VGG19Features(["relu1_1", "relu2_1"], weights=tv_weights)
    assert len(net.features) == 7  # conv1_1 relu conv1_2 relu pool conv2_1 relu(=relu2_1): nothing after
    ran: list[int] = []
    for i, layer in enumerate(net.features):
        layer.register_forward_hook(lambda m, a, o, i=i: ran.append(i))
    net(torch.rand(1, 3, 16, 16))
    assert ran == list(range(7))
    # a shallow request loads from a slice that lacks deeper layers, even a one-layer file
    one = VGG19Features(["relu1_1"], weights=tv_weights)
    assert len(one.features) == 2


def test_gray_input_equals_three_channel_repeat(vgg_slices, gray_photos):
    g = gray_photos[:2, :, :64, :64]
    a, b = vgg_slices(g), vgg_slices(g.repeat(1, 3, 1, 1))
    for lv in a:
        assert torch.equal(a[lv], b[lv])


def test_context_border_is_cropped_from_every_level_and_dropped_after_its_level(vgg_slices, gray_photos):
    """``border``: features of the padded image, each level cropped back to the image's own grid; with
    ``border_until``, deeper layers run on the cropped map, as if that map had been the input."""
    x = gray_photos[:1, :, :64, :64]
    pad = torch.nn.functional.pad(x, (8,) * 4, mode="replicate")
    whole = vgg_slices(pad)
    cropped = vgg_slices(pad, border=8)
    for lv, f in cropped.items():
        c = 8 // LEVEL_STRIDE[lv]
        assert f.shape[-2:] == (64 // LEVEL_STRIDE[lv],) * 2
        assert torch.equal(f, whole[lv][..., c:-c, c:-c])
    early = vgg_slices(pad, border=8, border_until="relu2_1")
    assert torch.equal(early["relu2_1"], cropped["relu2_1"])
    rest = vgg_slices.features[RELU_INDEX["relu2_1"] + 1:]  # from the cropped relu2_1 map on
    assert torch.allclose(early["relu3_1"], rest(early["relu2_1"]), atol=1e-5)
    assert not torch.allclose(early["relu3_1"], cropped["relu3_1"], atol=1e-3)  # the context did matter there
    with pytest.raises(ValueError, match="multiple"):
        vgg_slices(pad, border=6)


def test_caffe_preprocessing_is_bgr_0_255_minus_mean(caffe_weights):
    net = VGG19Features(["relu1_1"], weights=caffe_weights, variant="caffe")
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    mean_bgr = torch.tensor([103.939, 116.779, 123.68], dtype=torch.float64).view(1, 3, 1, 1)
    expected = x[:, [2, 1, 0]] * 255.0 - mean_bgr
    assert torch.allclose(net.preprocess(x), expected, atol=1e-4)
    tv = VGG19Features(["relu1_1"], weights="random", variant="torchvision")
    mean, std = torch.tensor((0.485, 0.456, 0.406)), torch.tensor((0.229, 0.224, 0.225))
    assert torch.allclose(tv.preprocess(x.float()), (x.float() - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1),
                          atol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, 1 or 3, H, W\)"):
        net.preprocess(torch.rand(3, 8, 8))


# ----------------------------------------------------------------------------- real vs random weights
def _contrast(net: VGG19Features, x: torch.Tensor, shift: int = 4) -> float:
    """cos(photo, its shifted copy) - cos(photo, a different photo), relu3_1, averaged over positions.

    ``shift`` pixels = ``shift / 4`` cells at relu3_1, so the copy's cells are compared where they align.
    """
    f0 = net(x[..., :, :-shift])["relu3_1"]
    f1 = net(x[..., :, shift:])["relu3_1"]
    s = shift // 4
    cos = torch.nn.functional.cosine_similarity
    same = cos(f0[..., s:], f1[..., :-s], dim=1).mean()
    other = cos(f0, f0.roll(1, dims=0), dim=1).mean()
    return float(same - other)


def _random(seed: int, init: str) -> VGG19Features:
    torch.manual_seed(seed)
    net = VGG19Features(["relu3_1"], weights="random", variant="torchvision")  # as the real slice
    if init == "kaiming":  # torchvision's VGG initialisation, the stronger random baseline
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                torch.nn.init.zeros_(m.bias)
    return net


def test_pretrained_features_tell_photos_apart_random_ones_do_not(vgg_slices, gray_photos):
    """A gray photo and its 4-pixel-shifted copy must match far better than two different photos.

    The plain cosine between a photo and its shifted copy does NOT separate pretrained from random
    weights (measured 0.986 real vs 0.996 random: random ReLU features are dominated by one shared
    positive component, so *everything* looks alike, two different photos included, cos ~ 0.9), nor does
    nearest-neighbour matching accuracy under a small photometric change (0.59 real vs 0.57..0.67
    random). What separates them is how much better the copy matches than a different photo. On these
    four photos: 0.62 with the real torchvision slice, 0.60 with the Caffe one, 0.05..0.18 over 8 random
    networks (2 initialisations x 4 seeds); on other Kodak subsets real 0.41..0.66, random <= 0.20.
    """
    real = _contrast(vgg_slices, gray_photos)
    rand = [_contrast(_random(0, init), gray_photos) for init in ("default", "kaiming")]
    assert real > 0.4, real
    assert max(rand) < 0.25, rand
    assert real > 2.5 * max(rand), (real, rand)


def test_caffe_slice_features_are_pretrained_too(caffe_weights, gray_photos):
    """The same separation with the Caffe file under its own (BGR, 0..255) preprocessing."""
    net = VGG19Features(["relu3_1"], weights=caffe_weights, variant="caffe")
    assert _contrast(net, gray_photos) > 0.4


# --------------------------------------------------------------------------------- weight resolution
def test_resolve_weights_honours_the_environment_variable(monkeypatch, tmp_path, tv_weights):
    monkeypatch.setenv("EXEMPLAR_COLOR_HOME", str(tmp_path))
    monkeypatch.setenv("EXEMPLAR_COLOR_VGG_WEIGHTS", str(tv_weights))
    assert resolve_weights() == tv_weights
    assert resolve_weights(variant="caffe") == tv_weights  # an explicit file wins over the variant
    net = VGG19Features(["relu2_1"])  # no weights= argument: the env var's file, no network
    assert torch.equal(net.features[5].weight, load_state_dict(tv_weights)["features.5.weight"])
    # an explicit argument wins over the environment
    other = tmp_path / "other.pth"
    torch.save({}, other)
    assert resolve_weights(other) == other
    monkeypatch.setenv("EXEMPLAR_COLOR_VGG_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(WeightsError, match="missing.pth"):
        resolve_weights()


def test_cached_file_is_used_without_network(monkeypatch, tmp_path, tv_weights):
    monkeypatch.delenv("EXEMPLAR_COLOR_VGG_WEIGHTS", raising=False)
    monkeypatch.setenv("EXEMPLAR_COLOR_HOME", str(tmp_path))
    cached = tmp_path / WEIGHTS["torchvision"].filename
    cached.write_bytes(tv_weights.read_bytes())
    assert resolve_weights(variant="torchvision") == cached  # the autouse fixture would fail any download attempt


@pytest.mark.parametrize("variant", ["torchvision", "caffe"])
def test_no_file_and_no_network_says_where_to_put_the_file(monkeypatch, tmp_path, variant):
    monkeypatch.delenv("EXEMPLAR_COLOR_VGG_WEIGHTS", raising=False)
    monkeypatch.setenv("EXEMPLAR_COLOR_HOME", str(tmp_path))
    record = WEIGHTS[variant]
    dest = tmp_path / record.filename
    with pytest.raises(WeightsError) as e:
        VGG19Features(["relu1_1"], variant=variant)
    msg = str(e.value)
    assert record.url in msg and str(dest) in msg and "EXEMPLAR_COLOR_VGG_WEIGHTS" in msg
    assert list(tmp_path.iterdir()) == []  # nothing half-written left in the cache
    with pytest.raises(WeightsError, match=re.escape(str(dest))):
        resolve_weights(variant=variant, download=False)


def test_half_precision_and_channels_last_agree_with_fp32(vgg_slices, gray_photos):
    x = gray_photos[:1, :, :64, :64]
    ref = vgg_slices(x)["relu3_1"]
    cl_net = copy.deepcopy(vgg_slices).to(memory_format=torch.channels_last)
    cl = cl_net(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(cl["relu3_1"], ref, rtol=1e-4, atol=1e-4)
    bf = VGG19Features(["relu3_1"], weights="random", variant="torchvision").to(torch.bfloat16)
    bf.load_state_dict(vgg_slices.state_dict())
    out = bf(x.to(torch.bfloat16))["relu3_1"].float()
    assert torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0) > 0.999
    assert np.isfinite(out.numpy()).all()


# ------------------------------------------------------------------------- published files by their hash
SHARED_WEIGHTS = {  # file name -> (record name, variant, deepest level)
    "vgg19-caffe-features-0-34-q8.pth": ("caffe-features-q8", "caffe", "relu5_4"),
    "vgg19-caffe-features-0-16.pth": ("caffe-features-0-16", "caffe", "relu3_4"),
    "vgg19-torchvision-features-0-10.pth": ("torchvision-features-0-10", "torchvision", "relu3_1"),
}


def test_the_backbone_package_hands_on_every_public_name_of_its_modules():
    """``exemplar_color.backbone`` names everything public of its spec, weights, features and choice, as the very
    same objects; one default convention (Caffe, the paper's) and one default set of levels, defined in the spec."""
    from exemplar_color import backbone
    from exemplar_color.backbone import choice, features, spec, weights

    for module in (spec, weights, features, choice):
        for name in module.__all__:
            assert name in backbone.__all__ and getattr(backbone, name) is getattr(module, name), name
    assert all(hasattr(backbone, name) for name in backbone.__all__)
    assert backbone.DEFAULT_VARIANT == "caffe" and backbone.DEFAULT_LEVELS[0] == "relu5_1"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        backbone.nothing  # noqa: B018


def test_weight_records_carry_hash_preprocessing_and_layers():
    for r in KNOWN_WEIGHTS:
        assert r.variant in VARIANTS and r.preprocessing is PREPROCESSING[r.variant]
        assert r.layers and set(r.layers) <= set(LEVELS) and r.layers[0] == "relu1_1"
        assert r.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", r.sha256), r.name
        assert r.url or r.sha256, r.name  # a download is checked by its name's hash prefix, a file by its hash
    assert WEIGHTS["torchvision"].hash_prefix == "dcbb9e9d" and WEIGHTS["caffe"].hash_prefix == "d01eb7cb"
    caffe, tv = PREPROCESSING["caffe"], PREPROCESSING["torchvision"]
    assert (caffe.channels, caffe.scale, caffe.mean, caffe.std) == ("BGR", 255.0, (103.939, 116.779, 123.68),
                                                                     (1.0, 1.0, 1.0))
    assert (tv.channels, tv.scale, tv.std) == ("RGB", 1.0, (0.229, 0.224, 0.225))
    assert set(typing.get_args(Variant)) == set(VARIANTS) == {"caffe", "torchvision"}


@pytest.mark.parametrize("name", sorted(SHARED_WEIGHTS))
def test_published_files_are_recognised_by_their_hash(name, data_dir, tmp_path, monkeypatch):
    path = data_dir.parent / "weights" / name
    if not path.is_file():
        pytest.skip(f"needs {path}")
    monkeypatch.setenv("EXEMPLAR_COLOR_HOME", str(tmp_path))
    record_name, variant, deepest = SHARED_WEIGHTS[name]
    renamed = tmp_path / "renamed.pth"  # the name plays no part
    renamed.write_bytes(path.read_bytes())
    for p in (path, renamed):
        r = identify_weights(p)
        assert r is not None and (r.name, r.variant, r.layers[-1]) == (record_name, variant, deepest)
        assert r.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
        assert choose_variant(p, None) == variant == choose_variant(p, variant)
        other = "caffe" if variant == "torchvision" else "torchvision"
        with pytest.raises(WeightsError) as e:
            choose_variant(p, other)
        assert variant in str(e.value) and other in str(e.value) and str(p) in str(e.value)


def test_variant_is_chosen_from_the_file_and_a_contradiction_refused(caffe_weights, tv_weights, tmp_path):
    assert VGG19Features(["relu1_1"], weights=caffe_weights).variant == "caffe"  # no variant given
    assert VGG19Features(["relu1_1"], weights=tv_weights).variant == "torchvision"
    with pytest.raises(WeightsError, match="published caffe VGG-19 file.*torchvision convention was asked"):
        VGG19Features(["relu1_1"], weights=caffe_weights, variant="torchvision")
    with pytest.raises(WeightsError, match="published torchvision VGG-19 file.*caffe convention was asked"):
        VGG19Features(["relu1_1"], weights=tv_weights, variant="caffe")
    own = tmp_path / "own.pth"  # an unknown file: the caller's choice, else torchvision
    torch.save({k: v + 0.01 for k, v in load_state_dict(tv_weights).items()}, own)
    assert identify_weights(own) is None
    assert VGG19Features(["relu1_1"], weights=own).variant == "torchvision"
    assert VGG19Features(["relu1_1"], weights=own, variant="caffe").variant == "caffe"


def test_weight_file_errors_never_advise_unsafe_loading(tmp_path):
    import argparse
    import pickle

    Thing = argparse.Namespace  # importable, but not a tensor: weights_only refuses it
    cases = {"garbage.pth": b"\x80\x02garbage" * 10, "text.pth": b"not a pickle"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"x": Thing(a=1)}, tmp_path / "object.pth")
    (tmp_path / "pickle.pth").write_bytes(pickle.dumps(Thing()))
    for f in sorted(tmp_path.glob("*.pth")):
        with pytest.raises(WeightsError) as e:
            VGG19Features(["relu1_1"], weights=f)
        msg = str(e.value)
        assert "not a readable PyTorch weight file" in msg and str(f) in msg, msg
        assert not re.search(r"(?i)weights.only|arbitrary code|can still be loaded", msg), msg


@pytest.mark.parametrize("which", ["torchvision", "caffe"])
def test_an_unrecognised_weight_file_gets_the_convention_its_first_layer_shows(tmp_path, tv_weights, caffe_weights,
                                                                             which):
    """The same tensors re-saved (another SHA-256) used to run with Caffe preprocessing whatever they were:
    11% more colour error for a torchvision file (issue 25, item 4)."""
    from exemplar_color.backbone.weights import choose_variant, identify_weights, load_state_dict

    sd = load_state_dict(tv_weights if which == "torchvision" else caffe_weights)
    copy = tmp_path / "resaved.pth"
    torch.save({"state_dict": {"module." + k: v.clone() for k, v in sd.items()}}, copy)
    assert identify_weights(copy) is None
    with pytest.warns(UserWarning, match=f"the {which} preprocessing is used"):
        assert choose_variant(copy, None) == which
    assert choose_variant(copy, "caffe") == "caffe"  # an explicit choice is the user's
