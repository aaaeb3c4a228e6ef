"""Similarity sub-net on real photos with the real pretrained VGG-19 slices (relu3_1, relu2_1, relu1_1) and, for
the known-transform accuracy, the full VGG-19 (relu5_1..relu1_1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exemplar_color.color import lab_to_rgb, rgb_to_lab
from exemplar_color.backbone import DEFAULT_LEVELS, VGG19Features
from exemplar_color.correspondence import CorrespondenceError, Matcher
from exemplar_color.correspondence import fields as fl
from exemplar_color.correspondence.matcher import FAST_RADIUS, _fast_radii
from exemplar_color.correspondence.search import exact_search, local_search, prefer_coherent
from exemplar_color.correspondence.synthetic import random_similarity, similarity_pair
from exemplar_color.io import load_image
from exemplar_color.working import resize

# Known-transform photos across the four sources (named here, so benchmarks/known_transform.py never tunes or
# reports on them; its 80 photos are disjoint from these). First-layer slices: fast; one photo per source also
# with the full five-level VGG-19.
PHOTOS = ("imagenet-sample/n01440764_tench.JPEG", "imagenet-sample/n01914609_sea_anemone.JPEG",
          "imagenet-sample/n02279972_monarch.JPEG", "imagenet-val-227/images/ILSVRC2012_val_00000347.JPEG",
          "imagenet-val-227/images/ILSVRC2012_val_00016113.JPEG", "bsds500/test/100007.jpg",
          "bsds500/test/41096.jpg", "kodak/kodim03.png")
# What the full five levels must reach on FULL_PHOTOS (the goal: a 99% mean, no photo below 95%; measured
# here 99.9% mean, worst 99.8%, since the coherence margin (99.0% / 98.5% before); see
# benchmarks/known_transform.py for 45 unseen photos).
FULL_MEAN, FULL_MIN = 0.99, 0.98
FULL_PHOTOS = ("imagenet-sample/n02804414_bassinet.JPEG", "imagenet-val-227/images/ILSVRC2012_val_00032862.JPEG",
               "bsds500/train/302003.jpg", "kodak/kodim23.png")


def _crop(path, size=256) -> torch.Tensor:
    """Centre square of a photo at ``size`` px (ImageNet-val photos are 227 px: scaled up)."""
    img = torch.from_numpy(load_image(path, mode="RGB")).permute(2, 0, 1)[None]
    h, w = img.shape[-2:]
    s = min(h, w)
    img = img[:, :, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return resize(img, (size, size)).clamp(0, 1) if s != size else img


@pytest.fixture(scope="module")
def matcher(vgg_slices):
    return Matcher(vgg_slices)


def _known(data_dir, matcher, photos, seed=0):
    """Known-transform pairs: reference = the photo under a random similarity transform, target = its gray L."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for name in photos:
        img = _crop(data_dir / name)
        kp = similarity_pair(img, *random_similarity(g))
        lab, ref_lab = rgb_to_lab(img), rgb_to_lab(kp.reference.clamp(0, 1))
        out.append((img, lab, kp, matcher.match(lab[:, :1], ref_lab)))
    return out


@pytest.fixture(scope="module")
def known_pairs(data_dir, matcher):
    return _known(data_dir, matcher, PHOTOS)


def _within_3px(c, kp) -> float:
    return ((c.forward - kp.truth).norm(dim=1, keepdim=True)[kp.overlap] <= 3).float().mean().item()


def _psnr_overlap(img, lab, ab, overlap) -> float:
    rgb = lab_to_rgb(torch.cat([lab[:, :1], ab], 1))
    mse = ((rgb * 255).round() - (img * 255).round()).pow(2).mean(1, keepdim=True)[overlap].mean().item()
    return 10 * np.log10(255 ** 2 / mse)


def test_known_transform_matches_within_3px(known_pairs):
    fractions = [_within_3px(c, kp) for _, _, kp, c in known_pairs]
    # the bar for the slices: at least 95% of overlap pixels within 3 px on average (measured: 99.8%,
    # worst 99.1%; 99.4% / 98.3% before the coherence margin)
    assert np.mean(fractions) >= 0.99, fractions
    assert min(fractions) >= 0.98, fractions


