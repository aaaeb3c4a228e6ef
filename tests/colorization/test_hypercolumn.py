"""The hypercolumn sub-net: ab bins and their losses, the network, its cache, training and checkpoints, on
real photos with the real full VGG-19."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from exemplar_color.color import rgb_to_lab
from exemplar_color.colorization.checkpoint import load_checkpoint, save_checkpoint
from exemplar_color.colorization.hypercolumn import (FEATURE_LEVELS, HypercolumnConfig, HypercolumnNet, ab_bins,
                                                     annealed_mean)
from exemplar_color.errors import ConfigMismatchError, WeightsError
from exemplar_color.training.cache import CacheError, PairCache, build_cache
from exemplar_color.training.distribution import bin_frequencies, rebalancing_weights, soft_encode
from exemplar_color.training.images import load_square
from exemplar_color.training.pairs import Pair, PairManifest
from exemplar_color.training.trainer import TrainConfig, train
from exemplar_color.training.validation import evaluate_hypercolumn

PHOTOS = ["n01440764_tench", "n01530575_brambling", "n01608432_kite", "n01644373_tree_frog",
          "n01744401_rock_python", "n01774750_tarantula", "n01843383_toucan"]
SIZE = 64


def _photo(data_dir, stem: str) -> str:
    return "imagenet-sample/" + sorted((data_dir / "imagenet-sample").glob(stem + ".*"))[0].name


@pytest.fixture(scope="module")
def hc_cache(tmp_path_factory, data_dir, full_weights):
    """A cache with target features of 7 real pairs (5 train, 2 val), full Caffe VGG-19, 64 px."""
    base = tmp_path_factory.mktemp("hc")
    names = [_photo(data_dir, s) for s in PHOTOS]
    pairs = [Pair(names[i], names[(i + 1) % len(names)], "val" if i >= 5 else "train") for i in range(len(names))]
    manifest = PairManifest(data_dir, pairs, source="test")
    manifest.save(base / "pairs.csv")
    build_cache(manifest, base / "cache", size=SIZE, variant="caffe", vgg_weights=full_weights, progress=False,
                features=FEATURE_LEVELS)
    return base


def test_soft_encoding_spreads_over_the_nearest_bins():
    centres = ab_bins(10.0)
    pixels = torch.tensor([[3.0, -27.0], [62.0, 58.5]])
    target, nearest = soft_encode(pixels.T.reshape(1, 2, 1, 2), centres)  # two pixels side by side
    assert torch.allclose(target.sum(1), torch.ones(1, 1, 2))
    brute = ((pixels[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
    assert nearest.flatten().tolist() == brute.tolist()
    assert (target > 0).sum(1).flatten().tolist() == [5, 5]
    assert target.argmax(1).flatten().tolist() == brute.tolist()


def test_rebalancing_weights_favour_rare_colours_and_average_one():
    freq = torch.tensor([0.7, 0.2, 0.1, 0.0])
    w = rebalancing_weights(freq, 0.5)
    assert math.isclose(float((freq * w).sum()), 1.0, rel_tol=1e-5)
    assert w[0] < w[1] < w[2] < w[3]
    flat = rebalancing_weights(freq, 1.0)
    assert torch.allclose(flat, torch.ones(4))


def test_annealed_mean_goes_from_the_mean_to_the_mode():
    centres = torch.tensor([[0.0, 0.0], [40.0, 0.0]])
    logits = torch.log(torch.tensor([0.6, 0.4])).view(1, 2, 1, 1)
    assert math.isclose(float(annealed_mean(logits, centres, 1.0)[0, 0]), 16.0, rel_tol=1e-4)
    assert float(annealed_mean(logits, centres, 0.05)[0, 0]) < 0.1


def test_no_reference_output_ignores_the_gate_and_reference_output_blends():
    torch.manual_seed(0)
    net = HypercolumnNet(HypercolumnConfig(width=16, depth=1)).eval()
    feats = {lv: torch.randn(2, c, 64 // s, 64 // s) for lv, c, s in
             (("relu5_1", 512, 16), ("relu4_1", 512, 8), ("relu3_1", 256, 4))}
    l = torch.full((2, 1, 64, 64), 50.0)
    alone, gate0 = net.colorize(l, feats)
    assert gate0.abs().max() == 0 and alone.abs().max() <= 110
    warped = torch.full((2, 2, 64, 64), 30.0)
    mixed, gate = net.colorize(l, feats, warped, torch.rand(2, 10, 64, 64))
    assert 0 <= float(gate.detach().min()) and float(gate.detach().max()) <= 1
    pred = net(l, feats, warped, torch.rand(2, 10, 64, 64))
    assert pred.logits.shape == (2, len(ab_bins()), 16, 16)
    with pytest.raises(ValueError, match="missing"):
        net(l, {"relu3_1": feats["relu3_1"]})


def test_cache_stores_the_matchers_own_target_features(hc_cache, data_dir, full_weights):
    from exemplar_color.backbone import VGG19Features
    from exemplar_color.correspondence import Matcher

    cache = PairCache(hc_cache / "cache")
    assert cache.config.features == FEATURE_LEVELS
    rec = cache.read(0)
    target = cache.pairs[cache.pair_index[0]][0]
    rgb, _ = load_square(data_dir / target, SIZE)
    matcher = Matcher(VGG19Features(cache.levels, weights=full_weights, variant="caffe"), precision="float32")
    own = matcher.features(rgb_to_lab(rgb[None])[:, :1])
    for lv in FEATURE_LEVELS:
        got = torch.from_numpy(rec["feat_" + lv]).float()
        assert got.shape == own[lv][0].shape
        assert torch.allclose(got, own[lv][0], atol=2e-3), lv
        assert torch.allclose(got.norm(dim=0), torch.ones(got.shape[1:]), atol=5e-3)


def _decoded_batch(hc_cache, n: int = 6) -> dict[str, torch.Tensor]:
    """The first ``n`` cache records as one decoded batch (thirds: T'_ab, real reference, none)."""
    from exemplar_color.training.cache import decode

    cache = PairCache(hc_cache / "cache")
    return decode({k: torch.stack([torch.from_numpy(cache.read(i)[k]) for i in range(n)]) for k in cache.fields})


def test_the_loss_teaches_the_distribution_and_the_gate(hc_cache):
    from exemplar_color.training.distribution import hypercolumn_loss

    x = _decoded_batch(hc_cache)
    torch.manual_seed(0)
    net = HypercolumnNet(HypercolumnConfig(width=32, depth=1))
    weights = rebalancing_weights(bin_frequencies([x["ab"]], net.centres))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    first = None
    for _ in range(30):
        parts = hypercolumn_loss(net, net, x, weights)
        first = first or {k: float(v) for k, v in parts.items()}
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
    assert float(parts["ce"]) < 0.85 * first["ce"] and float(parts["chroma"]) < 0.85 * first["chroma"]


def test_cycle_ce_weighs_the_chrominance_branch(hc_cache):
    """``cycle_ce`` 0 takes the T'_ab branch out of the cross-entropy (no gradient reaches its logits), 1 weighs
    the three branches alike, as before the setting existed."""
    from exemplar_color.training.distribution import hypercolumn_loss

    x = _decoded_batch(hc_cache)
    torch.manual_seed(0)
    net = HypercolumnNet(HypercolumnConfig(width=32, depth=1))
    weights = rebalancing_weights(bin_frequencies([x["ab"]], net.centres), 1.0)
    grads, logits = {}, []

    def keep(module, inputs, out):
        out.retain_grad()
        logits.append(out)

    hook = net.logits.register_forward_hook(keep)
    for cycle_ce in (0.0, 1.0):
        hypercolumn_loss(net, net, x, weights, cycle_ce)["ce"].backward()
        grads[cycle_ce] = logits[-1].grad.abs().sum((1, 2, 3))  # per sample; the first 2 of 6 are T'_ab's
    hook.remove()
    assert grads[0.0][:2].max() == 0 and grads[0.0][2:].min() > 0
    assert grads[1.0][:2].min() > 0
    assert torch.allclose(grads[0.0][2:] * 4 / 6, grads[1.0][2:], rtol=1e-4)  # the rest renormalised: 4 of 6


def _trained_straight_and_resumed(tmp_path, common: dict, stop_at: int, steps: int) -> dict:
    """Train ``common`` straight through (``tmp_path/a``) and stopped at ``stop_at`` then resumed (``tmp_path/b``);
    assert both end at ``steps`` with identical weights, and return the straight run's."""
    straight = train(TrainConfig(out=str(tmp_path / "a"), **common))
    train(TrainConfig(out=str(tmp_path / "b"), max_steps=stop_at, **common))
    resumed = train(TrainConfig(out=str(tmp_path / "b"), **common))
    assert straight["step"] == resumed["step"] == steps
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    return a


def test_hypercolumn_training_resumes_exactly(hc_cache, tmp_path):
    common = dict(pairs=str(hc_cache / "pairs.csv"), cache=str(hc_cache / "cache"), arch="hypercolumn", width=0.125,
                  depth=1, batch_size=3, lr=3e-3, epochs=12, num_workers=0, log_every=1, progress=False, checkpoint_every=1)
    _trained_straight_and_resumed(tmp_path, common, stop_at=5, steps=12)
    net, meta, _ = load_checkpoint(tmp_path / "a" / "model.safetensors")
    assert isinstance(net, HypercolumnNet) and meta["config"]["arch"] == "exemplar-hypercolumn"


def test_cache_without_features_is_refused_saying_how_to_rebuild(tmp_path, data_dir, full_weights):
    names = [_photo(data_dir, s) for s in PHOTOS[:2]]
    manifest = PairManifest(data_dir, [Pair(names[0], names[1], "train")], source="test")
    manifest.save(tmp_path / "pairs.csv")
    build_cache(manifest, tmp_path / "cache", size=SIZE, variant="caffe", vgg_weights=full_weights, progress=False)
    with pytest.raises(ConfigMismatchError, match="--features relu5_1,relu4_1,relu3_1"):
        train(TrainConfig(pairs=str(tmp_path / "pairs.csv"), cache=str(tmp_path / "cache"), out=str(tmp_path / "r"),
                          arch="hypercolumn", num_workers=0, progress=False))


@pytest.fixture(scope="module")
def mirrored_cache(hc_cache, tmp_path_factory, data_dir, full_weights):
    """``hc_cache`` copied, then built again with ``mirrored=True``: it gains the mirrored targets' features."""
    import shutil

    base = tmp_path_factory.mktemp("mirrored")
    shutil.copytree(hc_cache, base, dirs_exist_ok=True)
    with pytest.raises(CacheError, match="--mirrored"):
        PairCache(base / "cache").read(0, ["mirror_feat_relu3_1"])
    manifest = PairManifest.load(base / "pairs.csv", root=data_dir)
    report = build_cache(manifest, base / "cache", size=SIZE, variant="caffe", vgg_weights=full_weights,
                         progress=False, features=FEATURE_LEVELS, mirrored=True)
    assert report.computed == 0  # nothing matched again
    return base


def test_mirrored_features_are_the_mirrored_photos_own_not_flipped_maps(mirrored_cache, data_dir, full_weights):
    from exemplar_color.backbone import VGG19Features
    from exemplar_color.correspondence import Matcher

    cache = PairCache(mirrored_cache / "cache")
    assert cache.mirrored and cache.mirrored_fields == tuple("mirror_feat_" + lv for lv in FEATURE_LEVELS)
    matcher = Matcher(VGG19Features(cache.levels, weights=full_weights, variant="caffe"), precision="float32")
    for rec in (0, len(cache) - 1):
        stored = cache.read(rec, cache.fields + cache.mirrored_fields)
        rgb, _ = load_square(data_dir / cache.pairs[cache.pair_index[rec]][0], SIZE)
        own = matcher.features(rgb_to_lab(rgb[None].flip(-1))[:, :1])
        for lv in FEATURE_LEVELS:
            got = torch.from_numpy(stored["mirror_feat_" + lv]).float()
            assert torch.allclose(got, own[lv][0], atol=2e-3), lv
            flipped_map = torch.from_numpy(stored["feat_" + lv]).float().flip(-1)
            assert (flipped_map * own[lv][0]).sum(0).mean() < 0.9, lv  # why they are stored: VGG is not symmetric


def test_mirror_flips_maps_and_swaps_in_the_mirrored_features():
    from exemplar_color.training.augment import mirror

    torch.manual_seed(0)
    x = {"l": torch.rand(4, 1, 8, 8), "feat_relu5_1": torch.rand(4, 3, 2, 2),
         "mirror_feat_relu5_1": torch.rand(4, 3, 2, 2)}
    same = mirror(x, "mirror_", p=0.0)
    assert set(same) == {"l", "feat_relu5_1"} and all(torch.equal(same[k], x[k]) for k in same)
    flipped = mirror(x, "mirror_", p=1.0)
    assert torch.equal(flipped["l"], x["l"].flip(-1)) and torch.equal(flipped["feat_relu5_1"], x["mirror_feat_relu5_1"])
    some = mirror(x, "mirror_", p=0.5)
    chosen = [torch.equal(some["l"][i], x["l"][i].flip(-1)) for i in range(4)]
    assert all(torch.equal(some["feat_relu5_1"][i], x["mirror_feat_relu5_1" if c else "feat_relu5_1"][i])
               for i, c in enumerate(chosen))


def test_mirrored_training_needs_the_mirrored_features_and_resumes_exactly(hc_cache, mirrored_cache, tmp_path):
    common = dict(arch="hypercolumn", width=0.125, depth=1, batch_size=3, lr=3e-3, epochs=6, num_workers=0,
                  log_every=1, progress=False, checkpoint_every=1, augment=True)
    with pytest.raises(ConfigMismatchError, match="--mirrored"):
        train(TrainConfig(pairs=str(hc_cache / "pairs.csv"), cache=str(hc_cache / "cache"), out=str(tmp_path / "x"),
                          **common))
    common.update(pairs=str(mirrored_cache / "pairs.csv"), cache=str(mirrored_cache / "cache"))
    a = _trained_straight_and_resumed(tmp_path, common, stop_at=3, steps=6)
    plain = train(TrainConfig(out=str(tmp_path / "c"), **{**common, "augment": False}))
    c = load_file(str(tmp_path / "c" / "model.safetensors"))
    assert plain["step"] == 6 and not all(torch.equal(a[k], c[k]) for k in a)  # the mirroring did happen


def test_evaluation_reports_every_condition(hc_cache):
    cache = PairCache(hc_cache / "cache")
    batch = {k: torch.from_numpy(v)[None].float() for k, v in cache.read(0).items()}
    batch["similarity"] = batch["similarity"] / 255
    torch.manual_seed(0)
    out = evaluate_hypercolumn(HypercolumnNet(HypercolumnConfig(width=16, depth=1)), [batch])
    for k in ("val_ab_l1", "val_cycle_l1", "val_noref_l1", "val_warped_l1", "val_gray_l1", "val_noref_chroma"):
        assert math.isfinite(out[k]), k
    freq = bin_frequencies([batch["ab"]], ab_bins())
    assert math.isclose(float(freq.sum()), 1.0, rel_tol=1e-5)


def test_checkpoint_with_nan_weights_is_refused(tmp_path):
    net = HypercolumnNet(HypercolumnConfig(width=16, depth=1))
    path = save_checkpoint(tmp_path / "ok.safetensors", net)
    tensors = load_file(str(path))
    tensors["model.logits.weight"][0, 0] = float("nan")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    save_file(tensors, str(tmp_path / "nan.safetensors"), metadata=meta)
    with pytest.raises(WeightsError, match="NaN"):
        load_checkpoint(tmp_path / "nan.safetensors")
    with pytest.raises(ConfigMismatchError, match="features"):
        load_checkpoint(path, HypercolumnConfig(features=("relu4_1", "relu3_1")))


@pytest.mark.parametrize("gain", ["NaN", "-3", "50", "\"x\""])
def test_checkpoint_with_a_bad_chroma_gain_is_refused(tmp_path, gain, full_weights):
    import json

    from exemplar_color import Colorizer
    from exemplar_color.models import DEFAULT_MODEL

    tensors = load_file(str(DEFAULT_MODEL))
    from safetensors import safe_open

    with safe_open(str(DEFAULT_MODEL), framework="pt") as f:
        meta = json.loads(f.metadata()["exemplar_color"])
    meta["release"]["chroma_gain"] = "__GAIN__"
    text = json.dumps(meta).replace('"__GAIN__"', gain)  # NaN is what Python's json writes for float("nan")
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={"exemplar_color": text})
    with pytest.raises(WeightsError, match="chroma_gain"):
        Colorizer(model=tmp_path / "bad.safetensors", vgg_weights=full_weights, device="cpu")


def test_nan_colours_are_never_rendered(data_dir):
    from exemplar_color.full_resolution import ColorizationError, FullResolution

    ab = torch.zeros(1, 2, 8, 8)
    ab[0, 0, 3, 3] = float("nan")
    with pytest.raises(ColorizationError, match="NaN"):
        FullResolution(torch.rand(1, 3, 16, 16), torch.full((1, 1, 8, 8), 50.0), ab)