def _edge_band(kp, px: int = 16) -> torch.Tensor:
    """Overlap pixels within ``px`` of the target's own edge."""
    band = torch.ones_like(kp.overlap)
    band[..., px:-px, px:-px] = False
    return band & kp.overlap


def test_context_border_matches_the_edges_of_the_photo(data_dir, vgg_slices, known_pairs):
    """Without context the zero padding of VGG-19 makes the edges of a photo look unlike the same content
    inside the other one, and a band along them matches wrongly; the default context border fixes it (16 px
    band: measured 98.9% within 3 px with it, 93.6% without)."""
    plain = _known(data_dir, Matcher(vgg_slices, context_border=0), PHOTOS)
    share = {}
    for name, pairs in (("context", known_pairs), ("plain", plain)):
        hits = [((c.forward - kp.truth).norm(dim=1, keepdim=True) <= 3)[_edge_band(kp)] for _, _, kp, c in pairs]
        share[name] = torch.cat(hits).float().mean().item()
    assert share["context"] >= 0.975 and share["context"] >= share["plain"] + 0.03, share


@pytest.fixture(scope="module")
def full_pairs(data_dir, full_weights):
    """FULL_PHOTOS matched with the full VGG-19 in both precisions (one backbone)."""
    vgg = VGG19Features(DEFAULT_LEVELS, weights=full_weights)
    return {p: _known(data_dir, Matcher(vgg, precision=p), FULL_PHOTOS, seed=1) for p in ("float32", "mixed")}


@pytest.mark.slow  # the full VGG-19
@pytest.mark.parametrize("precision", ["float32", "mixed"])
def test_known_transform_with_the_full_vgg19(full_pairs, precision):
    """Five levels relu5_1..relu1_1 of the full Caffe VGG-19: every photo well matched, colours reproduced."""
    pairs = full_pairs[precision]
    fractions = [_within_3px(c, kp) for _, _, kp, c in pairs]
    psnrs = [_psnr_overlap(img, lab, c.warped_ab, kp.overlap) for img, lab, kp, c in pairs]
    assert np.mean(fractions) >= FULL_MEAN and min(fractions) >= FULL_MIN, fractions
    assert np.mean(psnrs) >= 40 and min(psnrs) >= 38, psnrs  # measured 42.4-51.6 dB


@pytest.mark.slow  # the full VGG-19
def test_mixed_precision_keeps_the_right_matches(full_pairs):
    """bfloat16 beyond relu2_1 moves no right match: where float32 lands within 3 px of the truth, mixed
    lands within 1 px of float32's match on >= 99% of pixels (measured 99.7-99.9%; identical fields on 98.6-99.3%:
    the rest are ties in flat areas), and accuracy moves by less than half a point."""
    for (_, _, kp, c32), (_, _, _, cmx) in zip(full_pairs["float32"], full_pairs["mixed"]):
        right = (c32.forward - kp.truth).norm(dim=1, keepdim=True) <= 3
        moved = (cmx.forward - c32.forward).abs().amax(1, keepdim=True)
        kept = (moved[right & kp.overlap] <= 1).float().mean().item()
        assert kept >= 0.99, kept
        assert abs(_within_3px(cmx, kp) - _within_3px(c32, kp)) <= 0.005


def test_colouring_through_the_match_reproduces_the_photo(known_pairs):
    psnrs = [_psnr_overlap(img, lab, c.warped_ab, kp.overlap) for img, lab, kp, c in known_pairs]
    assert np.mean(psnrs) >= 30 and min(psnrs) >= 30, psnrs


def test_fast_beats_dense_nearest_neighbour(known_pairs, matcher):
    """Coarse-to-fine search must do clearly better than a dense nearest neighbour at relu3_1 alone."""
    _, lab, kp, c = known_pairs[0]
    ft = matcher.features(lab[:, :1])["relu3_1"]
    fr = matcher.features(rgb_to_lab(kp.reference.clamp(0, 1))[:, :1])["relu3_1"]
    phi, _ = exact_search(ft, fr, patch=1)
    nn_px = fl.to_pixels(phi, 4, 256, 256)
    nn_rate = ((nn_px - kp.truth).norm(dim=1, keepdim=True)[kp.overlap] <= 3).float().mean().item()
    ours = ((c.forward - kp.truth).norm(dim=1, keepdim=True)[kp.overlap] <= 3).float().mean().item()
    assert ours > nn_rate + 0.1, (ours, nn_rate)


def test_outputs_shapes_order_and_ranges(known_pairs):
    _, _, _, c = known_pairs[0]
    assert c.levels == ("relu3_1", "relu2_1", "relu1_1")
    assert c.forward.shape == (1, 2, 256, 256) and c.backward.shape == (1, 2, 256, 256)
    assert c.similarity.shape == (1, 6, 256, 256)
    assert c.warped_ab.shape == (1, 2, 256, 256) and c.confidence.shape == (1, 1, 256, 256)
    for t in (c.forward, c.backward, c.similarity, c.warped_ab, c.confidence):
        assert torch.isfinite(t).all()
    assert c.similarity.min() >= -1 - 1e-5 and c.similarity.max() <= 1 + 1e-5
    # bidirectional <= forward-ish: the agreement factor can only lower a consistent score
    assert c.bidirectional_similarity.mean() <= c.forward_similarity.mean() + 1e-6
    assert 0 <= c.confidence.min() and c.confidence.max() <= 1


def test_cycle_warp_gives_true_colours_where_consistent(known_pairs):
    _, lab, _, c = known_pairs[1]
    cyc = c.cycle_warp(lab[:, 1:])
    consistent = c.cycle_error() <= 1
    assert consistent.float().mean() > 0.5
    err = (cyc - lab[:, 1:]).norm(dim=1, keepdim=True)[consistent]
    assert err.mean() < 1.0  # exact colours where the round trip comes home


def test_bidirectional_and_batch_agree_with_single(known_pairs, matcher):
    (_, lab0, kp0, c0), (_, lab1, kp1, _) = known_pairs[:2]
    refs = torch.cat([rgb_to_lab(kp0.reference.clamp(0, 1)), rgb_to_lab(kp1.reference.clamp(0, 1))])
    batch = matcher.match(torch.cat([lab0[:, :1], lab1[:, :1]]), refs)
    assert torch.allclose(batch.forward[:1], c0.forward)
    assert torch.allclose(batch.similarity[:1], c0.similarity, atol=1e-4)
    # select(j) is pair j as a batch of one, every field included; to() keeps every field too
    second = batch.select(1)
    assert second.levels == batch.levels and set(second.fields) == set(batch.fields) == set(batch.levels)
    for name in ("forward", "backward", "similarity", "warped_ab", "confidence"):
        assert torch.equal(getattr(second, name), getattr(batch, name)[1:2]), name
    assert all(torch.equal(second.fields[lv][1], batch.fields[lv][1][1:2]) for lv in batch.levels)
    assert set(batch.to("cpu").fields) == set(batch.levels)
    # backward field maps reference pixels to where they came from: truth inverse inside the overlap
    back_at_truth = fl.sample(c0.backward, kp0.truth, mode="nearest")
    ident = fl.identity_field(1, 256, 256, 256, 256, "cpu").float()
    ok = ((back_at_truth - ident).norm(dim=1, keepdim=True)[kp0.overlap] <= 3).float().mean()
    assert ok > 0.9


def test_deterministic(known_pairs, matcher):
    _, lab, kp, c = known_pairs[2]
    again = matcher.match(lab[:, :1], rgb_to_lab(kp.reference.clamp(0, 1)))
    assert torch.equal(again.forward, c.forward) and torch.equal(again.backward, c.backward)


def test_patchmatch_reference_runs_and_fast_is_at_least_as_good(vgg_slices, known_pairs):
    """The published schedule (slow) on a small crop: the fast matcher must match or beat it."""
    img, lab, kp, _ = known_pairs[0]
    small = _crop_tensor(img, 128)
    g = torch.Generator().manual_seed(1)
    kps = similarity_pair(small, *random_similarity(g))
    tl, rl = rgb_to_lab(small)[:, :1], rgb_to_lab(kps.reference.clamp(0, 1))
    rates = {}
    for method in ("fast", "patchmatch"):
        c = Matcher(vgg_slices, method=method, seed=0).match(tl, rl)
        rates[method] = ((c.forward - kps.truth).norm(dim=1, keepdim=True)[kps.overlap] <= 3).float().mean().item()
    assert rates["fast"] >= rates["patchmatch"] - 0.01, rates


def _crop_tensor(img: torch.Tensor, size: int) -> torch.Tensor:
    h, w = img.shape[-2:]
    return img[:, :, (h - size) // 2:(h - size) // 2 + size, (w - size) // 2:(w - size) // 2 + size].contiguous()


def test_position_prior_prefers_the_part_in_the_same_place(matcher, known_pairs):
    """A reference holding the target twice, side by side: every target patch has two equally good matches.
    The whole-map search with the position prior takes the copy at the same relative place (so the target's
    right half goes to the right copy); without it, the tie goes to the first copy (the outer columns, whose
    patches hang over the edge, find their twin at the reference's own edge either way)."""
    _, lab, _, _ = known_pairs[0]
    ft = matcher.features(_crop_tensor(lab[:, :1], 64))["relu3_1"]  # 16 x 16
    fr = torch.cat([ft, ft], -1)  # 16 x 32
    w = ft.shape[-1]
    for prior, right_copy in ((0.0, 0.0), (0.25, 0.5)):
        phi, _ = exact_search(ft, fr, 3, position_prior=prior)
        in_right = (phi[:, 0] >= w).float()[..., 1:-1]
        assert in_right[..., : w // 2 - 2].mean() == 0.0
        assert in_right[..., w // 2:].mean() == (1.0 if prior else 0.0), prior
        assert abs(in_right.mean().item() - right_copy) <= 0.08, prior


def _shift_block(field: torch.Tensor, rows: slice, cols: slice, dx: int) -> torch.Tensor:
    moved = field.clone()
    moved[:, 0, rows, cols] += dx
    return moved


def test_prefer_coherent_resolves_repeated_texture_by_the_neighbourhood(matcher, known_pairs):
    """Real relu3_1 features made into a stripe texture (every 4th column alike) and matched to themselves.
    A block whose matches sit one period to the right, in both directions, scores exactly as well as the right
    match and passes the cycle check: the neighbourhood's motion (none) must win. A block that truly moved
    (its content copied one period to the right, its own place overwritten) keeps its better match."""
    _, lab, _, _ = known_pairs[0]
    feat = matcher.features(_crop_tensor(lab[:, :1], 128))["relu3_1"]  # 32 x 32
    stripes = feat[..., torch.arange(32) % 4]
    ident = fl.identity_field(1, 32, 32, 32, 32, "cpu")
    block, into = (slice(14, 18), slice(12, 16)), (slice(14, 18), slice(16, 20))
    phi, psi = _shift_block(ident, *block, 4), _shift_block(ident, *into, -4)
    assert torch.equal(fl.compose(phi, psi)[..., block[0], block[1]], ident[..., block[0], block[1]])
    assert torch.equal(prefer_coherent(stripes, stripes, phi, psi, patch=3, window=15, margin=0.02), ident)

    moved = feat.clone()
    moved[..., into[0], into[1]] = feat[..., block[0], block[1]]
    moved[..., block[0], block[1]] = feat.flip(-1).flip(-2)[..., block[0], block[1]]
    kept = prefer_coherent(feat, moved, phi, psi, patch=3, window=15, margin=0.02)
    assert torch.equal(kept[..., block[0], block[1]], phi[..., block[0], block[1]])


def test_local_search_recovers_a_shift(vgg_slices):
    torch.manual_seed(0)
    f = torch.nn.functional.normalize(torch.randn(1, 16, 20, 20), dim=1)
    shifted = torch.roll(f, shifts=(1, 2), dims=(2, 3))  # dst(p + (2, 1)) = src(p)
    start = fl.identity_field(1, 20, 20, 20, 20, "cpu")
    phi = local_search(f, shifted, start, patch=3, radius=2)
    inner = phi[:, :, 3:-3, 3:-3] - start[:, :, 3:-3, 3:-3]
    assert (inner[:, 0] == 2).all() and (inner[:, 1] == 1).all()
    # one radius per pixel: radius 1 cannot reach the shift of 2 in the left half; the right half still can
    per_pixel = torch.full((20, 20), 2)
    per_pixel[:, :10] = 1
    phi = local_search(f, shifted, start, patch=3, radius=per_pixel)
    assert ((phi - start)[:, 0, 3:-3, 10:-3] == 2).all()
    assert ((phi - start)[:, :, :, :10].abs() <= 1).all()


def test_relu4_1_searches_wider_along_the_edges():
    """relu5_1 is matched without the context border, so relu4_1 keeps the published radius (6) within
    EDGE_CELLS of each map's edges and the narrow one inside, on each direction's own grid."""
    ft, fr = torch.zeros(1, 1, 12, 16), torch.zeros(1, 1, 20, 10)
    fwd, bwd = _fast_radii("relu4_1", 6, ft, fr)
    assert fwd.shape == (12, 16) and bwd.shape == (20, 10)
    for r in (fwd, bwd):
        assert (r[:2] == 6).all() and (r[-2:] == 6).all() and (r[:, :2] == 6).all() and (r[:, -2:] == 6).all()
        assert (r[2:-2, 2:-2] == FAST_RADIUS["relu4_1"]).all()
    assert _fast_radii("relu3_1", 6, ft, fr) == (FAST_RADIUS["relu3_1"],) * 2


@pytest.mark.parametrize("shape_t,shape_r", [((1, 1, 64, 64), (1, 3, 64, 64)), ((1, 1, 48, 400), (1, 3, 128, 96))])
def test_flat_and_odd_shapes_stay_finite(vgg_slices, shape_t, shape_r):
    m = Matcher(vgg_slices)
    c = m.match(torch.full(shape_t, 50.0), torch.cat([torch.full(shape_r[:1] + (1,) + shape_r[2:], 60.0),
                                                      torch.full(shape_r[:1] + (2,) + shape_r[2:], 20.0)], 1))
    for t in (c.forward, c.backward, c.similarity, c.warped_ab, c.confidence):
        assert torch.isfinite(t).all()
    assert torch.allclose(c.warped_ab, torch.full_like(c.warped_ab, 20.0), atol=1e-3)
    assert c.forward[:, 0].max() <= shape_r[3] - 1 and c.forward[:, 1].max() <= shape_r[2] - 1


def test_identical_images_match_themselves(vgg_slices, data_dir):
    img = _crop(data_dir / "kodak" / "kodim23.png", 128)
    lab = rgb_to_lab(img)
    c = Matcher(vgg_slices).match(lab[:, :1], lab)
    ident = fl.identity_field(1, 128, 128, 128, 128, "cpu").float()
    assert ((c.forward - ident).norm(dim=1) <= 1).float().mean() > 0.97


def test_too_small_and_bad_shapes_are_clear_errors(vgg_slices):
    m = Matcher(vgg_slices)
    with pytest.raises(CorrespondenceError, match="too small"):
        m.match(torch.rand(1, 1, 6, 64) * 100, torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="target_l"):
        m.match(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="not computed"):
        Matcher(vgg_slices, levels=("relu4_1",))


def test_precision_is_resolved_per_device_and_checked(vgg_slices):
    from exemplar_color.runtime import native_bfloat16

    assert Matcher(vgg_slices).precision == ("mixed" if native_bfloat16(torch.device("cpu")) else "float32")
    assert Matcher(vgg_slices, precision="float32").precision == "float32"
    with pytest.raises(ValueError, match="precision"):
        Matcher(vgg_slices, precision="half")  # type: ignore[arg-type]
    feats = vgg_slices(torch.rand(1, 1, 32, 32), precision="mixed")
    assert feats["relu1_1"].dtype == torch.float32 and feats["relu3_1"].dtype == torch.bfloat16
